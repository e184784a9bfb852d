"""Structured hashing against the default random one: which hyperplanes a table reads (--selectors random | window)
and how tap signs are split (--signs free | balanced), on the wide-MLP teachers of digits and mnist1d, for the bench's
int4 L16 K4 P32 s8 sketch ("small"), the default L16 K6 P48 s8 ("default") and its --count-bits 4 twin ("int4"). Window selectors let the compact C read a bucket with one
shift and mask; balanced signs let it read the inputs without a negated copy (docs/algorithm-notes.md). Integer test
accuracy, one line per (data, sketch, seed).

    python examples/studies/hash_structure.py [--seeds 0 1 2] [--data sklearn:digits mnist1d] [--sketch small default int4]
                                      [--taps S] [--variants 0 1 2 3]
"""
import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "examples" / "studies")]

import teachers  # noqa: E402
from edgesketch import data, evaluate, teacher  # noqa: E402
from edgesketch.distillation import Config, distill  # noqa: E402

SKETCHES = {"small": dict(tables=16, bits=4, hyperplanes=32, taps=8, count_bits=4),
            "default": dict(tables=16, bits=6, hyperplanes=48, taps=8),
            "int4": dict(tables=16, bits=6, hyperplanes=48, taps=8, count_bits=4)}
TEACHER = {"sklearn:digits": "digits-mlp", "mnist1d": "mnist1d-mlp"}
VARIANTS = [("random", "free"), ("window", "free"), ("random", "balanced"), ("window", "balanced")]

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--data", nargs="+", default=list(TEACHER), choices=list(TEACHER))
    ap.add_argument("--sketch", nargs="+", default=list(SKETCHES), choices=list(SKETCHES))
    ap.add_argument("--taps", type=int, help="taps per hyperplane instead of the sketches' 8")
    ap.add_argument("--variants", nargs="+", type=int, default=list(range(len(VARIANTS))),
                    help="which columns to run, 0-3 (default all)")
    a = ap.parse_args()
    VARIANTS = [VARIANTS[i] for i in a.variants]
    if a.taps:
        SKETCHES = {k: dict(v, taps=a.taps) for k, v in SKETCHES.items()}
    print("| data | sketch | seed | " + " | ".join(f"{s} / {g}" for s, g in VARIANTS) + " |")
    print("|---|---|---|" + "---|" * len(VARIANTS), flush=True)
    for source in a.data:
        ds = data.load(source)
        t = teacher.load(teachers.ensure(TEACHER[source]))
        for name in a.sketch:
            for seed in a.seeds:
                t0, accs = time.time(), []
                for sel, signs in VARIANTS:
                    sk = distill(t, ds.x_train, Config(seed=seed, selectors=sel, signs=signs, **SKETCHES[name]),
                                 {"source": source})
                    accs.append(evaluate.evaluate(sk, ds.x_test, ds.y_test, t)["int_accuracy"])
                print(f"| {source} | {name} | {seed} | " + " | ".join(f"{v:.4f}" for v in accs) +
                      f" | <!-- {time.time() - t0:.0f} s -->", flush=True)
