"""Issue 31's tune figure: `edgesketch tune` of the bench's digits CNN teacher for 16 KB of flash on qemu-m0, 6 trials
(seeds 0-2, the default), against the flat sketch distill builds with --window flat (seeds 0-2, whole training set,
scored once on the test set); wall time and the machine's load.

    python examples/studies/tune_study.py                         # this checkout
    python examples/studies/tune_study.py --src /tmp/es-before    # the tune of another checkout (the time before)

The tune's choice is made on its validation split; the test set is scored once for the chosen configuration (by tune)
and once for each flat seed (here).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEACHER = "build/teachers/digits-cnn.keras"


def load_avg() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.split("load average:")[-1].strip()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default=str(ROOT), help="the edgesketch checkout whose tune runs (default: this one)")
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--out", default=str(ROOT / "build/study/tune-digits-cnn"))
    ap.add_argument("--no-flat", action="store_true", help="skip the flat default's three distils")
    a = ap.parse_args(argv)
    if not (ROOT / TEACHER).exists():
        sys.exit(f"{TEACHER} is missing: python -m edgesketch.bench.teachers digits-cnn -o {TEACHER}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(Path(a.src).resolve()), TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, "-m", "edgesketch", "tune", str(ROOT / TEACHER), "--data", "sklearn:digits", "--board", "qemu-m0",
           "--flash", "16384", "--trials", str(a.trials), "-o", str(out / "m0.esk"), "--force",
           "--storage", str(out / f"study-{int(time.time())}.db")]
    print(f"{' '.join(cmd[2:])}\n  (edgesketch from {a.src}); load at start {load_avg()}", flush=True)
    t0 = time.time()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    seconds = time.time() - t0
    (out / "tune.log").write_text(p.stdout + p.stderr)
    if p.returncode:
        sys.exit(f"tune failed ({p.returncode}); see {out / 'tune.log'}")
    r = json.loads((out / "m0.trials.json").read_text())
    f = r["final"]
    tune_load = load_avg()
    print(f"tune: {seconds / 60:.1f} min (load at the end {tune_load}); chosen trial {r['best']['number']}: "
          f"{r['best']['config']}\n  validation {f['validation_mean']:.4f}, test {f['test_mean']:.4f} ± "
          f"{f['test_spread']:.4f} (seeds {f['seeds']}), flash {f['cost']['flash']:,}, instructions "
          f"{f['cost']['instructions']:,}, fits {f['fits']}", flush=True)
    for t in r["trials"]:
        print(f"  trial {t['number']}: {t['state']}, validation {t['mean'] if t['mean'] is None else round(t['mean'], 4)}, "
              f"{t['cost']}, {t['seconds']:.0f} s: {t['config'].get('window')} stride {t['config'].get('stride')} "
              f"L={t['config'].get('tables')} K={t['config'].get('bits')}", flush=True)
    flat = []
    if not a.no_flat:
        sys.path.insert(0, str(ROOT))
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        from edgesketch import api, data
        ds = data.load("sklearn:digits")
        for seed in f["seeds"]:
            m = api.distill(str(ROOT / TEACHER), ds.x_train, ds.y_train, x_test=ds.x_test, y_test=ds.y_test,
                            window="flat", progress=False, seed=seed)
            flat.append(m.sketch.meta["metrics"]["int_accuracy"])
            print(f"flat default seed {seed}: test {flat[-1]:.4f}", flush=True)
    print("\n| | test accuracy, mean over seeds " + " ".join(map(str, f["seeds"])) + " | wall | load (1, 5, 15 min) at the end |")
    print("|---|---|---|---|")
    print(f"| tune, {a.trials} trials, 16 KB on qemu-m0 (chosen: trial {r['best']['number']}) | {f['test_mean']:.4f} | "
          f"{seconds / 60:.1f} min | {tune_load} |")
    if flat:
        import numpy as np
        print(f"| flat default (distill --window flat) | {np.mean(flat):.4f} | | {load_avg()} |")
        print(f"\ntune at least as accurate on test as the flat default: {f['test_mean'] >= np.mean(flat) - 1e-9}")


if __name__ == "__main__":
    main()
