"""The library API: the whole day from Python, over the pipeline's layers. The CLI is a thin layer over this.

    import edgesketch as es
    sk = es.distill(model, x_train, y_train, x_test=x_test, y_test=y_test)     # a keras.Model or a path
    sk.evaluate()                      # teacher / float / integer figures on the test data given (a Metrics)
    sk.save("m.esk"); sk = es.load("m.esk")
    sk.predict(x); sk.predict_int(xq)  # dequantised outputs of the integer sketch; THE integer reference
    sk.generate_c("out/")              # es_model.h, es_model.c
    sk.export("fw/", board="qemu-m4")  # a PlatformIO project (format="c" / "arduino" / "cmake" / "espidf")
    sk.verify(board="qemu-m4")         # or port="/dev/ttyUSB0": bit-exact check on a device (a verify.Result)

Errors are typed (edgesketch.errors: UserError, ConfigError, DataError) and name the argument at fault.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import esk, sketch as S
from .errors import ConfigError, DataError, UserError


@dataclass
class Metrics:
    """What `edgesketch eval` prints: accuracy (classification) or RMSE (regression) of the teacher, the float sketch
    and the integer sketch (what the device computes) on a test set, and the sketch's size and cost."""
    n_test: int
    task: str
    mode: str | None
    tables: int
    bits: int
    hyperplanes: int
    taps: int
    table_bytes: int
    projection_bytes: int
    ops_per_inference: int
    teacher_accuracy: float | None = None
    float_accuracy: float | None = None
    int_accuracy: float | None = None
    teacher_agreement: float | None = None
    teacher_rmse: float | None = None
    float_rmse: float | None = None
    int_rmse: float | None = None
    teacher_agreement_rmse: float | None = None

    def to_dict(self) -> dict:
        """The figures as `edgesketch eval --json` prints them: those of the task (accuracy and agreement for
        classification, RMSE for regression) even when unknown (None), the others only when known."""
        own = ("rmse",) if self.task == "regression" else ("accuracy", "agreement")
        return {k: v for k, v in asdict(self).items() if v is not None or k.endswith(own)}

    def __getitem__(self, key):                 # metrics["int_accuracy"], as the CLI's JSON
        return getattr(self, key)


class RangeWarning(UserWarning):
    """Data far outside the ranges the model was distilled on (sketch.far_from_ranges): other units, another order."""


class Model:
    """A distilled sketch with what it was made from: the numpy Sketch (`.sketch`), its teacher (when known) and the
    test data it was distilled with, so that evaluate/verify need no arguments in a notebook."""

    def __init__(self, sketch: S.Sketch, teacher=None, x_test=None, y_test=None):
        self.sketch, self.teacher = sketch, teacher
        self.x_test, self.y_test = x_test, y_test
        if not sketch.meta.get("model_id"):
            esk.assign_id(sketch)

    def __repr__(self) -> str:
        sk = self.sketch
        kind = "flat" if sk.is_flat else f"{len(sk.branches)} branch(es), windowed"
        return (f"<edgesketch.Model {sk.meta.get('model_id', '')[:16]}: {sk.task}, {sk.n_inputs} inputs, {sk.n_outputs} "
                f"outputs, {kind}, {sk.table_bytes + sk.projection_bytes:,} model bytes>")

    @property
    def model_id(self) -> str:
        return self.sketch.meta["model_id"]

    # -- host inference
    def quantize(self, x) -> np.ndarray:
        """Float inputs [N, ...] -> the int8 inputs [N, D] the device takes."""
        return S.quantize_inputs(self.sketch, _array(x, self.sketch.n_inputs, "x"))

    def predict(self, x) -> np.ndarray:
        """Float inputs -> the integer sketch's dequantised outputs [N, C] (what es_predict returns on the device).
        Warns once (RangeWarning) when x lies far outside the training data's ranges (sketch.far_from_ranges)."""
        x = _array(x, self.sketch.n_inputs, "x")
        self._check_range(x)
        return S.int_outputs(self.sketch, x)

    def _check_range(self, x) -> None:
        if getattr(self, "_range_warned", False):
            return
        msg = S.far_from_ranges(self.sketch.meta.get("input_ranges"), x, self.sketch.meta.get("input_units"))
        if msg:
            import warnings
            self._range_warned = True
            warnings.warn(msg, RangeWarning, stacklevel=3)

    def predict_float(self, x) -> np.ndarray:
        """Float inputs -> the float sketch's outputs [N, C] (float hashing of unrounded inputs, float tables)."""
        return S.float_outputs(self.sketch, _array(x, self.sketch.n_inputs, "x"))

    def predict_int(self, xq) -> np.ndarray:
        """int8 inputs [N, D] -> int32 scores [N, C]: THE integer reference the generated C equals bit for bit."""
        xq = np.asarray(xq)
        if not np.issubdtype(xq.dtype, np.integer) or xq.size and (xq.min() < -128 or xq.max() > 127):
            raise DataError("xq must be int8 values (-128..127); quantise float inputs with Model.quantize(x)", argument="xq")
        return S.int_scores(self.sketch, _array(xq, self.sketch.n_inputs, "xq").astype(np.int8))

    # -- streams: a window hopping over a live stream of samples (docs/model-api.md, "Streaming")
    def stream_plan(self, hop: int) -> S.StreamPlan:
        """How the sketch streams with this hop (samples between two scores): which read-outs are computed once and
        which are recomputed at every hop. ConfigError (argument "hop" or "sketch") when it cannot stream."""
        return S.stream_plan(self.sketch, hop)

    def predict_stream(self, samples, hop: int) -> np.ndarray:
        """Float samples [N, C] (one time step of C channels a row) -> the outputs [W, C_out] at every hop: row j is
        `predict` of the window of samples j * hop .. j * hop + T - 1, bit for bit (W = (N - T) // hop + 1)."""
        plan = S.stream_plan(self.sketch, hop)
        x = S.stream_samples(self.sketch, samples)
        if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
            raise DataError("samples hold NaN or Inf values; clean them first", argument="samples")
        return S.stream_outputs(self.sketch, x, plan.hop)

    def predict_stream_int(self, xq_samples, hop: int) -> np.ndarray:
        """int8 samples [N, C] -> int32 scores [W, C_out] at every hop: THE integer reference of a stream, as the
        generated {p}_stream_push_q computes it (interior read-outs once each, sliding sums). Row j equals
        `predict_int` of the window of samples j * hop .. j * hop + T - 1, bit for bit."""
        plan = S.stream_plan(self.sketch, hop)
        xq = S.stream_samples(self.sketch, xq_samples, "xq_samples")
        if not np.issubdtype(xq.dtype, np.integer) or xq.size and (xq.min() < -128 or xq.max() > 127):
            raise DataError("xq_samples must be int8 values (-128..127); quantise float samples with Model.quantize",
                            argument="xq_samples")
        return S.stream_scores(self.sketch, xq.astype(np.int8), plan.hop)

    def evaluate(self, x=None, y=None, teacher=None) -> Metrics:
        """Teacher, float and integer figures on x, y (default: the test data given to distill, else the data source
        recorded in the sketch). The teacher is scored when one is known (the distilling one, or `teacher`)."""
        from . import evaluate
        x, y = self._test_data(x, y)
        self._check_range(x)
        t = _teacher(teacher, self.sketch.task) if teacher is not None else self.teacher
        recorded = self.sketch.meta.get("teacher")
        import importlib.util
        if t is None and recorded and Path(recorded).exists() and importlib.util.find_spec("tensorflow"):
            # the teacher the .esk records, when it is here (and TensorFlow to run it)
            t = self.teacher = _teacher(recorded, self.sketch.task)
        return Metrics(**evaluate.evaluate(self.sketch, x, y, t))

    # -- files and code
    def save(self, path, force: bool = False) -> Path:
        """Write the .esk file atomically; refuses to replace an existing file unless force=True."""
        esk.save(self.sketch, path, force=force)
        return Path(path)

    def generate_c(self, out_dir, layout: str = "unrolled", prefix: str = "es", force: bool = False) -> list[Path]:
        """Write {prefix}_model.h and {prefix}_model.c into out_dir (created if missing); refuses to replace them
        unless force=True."""
        from . import codegen
        files = codegen.generate(self.sketch, layout, prefix)
        out = Path(out_dir)
        clash = [n for n in files if (out / n).exists()]
        if clash and not force:
            raise UserError(f"{out / clash[0]} already exists; use force=True to replace it or another out_dir", argument="force")
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, text in files.items():
            tmp = out / f".{name}.tmp"
            tmp.write_text(text)
            tmp.replace(out / name)
            paths.append(out / name)
        return paths

    def export(self, out_dir, board: str | None = None, format: str = "platformio", layout: str = "unrolled",
               force: bool = False, *, sample="test", zip: bool = False, hop: int | None = None,
               stream_state: str | None = None, prefix: str = "es", name: str | None = None,
               class_names=None) -> Path:
        """Write the model in `format` into out_dir (refused if it exists, unless force=True): platformio (a project
        for `board`, default the emulated Cortex-M4), c, arduino, cmake or espidf (the model and the runtime for any
        build; a board there only checks the fit). The model must fit the board's flash and RAM (footprint()).
        arduino: the example classifies `sample` (int8 [n_inputs]; "test": the first test sample of the sketch's data,
        zeros when that cannot be loaded; None: zeros); zip=True also writes <out_dir>.zip.
        hop: also the stream (a window's outputs every `hop` samples; see stream_plan), whose state keeps each
        read-out's contribution (stream_state="keep") or hashes the leaving ones again ("recompute"); None: the
        board's choice (export.stream_choice).
        prefix: of the model's files, symbols and macros (c, arduino, cmake, espidf: {prefix}_model.h,
        {prefix}_predict_q, {PREFIX}_N_INPUTS), so two models live in one program (default es; platformio takes only
        es). name: the Arduino library's name (library.properties and the zip's top folder; default: out_dir's name).
        class_names: the outputs' names in the C and the examples, in place of those the .esk records (its model id
        is unchanged: names are not what the device computes)."""
        from . import boards, export, formats
        formats.check_prefix(prefix)                  # before the test sample is loaded (seconds)
        sk = self.sketch
        if class_names is not None:
            names = [str(n).strip() for n in class_names]
            if len(names) != sk.n_outputs or not all(names):
                raise ConfigError(f"class_names: {len(names)} names for a model of {sk.n_outputs} outputs; give "
                                  f"{sk.n_outputs}, in the order of its outputs", argument="class_names")
            import copy
            sk = copy.copy(sk)
            sk.meta = dict(sk.meta, class_names=names)
        b = boards.load(board) if board else boards.default_board() if format == "platformio" else None
        note = floats = None
        if format == "arduino" and isinstance(sample, str):
            if sample != "test":
                raise ConfigError(f"sample={sample!r}: give an int8 array, \"test\" or None", argument="sample")
            from .build import refuse_existing
            refuse_existing(out_dir, force)          # loading the data can take seconds: refuse first
            sample, note, floats = export.first_test_sample(sk, floats=True)
            note = note if sample is not None else f"zeros: {note}; replace them with a real input, quantised"
        elif format != "arduino" and not (sample is None or isinstance(sample, str) and sample == "test"):
            raise ConfigError(f"sample= is the Arduino example's input: use it with format='arduino', not {format!r}",
                              argument="sample")
        return export.export(sk, b, out_dir, layout, force, format,
                             sample=None if isinstance(sample, str) else sample, sample_note=note, sample_float=floats,
                             zip=zip, hop=hop,
                             stream_state=stream_state, prefix=prefix, name=name)[0]

    def footprint(self, board: str | None = None, layout: str = "unrolled", format: str = "platformio"):
        """export's estimate of the model's flash and RAM on `board` (export.Footprint; None: no board, conservative
        defaults). UserError when it does not fit, with the figures and what would make it fit."""
        from . import boards, export
        b = boards.load(board) if board else None
        float_api = format != "platformio"
        return export.check_fits(self.sketch, b, layout, float_api) if b is not None else \
            export.footprint(self.sketch, layout, None, float_api)

    def verify(self, board: str | None = None, port: str | None = None, x=None, y=None, layout: str = "unrolled",
               project=None, baud: int = 115200, limit: int | None = None, progress=True, *, hop: int | None = None,
               stream=None, stream_state: str | None = None):
        """Run the test data through a device and compare every score with the integer reference: an emulated board
        (built and started here) or a flashed one on `port` (a serial port or pyserial URL). Returns verify.Result;
        `.ok` is True when every sample agrees bit for bit.
        Streams (hop= on an emulated board, or stream= on a device flashed with a hop): `stream` is the recording, an
        .npz with an array `stream` (N, C) or such an array (None / True: the test windows laid end to end); every
        hop's outputs are compared with predict_stream_int, and the costs are a hop's (Result.stream holds the first
        window's fill and a whole window's es_predict_q for comparison)."""
        from . import boards, report, verify
        if (board is None) == (port is None):
            raise ConfigError("give board= (an emulated board, built and run here) or port= (a flashed device), not both",
                              argument="board")
        streaming = hop is not None or stream is not None
        if board is not None and stream is not None and hop is None and project is None:
            raise ConfigError("stream= on an emulated board needs hop= (samples between two outputs) or project= (a "
                              "project exported with one)", argument="hop")
        if hop is not None:
            self.stream_plan(hop)             # refused here (ConfigError, argument hop) before any build
        x, y = self._test_data(x, y) if not streaming or stream is None or stream is True else (x, y)
        if limit and x is not None:
            x, y = x[:limit], (None if y is None else y[:limit])
        teacher_acc = self.sketch.meta.get("metrics", {}).get("teacher_accuracy") if limit is None else None
        if board is not None:
            b = boards.load(board)
            if not b.emulated:
                raise ConfigError(f"board={board!r} is a real board: flash it, then verify with port=", argument="board")
            ctx = verify.open_emulated(self.sketch, b, project, layout, log=(report.console.print if progress else _quiet),
                                       hop=hop, stream_state=stream_state)
            name = b.name
        else:
            ctx, name = contextlib.nullcontext(port), port
        if streaming:
            xq, _what = verify.recording(self.sketch, True if stream is None else stream, x)
            with ctx as url, (report.count_progress(f"streaming {len(xq):,} samples") if progress is True
                              else contextlib.nullcontext(progress or None)) as cb:
                return verify.run_stream(self.sketch, xq, url, name, baud, cb)
        with ctx as url, (report.count_progress(f"verifying {len(x)} samples") if progress is True
                          else contextlib.nullcontext(progress or None)) as cb:
            return verify.run(self.sketch, x, y, url, name, baud, teacher_acc, cb)

    def _test_data(self, x, y):
        if x is not None:
            return _array(x, self.sketch.n_inputs, "x"), (None if y is None else np.asarray(y))
        if self.x_test is not None:
            return self.x_test, self.y_test
        source = self.sketch.meta.get("source")
        if not source or source == "<arrays>":
            raise DataError("no test data: pass x= (and y=), or distil with x_test=", argument="x")
        from . import data
        ds = data.load(source)
        return ds.x_test, ds.y_test


def _quiet(*a, **k):
    return None


def _array(x, n_inputs: int, name: str) -> np.ndarray:
    try:
        a = np.asarray(x)
    except Exception:
        raise DataError(f"{name} is not an array of numbers", argument=name) from None
    if a.ndim == 0 or not np.issubdtype(a.dtype, np.number):
        raise DataError(f"{name} must be a numeric array with one sample per row, got {a.dtype} {a.shape}", argument=name)
    if a.ndim == 1:
        a = a[None]
    if int(np.prod(a.shape[1:])) != n_inputs:
        raise DataError(f"{name} has {int(np.prod(a.shape[1:]))} values per sample {a.shape[1:]}; the model takes {n_inputs}",
                        argument=name)
    if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
        raise DataError(f"{name} holds NaN or Inf values; clean them first", argument=name)
    return a


def _teacher(model, task=None, labels=None):
    from .teacher import resolve
    return resolve(model, task, labels)


def config(input_shape, window="auto", **options):
    """The distillation.Config for a teacher input shape (distillation.config: the family's defaults unless
    window="flat", then `options`). ConfigError names an unknown option."""
    from .distillation import config as make
    return make(input_shape, window, **options)


def plan(input_shape, n_outputs: int, window="auto", **options):
    """What distill will build: a distill.Config when the caller fixed the family or geometry (window other than
    "auto", or any of choose.GEOMETRY) or the input has one candidate (no time or image axis), else the list of
    choose.Candidate to choose from, cheapest first. ConfigError for a bad option, before any training."""
    from . import choose
    if choose.fixes_geometry(window, options):
        return config(input_shape, window, **options)
    cands = choose.candidates(input_shape, n_outputs, options)
    return cands[0].cfg if len(cands) == 1 else cands


def distill(model, x_train, y_train=None, x_test=None, y_test=None, *, window="auto", task=None, transfer=None,
            progress=True, source: str | None = None, class_names=None, input_units=None, meta: dict | None = None,
            max_loss: float = 1.0, **options) -> Model:
    """Distil a Keras teacher (a keras.Model in memory, or a path to .keras/.h5/SavedModel) into a sketch.

    x_train: the training inputs (the teacher labels them and made-up samples around them); y_train: labels (they
    score the candidates, below, and detect the task when the teacher does not say). x_test, y_test: kept for
    evaluate()/verify(). window: "auto" (choose, below), "flat", or a size per axis.
    options: any distill.Config field (tables, bits, hyperplanes, taps, stride, count_bits, epochs, seed, ...).
    The choice (edgesketch.choose): unless window or a geometry option (stride, dilation, padding, pool, regions,
    flat_branch) fixes the family, the flat sketch and windowed geometries are distilled cheapest first (estimated
    Cortex-M0 instructions) on 80% of x_train and scored on the other 20%; the first within max_loss points of the
    teacher's accuracy there (for regression: RMSE at most max_loss percent above the teacher's; without labels,
    agreement with the teacher) is kept, or the most accurate when none is, and the final distil continues from it on
    the whole of x_train with its full recipe (distill.distill(start=...)), or starts that geometry afresh when the
    kept one is not within choose.FAR (5) points of the teacher. max_loss 0 keeps the most accurate. The
    candidates' table is in the sketch's meta["choice"] (with "qualified": whether the kept one came within max_loss,
    and "final": "continued" or "afresh") and printed with progress=True.
    progress: True (bars in a terminal or a notebook), False, or a callback(phase, done, total, info).
    source, class_names, meta: provenance recorded in the .esk (the data source's name lets `edgesketch eval/verify`
    find the test set again). input_units: the inputs' unit ("g"), or one per channel ("g", "g", "g", "dps", ...);
    recorded with the training data's min, max and mean per channel (input_ranges), which the generated header
    states and evaluate() checks new data against (evaluate.range_warning).
    Seeds TensorFlow's global generators for the run and restores Python's and NumPy's (distill._deterministic);
    sets TF_CPP_MIN_LOG_LEVEL=3 and KERAS_HOME (if unset) when it first imports TensorFlow."""
    from . import distillation as D, report
    from .errors import require
    require("edgesketch.distill", "tensorflow", "keras")
    if y_train is not None and np.asarray(y_train).dtype.kind in "USO":     # before the teacher reads them
        raise DataError(f"y_train holds strings ({np.asarray(y_train).reshape(-1)[:1].tolist()[0]!r}, ...): map them to "
                        "integers 0..C-1 and pass the names as class_names=", argument="y_train")
    t = _teacher(model, task, y_train)
    xtr = _array(x_train, t.n_inputs, "x_train")
    t.check_data(xtr, "x_train", "x_train")
    t.check_labels(y_train, "y_train", "y_train")
    if x_test is not None:
        x_test = _array(x_test, t.n_inputs, "x_test")
        t.check_data(x_test, "x_test", "x_test")
        t.check_labels(y_test, "y_test", "y_test")
        if y_test is not None and len(y_test) != len(x_test):
            raise DataError(f"x_test has {len(x_test)} samples but y_test {len(y_test)}", argument="y_test")
    xt = None if transfer is None else _array(transfer, t.n_inputs, "transfer").reshape(len(transfer), -1)
    from .choose import check_max_loss
    max_loss = check_max_loss(max_loss)
    if y_train is not None and len(y_train) != len(xtr):
        raise DataError(f"x_train has {len(xtr)} samples but y_train {len(y_train)}", argument="y_train")
    planned = plan(t.input_shape, t.n_outputs, window, **options)
    if t.task == "classification":
        classes = [str(c) for c in (class_names if class_names is not None else range(t.n_outputs))]
        if len(classes) != t.n_outputs:
            raise DataError(f"{len(classes)} class_names for a teacher of {t.n_outputs} outputs", argument="class_names")
    else:
        classes = [f"y{c}" for c in range(t.n_outputs)]
    meta = dict({"source": source or "<arrays>", "teacher": str(Path(t.path).resolve()) if t.path != "<in-memory model>" else None,
                 "input_shape": list(t.input_shape), "class_names": classes}, **(meta or {}))
    channels = t.input_shape[-1] if len(t.input_shape) > 1 else 1
    meta["input_ranges"] = S.input_ranges(xtr.reshape(len(xtr), -1), channels)
    if input_units is not None:
        units = [input_units] if isinstance(input_units, str) else [str(u) for u in input_units]
        if len(units) not in (1, channels) or not all(u.strip() for u in units):
            raise ConfigError(f"input_units: give one unit or {channels} (one a channel), got {len(units)}",
                              argument="input_units")
        meta["input_units"] = [u.strip() for u in units] * (channels if len(units) == 1 else 1)
    if xt is not None:
        meta.setdefault("transfer", {"file": "<array>", "samples": len(xt)})
    ctx = report.phase_progress() if progress is True else contextlib.nullcontext(progress or None)
    choice = None
    with ctx as cb:
        if isinstance(planned, list):
            from . import choose
            say = (lambda text: report.console.print(text, markup=False)) if progress is True else None
            choice = choose.choose(t, xtr, y_train, planned, max_loss, transfer=xt, progress=cb, meta=meta, say=say)
            if progress is True:
                report.console.print(choice.table())
            cfg = choice.chosen.cfg
            meta = dict(meta, choice=choice.to_meta())
        else:
            cfg = planned
        t0 = time.time()
        start = None if choice is None or choice.afresh else choice.chosen.sketch    # afresh: far from the teacher
        sk = D.distill(t, xtr.reshape(len(xtr), -1), cfg, meta, None if cb is None else
                       (lambda ph, d, tot, info: cb(f"{choice.chosen.name} (all training data): {ph}", d, tot, info))
                       if choice is not None else cb, transfer=xt, start=start)
        if choice is not None:
            sk.meta["choice"]["final_seconds"] = round(time.time() - t0, 1)
    m = Model(sk, t, x_test, None if y_test is None else np.asarray(y_test))
    if x_test is not None:
        sk.meta["metrics"] = m.evaluate().to_dict()
    return m


def load(path) -> Model:
    """Open a .esk file (checked as untrusted: sizes, shapes and the model id)."""
    return Model(esk.load(path))
