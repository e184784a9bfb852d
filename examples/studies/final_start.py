"""Where the choice's final distil should start, and for how many epochs (issue 31), never judged on the test set.

`edgesketch distill` scores candidates on 80% of the training set, then distils the kept one again on all of it. This
study asks whether that final distil should start afresh (relax, straight-through, refit) or continue from the kept
candidate's hyperplanes and tables (straight-through and refit only: distill.distill(start=...)). It replays the choice
one level down, so that the validation split stays unseen: on the fit split (choose.split, 80%) it splits again, scores
the candidate on the inner 20% (choose.shorter's recipe, early stopping: what choose does), then runs both finals on the
whole fit split for the epochs early stopping kept (--full: also for the recipe's full epochs), and scores every integer
sketch on the validation split (never the test set). Prints a markdown table of accuracies and seconds.

    python examples/studies/final_start.py gestures-conv1d --stride 2 --dilation 1 --seeds 0 1 2
    python examples/studies/final_start.py gestures-gru --stride 2 --dilation 1 --no-afresh --min-ste 10
    python examples/studies/final_start.py gestures-gru --stride 4 --dilation 2 --no-afresh --aug 80000
    python examples/studies/final_start.py gestures-gru --stride 2 --dilation 1 --no-afresh --keep-hashes
    python examples/studies/final_start.py mnist1d --stride 2 --dilation 1 --perturbed 4000   # + agreement away from
                                                                                         # the training points
    python examples/studies/final_start.py mnist1d --stride 2 --dilation 1 --fresh 4000   # + accuracy on fresh data
    python examples/studies/final_start.py gestures-gru --stride 2 --dilation 1 --no-afresh --full --fresh 4000

--fresh N draws N new samples from the case's generator (mnist1d and the synthetic sets are generated from a seed) with
a seed neither the training nor the test set used: data the teacher never saw, unlike the validation split (which lies
in the teacher's training set, where the teacher scores about 1.0), and not the test set.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples/studies"))

import numpy as np  # noqa: E402
from choice_study import CASES, geometry_study, load_avg  # noqa: E402


def main(argv=None):
    from edgesketch import choose
    from edgesketch import distillation as D
    from edgesketch.sketch import int_outputs

    def extra(ap):
        ap.add_argument("--min-ste", type=int, nargs="*", default=[], metavar="N",
                        help="also continue for at least N straight-through epochs (a column each)")
        ap.add_argument("--aug", type=int, nargs="*", default=[], metavar="N",
                        help="also continue with N augmented samples (a column each; the default is 40,000)")
        ap.add_argument("--keep-hashes", action="store_true",
                        help="also continue with the candidate's hashes kept: only the tables refitted (a column)")
        ap.add_argument("--full", action="store_true",
                        help="also run both finals with the recipe's full epochs in place of those early stopping kept "
                             "(two columns; afresh with the full recipe is distil's default before issue 31)")
        ap.add_argument("--no-afresh", action="store_true", help="skip the final that starts afresh")
        ap.add_argument("--perturbed", type=int, default=0, metavar="N",
                        help="also score agreement with the teacher on N validation inputs shifted, scaled and "
                             "jittered as the distil's signal augmentation does (inputs away from the teacher's "
                             "training points; a second table)")
        ap.add_argument("--fresh", type=int, default=0, metavar="N",
                        help="also score accuracy on N freshly generated samples the teacher never saw (a second table)")
    a, t, x, y, fit, val = geometry_study(__doc__, 2, 1, argv, extra)
    labels = ([f"continued, ≥ {n} ste epochs" for n in a.min_ste] + [f"continued, {n:,} augmented" for n in a.aug]
              + ["continued, hashes kept"] * a.keep_hashes + ["continued, full recipe", "afresh, full recipe"] * a.full)
    variants = lambda cfg, final, cand: (  # (config, how it starts) per extra column; cfg: the full recipe
        [(replace(final, ste_epochs=max(n, final.ste_epochs or final.epochs)), dict(start=cand)) for n in a.min_ste]
        + [(replace(final, aug_size=n), dict(start=cand)) for n in a.aug]
        + [(final, dict(start=cand, keep_hashes=True))] * a.keep_hashes
        + [(cfg, dict(start=cand)), (cfg, {})] * a.full)
    inner, held = (fit[i] for i in choose.split(x[fit], y[fit], t.task))
    acc = lambda sk, idx: float(np.mean(int_outputs(sk, x[idx]).argmax(1) == y[idx]))
    print(f"load at start: {load_avg()}; {len(inner)} + {len(held)} to score the candidate, {len(fit)} for the finals, "
          f"{len(val)} to validate; teacher validation accuracy {np.mean(t.outputs(x[val]).argmax(1) == y[val]):.4f}",
          flush=True)
    rows, away, fresh = [], [], []
    if a.perturbed:
        rng = np.random.default_rng(12345)
        xp = D._signal(x[val][rng.integers(0, len(val), a.perturbed)],
                       D.grid_shape(t.input_shape), D.config(t.input_shape, (a.window,)), rng)
        tp = t.outputs(xp).argmax(1)
        agree = lambda sk: float(np.mean(int_outputs(sk, xp).argmax(1) == tp))
    if a.fresh:
        xf, yf = fresh_data(a.case, a.fresh)
        print(f"teacher accuracy on {a.fresh:,} fresh samples: {np.mean(t.outputs(xf).argmax(1) == yf):.4f}", flush=True)
        on_fresh = lambda sk: float(np.mean(int_outputs(sk, xf).argmax(1) == yf))
    for seed in a.seeds:
        cfg = D.config(t.input_shape, (a.window,), stride=(a.stride,), dilation=(a.dilation,), seed=seed)
        t0 = time.time()
        cand = D.distill(t, x[inner], choose.shorter(cfg, choose.SCORING, len(inner)), {}, validation=x[held],
                         patience=choose.PATIENCE)
        k = cand.meta["epochs_kept"]
        final = replace(cfg, ste_epochs=k.get("ste", cfg.ste_epochs), refit_epochs=k.get("refit", cfg.refit_epochs))
        t1 = time.time()
        afresh = None if a.no_afresh else D.distill(t, x[fit], final, {})
        t2 = time.time()
        cont = D.distill(t, x[fit], final, {}, start=cand)
        t3 = time.time()
        more, more_sk = [], []
        for v, how in variants(cfg, final, cand):
            t4 = time.time()
            more_sk.append(D.distill(t, x[fit], v, {}, **how))
            more.append((acc(more_sk[-1], val), time.time() - t4))
        rows.append((seed, k, acc(cand, held), acc(cand, val), np.nan if afresh is None else acc(afresh, val),
                     acc(cont, val), t1 - t0, t2 - t1, t3 - t2, more))
        print(rows[-1], flush=True)
        if a.perturbed:
            away.append([agree(cand)] + [np.nan if afresh is None else agree(afresh)] + [agree(cont)])
            print("agreement on perturbed validation inputs (candidate, afresh, continued):", away[-1], flush=True)
        if a.fresh:
            fresh.append([on_fresh(cand), np.nan if afresh is None else on_fresh(afresh), on_fresh(cont)]
                         + [on_fresh(sk) for sk in more_sk])
            print("accuracy on fresh samples (candidate, afresh, continued, variants):", fresh[-1], flush=True)
    print(f"\n{a.case}, window {a.window} stride {a.stride} dilation {a.dilation}: integer sketch accuracy on the "
          f"validation split ({len(val)} samples)\n")
    extra = "".join(f" {w} |" for w in labels)
    print("| seed | epochs kept (ste, refit) | candidate (inner 20%) | candidate | final afresh | final continued |"
          f"{extra} seconds (candidate, afresh, continued{''.join(f', {w}' for w in labels)}) |")
    print("|---|---|---|---|---|---|---|" + "---|" * len(labels))
    for s, k, ch, cv, fa, fc, tc, ta, tk, more in rows:
        print(f"| {s} | {k.get('ste')}, {k.get('refit')} | {ch:.4f} | {cv:.4f} | {'-' if np.isnan(fa) else f'{fa:.4f}'} | {fc:.4f} |"
              + "".join(f" {v:.4f} |" for v, _ in more) + f" {tc:.0f}, {ta:.0f}, {tk:.0f}"
              + "".join(f", {d:.0f}" for _, d in more) + " |")
    m = np.array([list(r[2:9]) + [v for v, _ in r[9]] + [d for _, d in r[9]] for r in rows])
    ms = lambda j: "-" if np.isnan(m[:, j]).any() else f"{m[:, j].mean():.4f} ± {m[:, j].std():.4f}"
    n = len(labels)
    print(f"| mean ± std | | {ms(0)} | {ms(1)} | {ms(2)} | {ms(3)} |" + "".join(f" {ms(7 + j)} |" for j in range(n))
          + f" {m[:, 4].mean():.0f}, {m[:, 5].mean():.0f}, {m[:, 6].mean():.0f}"
          + "".join(f", {m[:, 7 + n + j].mean():.0f}" for j in range(n)) + " |")
    if a.perturbed:
        seed_table(f"agreement of the integer sketch with the teacher on {a.perturbed:,} perturbed validation inputs",
                   ["candidate", "final afresh", "final continued"], a.seeds, away)
    if a.fresh:
        seed_table(f"accuracy of the integer sketch on {a.fresh:,} fresh samples (never seen by the teacher)",
                   ["candidate", "final afresh", "final continued"] + labels, a.seeds, fresh)
    print(f"load at the end: {load_avg()}")


def seed_table(title: str, cols: list, seeds, values) -> None:
    """A markdown table of one value per seed and column (NaN: not run, "-"), and their mean ± std."""
    m = np.array(values)
    print(f"\n{title}\n")
    print("| seed | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols))
    for s, r in zip(seeds, m):
        print(f"| {s} | " + " | ".join("-" if np.isnan(v) else f"{v:.4f}" for v in r) + " |")
    print("| mean ± std | " + " | ".join("-" if np.isnan(m[:, j]).any() else f"{m[:, j].mean():.4f} ± {m[:, j].std():.4f}"
                                      for j in range(len(cols))) + " |")


def fresh_data(case: str, n: int, seed: int = 4242) -> tuple[np.ndarray, np.ndarray]:
    """n new samples (x flat float32, y) of the case's data source from a seed the training and test sets did not use."""
    from edgesketch import synthetic
    source = CASES[case][1]
    if source == "mnist1d":
        from mnist1d.data import get_dataset_args, make_dataset
        args = get_dataset_args()
        args.seed, args.num_samples = seed, n
        d = make_dataset(args)   # 80% in "x", 20% in "x_test": both fresh
        x, y = np.concatenate([d["x"], d["x_test"]]), np.concatenate([d["y"], d["y_test"]])
    elif source.startswith("synthetic:"):
        x, y = synthetic.make(source.split(":", 1)[1], n, seed)
    else:
        sys.exit(f"--fresh needs a generated data source (mnist1d, synthetic:*), not {source}")
    return np.asarray(x, np.float32).reshape(len(x), -1), np.asarray(y, np.int64)


if __name__ == "__main__":
    main()
