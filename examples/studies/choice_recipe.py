"""How short a recipe the choice can score its candidates with (issue 31: distil in minutes), judged on the
validation split only.

Every candidate the choice could try is distilled on the fit split (choose.split) and scored on the validation split
(max_loss 0: all of them), once with each recipe: "full" (the candidate's own epochs and augmented set), "half" and
"quarter" (that fraction of both: choose.shorter), early stopping as choose.PATIENCE in each. A shorter recipe is
good enough when it keeps the same candidate (or a costlier one) in less time.

    python examples/studies/choice_recipe.py gestures-conv1d --recipes full half --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples/studies"))

import numpy as np  # noqa: E402
from choice_study import CASES, load_avg, teacher_of  # noqa: E402

RECIPES = {"full": 1.0, "half": 0.5, "quarter": 0.25}   # choose.shorter: the fraction of the epochs and augmented samples


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("case", choices=list(CASES))
    ap.add_argument("--recipes", nargs="+", default=["full", "half"], choices=list(RECIPES))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--json", help="default build/study/choice-recipe-<case>.json")
    a = ap.parse_args(argv)
    from edgesketch import choose, data
    from edgesketch.teacher import load as load_teacher
    tpath, source = teacher_of(a.case)
    ds, t = data.load(source), load_teacher(str(tpath))
    print(f"load at start: {load_avg()}", flush=True)
    qualifies = choose._scorer(t.task, True)[2]          # the choice's own rule: within 1 point (max_loss 1)
    rows, kept = [], {}
    for seed in a.seeds:
        cands = choose.candidates(t.input_shape, t.n_outputs, {"seed": seed})
        for r in a.recipes:
            c = choose.choose(t, ds.x_train, ds.y_train, cands, 0, scoring=RECIPES[r])
            for row in c.rows:
                rows.append(dict(seed=seed, recipe=r, candidate=row["name"], score=row["score"], seconds=row["seconds"],
                                 qualifies=qualifies(row["score"], c.teacher_score, 1.0), load=load_avg()))
                print(rows[-1], flush=True)
            mine = rows[-len(c.rows):]                   # what max_loss 1 keeps: the first that qualifies, else the best
            first = next((x for x in mine if x["qualifies"]), None)
            kept[seed, r] = first["candidate"] if first else max(mine, key=lambda x: x["score"])["candidate"] + " (the best)"
            path = Path(a.json or ROOT / f"build/study/choice-recipe-{a.case}.json")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(rows, indent=1))
    names = list(dict.fromkeys(r["candidate"] for r in rows))
    print(f"\n{a.case}: validation accuracy of each candidate (seconds to distil and score it), recipes "
          + ", ".join(f"{r} ({RECIPES[r]:g} of the epochs and augmented samples)" for r in a.recipes) + "\n")
    print("| seed | recipe | " + " | ".join(names) + " | total s | kept (max_loss 1) |")
    print("|---|---|" + "---|" * len(names) + "---|---|")
    for seed in a.seeds:
        for r in a.recipes:
            rs = {x["candidate"]: x for x in rows if x["seed"] == seed and x["recipe"] == r}
            print(f"| {seed} | {r} | " + " | ".join(f"{rs[n]['score']:.4f}{' ok' if rs[n]['qualifies'] else ''} "
                                                   f"({rs[n]['seconds']:.0f})" for n in names)
                  + f" | {sum(x['seconds'] for x in rs.values()):.0f} | {kept[seed, r]} |")
    for r in a.recipes:
        rs = [x for x in rows if x["recipe"] == r]
        print(f"| mean | {r} | " + " | ".join(f"{np.mean([x['score'] for x in rs if x['candidate'] == n]):.4f} "
                                              f"({np.mean([x['seconds'] for x in rs if x['candidate'] == n]):.0f})"
                                              for n in names)
              + f" | {sum(x['seconds'] for x in rs) / len(a.seeds):.0f} | |")
    print(f"load at the end: {load_avg()}")


if __name__ == "__main__":
    main()
