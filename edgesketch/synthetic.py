"""Synthetic sensor data sets (numpy only), generated from a fixed seed: the data sources `synthetic:gestures`,
`synthetic:imu` and `synthetic:vibration`. They stand in for recordings a user of a microcontroller would have, so
that examples, tests and studies of windowed sketches need no download. Every window is drawn independently:
random onsets, durations, amplitudes, orientations and noise.

  gestures   3-axis accelerometer in g, 50 Hz, 64-sample windows (1.28 s); 6 classes: idle, shake, tap, circle,
             swipe_left, swipe_right. 3,000 train / 1,000 test.
  imu        accelerometer (g) and gyroscope (deg/s), 6 channels, 50 Hz, 128-sample windows (2.56 s); 6 activities:
             still, walk, run, stairs_up, stairs_down, cycle. 3,000 train / 1,000 test.
  vibration  one accelerometer axis on a machine, in g, 5 kHz, 1,500-sample windows (0.3 s); 5 conditions: normal,
             imbalance, misalignment, bearing, looseness. 2,000 train / 500 test.
"""
from __future__ import annotations

import numpy as np

SETS = {   # name -> (shape of one window, class names, train, test, units per channel, sample rate in Hz)
    "gestures": ((64, 3), ("idle", "shake", "tap", "circle", "swipe_left", "swipe_right"), 3000, 1000,
                 ("g", "g", "g"), 50),
    "imu": ((128, 6), ("still", "walk", "run", "stairs_up", "stairs_down", "cycle"), 3000, 1000,
            ("g", "g", "g", "dps", "dps", "dps"), 50),
    "vibration": ((1500, 1), ("normal", "imbalance", "misalignment", "bearing", "looseness"), 2000, 500, ("g",), 5000),
}
SEED = {"gestures": 101, "imu": 202, "vibration": 303}


def make(name: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n windows of set `name` with balanced classes in random order: (x float32 [n, T, C], y int64 [n])."""
    shape, classes = SETS[name][0], SETS[name][1]
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % len(classes))
    gen = {"gestures": _gesture, "imu": _activity, "vibration": _machine}[name]
    x = np.stack([gen(int(c), shape, rng) for c in y]).astype(np.float32)
    return x, y.astype(np.int64)


def load(name: str):
    """(x_train, y_train, x_test, y_test, class_names, units, rate) of a named set (train and test from two seeds)."""
    shape, classes, n_train, n_test, units, rate = SETS[name]
    xtr, ytr = make(name, n_train, SEED[name])
    xte, yte = make(name, n_test, SEED[name] + 1)
    return xtr, ytr, xte, yte, list(classes), list(units), rate


def stream(name: str, n_samples: int, seed: int = 0, idle_share: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """A continuous recording of set `name` (each window with its own orientation, as the windows of the set): windows
    of random classes laid end to end with idle gaps (class 0's windows: `idle_share` of them), float32 [n_samples, C],
    and the class of each sample's window, int64 [n_samples]. What a live stream looks like to a streaming sketch."""
    shape, classes = SETS[name][0], SETS[name][1]
    gen = {"gestures": _gesture, "imu": _activity, "vibration": _machine}[name]
    rng = np.random.default_rng(seed)
    xs, ys, n = [], [], 0
    while n < n_samples:
        c = 0 if rng.random() < idle_share else int(rng.integers(1, len(classes)))
        w = gen(c, shape, rng)
        xs.append(w)
        ys.append(np.full(len(w), c))
        n += len(w)
    return np.concatenate(xs)[:n_samples].astype(np.float32), np.concatenate(ys)[:n_samples].astype(np.int64)


# ---------------------------------------------------------------- shared pieces
def _gravity(rng, tilt_deg: float = 20.0) -> np.ndarray:
    """The gravity vector (1 g) of a device held about flat, tilted by random roll and pitch."""
    roll, pitch = np.radians(rng.normal(0, tilt_deg, 2))
    return np.array([-np.sin(pitch), np.sin(roll) * np.cos(pitch), np.cos(roll) * np.cos(pitch)])


def _hann(n: int) -> np.ndarray:
    return np.hanning(n + 2)[1:-1]


def _place(T: int, d: int, rng) -> int:
    """A random onset for an event of d samples inside T."""
    return int(rng.integers(0, max(1, T - d) + 1))


def _noise(shape, rng, lo: float, hi: float) -> np.ndarray:
    return rng.normal(0, rng.uniform(lo, hi), shape)


# ---------------------------------------------------------------- gestures
def _gesture(c: int, shape, rng) -> np.ndarray:
    T, _ = shape
    fs = 50.0
    x = np.tile(_gravity(rng), (T, 1))
    t = np.arange(T) / fs
    x += 0.03 * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t + rng.uniform(0, 6.3))[:, None] * rng.normal(0, 1, 3)  # hand sway
    if c == 1:     # shake: a burst of oscillation along x (and a little y)
        d = int(rng.uniform(0.4, 0.9) * fs)
        o, f, a = _place(T, d, rng), rng.uniform(3.0, 6.0), rng.uniform(0.5, 1.5)
        s = a * _hann(d) * np.sin(2 * np.pi * f * np.arange(d) / fs + rng.uniform(0, 6.3))
        x[o:o + d, 0] += s
        x[o:o + d, 1] += rng.uniform(-0.3, 0.3) * s
    elif c == 2:   # tap: one or two sharp spikes on z with a rebound
        for _ in range(int(rng.integers(1, 3))):
            o, a = _place(T, 5, rng), rng.uniform(1.0, 3.0)
            x[o:o + 5, 2] += a * np.array([0.4, 1.0, -0.5, -0.2, 0.05])
            x[o:o + 5, :2] += rng.normal(0, 0.1 * a, (5, 2))
    elif c == 3:   # circle: one turn in the x-y plane
        d = int(rng.uniform(0.6, 1.1) * fs)
        o, a, ph = _place(T, d, rng), rng.uniform(0.3, 0.8), rng.uniform(0, 6.3)
        w = 2 * np.pi * np.arange(d) / d * rng.choice([-1, 1])
        x[o:o + d, 0] += a * _hann(d) * np.sin(w + ph)
        x[o:o + d, 1] += a * _hann(d) * np.cos(w + ph)
    elif c in (4, 5):   # swipe: accelerate then decelerate along x (left: the other way)
        d = int(rng.uniform(0.3, 0.6) * fs)
        o, a = _place(T, d, rng), rng.uniform(0.5, 1.5) * (1 if c == 5 else -1)
        u = np.linspace(-1, 1, d)
        x[o:o + d, 0] += a * -u * np.exp(-3 * u * u) * 2.3
        x[o:o + d, 2] += rng.uniform(-0.2, 0.2) * np.abs(a) * _hann(d)
    return x + _noise((T, 3), rng, 0.01, 0.04)


# ---------------------------------------------------------------- activities
def _activity(c: int, shape, rng) -> np.ndarray:
    T, _ = shape
    fs = 50.0
    t = np.arange(T) / fs
    g = _gravity(rng, 25.0)
    acc, gyr = np.tile(g, (T, 1)), np.zeros((T, 3))
    ph = rng.uniform(0, 2 * np.pi)
    if c == 0:     # still: a hand at rest
        acc += 0.01 * np.sin(2 * np.pi * rng.uniform(0.2, 1.0) * t)[:, None] * rng.normal(0, 1, 3)
        gyr += rng.normal(0, 1.0, 3)
    elif c == 5:   # cycle: smooth pedalling, a rotation in the gyroscope
        f = rng.uniform(0.9, 1.5)
        acc[:, 0] += rng.uniform(0.1, 0.25) * np.sin(2 * np.pi * f * t + ph)
        acc[:, 2] += rng.uniform(0.05, 0.15) * np.sin(4 * np.pi * f * t + ph)
        gyr[:, 1] += rng.uniform(40, 90) * np.sin(2 * np.pi * f * t + ph)
        gyr[:, 2] += rng.uniform(5, 20) * np.cos(2 * np.pi * f * t + ph)
    else:          # gait: steps at the cadence of the activity, impacts shaped by it
        f, a, sharp, pitch = {1: (rng.uniform(1.7, 2.2), rng.uniform(0.2, 0.4), 1.0, 0.0),
                              2: (rng.uniform(2.5, 3.2), rng.uniform(0.8, 1.5), 3.0, 0.0),
                              3: (rng.uniform(1.3, 1.7), rng.uniform(0.25, 0.45), 1.5, 1.0),
                              4: (rng.uniform(1.6, 2.0), rng.uniform(0.35, 0.6), 4.0, -1.0)}[c]
        s = np.sin(2 * np.pi * f * t + ph)
        step = np.sign(s) * np.abs(s) ** (1.0 / sharp) if sharp >= 1 else s
        acc[:, 2] += a * step
        acc[:, 0] += 0.3 * a * np.sin(np.pi * f * t + ph) + 0.1 * pitch
        acc[:, 1] += 0.2 * a * np.sin(np.pi * f * t + ph + 1.0)
        gyr[:, 0] += rng.uniform(20, 40) * a * np.sin(np.pi * f * t + ph)
        gyr[:, 1] += 15 * pitch + rng.uniform(10, 30) * a * np.sin(2 * np.pi * f * t + ph + 0.5 * pitch)
        gyr[:, 2] += rng.uniform(5, 15) * np.sin(np.pi * f * t + ph + 2.0)
    acc += _noise((T, 3), rng, 0.01, 0.04)
    gyr += _noise((T, 3), rng, 0.5, 2.0)
    return np.concatenate([acc, gyr], 1)


# ---------------------------------------------------------------- machine vibration
def _machine(c: int, shape, rng) -> np.ndarray:
    T, _ = shape
    fs = 5000.0
    t = np.arange(T) / fs
    fr = rng.uniform(20.0, 40.0)                       # shaft speed, 1,200 to 2,400 rpm
    harm = lambda k, a: a * np.sin(2 * np.pi * k * fr * t + rng.uniform(0, 2 * np.pi))
    x = harm(1, rng.uniform(0.05, 0.15)) + harm(2, rng.uniform(0.01, 0.05))
    if c == 1:     # imbalance: a strong 1x
        x += harm(1, rng.uniform(0.3, 0.8))
    elif c == 2:   # misalignment: strong 2x and 3x
        x += harm(2, rng.uniform(0.25, 0.6)) + harm(3, rng.uniform(0.1, 0.3))
    elif c == 3:   # outer-race bearing fault: impulses at about 3.6x shaft speed, ringing at a resonance
        bpfo, fres, a = fr * rng.uniform(3.4, 3.8), rng.uniform(1000, 1800), rng.uniform(0.3, 0.8)
        ring = np.exp(-np.arange(60) / rng.uniform(6, 12)) * np.sin(2 * np.pi * fres * np.arange(60) / fs)
        for t0 in np.arange(rng.uniform(0, 1 / bpfo), T / fs, 1 / bpfo):
            i = int(t0 * fs)
            x[i:i + 60] += a * rng.uniform(0.7, 1.3) * ring[:T - i]
    elif c == 4:   # mechanical looseness: many harmonics and half-orders, clipped
        for k in (0.5, 1, 1.5, 2, 3, 4, 5):
            x += harm(k, rng.uniform(0.05, 0.2))
        x = np.clip(x, -rng.uniform(0.3, 0.5), rng.uniform(0.3, 0.5))
    return (x + _noise(T, rng, 0.02, 0.06))[:, None]
