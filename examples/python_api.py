"""The whole day from Python, as in a notebook: a Keras model in memory -> a sketch -> C -> a verified device.

    python examples/python_api.py [--out build/python_api] [--board qemu-m4] [--quick]

Trains a small Conv1D teacher on mnist1d (or takes --teacher), distils it, evaluates, saves, generates C, exports a
PlatformIO project and verifies the whole test set bit for bit on an emulated board. tests/test_api.py runs it with
--quick.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def teacher_model(x_train, y_train, epochs: int):
    import keras
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((40, 1)), keras.layers.Conv1D(16, 5, padding="same", activation="relu"),
                              keras.layers.MaxPooling1D(2), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x_train.reshape(-1, 40, 1), y_train, epochs=epochs, batch_size=64, verbose=0)
    return model


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="build/python_api")
    ap.add_argument("--board", default="qemu-m4")
    ap.add_argument("--quick", action="store_true", help="a few epochs only (a plumbing check, not an accurate sketch)")
    a = ap.parse_args(argv)
    from edgesketch import data
    ds = data.load("mnist1d")
    x_train, y_train, x_test, y_test = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    model = teacher_model(x_train, y_train, epochs=3 if a.quick else 30)

    # ---- the notebook part: ten lines from a Keras model to a verified device
    import edgesketch as es
    quick = dict(epochs=2, refit_epochs=1, aug_size=4000, tables=8, bits=5, hyperplanes=16) if a.quick else {}
    sk = es.distill(model, x_train, y_train, x_test=x_test, y_test=y_test, **quick)   # windows: the input is 40 x 1
    print(sk.evaluate())
    sk.save(Path(a.out) / "mnist1d.esk", force=True)
    sk = es.load(Path(a.out) / "mnist1d.esk")
    sk.generate_c(Path(a.out) / "c", force=True)
    sk.export(Path(a.out) / "fw", board=a.board, force=True)
    report = sk.verify(board=a.board, x=x_test, y=y_test)
    print(f"{report.bit_exact}/{report.n} bit-exact on {report.board}, device accuracy {report.device_accuracy:.4f}, "
          f"{report.cost_median:,.0f} {report.counter} per inference")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
