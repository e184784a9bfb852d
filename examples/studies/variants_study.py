"""Variants of distill's candidates, scored the way the choice scores them: distilled on the fit split of the training
set (tune.split: stratified 80%, fixed seed) and scored on the other 20%, never on the test set; mean over seeds.
This is where the candidates' settings were decided (docs/algorithm-notes.md, issue 31).

    python examples/studies/variants_study.py gestures-conv1d --variants flat "flat both"
    python examples/studies/variants_study.py mnist1d --variants "standard" "standard short" --seeds 0 1 2
    python examples/studies/variants_study.py gestures-conv1d --variants standard --patience 3   # as the choice scores

Variants are named options over a candidate (VARIANTS): "flat", "coarse" (fewest read-outs), "middle" and "standard"
(most read-outs: the family's default) are the candidates of edgesketch.choose for the input; the rest change one
thing. Prints a markdown table (validation int accuracy, mean
and range over seeds; distil seconds; the load) and writes --json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples" / "studies"))

import numpy as np  # noqa: E402

from choice_study import CASES, load_avg  # noqa: E402

VARIANTS = {   # name: (candidate, options over it)
    "flat": ("flat", {}),
    "flat both": ("flat", {"augment": "both"}),
    "flat signal": ("flat", {"augment": "signal"}),
    "flat taps 16": ("flat", {"taps": 16}),
    "flat L32 P96": ("flat", {"tables": 32, "hyperplanes": 96}),
    "coarse": ("coarse", {}),
    "middle": ("middle", {}),
    "standard": ("standard", {}),
    "standard short": ("standard", {"epochs": 10, "refit_epochs": 5}),
    "standard 12": ("standard", {"epochs": 12, "refit_epochs": 6}),
    "flat short": ("flat", {"epochs": 15, "refit_epochs": 8}),
    "standard batch 512": ("standard", {"batch": 512}),
    "standard aug 20k": ("standard", {"aug_size": 20000}),
    "stride 2": ("standard", {"stride": (2,), "dilation": (1,)}),
    "stride 2 short": ("standard", {"stride": (2,), "dilation": (1,), "epochs": 10, "refit_epochs": 5}),
    "stride 1": ("standard", {"stride": (1,), "dilation": (1,)}),
    "stride 4 dilation 1": ("standard", {"stride": (4,), "dilation": (1,)}),
    "stride 3 dilation 1": ("standard", {"stride": (3,), "dilation": (1,)}),
}


def candidate(input_shape, n_outputs, which: str):
    from edgesketch import choose
    cands = choose.candidates(input_shape, n_outputs, {})
    return {"flat": cands[0], "coarse": cands[1], "middle": cands[-2], "standard": cands[-1]}[which]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("case", choices=list(CASES))
    ap.add_argument("--variants", nargs="+", default=["flat", "standard"], choices=list(VARIANTS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--patience", type=int, help="early stopping on the validation split (the choice uses 3); default none")
    ap.add_argument("--json", help="default build/study/variants-<case>.json")
    a = ap.parse_args(argv)
    from edgesketch import api, data, teacher
    from edgesketch.distillation import distill
    from edgesketch.sketch import int_outputs
    from edgesketch.tuning import split
    tpath, source, make = CASES[a.case]
    if not (ROOT / tpath).exists():
        sys.exit(f"{tpath} is missing: {make}")
    ds, t = data.load(source), teacher.load(str(ROOT / tpath))
    x = ds.x_train.reshape(len(ds.x_train), -1).astype(np.float32)
    fit, val = split(x, ds.y_train, t.task)
    teacher_val = float(np.mean(t.outputs(x[val]).argmax(1) == ds.y_train[val]))
    print(f"{a.case}: teacher validation accuracy {teacher_val:.4f} ({len(val)} samples); load {load_avg()}", flush=True)
    rows = []
    for name in a.variants:
        which, opts = VARIANTS[name]
        c = candidate(t.input_shape, t.n_outputs, which)
        accs, secs = [], []
        for seed in a.seeds:
            cfg = api.config(t.input_shape, c.window, **dict(c.options, **opts, seed=seed))
            t0 = time.time()
            sk = distill(t, x[fit], cfg, {}, validation=x[val] if a.patience else None, patience=a.patience)
            secs.append(time.time() - t0)
            accs.append(float(np.mean(int_outputs(sk, x[val]).argmax(1) == ds.y_train[val])))
            print(f"{name} ({c.name}) seed {seed}: validation {accs[-1]:.4f}, {secs[-1]:.0f} s, load {load_avg()}", flush=True)
        rows.append(dict(variant=name, candidate=c.name, options=opts, accs=accs, mean=float(np.mean(accs)),
                         seconds=float(np.mean(secs)), load=load_avg(), patience=a.patience))
        path = Path(a.json or ROOT / f"build/study/variants-{a.case}.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rows, indent=1))
    print(f"\n{a.case}, validation split ({len(val)} samples; teacher {teacher_val:.4f}), seeds {a.seeds}, "
          f"early stopping {'patience ' + str(a.patience) if a.patience else 'off'}")
    print("| variant | candidate | options | validation int accuracy, mean (min-max) | distil s | load at the end |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['candidate']} | {r['options'] or ''} | {r['mean']:.4f} ({min(r['accs']):.4f}-"
              f"{max(r['accs']):.4f}) | {r['seconds']:.0f} | {r['load']} |")


if __name__ == "__main__":
    main()
