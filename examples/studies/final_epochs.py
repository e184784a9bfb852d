"""How many epochs the choice's final distil should train (issue 31), judged on the validation split only.

The choice scores candidates with early stopping (choose.PATIENCE epochs without a lower validation loss). This study
asks whether the final distil should train the epochs early stopping kept, or the recipe's full epochs. For each
seed and geometry it distils on the fit split (choose.split: 80% of the training set):
  early   with early stopping on the validation split (what the candidate's score is)
  kept    again, without validation, for the epochs early stopping kept
  full    the recipe's full epochs
and scores every integer sketch on the validation split (never the test set). Prints a markdown table.

    python examples/studies/final_epochs.py gestures-conv1d --window 9 --stride 4 --dilation 2 --seeds 0 1 2
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples/studies"))

import numpy as np  # noqa: E402
from choice_study import geometry_study, load_avg  # noqa: E402


def main(argv=None):
    from edgesketch import choose
    from edgesketch import distillation as D
    from edgesketch.sketch import int_outputs
    a, t, x, y, fit, val = geometry_study(__doc__, 4, 2, argv)
    acc = lambda sk: float(np.mean(int_outputs(sk, x[val]).argmax(1) == y[val]))
    print(f"load at start: {load_avg()}; teacher validation accuracy {np.mean(t.outputs(x[val]).argmax(1) == y[val]):.4f}")
    rows = []
    for seed in a.seeds:
        cfg = D.config(t.input_shape, (a.window,), stride=(a.stride,), dilation=(a.dilation,), seed=seed)
        t0 = time.time()
        early = D.distill(t, x[fit], cfg, {}, validation=x[val], patience=choose.PATIENCE)
        t1 = time.time()
        k = early.meta["epochs_kept"]
        kept = D.distill(t, x[fit], replace(cfg, ste_epochs=k.get("ste", 0) or cfg.epochs,
                                            refit_epochs=k.get("refit", cfg.refit_epochs)), {})
        t2 = time.time()
        full = D.distill(t, x[fit], cfg, {})
        t3 = time.time()
        rows.append((seed, k, acc(early), acc(kept), acc(full), t1 - t0, t2 - t1, t3 - t2))
        print(rows[-1], flush=True)
    print(f"\n{a.case}, window {a.window} stride {a.stride} dilation {a.dilation}: integer sketch accuracy on the "
          f"validation split ({len(val)} samples)\n")
    print("| seed | epochs kept (ste, refit) | early stopped | kept epochs | full epochs | seconds (early, kept, full) |")
    print("|---|---|---|---|---|---|")
    for s, k, e, kk, f, te, tk, tf_ in rows:
        print(f"| {s} | {k.get('ste')}, {k.get('refit')} | {e:.4f} | {kk:.4f} | {f:.4f} | {te:.0f}, {tk:.0f}, {tf_:.0f} |")
    m = np.array([r[2:5] for r in rows])
    print(f"| mean ± std | | {m[:, 0].mean():.4f} ± {m[:, 0].std():.4f} | {m[:, 1].mean():.4f} ± {m[:, 1].std():.4f} | "
          f"{m[:, 2].mean():.4f} ± {m[:, 2].std():.4f} | |")
    print(f"load at the end: {load_avg()}")


if __name__ == "__main__":
    main()
