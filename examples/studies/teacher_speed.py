"""How long a teacher takes to label inputs: the eager Keras call against the traced one Teacher.outputs uses
(tf.function), in batches of 1,024, on random inputs of the teacher's shape; the outputs must agree.

    python examples/studies/teacher_speed.py gestures-gru gestures-conv1d --samples 20000
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples/studies"))

import numpy as np  # noqa: E402
from choice_study import CASES, load_avg, teacher_of  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="+", choices=list(CASES))
    ap.add_argument("--samples", type=int, default=20000)
    a = ap.parse_args(argv)
    from edgesketch.teacher import load
    print(f"load at start: {load_avg()}\n\n| teacher | samples | eager s | traced s | max difference |\n|---|---|---|---|---|")
    for case in a.cases:
        t = load(str(teacher_of(case)[0]))
        x = np.random.default_rng(0).normal(size=(a.samples,) + tuple(t.input_shape)).astype(np.float32)
        t.model(x[:1024], training=False)                      # the first calls build and trace: not timed
        t.outputs(x[:1])
        t0 = time.perf_counter()
        eager = np.concatenate([np.asarray(t.model(x[i:i + 1024], training=False)) for i in range(0, len(x), 1024)])
        t1 = time.perf_counter()
        traced = t.outputs(x)
        t2 = time.perf_counter()
        print(f"| {case} | {a.samples:,} | {t1 - t0:.1f} | {t2 - t1:.1f} | {np.abs(eager - traced).max():.1e} |", flush=True)
    print(f"\nload at the end: {load_avg()}")


if __name__ == "__main__":
    main()
