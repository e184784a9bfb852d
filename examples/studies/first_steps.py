"""Where a candidate's seconds go before it trains (issue 31): the first step of each training phase traces the step
and compiles it (XLA), the later ones only run it. For each seed this distils one candidate as the choice does
(choose.shorter's recipe, early stopping on the validation split) and times, per phase, the first and the second step
and the first and second validation pass, ahead of the phase's own epochs (two steps more than the choice trains:
this times, it does not score). Run it on an idle machine.

    python examples/studies/first_steps.py gestures-gru --stride 4 --dilation 2 --seeds 0 1
    ES_NO_XLA=1 python examples/studies/first_steps.py gestures-gru --stride 4 --dilation 2 --seeds 0 1
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples/studies"))

from choice_study import geometry_study, load_avg  # noqa: E402


def main(argv=None):
    from edgesketch import choose
    from edgesketch import distillation as D
    a, t, x, y, fit, val = geometry_study(__doc__, 4, 2, argv)
    run = D._Fit.run

    def timed(self, phase, epochs, step, data, extra=lambda e: {}, watch=None):
        idx = self.batches(len(data[0]))
        args = lambda i: [self.tf.constant(v[idx[i]]) for v in data] + list(extra(0))
        t0 = time.time(); float(step(*args(0))); t1 = time.time(); float(step(*args(1))); t2 = time.time()
        line = f"  {phase:8s} step: first {t1 - t0:.2f} s, second {t2 - t1:.3f} s"
        if watch is not None:
            t3 = time.time(); watch[0](); t4 = time.time(); watch[0](); t5 = time.time()
            line += f"; validation pass: first {t4 - t3:.2f} s, second {t5 - t4:.3f} s"
        print(line, flush=True)
        return run(self, phase, epochs, step, data, extra, watch)
    D._Fit.run = timed
    print(f"load at start: {load_avg()}; XLA {'off' if os.environ.get('ES_NO_XLA') else 'on'}")
    cfg = D.config(t.input_shape, (a.window,), stride=(a.stride,), dilation=(a.dilation,))
    for seed in a.seeds:
        print(f"seed {seed}:", flush=True)
        t0 = time.time()
        D.distill(t, x[fit], choose.shorter(replace(cfg, seed=seed), choose.SCORING, len(fit)), {}, validation=x[val],
                  patience=choose.PATIENCE)
        print(f"  candidate: {time.time() - t0:.1f} s", flush=True)
    print(f"load at the end: {load_avg()}")


if __name__ == "__main__":
    main()
