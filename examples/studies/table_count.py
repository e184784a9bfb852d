"""How many tables a 1-D windowed sketch should have, and whether a flat branch beside the windows helps (issue 31),
never judged on the test set.

The 1-D family (distillation.FAMILIES[1]) has 15 tables of 2^6 cells: 9,600 bytes for mnist1d's 10 classes, the
budget it was chosen under, but 5,760 for the gestures' 6. This study distils the family's configuration at one
geometry from scratch with the full recipe (what `distill --window 9 --stride S` does) on the choice's fit split (80%
of the training set) for each variant, and scores every integer sketch on the validation split and on --fresh samples
drawn from the case's generator with a seed the training and test sets did not use.

    python examples/studies/table_count.py gestures-gru --stride 4 --dilation 2 --variants 15 25 "15+flat"
    python examples/studies/table_count.py mnist1d --stride 2 --dilation 1 --variants 15 "15+flat"

A variant is a table count, optionally "+flat": the 2-D family's flat branch (L8 K6 P48 s8) beside the windows.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples/studies"))

import numpy as np  # noqa: E402
from choice_study import geometry_study, load_avg  # noqa: E402
from final_start import fresh_data, seed_table  # noqa: E402


def main(argv=None):
    from edgesketch import distillation as D
    from edgesketch.sketch import int_outputs

    def extra(ap):
        ap.add_argument("--variants", nargs="+", default=["15", "25"], help='table counts, each optionally "+flat"')
        ap.add_argument("--fresh", type=int, default=4000, metavar="N", help="fresh generator samples to score on")
    a, t, x, y, fit, val = geometry_study(__doc__, 4, 2, argv, extra)
    xf, yf = fresh_data(a.case, a.fresh)
    acc = lambda sk, xs, ys: float(np.mean(int_outputs(sk, xs).argmax(1) == ys))
    print(f"load at start: {load_avg()}; {len(fit)} to distil, {len(val)} to validate; teacher: validation "
          f"{np.mean(t.outputs(x[val]).argmax(1) == y[val]):.4f}, {a.fresh:,} fresh "
          f"{np.mean(t.outputs(xf).argmax(1) == yf):.4f}", flush=True)
    vals, fresh, secs, nbytes = [], [], [], {}
    for seed in a.seeds:
        vr, fr, sr = [], [], []
        for v in a.variants:
            tables, _, flat = v.partition("+")
            cfg = D.config(t.input_shape, (a.window,), stride=(a.stride,), dilation=(a.dilation,), seed=seed,
                           tables=int(tables), flat_branch=D.FAMILIES[2]["flat_branch"] if flat else ())
            t0 = time.time()
            sk = D.distill(t, x[fit], cfg, {})
            sr.append(time.time() - t0)
            vr.append(acc(sk, x[val], y[val]))
            fr.append(acc(sk, xf, yf))
            nbytes[v] = sk.table_bytes
            print(f"seed {seed} {v}: validation {vr[-1]:.4f}, fresh {fr[-1]:.4f}, {sr[-1]:.0f} s, "
                  f"{nbytes[v]:,} table bytes", flush=True)
        vals.append(vr), fresh.append(fr), secs.append(sr)
    cols = [f"L{v} ({nbytes[v]:,} table bytes)" for v in a.variants]
    head = f"{a.case}, window {a.window} stride {a.stride} dilation {a.dilation}"
    seed_table(f"{head}: integer accuracy on the validation split ({len(val)} samples)", cols, a.seeds, vals)
    seed_table(f"{head}: integer accuracy on {a.fresh:,} fresh samples", cols, a.seeds, fresh)
    print("\nseconds per distil (mean): " + ", ".join(f"{v} {s:.0f}" for v, s in zip(a.variants, np.mean(secs, 0))))
    print(f"load at the end: {load_avg()}")


if __name__ == "__main__":
    main()
