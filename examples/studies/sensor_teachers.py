"""Conv1D teachers of the longer synthetic sensor windows, for the long-window figures of issue 31:
synthetic:imu (128 x 6, accelerometer and gyroscope) and synthetic:vibration (1,500 x 1 machine vibration).
Trained deterministically (seed 0, op determinism); each input channel is normalised inside the model.

    python examples/studies/sensor_teachers.py imu            # build/sensors/imu.keras
    python examples/studies/sensor_teachers.py vibration      # build/sensors/vibration.keras
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

SPECS = {"imu": ("synthetic:imu", 30), "vibration": ("synthetic:vibration", 30)}


def build(name: str, x: np.ndarray, n_classes: int):
    import keras
    from keras import layers
    norm = layers.Normalization(axis=-1)
    norm.adapt(x)
    if name == "imu":
        body = [layers.Conv1D(16, 5, padding="same", activation="relu"), layers.MaxPooling1D(2),
                layers.Conv1D(32, 5, padding="same", activation="relu"), layers.MaxPooling1D(2),
                layers.Conv1D(32, 3, padding="same", activation="relu"), layers.GlobalAveragePooling1D()]
    else:
        body = [layers.Conv1D(16, 9, strides=2, padding="same", activation="relu"), layers.MaxPooling1D(4),
                layers.Conv1D(32, 9, padding="same", activation="relu"), layers.MaxPooling1D(4),
                layers.Conv1D(32, 5, padding="same", activation="relu"), layers.GlobalAveragePooling1D()]
    return keras.Sequential([keras.Input(x.shape[1:]), norm, *body, layers.Dense(n_classes, activation="softmax")])


def train(name: str, out: str, seed: int = 0) -> float:
    from edgesketch import data
    from edgesketch.bench.teachers import fit_and_save
    source, epochs = SPECS[name]
    ds = data.load(source)
    return fit_and_save(lambda: build(name, ds.x_train, int(ds.y_train.max()) + 1), ds.x_train, ds.y_train, ds.x_test,
                        ds.y_test, out, 3e-3, epochs, seed)[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", choices=sorted(SPECS))
    ap.add_argument("-o", "--out", help="default build/sensors/NAME.keras")
    a = ap.parse_args(argv)
    out = a.out or str(ROOT / f"build/sensors/{a.name}.keras")
    print(f"{a.name}: test accuracy {train(a.name, out):.4f} on {SPECS[a.name][0]} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
