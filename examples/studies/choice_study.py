"""What `edgesketch distill` builds by default (issue 31: the cheapest candidate that keeps the teacher), over seeds:
the candidate it keeps, the test accuracy of the integer sketch and its teacher's, the estimated and the measured
instructions per inference, and the distil time (the choice and the final distil), with the machine's load.

    python examples/studies/choice_study.py gestures-conv1d gestures-gru        # the gesture example, seeds 0-2
    python examples/studies/choice_study.py mnist1d --boards qemu-m4 qemu-m0
    python examples/studies/choice_study.py mnist1d --window 9 --stride 2        # a fixed geometry (no choice)
    python examples/studies/choice_study.py vibration imu --boards qemu-m4
    python examples/studies/choice_study.py gestures-conv1d --boards --workers 1  # the choice one candidate at a time
    python examples/studies/choice_study.py gestures-gru --size tables=25        # a size option on every candidate

Defaults are chosen on the validation split inside distill (choose.choose); the test set is only scored here, once per
sketch. Device counts: the seed's sketch built for each board and run under QEMU on the first --samples test inputs
(exact instruction counts; bit-exact against the integer reference or the study stops). Writes --json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

CASES = {   # name: (teacher file, data source, how to make the teacher)
    "gestures-conv1d": ("build/gestures/conv1d.keras", "synthetic:gestures", "python examples/gestures/teachers.py conv1d -o build/gestures/conv1d.keras"),
    "gestures-gru": ("build/gestures/gru.keras", "synthetic:gestures", "python examples/gestures/teachers.py gru -o build/gestures/gru.keras"),
    "mnist1d": ("build/teachers/mnist1d-cnn.keras", "mnist1d", "python -m edgesketch.bench.teachers mnist1d-cnn -o build/teachers/mnist1d-cnn.keras"),
    "digits-cnn": ("build/teachers/digits-cnn.keras", "sklearn:digits", "python -m edgesketch.bench.teachers digits-cnn -o build/teachers/digits-cnn.keras"),
    "digits-mlp": ("build/teachers/digits-mlp.keras", "sklearn:digits", "python -m edgesketch.bench.teachers digits-mlp -o build/teachers/digits-mlp.keras"),
    "imu": ("build/sensors/imu.keras", "synthetic:imu", "python examples/studies/sensor_teachers.py imu"),
    "vibration": ("build/sensors/vibration.keras", "synthetic:vibration", "python examples/studies/sensor_teachers.py vibration"),
}


def teacher_of(case: str) -> tuple[Path, str]:
    """(the case's teacher file, its data source); exits with the command that makes the teacher when it is missing."""
    tpath, source, make = CASES[case]
    if not (ROOT / tpath).exists():
        sys.exit(f"{tpath} is missing: {make}")
    return ROOT / tpath, source


def geometry_study(doc: str, stride: int, dilation: int, argv=None, extra=lambda ap: None):
    """The setup the final-distil studies share: their arguments (case, window, stride, dilation, seeds, and what
    extra adds), the case's data and teacher, and the choice's split of the training set. Returns (args, teacher,
    x_train flat, y_train, fit indices, validation indices)."""
    import argparse

    from edgesketch import choose, data
    from edgesketch.teacher import load
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("case", choices=list(CASES))
    ap.add_argument("--window", type=int, default=9)
    ap.add_argument("--stride", type=int, default=stride)
    ap.add_argument("--dilation", type=int, default=dilation)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    extra(ap)
    a = ap.parse_args(argv)
    tpath, source = teacher_of(a.case)
    ds, t = data.load(source), load(str(tpath))
    x, y = np.asarray(ds.x_train, np.float32).reshape(len(ds.x_train), -1), np.asarray(ds.y_train)
    fit, val = choose.split(x, y, t.task)
    return a, t, x, y, fit, val


def load_avg() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.split("load average:")[-1].strip()


def device_counts(sk, x, boards, workdir) -> dict:
    from edgesketch import codegen
    from edgesketch.bench import device
    from edgesketch.sketch import int_scores, quantize_inputs
    xq = quantize_inputs(sk, x)
    want, out = int_scores(sk, xq), {}
    for b in boards:
        r = device.run(b, codegen.generate(sk), xq, sk.n_inputs, sk.n_outputs, Path(workdir), f"choice-{b}")
        bad = np.flatnonzero((np.asarray(r.scores) != want).any(1))
        if len(bad):
            raise SystemExit(f"{b}: the device's scores differ from the integer reference on {len(bad)} of {len(xq)} inputs")
        out[b] = {"instructions": r.instructions, "flash": r.flash}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="+", choices=list(CASES))
    ap.add_argument("--tables", metavar="JSON", help="distil nothing: print the tables of a --json this script wrote")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--boards", nargs="*", default=["qemu-m0"], help="emulated boards to count instructions on")
    ap.add_argument("--samples", type=int, default=50, help="test inputs run on each board")
    ap.add_argument("--max-loss", type=float, default=1.0)
    ap.add_argument("--window", help="a fixed window size (no choice): 9, or flat")
    ap.add_argument("--stride", type=int, help="with --window: the stride")
    ap.add_argument("--size", nargs="*", default=[], metavar="KEY=N",
                    help="size options every candidate gets, as distill's --tables etc. (e.g. tables=25 count_bits=4)")
    ap.add_argument("--json", help="default build/study/choice-<cases>.json")
    ap.add_argument("--save", help="save every sketch here as <case>-seed<S>.esk")
    ap.add_argument("--workers", type=int, help="candidates distilled at once (default choose.WORKERS: 2 on 2 cores "
                                                "or more; 1 times the choice one candidate at a time)")
    a = ap.parse_args(argv)
    from edgesketch import api, choose, cost, data
    if a.workers:
        choose.WORKERS = a.workers
    from edgesketch.choose import table
    from edgesketch.report import out as rout
    fixed = {}
    if a.window:
        fixed["window"] = "flat" if a.window == "flat" else (int(a.window),)
        if a.stride:
            fixed["stride"] = (a.stride,)
    for kv in a.size:
        key, _, v = kv.partition("=")
        fixed[key] = int(v)
    rows = json.loads(Path(a.tables).read_text()) if a.tables else []
    if a.tables:
        a.cases, a.boards = [c for c in a.cases if any(r["case"] == c for r in rows)], sorted(rows[0]["device"])
    else:
        print(f"load at start: {load_avg()}", flush=True)
    for case in a.cases if not a.tables else ():
        tpath, source = teacher_of(case)
        ds = data.load(source)
        for seed in a.seeds:
            t0 = time.time()
            m = api.distill(str(tpath), ds.x_train, ds.y_train, x_test=ds.x_test, y_test=ds.y_test, progress=False,
                            source=source, max_loss=a.max_loss, seed=seed, **fixed)
            seconds = time.time() - t0
            if a.save:
                Path(a.save).mkdir(parents=True, exist_ok=True)
                m.save(Path(a.save) / f"{case}-seed{seed}.esk", force=True)
            sk, met = m.sketch, m.sketch.meta["metrics"]
            choice = sk.meta.get("choice")
            with tempfile.TemporaryDirectory() as wd:
                dev = device_counts(sk, ds.x_test[:a.samples], a.boards, wd) if a.boards else {}
            row = dict(case=case, seed=seed, chosen=choice["chosen"] if choice else "fixed: " + str(fixed),
                       test=met["int_accuracy"], float_test=met["float_accuracy"], teacher=met["teacher_accuracy"],
                       agreement=met["teacher_agreement"], estimate_m0=cost.m0_instructions(cost.structure_of(sk)),
                       device=dev, seconds=seconds, choice_seconds=choice["seconds"] if choice else 0.0,
                       final_seconds=choice["final_seconds"] if choice else seconds, load=load_avg(),
                       table_bytes=sk.table_bytes, choice=choice)
            rows.append(row)
            print(f"{case} seed {seed}: {row['chosen']}: test {row['test']:.4f} (teacher {row['teacher']:.4f}), "
                  f"estimated M0 {row['estimate_m0']:,}, " + ", ".join(f"{b} {v['instructions']:,}" for b, v in dev.items())
                  + f"; {seconds:.0f} s (choice {row['choice_seconds']:.0f} s); load {row['load']}", flush=True)
            if choice and seed == a.seeds[0]:
                rout.print(table(choice))
            path = Path(a.json or ROOT / f"build/study/choice-{'-'.join(a.cases)}.json")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(rows, indent=1, default=str))
    boards = a.boards
    print(f"\n| case | seed | kept | test int accuracy | teacher | points below | M0 est. | "
          + "".join(f"{b} instr | " for b in boards) + "distil s (choice + final) | load (1, 5, 15 min) |")
    print("|---|---|---|---|---|---|---|" + "---|" * len(boards) + "---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['seed']} | {r['chosen']} | {r['test']:.4f} | {r['teacher']:.4f} | "
              f"{100 * (r['teacher'] - r['test']):.2f} | {r['estimate_m0']:,} | "
              + "".join(f"{r['device'][b]['instructions']:,} | " for b in boards)
              + f"{r['seconds']:.0f} ({r['choice_seconds']:.0f} + {r['final_seconds']:.0f}) | {r['load']} |")
    for case in a.cases:
        rs = [r for r in rows if r["case"] == case]
        print(f"| {case} | mean ± std of {len(rs)} | | {np.mean([r['test'] for r in rs]):.4f} ± {np.std([r['test'] for r in rs]):.4f} | {np.mean([r['teacher'] for r in rs]):.4f} | "
              f"{100 * np.mean([r['teacher'] - r['test'] for r in rs]):.2f} | {np.mean([r['estimate_m0'] for r in rs]):,.0f} | "
              + "".join(f"{np.mean([r['device'][b]['instructions'] for r in rs]):,.0f} | " for b in boards)
              + f"{np.mean([r['seconds'] for r in rs]):.0f} | |")
    if not a.tables:
        print(f"load at the end: {load_avg()}")


if __name__ == "__main__":
    main()
