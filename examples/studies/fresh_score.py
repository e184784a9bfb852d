"""Saved sketches and their teacher on samples drawn fresh from the data's generator: a second, larger held-out set
beside the test set (mnist1d and the synthetic sets come from seeded generators; seed 4242 drew neither the training
nor the test set, and the teacher never saw these samples). Distils nothing: it scores .esk files as they are.

    python examples/studies/fresh_score.py gestures-gru build/study/kept/gestures-gru-seed*.esk
    python examples/studies/fresh_score.py mnist1d build/study/kept3/mnist1d-seed*.esk --fresh 4000

Prints, per sketch, the integer sketch's accuracy on the test set and on the fresh samples, the teacher's on both,
and the points below the teacher, then the mean ± std over the sketches given.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples" / "studies"))

import numpy as np  # noqa: E402

from choice_study import CASES, teacher_of  # noqa: E402
from final_start import fresh_data  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("case", choices=[c for c in CASES if CASES[c][1] == "mnist1d" or CASES[c][1].startswith("synthetic:")])
    ap.add_argument("sketches", nargs="+", type=Path, help=".esk files distilled from the case's teacher")
    ap.add_argument("--fresh", type=int, default=4000, help="fresh samples to draw (seed 4242)")
    a = ap.parse_args(argv)
    from edgesketch import data, esk
    from edgesketch.sketch import int_outputs
    from edgesketch.teacher import load
    tpath, source = teacher_of(a.case)
    t, ds = load(str(tpath)), data.load(source)
    flat = lambda v: np.asarray(v, np.float32).reshape(len(v), -1)
    xt, yt = flat(ds.x_test), np.asarray(ds.y_test)
    xf, yf = fresh_data(a.case, a.fresh)
    acc = lambda out, y: float(np.mean(np.asarray(out).argmax(1) == y))
    teacher = acc(t.outputs(xt), yt), acc(t.outputs(xf), yf)
    print(f"{a.case}: teacher {teacher[0]:.4f} on {len(yt):,} test samples, {teacher[1]:.4f} on {len(yf):,} fresh ones\n")
    print("| sketch | kept | test | below the teacher | fresh | below the teacher |\n|---|---|---|---|---|---|")
    rows = []
    for p in a.sketches:
        sk = esk.load(p)
        got = acc(int_outputs(sk, xt), yt), acc(int_outputs(sk, xf), yf)
        rows.append(got)
        kept = sk.meta.get("choice", {}).get("chosen", "fixed")
        print(f"| {p.name} | {kept} | {got[0]:.4f} | {100 * (teacher[0] - got[0]):.2f} | {got[1]:.4f} | "
              f"{100 * (teacher[1] - got[1]):.2f} |")
    m = np.array(rows)
    print(f"| mean ± std of {len(rows)} | | {m[:, 0].mean():.4f} ± {m[:, 0].std():.4f} | "
          f"{100 * (teacher[0] - m[:, 0].mean()):.2f} | {m[:, 1].mean():.4f} ± {m[:, 1].std():.4f} | "
          f"{100 * (teacher[1] - m[:, 1].mean()):.2f} |")


if __name__ == "__main__":
    main()
