"""Verify: stream a test set through a device (real, or emulated and built here) and compare it with the integer
reference, sample by sample; or (run_stream) a recording through the device's stream, hop by hop. Composes sketch (the
reference), export/build/emulate (emulated boards) and harness."""
from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import build, emulate, export, harness
from .boards import Board
from .errors import UserError
from .sketch import (Sketch, int_buckets, int_hash_bits, int_scores, quantize_inputs, quantize_int8, stream_plan,
                     stream_plan_shape, stream_samples, stream_scores, stream_windows)


@dataclass
class Result:
    board: str
    port: str
    core: str
    counter: str              # instructions (QEMU -icount), cycles (hardware) or none
    n: int
    bit_exact: int            # samples whose every score equals the reference
    device_accuracy: float | None
    host_int_accuracy: float | None
    teacher_accuracy: float | None
    cost_median: float | None
    cost_min: int | None
    cost_max: int | None
    seconds: float
    samples_per_second: float
    link: dict = field(default_factory=dict)
    mismatch: dict | None = None  # the first differing sample and the stage that differs
    stack_peak: int | None = None  # most stack bytes an es_predict_q call wrote (painted on the device); None: no painting
    stack_full: bool = False       # the whole painted window was overwritten: stack_peak is a lower bound
    flash: int | None = None       # bytes of flash the firmware ELF takes (text + data), emulated boards; None: no ELF here
    static_ram: int | None = None  # bytes of static RAM it takes (data + bss: buffers, the input, the model's arrays)
    stream: dict | None = None     # run_stream: hop, window length, samples, hops; n counts hops; costs are a hop's
                                   # pushes (fill_cost: the first window's, every push that filled it)

    @property
    def ok(self) -> bool:
        return self.bit_exact == self.n

    @property
    def stack_text(self) -> str:
        if self.stack_peak is None:
            return "not measured (the firmware paints no stack)"
        return f"at least {self.stack_peak:,} bytes (the whole painted window)" if self.stack_full \
            else f"{self.stack_peak:,} bytes (painted)"

    @property
    def flash_text(self) -> str:
        """The firmware and the model in flash (short: it is a table cell)."""
        return "not measured (--port)" if self.flash is None else f"{self.flash:,} bytes (ELF text + data)"

    @property
    def static_ram_text(self) -> str:
        """Static RAM: buffers, the input, the model's arrays; the stack comes on top."""
        return "not measured (--port)" if self.static_ram is None else f"{self.static_ram:,} bytes (ELF data + bss)"

    def to_json(self) -> dict:
        return asdict(self)


@contextlib.contextmanager
def open_emulated(sk: Sketch, board: Board, project: str | None, layout: str, log=print, hop: int | None = None,
                  stream_state: str | None = None):
    """Export (unless `project` is given; with hop, the model's stream too), build with PlatformIO offline, start
    QEMU; yield the socket:// URL."""
    tmp = None
    try:
        if project is None:
            tmp = Path(tempfile.mkdtemp(prefix=f"edgesketch-{board.name}-"))
            project_dir = tmp / "project"
            if hop is None:
                export.export(sk, board, project_dir, layout)
            else:
                export.export(sk, board, project_dir, layout, hop=hop, stream_state=stream_state)
        else:
            project_dir = Path(project)
        log(f"building {project_dir} with PlatformIO (offline dev-platform)")
        elf = build.run_pio(project_dir, build.default_core_dir())
        log(f"starting {board.qemu.binary} -M {board.qemu.machine}")
        with emulate.qemu(board, elf) as url:
            yield url
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def diagnose(dev: harness.Device, sk: Sketch, xq_row: np.ndarray, expected: np.ndarray, got: np.ndarray) -> dict:
    """Ask the device for its hash bits and buckets on one input and say which stage first differs. An input larger
    than a frame is loaded first and debugged with DEBUG's empty body (harness.Device.debug does both)."""
    d = {"expected_scores": expected.tolist(), "device_scores": got.tolist()}
    try:
        bits, buckets = dev.debug(xq_row)
    except UserError:
        d["stage"] = ("not diagnosed: the device does not answer DEBUG for this model (its board keeps too little RAM for "
                      "the hash bits of every position); compare on a board with more RAM")
        return d
    ref_bits, ref_buckets = int_hash_bits(sk, xq_row[None])[0], int_buckets(sk, xq_row[None])[0]
    nb, nk = min(len(bits), len(ref_bits)), min(len(buckets), len(ref_buckets))   # the device may send a prefix
    bad_bits = np.flatnonzero(np.asarray(bits[:nb], bool) != ref_bits[:nb])
    bad_buckets = np.flatnonzero(np.asarray(buckets[:nk]) != ref_buckets[:nk])
    seen = "" if (nb, nk) == (len(ref_bits), len(ref_buckets)) else f" (the device reported the first {nb} bits and {nk} buckets)"
    if len(bad_bits):
        d["stage"] = f"hashing: {_where(sk, bad_bits[:4], 'bits')} give other bits (projection sums or thresholds differ)"
    elif len(bad_buckets):
        d["stage"] = f"bucket indices: {_where(sk, bad_buckets[:4], 'buckets')} (bit selection, pooling or packing differs)"
    else:
        d["stage"] = "lookup and sum: hashes and buckets agree, so the count tables or the accumulation differ"
    d["stage"] += seen
    return d


def _where(sk: Sketch, idx, kind: str) -> str:
    """Debug-order indices as hyperplanes / tables, with their branch and position when the sketch has windows."""
    if sk.is_flat:
        return ("hyperplanes " if kind == "bits" else "tables ") + str([int(i) for i in idx])
    out = []
    for i in idx:
        i = int(i)
        for j, b in enumerate(sk.branches):
            per = b.n_hyperplanes if kind == "bits" else b.n_tables
            n = (b.window.n_positions if kind == "bits" else b.window.n_readouts) * per
            if i < n:
                out.append(f"branch {j} {'position' if kind == 'bits' else 'read-out'} {i // per} "
                           f"{'hyperplane' if kind == 'bits' else 'table'} {i % per}")
                break
            i -= n
    return ", ".join(out)


def run(sk: Sketch, x: np.ndarray, labels, url: str, board_name: str, baud: int, teacher_accuracy, progress=None) -> Result:
    """Verify on the device at url. When url is an emulator's (open_emulated, emulate.qemu) the result also carries the
    flash and static RAM of the ELF it runs."""
    elf = getattr(url, "elf", None)
    size = build.elf_size(elf) if elf is not None else None
    xq = quantize_inputs(sk, x)
    expected = int_scores(sk, xq)
    with harness.Device(url, model_id=sk.meta["model_id"], baudrate=baud) as dev:
        info = dev.info
        if (info.n_inputs, info.n_outputs) != (sk.n_inputs, sk.n_outputs):
            raise UserError(f"the device's model takes {info.n_inputs} inputs and gives {info.n_outputs} outputs, "
                            f"the sketch {sk.n_inputs} and {sk.n_outputs}; flash the firmware exported from this sketch")
        t0 = time.monotonic()
        scores, costs = dev.run(xq, progress=progress)
        secs = time.monotonic() - t0
        rep = harness.verify_report(expected, scores, costs if info.counter_kind else None,
                                    labels if sk.task == "classification" else None)
        mismatch = None
        if not rep.bit_exact:
            i = rep.mismatch_idx[0]
            mismatch = {"sample": int(i), **diagnose(dev, sk, xq[i], expected[i], scores[i])}
        link = dev.last_run_stats
        stack = dev.stack()
    return Result(board=board_name, port=str(url), core=info.core, counter=info.counter_name, n=rep.n,
                  bit_exact=rep.n - rep.n_mismatch, device_accuracy=rep.accuracy, host_int_accuracy=rep.expected_accuracy,
                  teacher_accuracy=teacher_accuracy, cost_median=rep.cost_median, cost_min=rep.cost_min, cost_max=rep.cost_max,
                  seconds=round(secs, 3), samples_per_second=round(rep.n / secs, 1) if secs > 0 else 0.0,
                  link=asdict(link), mismatch=mismatch, stack_peak=stack.peak if stack.measured else None,
                  stack_full=stack.full, flash=size.flash if size else None, static_ram=size.ram if size else None)


# ---------------------------------------------------------------- streams
def recording(sk: Sketch, stream=True, x_test=None) -> tuple[np.ndarray, str]:
    """The samples of a stream recording, quantised: int8 [N, C] and a line saying what they are. stream: an .npz
    path with an array `stream` of shape (N, C) (float: quantised per channel as the sketch does; int8: taken as
    quantised), an array of that shape, or True / "" for x_test (the test windows) laid end to end."""
    from .errors import DataError
    C = stream_plan_shape(sk)[1]
    if stream is True or stream is None or (isinstance(stream, str) and not stream):
        if x_test is None:
            raise DataError("no recording and no test windows to lay end to end: pass stream= an .npz with an array "
                            "`stream` (N, C)", argument="stream")
        a = np.asarray(x_test)
        a, what = a.reshape(len(a), -1, C).reshape(-1, C), f"the {len(x_test):,} test windows laid end to end"
    elif isinstance(stream, (str, Path)):
        try:
            with np.load(stream, allow_pickle=False) as z:
                if "stream" not in z.files:
                    raise DataError(f"{stream} has no array `stream` (it has {', '.join(z.files) or 'none'}): save the "
                                    f"recording as np.savez(path, stream=samples) with samples of shape (N, {C})",
                                    argument="stream")
                a = z["stream"]
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read the recording {stream}: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                            argument="stream") from None
        what = f"{stream}"
    else:
        a, what = np.asarray(stream), "the samples given"
    a = stream_samples(sk, a, "stream")
    if a.dtype == np.int8:
        return np.ascontiguousarray(a), what + " (int8)"
    if not np.issubdtype(a.dtype, np.number) or (np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a))):
        raise DataError("the recording holds NaN, Inf or non-numbers; clean it first", argument="stream")
    return quantize_int8(a.astype(np.float32), sk.in_scale, sk.in_zero), what


def run_stream(sk: Sketch, xq: np.ndarray, url: str, board_name: str, baud: int, progress=None) -> Result:
    """Stream int8 samples [N, C] through the device's stream (the hop is the firmware's, from HELLO) and compare every
    hop's scores with sketch.stream_scores. n counts hops; costs are each hop's pushes (the device's counter)."""
    elf = getattr(url, "elf", None)
    size = build.elf_size(elf) if elf is not None else None
    with harness.Device(url, model_id=sk.meta["model_id"], baudrate=baud) as dev:
        info = dev.info
        if not info.streams:
            raise UserError(f"the firmware on {url} has no stream: export the model with a hop (hop=H), or verify "
                            f"on an emulated board with hop=H, which does")
        plan = stream_plan(sk, info.stream_hop)
        if (info.stream_len, info.stream_channels) != (plan.length, plan.channels):
            raise UserError(f"the device streams windows of {info.stream_len} samples of {info.stream_channels} values, "
                            f"the sketch {plan.length} of {plan.channels}; flash the firmware exported from this sketch")
        expected = stream_scores(sk, xq, plan.hop)
        t0 = time.monotonic()
        run = dev.stream(xq, progress=progress)
        secs = time.monotonic() - t0
        steady = run.costs[~run.fills] if (~run.fills).any() else run.costs
        rep = harness.verify_report(expected, run.scores, steady if info.counter_kind else None)
        mismatch = None
        if not rep.bit_exact:
            j = rep.mismatch_idx[0]
            window = np.ascontiguousarray(stream_windows(xq, plan.length, plan.hop)[j])
            mismatch = {"sample": int(j), "window": [int(j * plan.hop), int(j * plan.hop + plan.length)]}
            try:
                _, one = dev.infer(window)
            except UserError:
                one = None
            if one is not None and np.array_equal(one, expected[j]):
                mismatch.update(expected_scores=expected[j].tolist(), device_scores=run.scores[j].tolist(),
                                stage="stream: the device's es_predict_q of the same window agrees with the reference, "
                                      "its stream does not (its sums or its ring of samples)")
            else:
                mismatch.update(diagnose(dev, sk, window, expected[j], run.scores[j]))
        # the same window through es_predict_q: what a hop would cost without the stream
        window_cost = None
        if info.counter_kind and len(expected):
            window_cost, _ = dev.infer(np.ascontiguousarray(stream_windows(xq, plan.length, plan.hop)[0]))
        link = dev.last_run_stats
    fills = run.costs[run.fills]
    return Result(board=board_name, port=str(url), core=info.core, counter=info.counter_name, n=rep.n,
                  bit_exact=rep.n - rep.n_mismatch, device_accuracy=None, host_int_accuracy=None, teacher_accuracy=None,
                  cost_median=rep.cost_median, cost_min=rep.cost_min, cost_max=rep.cost_max, seconds=round(secs, 3),
                  samples_per_second=round(len(xq) / secs, 1) if secs > 0 else 0.0, link=asdict(link),
                  mismatch=mismatch, flash=size.flash if size else None, static_ram=size.ram if size else None,
                  stream=dict(hop=plan.hop, length=plan.length, channels=plan.channels, samples=int(len(xq)),
                              hops=int(rep.n), fills=int(run.fills.sum()),
                              fill_cost=int(fills[0]) if len(fills) and info.counter_kind else None,
                              window_cost=None if window_cost is None else int(window_cost)))
