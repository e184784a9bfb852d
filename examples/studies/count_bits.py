"""4-bit against 8-bit count tables: the default learned sketch (L=16 K=6 P=48 s=8) on digits and mnist1d (wide-MLP
teachers), three ways: int8 counts (the default); the same float tables quantised to 4 bits afterwards (centred,
squared-error clipping); and --count-bits 4, whose refit ends with epochs through the 4-bit grid. Integer accuracy on
the test set, one seed (about 5 minutes on 2 cores).

    python examples/studies/count_bits.py [--seed 0]
"""
import argparse
import copy
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "examples" / "studies")]

import teachers  # noqa: E402
from edgesketch import data, evaluate, quantize, teacher  # noqa: E402
from edgesketch.distillation import Config, distill  # noqa: E402

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print("| data | int8 counts | int4 after training | int4 trained through the grid (--count-bits 4) | table bytes 8 / 4 |")
    print("|---|---|---|---|---|")
    for source, tname in (("sklearn:digits", "digits-mlp"), ("mnist1d", "mnist1d-mlp")):
        ds, t0 = data.load(source), time.time()
        t = teacher.load(teachers.ensure(tname))
        acc = lambda sk: evaluate.evaluate(sk, ds.x_test, ds.y_test, t)["int_accuracy"]
        sk8 = distill(t, ds.x_train, Config(seed=a.seed), {"source": source})
        ptq = quantize.finalize(copy.deepcopy(sk8), 4)
        sk4 = distill(t, ds.x_train, Config(seed=a.seed, count_bits=4), {"source": source})
        print(f"| {source} | {acc(sk8):.4f} | {acc(ptq):.4f} | {acc(sk4):.4f} | {sk8.table_bytes:,} / {sk4.table_bytes:,} |"
              f" <!-- {time.time() - t0:.0f} s -->", flush=True)
