"""Issue 21's grid: `edgesketch tune` for two teachers and three budgets, against distill's defaults, on the test set.

    python examples/studies/tune_grid.py                                   # the full grid: 2 teachers x 3 budgets, 40 trials,
                                                                    # 3 seeds each (hours on 2 cores)
    python examples/studies/tune_grid.py --trials 60 --jobs 4              # more trials, 4 at once
    python examples/studies/tune_grid.py --ray ray://head:10001            # the trials on a Ray cluster
    python examples/studies/tune_grid.py --only digits-mlp:m0-16k          # one cell
    python examples/studies/tune_grid.py --smoke                           # a minute: 2 trials, one seed, 1 epoch, a narrow space
    python examples/studies/tune_grid.py --only digits-mlp:uno digits-mlp:m0-16k digits-mlp:m4 --trials 40 --trial-epochs 10 \
        --trial-aug-size 20000 --finalists 2 --jobs 2 --out build/tune-study/digits   # what docs/tune.md reports
    python examples/studies/tune_grid.py --only mnist1d-cnn:uno mnist1d-cnn:m0-16k mnist1d-cnn:m4 --trials 10 --trial-epochs 5 \
        --trial-aug-size 8000 --finalists 1 --jobs 2 --out build/tune-study/mnist1d  # (shortened trials rank configurations; the
                                                                         # finalists, the chosen one and the defaults
                                                                         # train fully)

Teachers (edgesketch/bench/teachers.py, trained into --teachers if missing): digits-mlp (flat sketch) and mnist1d-cnn
(a Conv1D teacher: the space holds the shift-invariant windowed sketch as well as the flat one).
Budgets: uno (the Arduino Uno's flash and RAM minus the firmware around the model, measured on qemu-uno), m0-16k
(16 KB flash and 4 KB RAM for the model on qemu-m0), m4 (qemu-m4, no hard budget: the Pareto front).

Every cell: the tuned configuration (trials scored on a stratified 20% validation split of the training set, never
the test set), its validation and test accuracy (mean and spread over --seeds; test after distilling on the whole
training set), its measured flash, RAM and instructions, and the wall time; then distill's defaults on the same
training set and seeds, their test accuracy and whether they fit the budget as measured, the teacher's test accuracy
and whether the tuned sketch's mean is within 1 point of it (the bench's goal (a), as a mean over seeds). Prints a
markdown table and writes --out/results.json and results.md, and each cell's .esk, trials JSON and Pareto PNG. Studies resume: run it again to
continue interrupted cells (--fresh starts them again).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

BUDGETS = {"uno": dict(board="uno"), "m0-16k": dict(board="qemu-m0", flash=16384, ram=4096), "m4": dict(board="qemu-m4")}
TEACHERS = {"digits-mlp": "sklearn:digits", "mnist1d-cnn": "mnist1d"}
SMOKE = dict(fixed=dict(epochs=1, refit_epochs=1, aug_size=2000, layout="unrolled", count_bits=8, codebook=0,
                        mode="learned", weights=1, thresholds=1, lr=0.01, noise=0.1, temperature=1.0, table_dropout=0.0),
             space=dict(tables=[4, 8], bits=[4, 5], hyperplanes=[16], taps=[4, 6], window=["flat", "auto"],
                        window_size=[5, 9], stride=[2], pool=[1], regions=[1], flat_branch=["none"], padding=["same"],
                        dilation=[1], augment=["mixup"], shift=[0]))


def defaults_test(es, tune, teacher, ds, seeds, quick=None):
    """distill's defaults on the whole training set: test accuracy per seed and the first seed's model (the same for
    every budget of a teacher, so computed once). quick: training options that shorten it (--smoke only: then they
    are not quite the defaults)."""
    models = [es.distill(teacher, ds.x_train, ds.y_train, x_test=ds.x_test, y_test=ds.y_test, progress=False, seed=s,
                         **(quick or {})) for s in seeds]
    accs = [tune.score(m.sketch, ds.x_test, ds.y_test) for m in models]
    return {"test": accs, "test_mean": float(np.mean(accs)), "test_spread": float(np.std(accs))}, models[0]


def defaults_cell(tune, test, model, ds, bud):
    """The defaults' test scores with their cost measured for this budget's board."""
    cost = tune.measure(model.sketch, "unrolled", bud, model.quantize(ds.x_train[:8]))
    return dict(test, cost=cost.__dict__, fits=cost.fits(bud))


def table(rows) -> str:
    """The grid as a markdown table: rows of results.json, each with `_dir`, the folder of its cell's trials.json."""
    pm = lambda m, s: f"{m:.4f} ± {s:.4f}"
    num = lambda v: f"{v:,}" if v else "n/a"
    lines = ["| cell | chosen configuration | trials (pruned, refused by distill: not counted) | finalists: validation "
             "shortened -> full | validation | test | flash | RAM | instructions | wall of the last run (trials' own "
             "seconds, summed) | defaults: test | defaults fit | tuned - defaults (test) | teacher | tuned within 1 point |",
             "|---" * 15 + "|"]
    for r in rows:
        c, d = r["cost"], r["defaults"]
        trials = json.loads((r["_dir"] / f"{r['cell']}.trials.json").read_text())["trials"]
        states, busy = [t["state"] for t in trials], sum(t["seconds"] or 0 for t in trials)
        n = f"{len(states) - states.count('invalid')} ({states.count('pruned')} pruned, {states.count('invalid')} refused)"
        fin = "; ".join(f"#{x['number']} {x['shortened_mean']:.4f} -> {x['mean']:.4f}" for x in r.get("finalists") or [])
        lines.append(
            f"| {r['cell']} | {r['describe']} | {n} | {fin or 'none'} | "
            f"{pm(r['validation_mean'], r['validation_spread'])} | {pm(r['test_mean'], r['test_spread'])} | "
            f"{num(c['flash'])} | {num(c['ram'])} | {num(c['instructions'])} | {r['wall_seconds']:.0f} s ({busy:.0f} s) | "
            f"{pm(d['test_mean'], d['test_spread'])} | {'yes' if d['fits'] else 'no'} ({d['cost']['flash']:,} B) | "
            f"{100 * r['tuned_minus_defaults']:+.1f} points | {r['teacher_test']:.4f} | "
            f"{'yes' if r['within_1_point_of_teacher'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", help="cells TEACHER:BUDGET (default: all)")
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int)
    ap.add_argument("--trial-epochs", type=int, help="trials train N epochs per phase (refit N/2) and only rank "
                    "configurations; the chosen one is distilled with distill's own epochs")
    ap.add_argument("--trial-aug-size", type=int, help="trials train on N augmented samples")
    ap.add_argument("--finalists", type=int, default=3, help="with shortened trials: the N best (and the defaults) "
                    "are distilled again with full training on the split and chosen on that")
    ap.add_argument("--ray", metavar="ADDRESS")
    ap.add_argument("--teachers", default="build/teachers", help="folder of the teachers (trained there if missing)")
    ap.add_argument("--out", default="build/tune-study")
    ap.add_argument("--fresh", action="store_true", help="start every study again (default: resume stored ones)")
    ap.add_argument("--smoke", action="store_true", help="a quick check of the script: 2 trials, one seed, 1 epoch")
    ap.add_argument("--report", nargs="+", metavar="RESULTS.json", help="only print the table of finished grids")
    a = ap.parse_args(argv)
    if a.report:
        rows = [dict(r, _dir=Path(f).parent) for f in a.report for r in json.loads(Path(f).read_text())]
        sys.stdout.write(table(rows))
        return 0
    import edgesketch as es
    from edgesketch import data, tuning as tune
    from edgesketch.bench.teachers import ensure
    if a.smoke:
        a.trials, a.seeds = 2, [0]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cells = [(t, b) for t in TEACHERS for b in BUDGETS]
    if a.only:
        cells = [tuple(c.split(":")) for c in a.only]
    short = tune.shortened(a.trial_epochs, a.trial_aug_size)
    rows, dflt = [], {}
    for name, bname in cells:
        ds = data.load(TEACHERS[name])
        teacher = ensure(name, a.teachers)
        tag = f"{name}-{bname}"
        db = out / f"{tag}.db"
        if a.fresh and db.exists():
            db.unlink()
        print(f"== {tag}: {a.trials} trials x seeds {a.seeds}", flush=True)
        t0 = time.time()
        r = tune.tune(teacher, ds.x_train, ds.y_train, ds.x_test, ds.y_test, trials=a.trials, seeds=a.seeds, jobs=a.jobs,
                      ray=a.ray, storage=db, resume=db.exists(), source=ds.source, class_names=ds.class_names,
                      trial_options=short or None, finalists=a.finalists,
                      **BUDGETS[bname], **(SMOKE if a.smoke else {}))
        wall = time.time() - t0
        r.save(out / f"{tag}.esk", force=True)
        f = r.final
        teacher_model = es.api._teacher(teacher)
        quick = {k: SMOKE["fixed"][k] for k in ("epochs", "refit_epochs", "aug_size")} if a.smoke else None
        teacher_acc = float(np.mean(teacher_model.outputs(ds.x_test).argmax(1) == ds.y_test))
        if name not in dflt and r.best["number"] == 0 and not a.smoke:   # trial 0 is distill's defaults: the final is them
            dflt[name] = ({"test": f["test"], "test_mean": f["test_mean"], "test_spread": f["test_spread"]}, r.model)
        if name not in dflt:
            print(f"== {name}: distill's defaults, seeds {a.seeds}", flush=True)
            dflt[name] = defaults_test(es, tune, teacher_model, ds, a.seeds, quick)
        d = defaults_cell(tune, *dflt[name], ds, r.budget)
        rows.append({"cell": tag, "board": r.board, "budget": r.budget.__dict__, "config": r.best["config"],
                     "describe": tune.describe(r.best["config"]), "trials": len(r.trials),
                     "validation": f["validation"], "validation_mean": f["validation_mean"],
                     "validation_spread": f["validation_spread"], "trial_options": short, "finalists": f["finalists"],
                     "test": f["test"], "test_mean": f["test_mean"], "test_spread": f["test_spread"], "cost": f["cost"],
                     "fits": f["fits"], "wall_seconds": wall, "defaults": d, "teacher_test": teacher_acc,
                     "within_1_point_of_teacher": f["test_mean"] >= teacher_acc - 0.01,
                     "tuned_minus_defaults": f["test_mean"] - d["test_mean"]})
        tmp = out / ".results.json.tmp"
        tmp.write_text(json.dumps(rows, indent=1, default=str) + "\n")
        tmp.replace(out / "results.json")
    text = table([dict(r, _dir=out) for r in rows])
    sys.stdout.write(text)
    (out / "results.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
