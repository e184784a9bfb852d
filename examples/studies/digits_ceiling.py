"""Where the last point on digits goes: the default learned sketch against variants that each lift one limit of the
hashing, over seeds, wide-MLP teacher (0.9861). Float and integer test accuracy (360 samples: one is 0.28 points).

    default      L=16 K=6 P=48 s=8, ternary taps (10,240 table bytes)
    weights 1,2  the same, but a kept tap may weigh +-2 as well as +-1 (a power of two of its latent weight over the
                 smallest kept one, straight-through): free on Cortex-M3/M4/M7, whose adds shift an operand
    taps 32      half the inputs per hyperplane instead of 8
    L64 P192     four times the tables and hyperplanes (40,960 table bytes)
    shifted      the training images moved by one pixel in each of 8 directions (11,496 inputs) given as transfer
                 inputs (`distill --transfer`): the teacher labels them in place of as many mixup samples

About 45 s per distil of the default size on 2 cores, 1.5 minutes for L64 P192 (12 minutes for every variant
over three seeds).

    python examples/studies/digits_ceiling.py [--seeds 0 1 2] [--variants default "weights 1,2" ...]
"""
import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "examples" / "studies")]

import numpy as np  # noqa: E402
import teachers  # noqa: E402
from edgesketch import data, distillation as D, evaluate, teacher  # noqa: E402

VARIANTS = {"default": {}, "weights 1,2": {}, "taps 32": dict(taps=32), "L64 P192": dict(tables=64, hyperplanes=192),
            "shifted": {}}
ternary = D._Fit.ternary


def pow2_taps(self, w, s, half):
    """Ternary taps scaled by 2^j, j = round(log2(|w| / smallest kept |w|)) clipped to 0..1."""
    tf = self.tf
    kth = tf.math.top_k(tf.transpose(tf.abs(w)), s).values[:, -1]
    j = tf.clip_by_value(tf.round(tf.math.log(tf.abs(w) / kth[None, :] + 1e-12) / float(np.log(2.0))), 0.0, 1.0)
    return ternary(self, w, s, half) * tf.pow(2.0, j)


def shifted(x):
    """8x8 images moved by one pixel in each of the 8 directions (zeros shifted in) [8 N, 64]."""
    img, out = x.reshape(-1, 8, 8), []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dx or dy:
                z = np.zeros_like(img)
                z[:, max(-dy, 0):8 - max(dy, 0), max(-dx, 0):8 - max(dx, 0)] = \
                    img[:, max(dy, 0):8 - max(-dy, 0), max(dx, 0):8 - max(-dx, 0)]
                out.append(z.reshape(len(img), -1))
    return np.concatenate(out)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    a = ap.parse_args()
    ds, t = data.load("sklearn:digits"), teacher.load(teachers.ensure("digits-mlp"))
    rows = []
    for name in a.variants:
        D._Fit.ternary = pow2_taps if name == "weights 1,2" else ternary
        fl, it = [], []
        for seed in a.seeds:
            t0 = time.time()
            sk = D.distill(t, ds.x_train, D.Config(seed=seed, **VARIANTS[name]), {"source": "sklearn:digits"},
                           transfer=shifted(ds.x_train) if name == "shifted" else None)
            m = evaluate.evaluate(sk, ds.x_test, ds.y_test, t)
            fl.append(m["float_accuracy"]); it.append(m["int_accuracy"])
            w = abs(sk.branches[0].tap_weight.astype(int))
            print(f"{name} seed {seed}: float {fl[-1]:.4f}, int {it[-1]:.4f}, {sk.table_bytes:,} table bytes, "
                  f"{sk.n_taps} taps ({(w > 1).sum()} of weight 2) ({time.time() - t0:.0f} s)", flush=True)
        rows.append(f"| {name} | {sk.table_bytes:,} | " + " | ".join(f"{f:.4f} / {i:.4f}" for f, i in zip(fl, it))
                    + f" | {sum(fl) / len(fl):.4f} / {sum(it) / len(it):.4f} |")
    print("\n| digits-mlp (0.9861), float / int | table bytes | " + " | ".join(f"seed {s}" for s in a.seeds) + " | mean |")
    print("|---|---|" + "---|" * (len(a.seeds) + 1))
    print("\n".join(rows))
