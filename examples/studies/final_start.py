"""Where the choice's final distil should start (issue 31), judged on the validation split only.

`edgesketch distill` scores candidates on 80% of the training set, then distils the kept one again on all of it. This
study asks whether that final distil should start afresh (relax, straight-through, refit) or continue from the kept
candidate's hyperplanes and tables (straight-through and refit only: distill.distill(start=...)). It replays the choice
one level down, so that the validation split stays unseen: on the fit split (choose.split, 80%) it splits again, scores
the candidate on the inner 20% (choose.shorter's recipe, early stopping: what choose does), then runs both finals on the
whole fit split for the epochs early stopping kept, and scores every integer sketch on the validation split (never the
test set). Prints a markdown table of accuracies and seconds.

    python examples/studies/final_start.py gestures-conv1d --stride 2 --dilation 1 --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples/studies"))

import numpy as np  # noqa: E402
from choice_study import CASES, load_avg, teacher_of  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("case", choices=list(CASES))
    ap.add_argument("--window", type=int, default=9)
    ap.add_argument("--stride", type=int, default=2)
    ap.add_argument("--dilation", type=int, default=1)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    a = ap.parse_args(argv)
    from edgesketch import choose, data
    from edgesketch import distillation as D
    from edgesketch.sketch import int_outputs
    from edgesketch.teacher import load as load_teacher
    tpath, source = teacher_of(a.case)
    ds, t = data.load(source), load_teacher(str(tpath))
    x = np.asarray(ds.x_train, np.float32).reshape(len(ds.x_train), -1)
    y = np.asarray(ds.y_train)
    fit, val = choose.split(x, y, t.task)
    inner, held = (fit[i] for i in choose.split(x[fit], y[fit], t.task))
    acc = lambda sk, idx: float(np.mean(int_outputs(sk, x[idx]).argmax(1) == y[idx]))
    print(f"load at start: {load_avg()}; {len(inner)} + {len(held)} to score the candidate, {len(fit)} for the finals, "
          f"{len(val)} to validate; teacher validation accuracy {np.mean(t.outputs(x[val]).argmax(1) == y[val]):.4f}",
          flush=True)
    rows = []
    for seed in a.seeds:
        cfg = D.config(t.input_shape, (a.window,), stride=(a.stride,), dilation=(a.dilation,), seed=seed)
        t0 = time.time()
        cand = D.distill(t, x[inner], choose.shorter(cfg, choose.SCORING, len(inner)), {}, validation=x[held],
                         patience=choose.PATIENCE)
        k = cand.meta["epochs_kept"]
        final = replace(cfg, ste_epochs=k.get("ste", cfg.ste_epochs), refit_epochs=k.get("refit", cfg.refit_epochs))
        t1 = time.time()
        afresh = D.distill(t, x[fit], final, {})
        t2 = time.time()
        cont = D.distill(t, x[fit], final, {}, start=cand)
        t3 = time.time()
        rows.append((seed, k, acc(cand, held), acc(cand, val), acc(afresh, val), acc(cont, val), t1 - t0, t2 - t1, t3 - t2))
        print(rows[-1], flush=True)
    print(f"\n{a.case}, window {a.window} stride {a.stride} dilation {a.dilation}: integer sketch accuracy on the "
          f"validation split ({len(val)} samples)\n")
    print("| seed | epochs kept (ste, refit) | candidate (inner 20%) | candidate | final afresh | final continued | "
          "seconds (candidate, afresh, continued) |")
    print("|---|---|---|---|---|---|---|")
    for s, k, ch, cv, fa, fc, tc, ta, tk in rows:
        print(f"| {s} | {k.get('ste')}, {k.get('refit')} | {ch:.4f} | {cv:.4f} | {fa:.4f} | {fc:.4f} | {tc:.0f}, {ta:.0f}, {tk:.0f} |")
    m = np.array([r[2:9] for r in rows])
    ms = lambda j: f"{m[:, j].mean():.4f} ± {m[:, j].std():.4f}"
    print(f"| mean ± std | | {ms(0)} | {ms(1)} | {ms(2)} | {ms(3)} | {m[:, 4].mean():.0f}, {m[:, 5].mean():.0f}, "
          f"{m[:, 6].mean():.0f} |")
    print(f"load at the end: {load_avg()}")


if __name__ == "__main__":
    main()
