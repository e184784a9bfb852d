"""edgesketch: run a trained network on a microcontroller as a Representer Sketch (hash, look up, add).

    import edgesketch as es
    sk = es.distill(model, x_train, y_train, x_test=x_test, y_test=y_test)   # a keras.Model or a path
    sk.evaluate(); sk.save("m.esk"); sk.generate_c("out/"); sk.export("fw/", board="qemu-m4"); sk.verify(board="qemu-m4")

The API is edgesketch.api (docs/python-api.md); importing the package does not import TensorFlow.
"""
__version__ = "0.2.0"

from .api import Metrics, Model, config, distill, load  # noqa: E402
from .tuning import tune  # noqa: E402
from .errors import ConfigError, DataError, UserError  # noqa: E402

__all__ = ["distill", "tune", "load", "config", "Model", "Metrics", "UserError", "ConfigError", "DataError", "__version__"]
