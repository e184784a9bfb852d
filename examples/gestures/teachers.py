"""The gesture example's Keras teachers, trained deterministically on synthetic:gestures (64 x 3 accelerometer
windows in g, 50 Hz, 6 classes): a small Conv1D and a recurrent one (two GRU layers of 32).

    python examples/gestures/teachers.py conv1d -o build/gestures/conv1d.keras
    python examples/gestures/teachers.py gru -o build/gestures/gru.keras
    python examples/gestures/teachers.py gru -o t.keras --epochs 1 --samples 300   (a quick, inaccurate one: tests)
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


SOURCE = "synthetic:gestures"
EPOCHS = {"conv1d": 50, "gru": 40}
LR = {"conv1d": 3e-3, "gru": 1e-2}


def build(arch: str, shape: tuple, n_classes: int):
    import keras
    from keras import layers
    if arch == "conv1d":
        body = [layers.Conv1D(16, 5, padding="same", activation="relu"), layers.MaxPooling1D(2),
                layers.Conv1D(32, 5, padding="same", activation="relu"), layers.MaxPooling1D(2),
                layers.Conv1D(32, 3, padding="same", activation="relu"), layers.GlobalAveragePooling1D()]
    elif arch == "gru":
        body = [layers.GRU(32, return_sequences=True), layers.GRU(32)]
    else:
        raise ValueError(arch)
    return keras.Sequential([keras.Input(shape), *body, layers.Dense(n_classes, activation="softmax")])


def train(arch: str, out: str, seed: int = 0, epochs: int | None = None, samples: int | None = None,
          verbose: int = 0) -> float:
    """Train teacher `arch` on synthetic:gestures, save it to `out`, return its test accuracy."""
    from edgesketch import data
    from edgesketch.bench.teachers import fit_and_save
    ds = data.load(SOURCE)
    x, y = ds.x_train[:samples], ds.y_train[:samples]
    return fit_and_save(lambda: build(arch, x.shape[1:], int(ds.y_train.max()) + 1), x, y, ds.x_test, ds.y_test, out,
                        LR[arch], epochs or EPOCHS[arch], seed, verbose)[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("arch", choices=sorted(EPOCHS))
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, help=f"default {EPOCHS}")
    ap.add_argument("--samples", type=int, help="train on the first N training windows only (default all 3,000)")
    a = ap.parse_args(argv)
    acc = train(a.arch, a.out, a.seed, a.epochs, a.samples, verbose=2)
    print(f"{a.arch}: test accuracy {acc:.4f} on {SOURCE} -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
