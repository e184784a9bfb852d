"""Terminal output: progress bars and summary tables (rich). Nothing here computes a figure."""
from __future__ import annotations

import contextlib
import sys

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

import os

_width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", 140))  # logs and pipes: do not squash tables
console = Console(stderr=True, highlight=False, width=_width)
out = Console(highlight=False, width=_width)

PHASES = {"relabel": "relabel augmented data with the teacher", "relax": "learn hyperplanes (soft bits)",
          "ste": "ternary taps (straight-through)", "hash": "exact integer hashes", "refit": "refit tables on integer hashes",
          "refit int4": "refit through the 4-bit grid", "codebook": "train shared rows", "fit": "fit representers to the teacher"}


def phase_text(phase: str) -> str:
    """A phase's description; "<candidate>: <phase>" (edgesketch.choose) keeps the candidate's name in front."""
    head, sep, tail = phase.rpartition(": ")
    return f"{head}: {PHASES.get(tail, tail)}" if sep else PHASES.get(phase, phase)


@contextlib.contextmanager
def phase_progress():
    """Yields a callback(phase, done, total, info): one bar per phase on a terminal, with the time left in the phase
    (from its pace so far); plain lines with the same estimate in a log. Thread-safe: the choice reports two
    candidates at once ("<candidate>: <phase>"), and each candidate's phases keep their own clock."""
    import threading
    import time

    lock = threading.Lock()

    def text(info):
        return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items())
    if not console.is_terminal:
        started, last, t_start = {}, {}, time.monotonic()

        def plain(phase, done, total, info):     # a phase's clock starts at its candidate's report before its first one
            now, who = time.monotonic(), phase.rpartition(": ")[0]
            with lock:
                t0 = started.setdefault(phase, now if done == 0 else last.get(who, t_start))
                last[who] = now
                if done and (done == total or done % max(1, total // 5) == 0):
                    spent = now - t0
                    left = f", {spent / done * (total - done):.0f} s left" if done < total else f", {spent:.0f} s"
                    console.print(f"  {phase_text(phase):<40} {done}/{total}{left} {text(info)}")
        yield plain
        return
    with Progress(TextColumn("{task.description:<40}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                  TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console) as p:
        tasks = {}

        def cb(phase, done, total, info):
            with lock:
                if phase not in tasks:
                    tasks[phase] = p.add_task(phase_text(phase), total=total, info="")
                p.update(tasks[phase], completed=done, total=total, info=text(info))
        yield cb


@contextlib.contextmanager
def count_progress(title: str):
    """Yields a callback(done, total) drawing one progress bar (plain lines in a log)."""
    if not console.is_terminal:
        last = [-1]

        def plain(done, total):
            step = max(1, total // 4)
            if done == total or done // step > last[0]:
                last[0] = done // step
                console.print(f"  {title}: {done}/{total}")
        yield plain
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as p:
        task = p.add_task(title, total=None)
        yield lambda done, total: p.update(task, completed=done, total=total)


def fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def metrics_table(m: dict, title: str) -> Table:
    t = Table(title=title, show_header=True, header_style="bold")
    t.add_column("figure"); t.add_column("value", justify="right")
    rows = (["teacher_accuracy", "float_accuracy", "int_accuracy", "teacher_agreement"] if m["task"] == "classification"
            else ["teacher_rmse", "float_rmse", "int_rmse", "teacher_agreement_rmse"])
    labels = {"teacher_accuracy": "teacher accuracy", "float_accuracy": "float sketch accuracy",
              "int_accuracy": "integer sketch accuracy", "teacher_agreement": "agreement with teacher",
              "teacher_rmse": "teacher RMSE", "float_rmse": "float sketch RMSE", "int_rmse": "integer sketch RMSE",
              "teacher_agreement_rmse": "RMSE against teacher", "table_bytes": "table bytes", "projection_bytes": "projection bytes",
              "ops_per_inference": "adds + lookups per inference"}
    t.add_row("sketch", f"{m['mode']}: L={m['tables']} K={m['bits']} P={m['hyperplanes']}, {m['taps']} taps")
    t.add_row("test samples", fmt(m["n_test"]))
    for k in rows + ["table_bytes", "projection_bytes", "ops_per_inference"]:
        t.add_row(labels[k], fmt(m.get(k)))
    return t


def kv_table(rows: list[tuple[str, object]], title: str) -> Table:
    t = Table(title=title, show_header=False)
    t.add_column(style="bold"); t.add_column()
    for k, v in rows:
        t.add_row(k, escape(fmt(v)))   # values are text, not markup: "pip install 'edgesketch[train]'" keeps [train]
    return t


def error(msg: str) -> None:
    print(f"edgesketch: error: {msg}", file=sys.stderr)
