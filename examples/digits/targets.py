"""The digits targets over seeds: the default sketch (10 KB of int8 tables) and the 20 KB one, learned mode, against
the bundled wide-MLP teacher; seeds 0, 1, 2. Prints each run and the mean (about 10 minutes on 2 cores).

    python examples/digits/targets.py [--seeds 0,1,2]
"""
import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT)]

import numpy as np  # noqa: E402

from edgesketch.bench import teachers  # noqa: E402
from edgesketch import data, evaluate, teacher  # noqa: E402
from edgesketch.distillation import Config, distill  # noqa: E402

CONFIGS = {"10 KB (default)": {}, "20 KB": dict(tables=32, hyperplanes=96, taps=16, aug_size=80000, epochs=20)}

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    a = ap.parse_args()
    ds = data.load("sklearn:digits")
    t = teacher.load(teachers.ensure("digits-mlp"))
    for name, c in CONFIGS.items():
        accs = []
        for seed in map(int, a.seeds.split(",")):
            t0 = time.time()
            sk = distill(t, ds.x_train, Config(seed=seed, **c), {"source": ds.source})
            m = evaluate.evaluate(sk, ds.x_test, ds.y_test, t)
            accs.append(m["int_accuracy"])
            print(f"{name:16s} seed {seed}: int {m['int_accuracy']:.4f} float {m['float_accuracy']:.4f} "
                  f"teacher {m['teacher_accuracy']:.4f} tables {m['table_bytes']:,} B ({time.time() - t0:.0f} s)", flush=True)
        print(f"{name:16s} mean {np.mean(accs):.4f} (min {min(accs):.4f}, max {max(accs):.4f})", flush=True)
