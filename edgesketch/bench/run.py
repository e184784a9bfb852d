"""The side-by-side benchmark: edgesketch against what users deploy today, on the same emulated boards.

    python -m edgesketch.bench.run            # full: digits and mnist1d, small MLP / wide MLP / CNN teachers
    python -m edgesketch.bench.run --quick    # digits, wide MLP teacher, short training (a few minutes; CI)
    python -m edgesketch.bench.run --out docs # where benchmarks.md and bench-*.png go (--json PATH: raw rows)
    python -m edgesketch.bench.run --only mnist1d-cnn --out build/bench-cnn   # some teachers

Contenders per teacher: Keras float; TFLite full-int8 in ai-edge-litert (host); TFLite Micro on the host (PyPI
tflite-micro, smallest arena by bisection); emlearn float C (MLP teachers) in the edgesketch firmware; the teacher's
own Dense layers as an int8 C model (MLP teachers: the int8 cost of the teacher with the SMLAD kernel); the smallest
distilled int8 MLP (one hidden layer) that reaches each goal sketch's accuracy; edgesketch: the goal sketches
(learned default with int8 counts, the same with 4-bit counts, and a small 4-bit one; both code layouts) for every teacher, plus the 20 KB
configuration and representer mode for the digits wide MLP. Teachers run in parallel processes (--jobs). Device numbers are exact instruction counts under
QEMU -icount (not cycles; qemu-uno: counted by the QEMU plugin), from the firmware's counter around es_predict_q, on
qemu-m4, qemu-m0, qemu-rv32, qemu-lx106 (Xtensa) and qemu-uno (AVR: sketches only, where they fit); every integer C
model is checked bit for bit against its numpy reference on the whole test set. Wall time is used only for the host
throughput ratio.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from .. import codegen, data, emulate, esk, harness, sketch as S, teacher as T  # noqa: E402
from ..distillation import Config, distill, family_defaults  # noqa: E402
from ..quantize import calibrate_inputs  # noqa: E402
from ..errors import require  # noqa: E402
from . import device, mlp  # noqa: E402

# what the bench imports beyond the core: the [train] and [bench] extras (pyproject.toml)
BENCH_MODULES = ("tensorflow", "keras", "sklearn", "mnist1d", "ai_edge_litert", "tflite_micro", "emlearn", "matplotlib")

BOARDS = ("qemu-m4", "qemu-m0", "qemu-rv32", "qemu-lx106", "qemu-uno")
# the int8 MLP C keeps its weights in plain const arrays, which AVR copies into its 2 KB of RAM: not run on qemu-uno
MLP_BOARDS = ("qemu-m4", "qemu-m0", "qemu-rv32", "qemu-lx106")
TEACHERS = {"sklearn:digits": ("digits-small", "digits-mlp", "digits-cnn"),
            "mnist1d": ("mnist1d-small", "mnist1d-mlp", "mnist1d-cnn")}
SKETCHES = [  # (label, mode, config, layouts); the first three are the goal sketches of every teacher
    ("sketch L16 K6 P48 s8", "learned", dict(tables=16, bits=6, hyperplanes=48, taps=8), ("unrolled", "compact")),
    ("sketch int4 L16 K6 P48 s8", "learned", dict(tables=16, bits=6, hyperplanes=48, taps=8, count_bits=4),
     ("unrolled", "compact")),
    ("sketch int4 L16 K4 P32 s8", "learned", dict(tables=16, bits=4, hyperplanes=32, taps=8, count_bits=4),
     ("unrolled", "compact")),
    ("sketch 20KB L32 K6 P96 s16", "learned", dict(tables=32, bits=6, hyperplanes=96, taps=16, aug_size=80000, epochs=20),
     ("unrolled",)),
    ("sketch representer L32 K6", "representer", dict(tables=32, bits=6), ("unrolled",)),
    ("sketch L16 K6 P48 s8 codebook 256", "learned", dict(tables=16, bits=6, hyperplanes=48, taps=8, codebook=256),
     ("unrolled", "compact")),
]
N_GOAL_SKETCHES = 3
# per task, a structure for one sketch (by label): on digits the small sketch with window selectors and balanced signs
# was as accurate or better over seeds 0-2 and its compact C is faster; on mnist1d balanced signs cost 10 points and
# windows 2 (python examples/studies/hash_structure.py --seeds 0 1 2, docs/algorithm-notes.md)
STRUCTURE = {("sklearn:digits", "sketch int4 L16 K4 P32 s8"): dict(selectors="window", signs="balanced")}
# goal teachers (wide MLP, CNN) first, so a partial run already answers the goals; longest first for --jobs
PLAN = [("sklearn:digits", "digits-mlp"), ("mnist1d", "mnist1d-mlp"), ("sklearn:digits", "digits-cnn"),
        ("mnist1d", "mnist1d-cnn"), ("sklearn:digits", "digits-small"), ("mnist1d", "mnist1d-small")]
EXTRA_SKETCH_TEACHERS = ("digits-mlp",)   # the 20 KB, representer and codebook rows (grid.md has the first two for mnist1d)
QUICK_SKETCH = dict(epochs=5, refit_epochs=3, aug_size=5000)
WIDTHS = (8, 12, 16, 24, 32, 48, 64)
# performance.md: CMSIS-NN s8 fully connected kernel alone, instructions (M4 DSP / M0)
KERNEL_REF = {"64-8-10": (2352, 6267), "64-12-10": (3109, 8134), "64-16-10": (3869, 10463), "64-32-10": (6876, None),
              "64-256-256-10": (184800, None)}


def log(*a):
    print(*a, flush=True)


# ---------------------------------------------------------------- helpers
def _acc(scores, y) -> float:
    return float(np.mean(np.asarray(scores).argmax(1) == y))


def _device_all(files, xq, ref, D, C, workdir, tag, boards=BOARDS, xq_sub=None):
    """Run `files` on each board over xq (or xq_sub for boards after the first); assert scores == ref where given.
    Returns {board: DeviceRun, or None for a board after the first whose memory the firmware outgrows}."""
    out = {}
    for i, b in enumerate(boards):
        rows = xq if (i == 0 or xq_sub is None) else xq[:xq_sub]
        try:
            r = device.run(b, files, rows, D, C, workdir, f"{tag}")
        except device.DoesNotFit:
            if i == 0:
                raise
            log(f"{tag}: does not fit {b}")
            out[b] = None
            continue
        if ref is not None:
            rep = harness.verify_report(ref[:len(rows)], r.scores)
            check(rep.bit_exact, f"{tag} on {b}: {rep.n_mismatch} of {rep.n} samples differ from the numpy reference")
        out[b] = r
    return out


_THROUGHPUT_MAIN = r"""
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "es_model.h"
int main(int argc, char **argv) {
    int n = atoi(argv[1]), reps = atoi(argv[2]), i, r, c;
    int8_t *x = malloc((size_t)n * ES_N_INPUTS); int32_t *s = malloc((size_t)n * ES_N_OUTPUTS * 4);
    struct timespec t0, t1; long long chk = 0;
    if (fread(x, ES_N_INPUTS, n, stdin) != (size_t)n) return 2;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (r = 0; r < reps; r++)
        for (i = 0; i < n; i++) { es_predict_q(x + (size_t)i * ES_N_INPUTS, s + (size_t)i * ES_N_OUTPUTS); chk += s[i * ES_N_OUTPUTS]; }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fprintf(stderr, "%.9f %lld\n", ((t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec)) / ((double)n * reps), chk);
    for (i = 0; i < n * ES_N_OUTPUTS; i++) { c = s[i]; fwrite(&c, 4, 1, stdout); }
    return 0;
}
"""


def host_throughput(files: dict[str, str], xq: np.ndarray, n_outputs: int, repeats: int, workdir: Path) -> tuple[float, np.ndarray]:
    """Seconds per sample of the generated C model built with host gcc -O2, over the whole test set x repeats
    (timed inside C with CLOCK_MONOTONIC), and its scores."""
    p = device.host_run(files, _THROUGHPUT_MAIN, [str(len(xq)), str(repeats)], np.ascontiguousarray(xq, np.int8).tobytes(),
                        workdir)
    return float(p.stderr.split()[0]), np.frombuffer(p.stdout, np.int32).reshape(-1, n_outputs)


def _row(task, tname, contender, **kw):
    r = dict(task=task, teacher=tname, contender=contender, accuracy=None, bytes=None, bytes_kind="", ram=None,
             ram_kind="", m4=None, m0=None, rv32=None, lx106=None, uno=None, notes="")
    r.update(kw)
    return r


def _ram(r) -> dict:
    """RAM of an on-device contender on qemu-m4: its static data+bss plus the peak stack of one inference."""
    if r.stack is None:
        return dict(ram=r.ram, ram_kind="static; stack not measured")
    at_least = "at least " if r.stack_full else ""   # the call overwrote the whole painted window
    return dict(ram=r.ram + r.stack, ram_kind=f"{r.ram:,} static + {at_least}{r.stack:,} peak stack")


def _dev_fields(runs: dict) -> dict:
    return {b.split("-")[1]: runs[b].instructions if runs[b] is not None else None for b in runs}


def _ran(runs: dict) -> int:
    """How many boards ran the model (the others could not hold it)."""
    return sum(r is not None for r in runs.values())


# ---------------------------------------------------------------- kernel check
def kernel_check(workdir: Path, quick: bool) -> list[dict]:
    """The int8 MLP kernel at performance.md's shapes (random weights: counts do not depend on values)."""
    ds = data.load("sklearn:digits")
    s, z = calibrate_inputs(ds.x_train)
    rng = np.random.default_rng(0)
    shapes = ["64-12-10", "64-16-10"] if quick else list(KERNEL_REF)
    rows = []
    for sh in shapes:
        dims = [int(v) for v in sh.split("-")]
        layers = [(rng.normal(0, 0.3, (a, b)), rng.normal(0, 0.1, b)) for a, b in zip(dims[:-1], dims[1:])]
        net = mlp.quantize(layers, s, z, ds.x_train, name=f"random {sh}")
        xq = net.quantize_inputs(ds.x_test[:20])
        runs = _device_all(mlp.generate(net), xq, net.forward(xq), 64, 10, workdir, f"kernel{sh}",
                           boards=("qemu-m4", "qemu-m0"))
        ref = KERNEL_REF[sh]
        rows.append(dict(shape=sh, m4=runs["qemu-m4"].instructions, m4_ref=ref[0], m0=runs["qemu-m0"].instructions,
                         m0_ref=ref[1]))
        log(f"kernel {sh}: M4 {rows[-1]['m4']:,} (CMSIS-NN {ref[0]:,}), M0 {rows[-1]['m0']:,} (CMSIS-NN {ref[1] or '-'})")
    return rows


# ---------------------------------------------------------------- one teacher, one function per contender
class CheckFailed(RuntimeError):
    """A contender's C disagrees with its numpy reference: the bench stops rather than report its figures."""


def check(ok, what: str) -> None:
    """A correctness check that survives python -O (an assert would not)."""
    if not ok:
        raise CheckFailed(what)


@dataclass
class Bench:
    """One teacher's bench: its data, the per-feature int8 inputs every flat contender takes, and what the contenders
    add: rows (one per contender and layout) and extra (figures the goals and the report read)."""
    task: str
    tname: str
    quick: bool
    workdir: Path
    tch: object
    x_tr: np.ndarray
    x_te: np.ndarray
    y: np.ndarray
    D: int
    C: int
    in_scale: np.ndarray
    in_zero: np.ndarray
    xq: np.ndarray
    t_start: float
    rows: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def row(self, contender: str, **kw) -> dict:
        self.rows.append(_row(self.task, self.tname, contender, **kw))
        return self.rows[-1]

    def log(self, msg: str) -> None:
        log(f"[{self.tname}] {msg}")


def keras_float(b: Bench) -> None:
    model = b.tch.model
    b.extra["teacher_acc"] = t_acc = float(np.mean(b.tch.outputs(b.x_te).argmax(1) == b.y))
    b.extra["teacher_f32"] = f32 = 4 * int(model.count_params())
    b.row("Keras float32", accuracy=t_acc, bytes=f32, bytes_kind="float32 weights", notes=f"{model.count_params():,} parameters")
    b.log(f"Keras float: {t_acc:.4f}, {f32:,} B")


def tflite_int8(b: Bench) -> bytes:
    """TFLite full-int8 in ai-edge-litert on the host; returns the .tflite (TFLite Micro runs the same bytes)."""
    from . import tflite
    tfl = tflite.convert_int8(b.tch.model, b.x_tr)
    pred, lat = tflite.litert_eval(tfl, b.x_te)
    r = b.row("TFLite int8 (ai-edge-litert, host)", accuracy=float(np.mean(pred == b.y)), bytes=len(tfl), bytes_kind=".tflite",
              notes=f"host {lat * 1e6:.2f} us/sample (1 sample/invoke)")
    b.extra["litert_s_per_sample"] = lat
    b.log(f"TFLite int8: {r['accuracy']:.4f}, {len(tfl):,} B, {lat * 1e6:.2f} us/sample")
    return tfl


def tflite_micro(b: Bench, tfl: bytes) -> None:
    from . import tflite
    try:
        pred, arena = tflite.tflm_eval(tfl, b.x_te)
        r = b.row("TFLite Micro (host, tflite-micro)", accuracy=float(np.mean(pred == b.y)), bytes=len(tfl), bytes_kind=".tflite",
                  ram=arena, ram_kind="arena (bisection)", notes="host x86 build of TFLM (reference kernels); not on the emulated cores")
        b.log(f"TFLM: {r['accuracy']:.4f}, arena {arena:,} B")
    except Exception as e:  # reported, not hidden
        b.row("TFLite Micro (host, tflite-micro)", notes=f"failed: {type(e).__name__}: {e}")
        b.log(f"TFLM failed: {e}")


def emlearn_float(b: Bench) -> None:
    """emlearn's float C of an MLP teacher, on qemu-m4 in the edgesketch firmware."""
    from . import emlearn_c
    files = emlearn_c.generate(b.tch.model, b.in_scale, b.in_zero)
    r = device.run("qemu-m4", files, b.xq, b.D, b.C, b.workdir, f"emlearn-{b.tname}")
    b.row("emlearn 0.23.2 float C (loadable)", accuracy=_acc(r.scores, b.y), bytes=r.flash, bytes_kind="flash (fw delta)",
          **_ram(r), m4=r.instructions, notes="M4 FPU; M0 not run (soft float, ~30x slower)")
    b.log(f"emlearn: {b.rows[-1]['accuracy']:.4f}, flash {r.flash:,} B, M4 {r.instructions:,}")


def teacher_int8(b: Bench) -> int | None:
    """The teacher's own Dense layers as int8 C with the SMLAD kernel (MLP teachers; for CNN teachers their MACs are
    stated instead). Returns its M4 instructions (None: not measured)."""
    if not b.extra["is_mlp"]:
        b.extra["teacher_macs"] = macs = _conv_macs(b.tch.model)
        b.row("teacher int8 on device", notes=f"not measured (its pooling and Dense layers are not mapped to the int8 CNN C); "
              f"{macs:,} MACs per inference")
        return None
    net = mlp.quantize(mlp.teacher_layers(b.tch.model), b.in_scale, b.in_zero, b.x_tr, name=b.tname)
    ref = net.forward(b.xq)
    files = mlp.generate(net)
    check((device.host_check(files, b.xq, b.C, b.workdir) == ref).all(), "teacher int8 C (host gcc) != numpy reference")
    runs = _device_all(files, b.xq, ref, b.D, b.C, b.workdir, f"tint8-{b.tname}", boards=MLP_BOARDS,
                       xq_sub=None if not b.quick else 60)
    b.row(f"teacher int8 C {net.shape_str} (SMLAD kernel)", accuracy=_acc(ref, b.y), bytes=runs["qemu-m4"].flash,
          bytes_kind="flash (fw delta)", **_ram(runs["qemu-m4"]), **_dev_fields(runs), notes="bit-exact vs numpy on the whole test set")
    b.log(f"teacher int8 {net.shape_str}: {b.rows[-1]['accuracy']:.4f}, M4 {runs['qemu-m4'].instructions:,}")
    return runs["qemu-m4"].instructions


def sketches(b: Bench) -> tuple[list[dict], list]:
    """edgesketch's sketches: for a teacher with a time or image axis first the windowed sketch, then the goal sketches
    (and for EXTRA_SKETCH_TEACHERS the 20 KB, representer and codebook ones), both layouts, on every board that holds
    them. Returns (the goal sketches' rows, [(label, sketch, files, int8 inputs)] for the host throughput)."""
    tmeta = {"source": b.task, "class_names": [], "input_shape": list(b.tch.input_shape)}
    fam = family_defaults(b.tch.input_shape)
    plan = SKETCHES if (not b.quick and b.tname in EXTRA_SKETCH_TEACHERS) else SKETCHES[:N_GOAL_SKETCHES]
    n_goal = N_GOAL_SKETCHES + bool(fam)
    if fam:
        plan = [(f"sketch windowed {_geometry(fam)}", "learned", fam, ("unrolled", "compact"))] + plan
    goal_rows, host_models = [], []
    for k, (label, mode, cfg_kw, layouts) in enumerate(plan):
        structure = STRUCTURE.get((b.task, label), {})
        label += "".join(f" {v}" for v in structure.values())
        cfg = Config(mode=mode, **{**cfg_kw, **structure, **(QUICK_SKETCH if b.quick else {})})
        t0 = time.time()
        sk = distill(b.tch, b.x_tr, cfg, dict(tmeta))
        sk.meta["model_id"] = esk.model_id(sk)
        secs = time.time() - t0
        xs = S.quantize_inputs(sk, b.x_te)   # windowed sketches quantise per channel, flat ones per feature as the MLPs
        ref = S.int_scores(sk, xs)
        check(not sk.is_flat or (xs == b.xq).all(), "a flat sketch's int8 inputs differ from the bench's")
        for layout in layouts:
            files = codegen.generate(sk, layout)
            check((device.host_check(files, xs, b.C, b.workdir) == ref).all(), "sketch C (host gcc) != int_scores")
            boards = BOARDS if layout == "unrolled" else ("qemu-m4", "qemu-m0")
            runs = _device_all(files, xs, ref, b.D, b.C, b.workdir, f"sk-{b.tname}-{layout}", boards=boards)
            r = b.row(f"{label} ({layout})", accuracy=_acc(runs["qemu-m4"].scores, b.y), bytes=runs["qemu-m4"].flash,
                      bytes_kind="flash (fw delta)", **_ram(runs["qemu-m4"]), **_dev_fields(runs),
                      params=sk.table_bytes + sk.projection_bytes, ops=sk.ops_per_inference,
                      float_accuracy=_acc(S.float_outputs(sk, b.x_te), b.y),
                      notes=f"bit-exact on {len(xs)} x {_ran(runs)} boards; distil {secs:.0f} s; "
                      f"tables {sk.table_bytes:,} B + hashing {sk.projection_bytes:,} B; {sk.ops_per_inference:,} ops")
            if k < n_goal:
                goal_rows.append(r)
                if layout == "unrolled":
                    host_models.append((label, sk, files, xs))
            b.log(f"{r['contender']}: {r['accuracy']:.4f}, flash {r['bytes']:,} B, M4 {r['m4']:,} M0 {r['m0']:,}")
    return goal_rows, host_models


def smallest_mlp(b: Bench, goal_rows: list[dict]) -> list:
    """For each goal sketch, the smallest distilled int8 MLP (one hidden layer, widths searched upward) reaching its
    accuracy. Returns [(goal row, MLP row)]."""
    target = max(r["accuracy"] for r in goal_rows)
    tried = []   # (h, accuracy, net)
    for h in WIDTHS:
        layers = (mlp.distill_mlp(b.tch, b.x_tr, h, epochs=30, aug_size=5000, lr=1e-2) if b.quick
                  else mlp.distill_mlp(b.tch, b.x_tr, h, epochs=20))
        net = mlp.quantize(layers, b.in_scale, b.in_zero, b.x_tr, name=f"distilled h={h}")
        tried.append((h, _acc(net.forward(b.xq), b.y), net))
        b.log(f"distilled int8 MLP h={h}: {tried[-1][1]:.4f} (targets up to {target:.4f})")
        if tried[-1][1] >= target:
            break
    widths = ", ".join(f"{h}:{a:.3f}" for h, a, _ in tried)
    mlp_rows, pairs = {}, []
    for g in goal_rows:
        h, acc, net = next((t for t in tried if t[1] >= g["accuracy"]), tried[-1])
        if h not in mlp_rows:
            ref = net.forward(b.xq)
            files = mlp.generate(net)
            check((device.host_check(files, b.xq, b.C, b.workdir) == ref).all(), "distilled MLP C (host gcc) != numpy reference")
            runs = _device_all(files, b.xq, ref, b.D, b.C, b.workdir, f"dmlp{h}-{b.tname}", boards=MLP_BOARDS)
            mlp_rows[h] = b.row(f"distilled int8 MLP {net.shape_str}", accuracy=acc, bytes=runs["qemu-m4"].flash,
                                bytes_kind="flash (fw delta)", **_ram(runs["qemu-m4"]), **_dev_fields(runs),
                                notes=f"smallest width reaching {'' if acc >= g['accuracy'] else 'NOT reaching '}"
                                f"{g['accuracy']:.4f} ({g['contender']}); widths tried {widths}; "
                                f"bit-exact vs numpy on the whole test set, {_ran(runs)} boards")
        pairs.append((g, mlp_rows[h]))
    b.extra["mlp_bit_exact_n"] = int(len(b.xq))
    return pairs


def smallest_cnn(b: Bench, goal_rows: list[dict]) -> list:
    """Conv1D teachers: the smallest int8 Conv1D (edgesketch.bench.cnn, cheapest first) reaching the windowed sketch.
    Returns [(windowed goal row, CNN row)] (empty for other teachers)."""
    if not (family_defaults(b.tch.input_shape) and len(b.tch.input_shape) == 2):
        return []
    from . import cnn
    wrows = [g for g in goal_rows if g["contender"].startswith("sketch windowed")]
    target = max(g["accuracy"] for g in wrows)
    net, tried = cnn.smallest_cnn(target, b.tch, b.x_tr, b.x_te, b.y, epochs=8 if b.quick else 30, log=b.log)
    cx = net.quantize_inputs(b.x_te)
    ref = net.forward(cx)
    files = cnn.generate(net)
    check((device.host_check(files, cx, b.C, b.workdir) == ref).all(), "int8 CNN C (host gcc) != numpy reference")
    runs = _device_all(files, cx, ref, b.D, b.C, b.workdir, f"cnn-{b.tname}", boards=MLP_BOARDS)
    acc = _acc(ref, b.y)
    tried_s = ", ".join(f"{a}:{v:.3f}" for a, v, _ in tried)
    crow = b.row(f"distilled int8 CNN {net.shape_str}", accuracy=acc, bytes=runs["qemu-m4"].flash,
                 bytes_kind="flash (fw delta)", **_ram(runs["qemu-m4"]), **_dev_fields(runs),
                 notes=f"smallest (by M4 instructions) reaching {'' if acc >= target else 'NOT reaching '}{target:.4f}; "
                 f"{net.macs:,} MACs, {net.weight_bytes:,} weight bytes; tried {tried_s}; bit-exact vs numpy on the "
                 f"whole test set, {_ran(runs)} boards")
    b.log(f"{crow['contender']}: {acc:.4f}, flash {crow['bytes']:,} B, M4 {crow['m4']:,}")
    return [(g, crow) for g in wrows]


def host_vs_litert(b: Bench, tfl: bytes, host_models: list) -> None:
    """Host throughput: the generated sketch C (gcc -O2) against ai-edge-litert on the int8 teacher, both one sample
    per call, and litert with the whole test set in one call (its best case)."""
    from . import tflite
    reps = 20 if b.quick else 200
    lat_b = tflite.litert_batched(tfl, b.x_te)
    b.extra.update(litert_batched_s_per_sample=lat_b, host=[])
    for label, sk, files, xs in host_models:
        sec, host_scores = host_throughput(files, xs, b.C, reps, b.workdir)
        check((host_scores == S.int_scores(sk, xs)).all(), "sketch C (host gcc, throughput build) != int_scores")
        b.extra["host"].append(dict(sketch=label, s_per_sample=sec, ratio=b.extra["litert_s_per_sample"] / sec,
                                    ratio_batched=lat_b / sec))
        b.log(f"host: {label} C {sec * 1e9:.0f} ns/sample, litert {b.extra['litert_s_per_sample'] * 1e9:.0f} ns "
              f"(1/invoke) {lat_b * 1e9:.0f} ns (batched): x{b.extra['host'][-1]['ratio']:.1f} / "
              f"x{b.extra['host'][-1]['ratio_batched']:.1f}")


def bench_teacher(task: str, tname: str, quick: bool, teacher_dir: str, workdir: Path) -> tuple[list[dict], dict]:
    """Every contender for one teacher, in the order of the report. Returns (rows, extra)."""
    from . import teachers
    workdir.mkdir(parents=True, exist_ok=True)
    ds = data.load(task)
    tch = T.load(teachers.ensure(tname, teacher_dir))
    x_tr = ds.x_train.reshape(len(ds.x_train), -1).astype(np.float32)
    x_te = ds.x_test.reshape(len(ds.x_test), -1).astype(np.float32)
    in_scale, in_zero = calibrate_inputs(x_tr)
    b = Bench(task, tname, quick, workdir, tch, x_tr, x_te, ds.y_test, x_tr.shape[1], int(ds.y_train.max()) + 1,
              in_scale, in_zero, S.quantize_int8(x_te, in_scale, in_zero), time.time())
    b.extra["is_mlp"] = mlp.teacher_layers(tch.model) is not None
    keras_float(b)
    tfl = tflite_int8(b)
    tflite_micro(b, tfl)
    if b.extra["is_mlp"]:
        emlearn_float(b)
    teacher_m4 = teacher_int8(b)
    goal_rows, host_models = sketches(b)
    pairs = smallest_mlp(b, goal_rows)
    b.extra["cnn_pairs"] = smallest_cnn(b, goal_rows)
    host_vs_litert(b, tfl, host_models)
    for r in b.rows:   # ratios against the teacher's float32 bytes and int8 instructions
        r["x_bytes_vs_f32"] = b.extra["teacher_f32"] / r["bytes"] if r["bytes"] else None
        r["x_instr_vs_int8"] = teacher_m4 / r["m4"] if (teacher_m4 and r["m4"]) else None
    b.extra.update(teacher_int8_m4=teacher_m4, seconds=time.time() - b.t_start, goal_sketches=goal_rows, pairs=pairs)
    return b.rows, b.extra


def _geometry(f: dict) -> str:
    """A windowed Config's shape in a few words: window/stride, tables, hyperplanes x thresholds, taps, weights."""
    w = "x".join(map(str, f["window"])) + "/" + "x".join(map(str, f.get("stride", (1,))))
    p = f"P{f['hyperplanes'] // f.get('thresholds', 1)}" + (f"x{f['thresholds']}" if f.get("thresholds", 1) > 1 else "")
    out = f"{w} L{f['tables']} K{f['bits']} {p} s{f['taps']}" + (f" w{f['weights']}" if f.get("weights", 1) > 1 else "")
    if f.get("flat_branch"):
        out += " + flat L{} K{} P{} s{}".format(*f["flat_branch"])
    return out


def _conv_macs(model) -> int:
    """Multiply-accumulates of one inference of a Keras Conv/Dense model (from layer shapes)."""
    total = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in ("Conv1D", "Conv2D"):
            k = np.prod(layer.kernel.shape)            # kh*kw*cin*cout
            total += int(k * np.prod(layer.output.shape[1:-1]))
        elif kind == "Dense":
            total += int(np.prod(layer.kernel.shape))
    return total


# ---------------------------------------------------------------- goals, table, plots
def goals(all_extra: dict, rows: list[dict], total_seconds: float, quick: bool, kernel: list[dict]) -> list[str]:
    out = []
    ok = lambda b: "MET" if b else "NOT MET"
    per_macs = None
    k256 = next((k for k in kernel if k["shape"] == "64-256-256-10"), None)
    if k256:
        per_macs = k256["m4"] / (64 * 256 + 256 * 256 + 256 * 10)
    goal_sketches = [(tname, e, sk) for (task, tname), e in all_extra.items() if not tname.endswith("-small")
                     for sk in e["goal_sketches"]]
    ratios = []   # (name, within 1 point, x fewer model bytes, x fewer M4 instructions or None) of each goal sketch
    for tname, e, sk in goal_sketches:
        dacc = e["teacher_acc"] - sk["accuracy"]
        xp, xb, xi = e["teacher_f32"] / sk["params"], e["teacher_f32"] / sk["bytes"], None
        if e["teacher_int8_m4"]:
            xi = e["teacher_int8_m4"] / sk["m4"]
            xi_s = f"{xi:.0f}x fewer M4 instructions than the teacher's int8 C ({e['teacher_int8_m4']:,} vs {sk['m4']:,}): {ok(xi >= 50)}"
        elif per_macs and e.get("teacher_macs"):
            est = e["teacher_macs"] * per_macs
            xi_s = (f"teacher int8 not measured on device (CNN); estimate from its {e['teacher_macs']:,} MACs at the dense "
                    f"kernel's {per_macs:.2f} instructions/MAC: {est:,.0f}, i.e. ~{est / sk['m4']:.0f}x the sketch "
                    f"({'met' if est / sk['m4'] >= 50 else 'not met'} as an estimate only)")
        else:
            xi_s = f"teacher int8 not measured on device (CNN; {e.get('teacher_macs', 0):,} MACs)"
        out.append(f"(a) {tname}, {sk['contender']}: {sk['accuracy']:.4f} vs teacher {e['teacher_acc']:.4f} "
                   f"({-dacc * 100:+.1f} points): {ok(dacc <= 0.01)}; {xp:.1f}x fewer model bytes than float32 weights "
                   f"({e['teacher_f32']:,} vs {sk['params']:,}: tables + hashing parameters): {ok(xp >= 30)} "
                   f"({xb:.1f}x counting the inference code too: {sk['bytes']:,} flash); {xi_s}")
        ratios.append((f"{tname}, {sk['contender']}", dacc <= 0.01, xp, xi))
    for what, group in (("within 1 point of its teacher", [r for r in ratios if r[1]]), ("at any accuracy", ratios)):
        if group:
            bp = max(group, key=lambda r: r[2])
            measured = [r for r in group if r[3] is not None]
            bi = max(measured, key=lambda r: r[3]) if measured else None
            out.append(f"(a) the paper's ratios (up to 114x less storage, 59x less compute): {what}, the most is "
                       f"{bp[2]:.1f}x fewer model bytes ({bp[0]})"
                       + (f" and {bi[3]:.0f}x fewer M4 instructions ({bi[0]})" if bi else ""))
    def pair(tag, tname, sk, m, m4_bar, m0_bar, flash_bar):   # a sketch against the int8 model of its accuracy
        r4, r0, rf = sk["m4"] / m["m4"], sk["m0"] / m["m0"], sk["bytes"] / m["bytes"]
        return (f"({tag}) {tname}, {sk['contender']} ({sk['accuracy']:.4f}) vs {m['contender']} ({m['accuracy']:.4f}): "
                f"M4 {r4:.2f}x ({sk['m4']:,}/{m['m4']:,}) {ok(r4 <= m4_bar)}; M0 {r0:.2f}x ({sk['m0']:,}/{m['m0']:,})"
                + (f" {ok(r0 <= m0_bar)}" if m0_bar else "") + f"; flash {rf:.2f}x ({sk['bytes']:,}/{m['bytes']:,}) {ok(rf <= flash_bar)}")
    out += [pair("b", tname, sk, m, 0.6, 0.5, 1.5) for (task, tname), e in all_extra.items() for sk, m in e["pairs"]]
    out += [pair("e", tname, sk, m, 0.5, None, 1.0) for (task, tname), e in all_extra.items() for sk, m in e.get("cnn_pairs", [])]
    for (task, tname), e in all_extra.items():
        for h in e["host"]:
            out.append(f"(c) {tname}, {h['sketch']}: C {h['s_per_sample'] * 1e9:.0f} ns/sample vs ai-edge-litert "
                       f"{e['litert_s_per_sample'] * 1e9:.0f} ns (one sample per invoke): x{h['ratio']:.1f} {ok(h['ratio'] >= 10)}; "
                       f"vs litert batched {e['litert_batched_s_per_sample'] * 1e9:.0f} ns: x{h['ratio_batched']:.1f} "
                       f"{ok(h['ratio_batched'] >= 10)}")
    lim = 300 if quick else 1200
    out.append(f"(d) {'--quick' if quick else 'full'} run took {total_seconds / 60:.1f} min (limit {lim / 60:.0f} min): "
               f"{ok(total_seconds <= lim)}")
    return out


def _fmt(v, kind="int"):
    if v is None:
        return "-"
    if kind == "acc":
        return f"{v:.4f}"
    if kind == "x":
        return f"{v:.1f}x"
    return f"{int(v):,}"


def table(rows: list[dict]) -> str:
    head = ("| task | teacher | contender | accuracy | model bytes | RAM | M4 instr | M0 instr | RV32 instr | "
            "LX106 instr | Uno instr | x fewer bytes vs teacher f32 | x fewer M4 instr vs teacher int8 | notes |\n|"
            + "---|" * 14)
    lines = [head]
    for r in rows:
        b = f"{_fmt(r['bytes'])} ({r['bytes_kind']})" if r["bytes"] else "-"
        ram = f"{_fmt(r['ram'])} ({r['ram_kind']})" if r["ram"] is not None else "-"
        lines.append(f"| {r['task']} | {r['teacher']} | {r['contender']} | {_fmt(r['accuracy'], 'acc')} | {b} | {ram} | "
                     f"{_fmt(r['m4'])} | {_fmt(r['m0'])} | {_fmt(r['rv32'])} | {_fmt(r.get('lx106'))} | "
                     f"{_fmt(r.get('uno'))} | {_fmt(r.get('x_bytes_vs_f32'), 'x')} | "
                     f"{_fmt(r.get('x_instr_vs_int8'), 'x')} | {r['notes']} |")
    return "\n".join(lines)


def _pareto(points):
    """Points (cost, acc) on the front: no other point is cheaper-or-equal and at least as accurate."""
    pts = sorted(points, key=lambda p: (p[0], -p[1]))
    front, best = [], -1.0
    for c, a in pts:
        if a > best:
            front.append((c, a))
            best = a
    return front


def plots(rows: list[dict], out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    teachers = list(dict.fromkeys((r["task"], r["teacher"]) for r in rows))
    paths = []
    for key, label, fname in (("bytes", "model bytes (flash on qemu-m4, or file / float32 weight bytes)", "bench-flash.png"),
                              ("m4", "instructions per inference on qemu-m4 (QEMU -icount)", "bench-m4.png")):
        n = len(teachers)
        cols = min(3, n)
        nrows = -(-n // cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(5.5 * cols, 4.2 * nrows), squeeze=False)
        for ax, (task, tname) in zip(axes.flat, teachers):
            sel = [r for r in rows if r["teacher"] == tname and r["task"] == task and r[key] and r["accuracy"] is not None]
            for j, r in enumerate(sorted(sel, key=lambda r: (r[key], r["accuracy"]))):
                c = r["contender"]
                color = "C3" if c.startswith("sketch") else ("C0" if ("MLP" in c or "int8 C" in c) else "C7")
                ax.scatter(r[key], r["accuracy"], c=color, s=25)
                short = (c.replace("sketch ", "").replace("distilled int8 MLP", "int8 MLP").replace(" (SMLAD kernel)", "")
                         .replace(" (ai-edge-litert, host)", "").replace(" (host, tflite-micro)", "")
                         .replace(" float C (loadable)", ""))
                ax.annotate(short, (r[key], r["accuracy"]), fontsize=5.5, xytext=(4, 6 if j % 2 else -9),
                            textcoords="offset points")
            front = _pareto([(r[key], r["accuracy"]) for r in sel])
            if front:
                fx, fy = zip(*front)
                ax.step(fx, fy, where="post", color="k", lw=0.8, ls="--", label="Pareto front")
                ax.legend(fontsize=6, loc="lower right")
            ax.set_xscale("log")
            ax.set_title(f"{task}: teacher {tname}", fontsize=9)
            ax.set_xlabel(label, fontsize=7)
            ax.set_ylabel("test accuracy", fontsize=7)
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        fig.suptitle("edgesketch bench (red: sketches, blue: int8/float MLP C, grey: other)", fontsize=10)
        fig.tight_layout()
        p = out / fname
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths


def write_doc(out: Path, rows, kernel, goal_lines, extras, quick, total):
    teachers = list(dict.fromkeys(r["teacher"] for r in rows))
    only = "" if quick or len(teachers) == len(PLAN) else " --only " + " ".join(teachers)
    cmd = "python -m edgesketch.bench.run" + (" --quick" if quick else "") + only + f" --out {out}"
    k = "\n".join(f"| {r['shape']} | {r['m4']:,} | {r['m4_ref']:,} | {r['m4'] / r['m4_ref']:.2f} | {r['m0']:,} | "
                  f"{'-' if not r['m0_ref'] else format(r['m0_ref'], ',')} | "
                  f"{'-' if not r['m0_ref'] else format(r['m0'] / r['m0_ref'], '.2f')} |" for r in kernel)
    text = f"""# Benchmarks

**Generated by `{cmd}`; do not edit by hand** ({'quick run: digits, wide MLP teacher, short training' if quick else 'some teachers only' if only else 'full run'};
{total / 60:.1f} min on this machine). Fixed seeds. Device columns are exact instruction counts per inference under QEMU
`-icount` (not cycles; on qemu-uno, whose AVR cannot run under `-icount`, counted by edgesketch's QEMU plugin), read
by the edgesketch firmware's counter around `es_predict_q` (median over the test set). qemu-lx106 is the ESP8266's
Xtensa core; qemu-uno is the Arduino Uno (32 KB flash, 2 KB RAM) running the Arduino entry on Arduino's AVR core: a
"-" there means the firmware did not fit its flash, and the int8 MLP rows are not run on it (their weights are plain
const arrays, which AVR copies into RAM).
Flash of on-device contenders is the firmware's text+data minus the same firmware built around a model that does
nothing, every firmware built without the DEBUG command (whose arrays hold every hash bit of a windowed sketch for
`verify`, not for inference); RAM is data+bss the same way plus the peak stack of `es_predict_q` on qemu-m4 (the
firmware paints 1 KB below the stack pointer before each call and finds the deepest overwritten word after it). Every integer C model
(sketches, int8 MLPs) equals its numpy reference bit for bit on the whole test set (asserted; sketches on every board).

## Results

{table(rows)}

![accuracy vs bytes](bench-flash.png)
![accuracy vs M4 instructions](bench-m4.png)

## Goals

""" + "\n".join(f"- {g}" for g in goal_lines) + f"""

## The int8 dense kernel against CMSIS-NN (performance.md)

Random weights (counts do not depend on the values). Ours: SXTB16 + SMLAD, two rows per pass on DSP cores, plain C loop
otherwise; requantisation with one 64-bit multiply per hidden unit; the last layer returns int32 accumulators.

| shape | M4 ours | M4 CMSIS-NN | ratio | M0 ours | M0 CMSIS-NN | ratio |
|---|---|---|---|---|---|---|
{k}

## Notes

- TFLite int8 / TFLite Micro rows run on the host (x86), so they have no device instruction counts; their bytes are
  the .tflite flatbuffer, and TFLite Micro's RAM is the smallest tensor arena that works (bisection to 16 bytes).
- emlearn 0.23.2 cannot convert Keras' Rescaling layer: its row converts the teacher's Dense layers with the
  Rescaling folded into the first layer (the same function), and stores weights as 6-decimal float literals.
- "teacher int8 C" is the teacher's own Dense layers quantised (per-channel int8, TFLite-style requantisation) and
  run by the same kernel as the distilled MLP: the int8 cost a TFLM user would see, without the interpreter.
- The host-throughput ratio (goal c) is wall time: the sketch's generated C built with gcc -O2, whole test set x
  repeats, against ai-edge-litert on the int8 teacher, both one sample per call and (litert's best case) batched.
  Teachers run two at a time (--jobs 2), so both sides of a ratio share the machine with the other teacher's run.
- "sketch windowed" rows (teachers with a time or image axis) are the sketch `edgesketch distill` picks by default
  for that input shape (distillation.FAMILIES, chosen on a validation split of the training set: docs/algorithm-notes.md).
  They quantise inputs per channel (the flat rows per feature); "ops" counts tap additions (a sum shared by several
  thresholds once) and lookup-adds over every position.
- "distilled int8 CNN" (Conv1D teachers) is edgesketch.bench.cnn: Conv1D layers (batch norm folded), global average
  pooling or flatten, Dense; TFLite-style int8 with SMLAD on DSP cores; distilled from the same teacher on the same
  training set (mixup augmentation, its recipe's); the cheapest architecture (by M4 instructions) of cnn.SEARCH that
  reaches the windowed sketch's accuracy on the test set. The teacher's own int8 cost is not measured: its max
  pooling and hidden Dense layers are not mapped to that kernel.
- "int4" sketches store 4-bit counts two to a byte (distilled with --count-bits 4: the table refit ends with a few
  epochs through the 4-bit grid) and add them 8 classes a word in byte lanes, on every core (no DSP needed).

```json
{json.dumps({f'{t}|{n}': {k: v for k, v in e.items() if k not in ('goal_sketches', 'pairs', 'cnn_pairs')} for (t, n), e in extras.items()}, indent=1, default=float)}
```
"""
    (out / "benchmarks.md").write_text(text)


def _write_all(out, rows, kernel, extras, quick, total, failed, partial, json_path=None):
    g = goals(extras, rows, total, quick, kernel) + [f"FAILED teacher {f}" for f in failed]
    if partial:
        g = ["PARTIAL: the run is still under way; these are the teachers finished so far"] + g
    if json_path:
        Path(json_path).write_text(json.dumps(dict(rows=rows, kernel=kernel, goals=g, seconds=total, partial=partial),
                                              indent=1, default=float))
    plots(rows, out)
    write_doc(out, rows, kernel, g, extras, quick, total)
    return g


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def _stop_workers(pool):
    """On any exception (Ctrl-C, or SIGTERM, which main turns into one) end the pool's workers before the pool's own
    exit, which would otherwise wait for their teachers to finish; their QEMUs die with them."""
    try:
        yield
    except BaseException:
        for p in list((getattr(pool, "_processes", None) or {}).values()):
            p.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        raise


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="edgesketch bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="digits, wide MLP teacher, short training (a few minutes)")
    ap.add_argument("--out", default="docs", help="folder for benchmarks.md and bench-*.png")
    ap.add_argument("--json", default=None, metavar="PATH", help="also write every row, goal and kernel count as JSON")
    ap.add_argument("--teachers", default="build/teachers", help="where teachers are trained once and reused")
    ap.add_argument("--jobs", "-j", type=int, default=2, help="teachers benchmarked in parallel (default 2: CI's cores)")
    ap.add_argument("--work", default=None, help="folder for the firmware projects (default: a temporary folder)")
    ap.add_argument("--only", nargs="+", metavar="TEACHER", choices=[t for _, t in PLAN],
                    help="benchmark only these teachers (e.g. --only mnist1d-cnn digits-cnn; use another --out)")
    a = ap.parse_args(argv)
    require("edgesketch bench", *BENCH_MODULES, extra="bench")
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)   # unwind as Ctrl-C does: workers stopped, work folder removed
    t0 = time.time()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="edgesketch-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        kernel = kernel_check(work, a.quick)
        plan = [("sklearn:digits", "digits-mlp")] if a.quick else [k for k in PLAN if not a.only or k[1] in a.only]
        done, failed = {}, []
        # teachers run in parallel processes (spawned: TensorFlow does not survive fork); each in its own work folder
        # (a worker dies with this process; stopped early, they are stopped first: see _stop_workers)
        with concurrent.futures.ProcessPoolExecutor(max_workers=max(1, min(a.jobs, len(plan))),
                                                    mp_context=multiprocessing.get_context("spawn"),
                                                    initializer=emulate.die_with_parent) as pool, _stop_workers(pool):
            futs = {pool.submit(bench_teacher, task, tname, a.quick, a.teachers, work / tname): (task, tname)
                    for task, tname in plan}
            for n, fut in enumerate(concurrent.futures.as_completed(futs), 1):
                task, tname = futs[fut]
                try:
                    done[(task, tname)] = fut.result()
                except Exception as ex:  # one teacher's failure is reported, the others still run
                    if a.quick:
                        raise
                    failed.append(f"{tname}: {type(ex).__name__}: {ex}")
                    log(f"[{tname}] FAILED: {type(ex).__name__}: {ex}")
                    continue
                keys = [k for k in plan if k in done]   # rows in plan order, whatever order teachers finish in
                rows = [r for k in keys for r in done[k][0]]
                extras = {k: done[k][1] for k in keys}
                if n < len(plan):   # a partial report while others run; the complete one is written below
                    _write_all(out, rows, kernel, extras, a.quick, time.time() - t0, failed, partial=True,
                               json_path=a.json)
        if not done:
            raise RuntimeError("no teacher finished: " + "; ".join(failed))
        total = time.time() - t0
        g = _write_all(out, rows, kernel, extras, a.quick, total, failed, partial=False, json_path=a.json)
        print(table(rows))
        print("\nGoals:")
        for line in g:
            print("  " + line)
        print(f"wrote {out / 'benchmarks.md'}, {out / 'bench-flash.png'}, {out / 'bench-m4.png'}"
              + (f" and {a.json}" if a.json else ""))
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("edgesketch bench: stopped; its workers and work folder are gone", file=sys.stderr)
        sys.exit(130)
