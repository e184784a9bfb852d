"""The Keras teachers of the examples, the grid and the bench, trained deterministically (fixed seeds, op determinism).
Needs the [train] extra (TensorFlow, Keras, scikit-learn, mnist1d).

    python -m edgesketch.bench.teachers digits-mlp -o build/digits-mlp.keras     (or: python examples/studies/teachers.py ...)

Teachers: digits-mlp (64-256-256-10, the bundled example), digits-small (64-32-10), digits-cnn (Conv2D on 8x8),
mnist1d-mlp (40-256-256-10), mnist1d-small (40-32-10), mnist1d-cnn (Conv1D).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from .. import data as esdata

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SPECS = {  # name: (data source, architecture, epochs)
    "digits-mlp": ("sklearn:digits", "mlp256", 120),
    "digits-small": ("sklearn:digits", "mlp32", 200),
    "digits-cnn": ("sklearn:digits", "cnn2d", 80),
    "mnist1d-mlp": ("mnist1d", "mlp256", 120),
    "mnist1d-small": ("mnist1d", "mlp32", 200),
    "mnist1d-cnn": ("mnist1d", "cnn1d", 60),
}


def build(arch: str, d: int, c: int, scale: float = 1.0):
    import keras
    from keras import layers
    if arch.startswith("mlp"):
        h = int(arch[3:])
        body = []
        for _ in range(2 if h >= 128 else 1):
            body += [layers.Dense(h, activation="relu"), layers.Dropout(0.2)]
        return keras.Sequential([keras.Input((d,)), layers.Rescaling(scale), *body, layers.Dense(c, activation="softmax")])
    if arch == "cnn2d":
        return keras.Sequential([keras.Input((8, 8, 1)), layers.Rescaling(scale),
                                 layers.Conv2D(32, 3, padding="same", activation="relu"),
                                 layers.Conv2D(32, 3, padding="same", activation="relu"), layers.MaxPooling2D(2),
                                 layers.Flatten(), layers.Dropout(0.3), layers.Dense(64, activation="relu"),
                                 layers.Dense(c, activation="softmax")])
    if arch == "cnn1d":
        return keras.Sequential([keras.Input((d, 1)), layers.Conv1D(32, 5, padding="same", activation="relu"),
                                 layers.Conv1D(32, 5, padding="same", activation="relu"), layers.MaxPooling1D(2),
                                 layers.Conv1D(64, 3, padding="same", activation="relu"), layers.MaxPooling1D(2),
                                 layers.Flatten(), layers.Dropout(0.3), layers.Dense(64, activation="relu"),
                                 layers.Dense(c, activation="softmax")])
    raise ValueError(arch)


def fit_and_save(make_model, x, y, x_test, y_test, out: str, lr: float, epochs: int, seed: int = 0,
                 verbose: int = 0):
    """The teachers' one training recipe (the bench's, the gesture example's, the sensor studies'): seed Keras with
    op determinism, make_model() (after seeding), Adam(lr) on sparse cross-entropy, batches of 64, shuffled; test
    accuracy; saved to `out`. Returns (test accuracy, model)."""
    from edgesketch.teacher import tensorflow
    tf = tensorflow()
    import keras
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    model = make_model()
    shape = tuple(model.inputs[0].shape[1:])
    x, x_test = np.reshape(x, (len(x),) + shape), np.reshape(x_test, (len(x_test),) + shape)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=verbose, shuffle=True)
    acc = float(np.mean(model.predict(x_test, verbose=0).argmax(1) == y_test))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    return acc, model


def train(name: str, out: str, seed: int = 0, verbose: int = 0) -> float:
    """Train teacher `name`, save it to `out`, print its size, return its test accuracy."""
    source, arch, epochs = SPECS[name]
    ds = esdata.load(source)
    c = int(ds.y_train.max()) + 1
    acc, model = fit_and_save(lambda: build(arch, ds.x_train.shape[1], c, 1.0 / float(np.abs(ds.x_train).max())),
                              ds.x_train, ds.y_train, ds.x_test, ds.y_test, out, 1e-3, epochs, seed, verbose)
    n = model.count_params()
    print(f"{name}: {n:,} parameters = {4 * n:,} bytes of float32 weights")
    return acc


def ensure(name: str, folder: str = "build/teachers") -> str:
    """Path to teacher `name`, training it first if it is not there yet."""
    path = Path(folder) / f"{name}.keras"
    if not path.exists():
        acc = train(name, str(path))
        print(f"trained teacher {name}: test accuracy {acc:.4f} -> {path}")
    return str(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", choices=sorted(SPECS))
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    print(f"{a.name}: test accuracy {train(a.name, a.out, a.seed, verbose=2):.4f} -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
