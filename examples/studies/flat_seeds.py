"""The bench's flat digits sketches over many seeds, to tell a code change from seed luck: each configuration distilled
from the digits MLP teacher (build/teachers/digits-mlp.keras) once per seed on the whole training set
(distill.distill, as the bench does), and its integer sketch scored on the 360 test digits.

    python examples/studies/flat_seeds.py --seeds 0 1 2 3 4 5 6 7 8 --configs codebook
    ES_NO_XLA=1 python examples/studies/flat_seeds.py --seeds 0 1 2 3 4 5 6 7 8 --configs codebook   # steps not compiled
    python examples/studies/flat_seeds.py --src /tmp/es-c934504                                       # another checkout

ES_NO_XLA=1 runs the training steps as plain TensorFlow graphs instead of XLA-compiled ones (edgesketch/distillation.py,
_Fit.compiled). Configurations: the bench's, read from the checkout's edgesketch/bench/run.py (SKETCHES, and STRUCTURE
for digits) by label: default (L16 K6 P48 s8), codebook (the same, 256 shared rows), small (int4 L16 K4 P32 s8, window
selectors and balanced signs on digits).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[2]

CONFIGS = {"default": "sketch L16 K6 P48 s8", "codebook": "sketch L16 K6 P48 s8 codebook 256",
           "small": "sketch int4 L16 K4 P32 s8"}     # name: the bench's label (edgesketch/bench/run.py SKETCHES)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    ap.add_argument("--src", type=Path, default=ROOT, help="the edgesketch checkout to run (default: this one)")
    ap.add_argument("--teacher", type=Path, default=ROOT / "build/teachers/digits-mlp.keras")
    a = ap.parse_args(argv)
    if not a.teacher.exists():
        sys.exit(f"{a.teacher} is missing: python -m edgesketch.bench.teachers digits-mlp -o {a.teacher}")
    sys.path.insert(0, str(a.src))
    import numpy as np
    old = (a.src / "edgesketch/distill.py").exists()          # checkouts before the module was renamed
    D = importlib.import_module("edgesketch.distill" if old else "edgesketch.distillation")
    S, data, T = (importlib.import_module(f"edgesketch.{m}") for m in ("sketch", "data", "teacher"))
    bench = importlib.import_module("edgesketch.bench.run")
    sketches = {label: (mode, kw) for label, mode, kw, _ in bench.SKETCHES}
    ds, tch = data.load("sklearn:digits"), T.load(str(a.teacher))
    flat = lambda v: np.asarray(v, np.float32).reshape(len(v), -1)
    xtr, xte = flat(ds.x_train), flat(ds.x_test)
    print(f"edgesketch from {a.src}; ES_NO_XLA={os.environ.get('ES_NO_XLA', '')!r}\n")
    print("| configuration | " + " | ".join(f"seed {s}" for s in a.seeds) + " | mean ± std | seconds per seed |")
    print("|---|" + "---|" * (len(a.seeds) + 2))
    for name in a.configs:
        accs, t0 = [], time.time()
        for seed in a.seeds:
            mode, kw = sketches[CONFIGS[name]]
            cfg = D.Config(mode=mode, seed=seed, **kw, **bench.STRUCTURE.get(("sklearn:digits", CONFIGS[name]), {}))
            sk = D.distill(tch, xtr, cfg, {"source": "sklearn:digits", "class_names": [], "input_shape": list(tch.input_shape)})
            accs.append(float(np.mean(S.int_scores(sk, S.quantize_inputs(sk, xte)).argmax(1) == ds.y_test)))
        print(f"| {name} | " + " | ".join(f"{v:.4f}" for v in accs)
              + f" | {np.mean(accs):.4f} ± {np.std(accs):.4f} | {(time.time() - t0) / len(a.seeds):.0f} |", flush=True)


if __name__ == "__main__":
    main()
