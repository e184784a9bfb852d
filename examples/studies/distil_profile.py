"""Where a distillation's time goes: wall time of every phase (relabel, relax, ste, refit, ...) of one distil, and
the whole, for the examples' teachers; with --src, of another checkout of edgesketch (the code before a change).

    python examples/studies/distil_profile.py                                  # every case, this checkout
    python examples/studies/distil_profile.py --src /tmp/es-before             # the same on an older checkout
    python examples/studies/distil_profile.py --cases gestures-conv1d --how single   # one configuration, no choice

--how single distils the case's default configuration once on the whole training set (distill.distill, the phases
as its progress callback reports them); --how default runs what `edgesketch distill` runs (api.distill: on a
checkout with the choice, the candidates too). Prints one markdown table, and the machine's load (uptime) at the
start and the end: the machine is shared.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[2]

CASES = {   # name: (teacher file, data source)
    "mnist1d-cnn": ("build/teachers/mnist1d-cnn.keras", "mnist1d"),
    "digits-mlp": ("build/teachers/digits-mlp.keras", "sklearn:digits"),
    "digits-cnn": ("build/teachers/digits-cnn.keras", "sklearn:digits"),
    "gestures-conv1d": ("build/gestures/conv1d.keras", "synthetic:gestures"),
    "gestures-gru": ("build/gestures/gru.keras", "synthetic:gestures"),
}


def load_avg() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip().split("load average:")[-1].strip()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default=str(ROOT), help="the edgesketch checkout to time (default: this one)")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--how", choices=["single", "default"], default="single")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument("--tables", metavar="JSON", help="distil nothing: print the table of a --json this script wrote")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(Path(a.src).resolve()))
    es_data = importlib.import_module("edgesketch.data")
    es_teacher = importlib.import_module("edgesketch.teacher")
    try:
        D = importlib.import_module("edgesketch.distillation")
    except ModuleNotFoundError:                       # checkouts before the module was renamed
        D = importlib.import_module("edgesketch.distill")
    print(f"edgesketch from {Path(D.__file__).resolve().parents[1]}; load at start {load_avg()}", flush=True)
    rows = json.loads(Path(a.tables).read_text()) if a.tables else []
    for name in a.cases if not a.tables else ():
        tpath, source = CASES[name]
        ds = es_data.load(source)
        t = es_teacher.load(str(ROOT / tpath))
        marks = []          # (time, phase) each time a phase reports
        def cb(phase, done, total, info, marks=marks):
            marks.append((time.perf_counter(), phase))
        t0 = time.perf_counter()
        if a.how == "single":
            cfg = D.Config(**dict(D.family_defaults(t.input_shape), seed=a.seed))
            sk = D.distill(t, ds.x_train.reshape(len(ds.x_train), -1), cfg, {"input_shape": list(t.input_shape)}, cb)
        else:
            api = importlib.import_module("edgesketch.api")
            sk = api.distill(t, ds.x_train, ds.y_train, progress=cb, seed=a.seed).sketch
        total = time.perf_counter() - t0
        phases, last = {}, {}
        for when, phase in marks:   # the time since the previous report of the same candidate belongs to this phase
            who = phase.rpartition(": ")[0]     # the choice distils two candidates at once, "<candidate>: <phase>"
            phases[phase] = phases.get(phase, 0.0) + when - last.get(who, when if who else t0)
            last[who] = when
        phases["other (after the last report)"] = time.perf_counter() - max(last.values(), default=t0)
        choice = sk.meta.get("choice") or {}
        from edgesketch.sketch import int_outputs   # noqa: E402  (the checkout's own)
        acc = float((int_outputs(sk, ds.x_test).argmax(1) == ds.y_test).mean())
        row = dict(case=name, how=a.how, total=total, phases=phases, test=acc, load=load_avg(),
                   geometry=[b.window.to_json() for b in sk.branches], choice_seconds=choice.get("seconds"),
                   final_seconds=choice.get("final_seconds"))
        rows.append(row)
        print(f"{name}: {total:.1f} s, test {acc:.4f}, " + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items())
              + f" (load {row['load']})", flush=True)
    tails = ("relabel", "relax", "ste", "hash", "refit")
    final = lambda k: ": " not in k or "(all training data)" in k      # the final's phases, or the only distil's
    part = lambda r, of_final: {t: sum(v for k, v in r["phases"].items()
                                       if k.rpartition(": ")[2] == t and final(k) == of_final) for t in tails}
    print("\n| case | total s | choice s | final s | final (or the only distil): " + ", ".join(tails)
          + " | candidates, each one's wall time summed: " + ", ".join(tails) + " | test int accuracy | load (1, 5, 15 min) at the end |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        f, c = part(r, True), part(r, False)
        both = not all(map(final, r["phases"]))
        print(f"| {r['case']} | {r['total']:.1f} | {r.get('choice_seconds') or 0:.1f} | {r.get('final_seconds') or r['total']:.1f} | "
              + ", ".join(f"{f[t]:.1f}" for t in tails) + " | "
              + (", ".join(f"{c[t]:.1f}" for t in tails) if both else "-") + f" | {r['test']:.4f} | {r['load']} |")
    print(f"load at the end {load_avg()}")
    if a.json and not a.tables:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
