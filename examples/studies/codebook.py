"""Shared rows (`distill --codebook R`) against plain int8 and 4-bit tables: integer test accuracy over seeds and the
table bytes, wide-MLP teacher, and how many cells the training inputs land in. One distil per variant and seed, about
a minute each on 2 cores.

    python examples/studies/codebook.py [--data sklearn:digits|mnist1d] [--seeds 0 1 2] [--variants int8 int4 rows256 ...]
"""
import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "examples" / "studies")]

import teachers  # noqa: E402
import numpy as np  # noqa: E402
from edgesketch import data, evaluate, teacher  # noqa: E402
from edgesketch.sketch import int_cells, quantize_inputs  # noqa: E402
from edgesketch.distillation import Config, distill  # noqa: E402

VARIANTS = {"int8": {}, "int4": dict(count_bits=4), "rows128": dict(codebook=128), "rows256": dict(codebook=256),
            "L24 rows256": dict(tables=24, codebook=256), "K8 rows256": dict(bits=8, codebook=256),
            "L32 P64 rows256": dict(tables=32, hyperplanes=64, codebook=256)}
TEACHER = {"sklearn:digits": "digits-mlp", "mnist1d": "mnist1d-mlp"}

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="sklearn:digits", choices=list(TEACHER))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    a = ap.parse_args()
    ds, t = data.load(a.data), teacher.load(teachers.ensure(TEACHER[a.data]))
    rows = []
    for name in a.variants:
        accs = []
        for seed in a.seeds:
            t0 = time.time()
            sk = distill(t, ds.x_train, Config(seed=seed, **VARIANTS[name]), {"source": a.data})
            accs.append(evaluate.evaluate(sk, ds.x_test, ds.y_test, t)["int_accuracy"])
            hit = np.zeros(sk.branches[0].counts.shape[0] * sk.branches[0].counts.shape[1], bool)   # cells the training inputs land in
            hit[int_cells(sk, quantize_inputs(sk, ds.x_train)).reshape(-1)] = True
            print(f"{name} seed {seed}: {accs[-1]:.4f}, {sk.table_bytes:,} table bytes, {hit.sum():,} of {hit.size:,} cells hit "
                  f"by the training set ({time.time() - t0:.0f} s)", flush=True)
        rows.append(f"| {name} | {sk.table_bytes:,} | " + " | ".join(f"{v:.4f}" for v in accs) + f" | {sum(accs) / len(accs):.4f} |")
    print(f"\n| {a.data}, {TEACHER[a.data]} | table bytes | " + " | ".join(f"seed {s}" for s in a.seeds) + " | mean |")
    print("|---|---|" + "---|" * (len(a.seeds) + 1))
    print("\n".join(rows))
