"""emlearn (PyPI emlearn==0.23.2) float MLP export of a Keras MLP teacher, wrapped in the es_predict_q API so the
same firmware and harness measure it. emlearn 0.23.2 cannot convert Keras' Rescaling layer, so the teacher's
Dense layers are converted with the Rescaling folded into the first layer's weights (the same function)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from .. import codegen
from . import mlp

HEADERS = ("eml_net.h", "eml_common.h", "eml_net_common.h", "eml_log.h")


def generate(keras_model, in_scale, in_zero, name: str = "esnet") -> dict[str, str]:
    import emlearn
    import keras
    layers = mlp.teacher_layers(keras_model)
    if layers is None:
        raise ValueError("emlearn export here covers MLP teachers only")
    k = keras.Sequential([keras.Input((layers[0][0].shape[0],))] +
                         [keras.layers.Dense(W.shape[1], activation="relu" if i < len(layers) - 1 else "softmax")
                          for i, (W, b) in enumerate(layers)])
    for layer, (W, b) in zip(k.layers, layers):
        layer.set_weights([W.astype(np.float32), b.astype(np.float32)])
    conv = emlearn.convert(k, method="loadable")
    with tempfile.TemporaryDirectory() as tmp:
        conv.save(name=name, file=str(Path(tmp) / f"{name}.h"))
        net_h = (Path(tmp) / f"{name}.h").read_text()
    inc = Path(emlearn.__file__).parent
    files = {h: (inc / h).read_text() for h in HEADERS}
    files[f"{name}.h"] = net_h
    # emlearn's activations call expf/logf/tanhf: link libm (the firmware's own link line does not)
    files["library.json"] = '{"name": "es_model", "version": "0.0.0", "build": {"flags": ["-lm"]}}\n'
    shape = "-".join(str(s) for s in [layers[0][0].shape[0]] + [W.shape[1] for W, _ in layers])
    C = layers[-1][0].shape[1]
    ctx = dict(description=f"emlearn float MLP {shape}", model_id="e" * 32, model_id_bytes=["0xee"] * 8,
               D=len(in_scale), C=C)
    files["es_model.h"] = codegen.render("bench/int8_mlp.h.j2", **ctx)
    files["es_model.c"] = codegen.render("bench/emlearn_wrapper.c.j2", name=name, net_header=f"{name}.h", shape=shape,
                                         emlearn_version=getattr(emlearn, "__version__", "0.23.2"),
                                         in_scale=[codegen._c_float(v) for v in in_scale],
                                         in_zero=[str(int(v)) for v in in_zero], **ctx)
    return files
