"""The cheapest sketch that keeps the teacher: what `edgesketch distill` (and edgesketch.distill) builds when the
caller leaves the family and geometry open (issue 31).

    candidates(input_shape, n_outputs, options)       # the flat sketch, then windowed geometries, cheapest first
    choose(teacher, x_train, y_train, cands, max_loss) # a Choice: the one to distil on the whole training set

Candidates: the flat sketch, then the windowed geometries of distill.geometry (for a time axis: 8, 16, then 32 read-out
positions; for image axes 4 x 4, then 8 x 8), each with the options the caller gave (sizes such as tables, bits,
count_bits, codebook apply to every candidate), in order of Cortex-M0 instructions per inference estimated from the
structure (edgesketch.cost). An input with no time or image axis has one candidate, the flat sketch: nothing to choose.

choose() distils them in that order, two at a time on a machine of 2 cores or more (WORKERS: one distil keeps about
1.3 cores busy; the next candidate starts while the cheaper one trains and stops at its next epoch once a cheaper one
qualifies, so the result is the one-at-a-time choice, bit for bit; a candidate's seconds are its wall time, shared),
on a stratified 80% of the training set (choose.split: the split tune uses too), with a shorter recipe (SCORING: half
the epochs and half the augmented samples) and early stopping on the other 20% (the straight-through and refit phases
end after PATIENCE epochs without a lower validation loss and keep their best epoch), and scores the integer sketch
on that 20%: never on the test set. On the gesture example (seeds 0-2, examples/studies/choice_recipe.py) the half
recipe kept the same candidate as the full one for two seeds and a costlier one for the third, in 0.4x the time; a
quarter recipe kept none within 1 point. It keeps the first candidate within
max_loss points of the teacher's own score on the same 20%; when none is, the best one.
The caller distils the kept candidate again on the whole training set with the full recipe (all its epochs and
augmented samples; not just the epochs early stopping kept, which ended the half recipe's straight-through phase after
1 to 7 of its 10 epochs), continuing from the candidate's hyperplanes, thresholds and tables (Candidate.sketch;
distill.distill(start=...): no relax phase). examples/studies/final_start.py --full --fresh 4000 (seeds 0-2) scored
it on the validation split and on samples drawn fresh from the data's generator (which the teacher never saw: the
validation split lies in its training set): the full recipe beat the kept epochs on all five geometries of the gesture
and mnist1d teachers by 0.1 to 1.0 points on fresh samples, at about 3x the final's time. Starting afresh (relax too)
lost to continuing on the gestures, where the kept candidates were 0.5 to 1.7 points below their teachers on
validation, and won on mnist1d (+0.57 points on fresh samples), where they were 10.4 to 11.8 below. So when the kept
candidate is not within FAR (5) points of the teacher (Choice.afresh), its short training is a poor start and the final
distils the geometry afresh: the distil the caller gets by fixing that geometry (docs/algorithm-notes.md).

  classification with labels   accuracy; qualifies at accuracy >= teacher's - max_loss / 100
  regression with labels       RMSE; qualifies at RMSE <= teacher's RMSE x (1 + max_loss / 100)
  no labels                    agreement with the teacher's classes (the teacher scores 1), or for regression the RMSE
                               against the teacher's outputs over their standard deviation (qualifies at <= max_loss / 100)
max_loss 0: every candidate is distilled and the best one kept. The teacher scores itself on inputs it was trained on,
so its validation score is a training score: a candidate must be close to what the teacher does on its own data.
"""
from __future__ import annotations

import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np

from .errors import ConfigError

# options that fix the family or the geometry: given any of them, distill builds that sketch and chooses nothing
GEOMETRY = ("window", "stride", "padding", "regions", "pool", "dilation", "flat_branch")
PATIENCE = 3            # epochs without a lower validation loss before a candidate's phase ends (scoring only)
SCORING = 0.5           # candidates are scored with this fraction of their epochs and augmented samples (the final: all)
WORKERS = min(2, os.cpu_count() or 1)   # candidates distilled at once (each uses about 1.3 cores; TensorFlow's
                                        # threads are shared, so two keep a 2-core machine busy)
MAX_LOSS = 1.0          # default: points of accuracy (percent of the teacher's RMSE) a cheaper sketch may lose
FAR = 5.0               # a kept candidate further than this below the teacher (max_loss's units) is distilled afresh


@dataclass
class Candidate:
    name: str
    window: object        # api.config's window: "flat" or a size per spatial axis
    options: dict         # distill.Config fields over the family's defaults
    cfg: object           # the distill.Config
    instructions: int     # estimated Cortex-M0 instructions per inference (edgesketch.cost)
    table_bytes: int
    sketch: object = field(default=None, repr=False)   # once scored: the sketch distilled on the fit split


@dataclass
class Choice:
    metric: str                       # "accuracy", "rmse", "agreement" or "relative rmse"
    teacher_score: float
    max_loss: float
    rows: list                        # one dict per candidate, in the order tried (untried ones last)
    chosen: Candidate
    reason: str
    seconds: float
    n_fit: int = 0
    n_val: int = 0
    afresh: bool = False              # the final distils the kept geometry from scratch rather than from its sketch
    qualified: bool = False           # the kept candidate came within max_loss of the teacher (False: the best was kept)
    extra: dict = field(default_factory=dict)

    def to_meta(self) -> dict:
        """What the .esk records (meta["choice"])."""
        return {"metric": self.metric, "teacher_validation": self.teacher_score, "max_loss": self.max_loss,
                "chosen": self.chosen.name, "reason": self.reason, "seconds": round(self.seconds, 1),
                "final": "afresh" if self.afresh else "continued", "qualified": self.qualified,
                "split": {"fit": self.n_fit, "validation": self.n_val, "how": "choose.split (stratified, fixed seed)"},
                "candidates": self.rows}

    def table(self):
        return table(self.to_meta())


def table(choice: dict):
    """A rich Table of the candidates a choice tried (meta["choice"]), the kept one marked, and the reason below it."""
    from rich.table import Table
    t = Table(title=f"candidates, cheapest first: validation {choice['metric']} on {choice['split']['validation']:,} "
                    f"held-out training samples (teacher {choice['teacher_validation']:.4f})",
              caption=choice["reason"], caption_justify="left")
    for c in ("candidate", f"validation {choice['metric']}", "M0 instructions (est.)", "table bytes", "distil s", "verdict"):
        t.add_column(c, justify="left" if c in ("candidate", "verdict") else "right")
    for r in choice["candidates"]:
        score = "-" if r.get("score") is None else f"{r['score']:.4f}"
        t.add_row(("* " if r["name"] == choice["chosen"] else "") + r["name"], score, f"{r['instructions']:,}",
                  f"{r['table_bytes']:,}", "-" if r.get("seconds") is None else f"{r['seconds']:.0f}", r["verdict"])
    return t


VALIDATION = {"fraction": 0.2, "seed": 0}   # the validation split: a fifth of the training set, stratified, fixed seed


def split(x, y, task: str):
    """(fit, validation) indices of x: VALIDATION["fraction"] of the training set, stratified by class, fixed seed;
    the split distill's choice and tune both score on."""
    from sklearn.model_selection import train_test_split
    idx = np.arange(len(x))
    fit, val = train_test_split(idx, test_size=VALIDATION["fraction"], random_state=VALIDATION["seed"],
                                stratify=y if task == "classification" else None)
    return fit, val


def fixes_geometry(window, options: dict) -> bool:
    """True when the caller chose the family or the geometry (window other than "auto", or any GEOMETRY option), or a
    mode with one family (representer: flat)."""
    return window != "auto" or any(k in options for k in GEOMETRY) or options.get("mode", "learned") != "learned"


def candidates(input_shape, n_outputs: int, options: dict) -> list[Candidate]:
    """The flat sketch and the windowed geometries for input_shape, each with `options`, cheapest first (estimated
    Cortex-M0 instructions, then table bytes)."""
    from . import cost
    from .distillation import READOUTS, config, geometry, spatial_axes
    spatial = spatial_axes(input_shape)
    out = [_candidate("flat", "flat", {}, input_shape, n_outputs, options, config, cost)]
    seen = set()
    for per_axis in sorted(READOUTS.get(len(spatial), READOUTS[2])) if spatial else ():
        g = geometry(input_shape, per_axis)
        if (g["stride"], g["dilation"]) in seen:      # a short input: both read-out counts give the same geometry
            continue
        seen.add((g["stride"], g["dilation"]))
        out.append(_candidate(None, g["window"], {"stride": g["stride"], "dilation": g["dilation"]}, input_shape,
                              n_outputs, options, config, cost))
    return sorted(out, key=lambda c: (c.instructions, c.table_bytes))


def name_of(cfg) -> str:
    """A configuration's family and geometry in a few words: "flat", "window 9 stride 4 dilation 2 (16 positions)"."""
    if not cfg.windowed:
        return "flat"
    x = lambda v: "x".join(map(str, v))
    return (f"window {x(cfg.window)} stride {x(cfg.stride)}" + (f" dilation {x(cfg.dilation)}" if max(cfg.dilation) > 1 else "")
            + (f" + flat {','.join(map(str, cfg.flat_branch))}" if cfg.flat_branch else ""))


def _candidate(name, window, geo, input_shape, n_outputs, options, config, cost) -> Candidate:
    cfg = config(input_shape, window, **dict(options, **geo))
    st = cost.structure(cfg, input_shape, n_outputs)
    positions = sum(b["readouts"] for b in st["branches"][:1]) if cfg.windowed else 1
    name = name or name_of(cfg) + (f" ({positions} read-outs)" if cfg.windowed else "")
    return Candidate(name, window, dict(options, **geo), cfg, cost.m0_instructions(st), cost.table_bytes(st))


def check_max_loss(max_loss) -> float:
    """max_loss as a float >= 0, or ConfigError(argument="max_loss")."""
    try:
        v = float(max_loss)
    except (TypeError, ValueError):
        v = math.nan
    if isinstance(max_loss, bool) or not math.isfinite(v) or v < 0:
        raise ConfigError(f"max_loss={max_loss}: give the points of accuracy a cheaper sketch may lose against the "
                          "teacher, a number 0 or more (0: the most accurate candidate)", argument="max_loss")
    return v


def _scorer(task: str, labels: bool):
    """(metric name, score(outputs, y) -> float where higher is better (RMSE negated), qualifies(score, teacher, max_loss))."""
    if task == "classification":
        name = "accuracy" if labels else "agreement"
        return name, lambda o, y: float(np.mean(o.argmax(1) == y)), lambda s, t, m: s >= t - m / 100 - 1e-12
    if labels:
        rmse = lambda o, y: float(np.sqrt(np.mean((o - np.asarray(y, np.float64).reshape(len(o), -1)) ** 2)))
        return "rmse", rmse, lambda s, t, m: s <= t * (1 + m / 100) + 1e-12
    return "relative rmse", None, lambda s, t, m: s <= m / 100 + 1e-12


def choose(teacher, x_train: np.ndarray, y_train, cands: list[Candidate], max_loss: float = MAX_LOSS, *,
           transfer=None, progress=None, meta: dict | None = None, say=None, scoring: float = SCORING,
           workers: int | None = None) -> Choice:
    """Distil the candidates cheapest first on the fit split and keep the first within max_loss of the teacher on
    the validation split (see the module). progress(phase, done, total, info): every candidate's phases, named
    "<candidate>: <phase>", from worker threads; say(text): a line per candidate; workers: candidates distilled at once
    (default WORKERS; 1 with table dropout, whose random masks draw on TensorFlow's global seed)."""
    from . import distillation as D
    from .sketch import int_outputs
    max_loss = check_max_loss(max_loss)
    t0 = time.time()
    x = np.asarray(x_train, np.float32).reshape(len(x_train), -1)
    labels = y_train is not None
    t_out = teacher.outputs(x)
    if labels:
        y = np.asarray(y_train)
    else:   # no labels: the teacher's own outputs (classes) are what a candidate must reproduce
        y = t_out.argmax(1) if teacher.task == "classification" else t_out
    strat = y if teacher.task == "classification" else None
    fit, val = split(x, strat if strat is not None else np.zeros(len(x)), teacher.task)
    metric, score, qualifies = _scorer(teacher.task, labels)
    if metric == "relative rmse":
        sd = float(np.std(t_out[val])) or 1.0
        score = lambda o, yy: float(np.sqrt(np.mean((o - yy) ** 2))) / sd
    teacher_score = score(t_out[val], y[val]) if metric != "agreement" else 1.0
    lower = metric in ("rmse", "relative rmse")
    better = (lambda a, b: a < b) if lower else (lambda a, b: a > b)
    say = say or (lambda text: None)
    stop = threading.Event()

    def train(c):      # in a worker thread: the candidate distilled on the fit split, and its seconds
        def cb(ph, d, tot, info):
            if stop.is_set():
                raise _Stopped
            if progress is not None:
                progress(f"{c.name}: {ph}", d, tot, info)
        t1 = time.time()
        sk = D.distill(teacher, x[fit], shorter(c.cfg, scoring, len(fit)), dict(meta or {}), cb, transfer=transfer,
                       validation=x[val], patience=PATIENCE)
        return sk, time.time() - t1
    workers = 1 if any(c.cfg.table_dropout for c in cands) else max(1, min(workers or WORKERS, len(cands)))
    rows, best, chosen, reason, running, started = [], None, None, "", {}, 0
    with ThreadPoolExecutor(workers) as pool:
        for i, c in enumerate(cands):
            if chosen is not None:
                rows.append(_row(c, None, None, "not tried: a cheaper candidate qualified"))
                continue
            while started < min(i + workers, len(cands)):      # this one and the next ones, workers at a time
                running[started] = pool.submit(train, cands[started])
                started += 1
            try:
                sk, seconds = running.pop(i).result()
            except BaseException:
                stop.set()
                raise
            s = score(int_outputs(sk, x[val]), y[val])
            ok = max_loss > 0 and qualifies(s, teacher_score, max_loss)
            verdict = _verdict(metric, s, teacher_score, max_loss, ok)
            c = replace(c, sketch=sk)        # cfg stays the full recipe: the final distil's
            rows.append(dict(_row(c, s, seconds, verdict), epochs_kept=sk.meta.get("epochs_kept", {})))
            say(f"candidate {i + 1} of {len(cands)}, {c.name}: validation {metric} {s:.4f} (teacher {teacher_score:.4f}), "
                f"{c.instructions:,} M0 instructions (estimated), {c.table_bytes:,} table bytes, {seconds:.0f} s: {verdict}")
            if best is None or better(s, best[0]):
                best = (s, c)
            if ok:
                chosen, kept = c, s
                stop.set()      # the costlier candidates already started end at their next epoch
                reason = (f"kept {c.name}: the cheapest candidate within {_allowance(metric, max_loss)} of the teacher's "
                          f"validation {metric} ({teacher_score:.4f})" + (f"; the {i} cheaper one(s) were not" if i else ""))
        for f in running.values():     # started before a cheaper one qualified: they stop at their next epoch
            f.cancel()
    qualified = chosen is not None
    if chosen is None:
        chosen, kept = best[1], best[0]
        reason = (f"kept {chosen.name}: the best validation {metric} ({best[0]:.4f}) of the {len(cands)} candidates; "
                  + ("max_loss 0 asks for the best one" if max_loss == 0 else
                     f"none was within {_allowance(metric, max_loss)} of the teacher ({teacher_score:.4f})"))
    afresh = not qualifies(kept, teacher_score, FAR)
    if afresh:
        reason += (f"; it is not within {_allowance(metric, FAR)} of the teacher, so the final distils it afresh (relax "
                   "phase included) rather than continuing from its short training")
    return Choice(metric, float(teacher_score), max_loss, rows, chosen, reason, time.time() - t0, len(fit), len(val),
                  afresh, qualified)


class _Stopped(Exception):
    """Raised in a candidate's progress callback once a cheaper candidate qualified: that distil ends."""


def shorter(cfg, fraction: float, n: int):
    """cfg with `fraction` of its epochs per phase and of its augmented samples (for a training set of n), at least
    one epoch each: the recipe candidates are scored with (1: cfg itself)."""
    if fraction >= 1:
        return cfg
    from .distillation import aug_size
    part = lambda e: max(1, math.ceil(e * fraction))
    return replace(cfg, epochs=part(cfg.epochs), refit_epochs=part(cfg.refit_epochs),
                   ste_epochs=part(cfg.ste_epochs) if cfg.ste_epochs else 0, aug_size=max(n, part(aug_size(cfg, n))))


def _allowance(metric: str, max_loss: float) -> str:
    return (f"{max_loss:g} points" if metric in ("accuracy", "agreement") else
            f"{max_loss:g}% above its RMSE" if metric == "rmse" else f"an RMSE of {max_loss:g}% of its outputs' spread")


def _verdict(metric: str, s: float, teacher: float, max_loss: float, ok: bool) -> str:
    if metric in ("accuracy", "agreement"):
        gap = (teacher - s) * 100
        what = f"{abs(gap):.2f} points {'below' if gap > 0 else 'above'} the teacher"
    elif metric == "rmse":
        what = f"RMSE {(s / max(teacher, 1e-12) - 1) * 100:+.1f}% against the teacher's"
    else:
        what = f"RMSE {s * 100:.2f}% of the teacher's spread"
    return f"{what}: {'qualifies' if ok else 'does not qualify' if max_loss > 0 else 'scored (max_loss 0)'}"


def _row(c: Candidate, s, seconds, verdict) -> dict:
    return {"name": c.name, "window": c.window if isinstance(c.window, str) else list(c.window),
            "options": {k: list(v) if isinstance(v, tuple) else v for k, v in c.options.items()},
            "score": None if s is None else float(s), "instructions": int(c.instructions), "table_bytes": int(c.table_bytes),
            "seconds": None if seconds is None else round(float(seconds), 1), "verdict": verdict}
