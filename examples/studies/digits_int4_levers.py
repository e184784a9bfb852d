"""Two training levers for the 4-bit goal sketch (int4 L16 K6 P48 s8) on digits (wide-MLP teacher), over seeds 0-2:
twice the augmented data (80,000 samples) and twice the table refit (30 epochs). Integer test accuracy per seed and
the mean (about 12 minutes on 2 cores for all three variants).

    python examples/studies/digits_int4_levers.py [base] [aug80k] [refit30]
"""
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "examples" / "studies")]

import teachers  # noqa: E402
from edgesketch import data, evaluate, teacher  # noqa: E402
from edgesketch.distillation import Config, distill  # noqa: E402

VARIANTS = {"base": {}, "aug80k": dict(aug_size=80000), "refit30": dict(refit_epochs=30)}

if __name__ == "__main__":
    names = sys.argv[1:] or list(VARIANTS)
    if any(n not in VARIANTS for n in names):
        sys.exit(f"choose from {', '.join(VARIANTS)}")
    ds, t = data.load("sklearn:digits"), teacher.load(teachers.ensure("digits-mlp"))
    for name in names:
        accs = []
        for seed in (0, 1, 2):
            t0 = time.time()
            sk = distill(t, ds.x_train, Config(seed=seed, count_bits=4, **VARIANTS[name]), {"source": "sklearn:digits"})
            accs.append(evaluate.evaluate(sk, ds.x_test, ds.y_test, t)["int_accuracy"])
            print(f"{name} seed {seed}: {accs[-1]:.4f} ({time.time() - t0:.0f} s)", flush=True)
        print(f"{name} mean: {sum(accs) / len(accs):.4f}", flush=True)
