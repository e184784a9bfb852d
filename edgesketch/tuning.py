"""Tune: the most accurate sketch that fits a board's budget, honestly validated (issue 21).

    import edgesketch as es
    r = es.tune("teacher.keras", x_train, y_train, x_test=x_test, y_test=y_test, board="qemu-m0", flash=16384, ram=4096)
    r.best, r.final, r.pareto          # the chosen configuration, its test figures, the Pareto front
    r.save("best.esk")                 # best.esk, best.trials.json and best.pareto.png (atomically)

Selection: every trial distils its configuration on 80% of the training set (stratified, fixed seed) over each of
`seeds` and scores the integer sketch on the other 20%, never on the test set. Its cost is measured: the firmware is
built for the emulated board of the budget's core (the board itself when it is emulated; qemu-uno for the Uno) and a
few validation samples run under QEMU: flash and RAM are the firmware's minus the same firmware around an empty model
(RAM adds the peak stack of one inference), instructions the median count. The chosen configuration is distilled
again on the whole training set and scored once on the test set.

Search: Optuna (TPE, seeded). The first trials are distill's candidates (edgesketch.choose: the flat sketch, then
windowed geometries, cheapest first), so that a budget that holds distill's choice gets a sketch at least as good on
the validation split. With a hard budget (flash=, ram= or max_instructions=) it maximises validation accuracy;
without one it trades accuracy against flash and instructions (the Pareto front), the board's capacity still a
constraint. A trial clearly behind (its first seeds `prune_margin` below a finished trial no bigger and no slower) is
pruned. Trials run in this process (jobs=1), in `jobs` processes, or as Ray tasks (ray=ADDRESS); the study lives in
its storage (SQLite by default) so resume=True continues it. Optuna and Ray are imported here only (extra `tune`).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from .errors import ConfigError, DataError, UserError

STUDY = "edgesketch-tune"
from .choose import VALIDATION, split  # noqa: E402,F401  (the validation split distill's choice and tune share)
INFEASIBLE = 1 << 30          # the cost recorded for what was never measured


# ---------------------------------------------------------------- budget and cost
@dataclass(frozen=True)
class Budget:
    board: str
    measured_on: str | None     # the emulated board the cost is measured on (None: sizes only, no instructions)
    flash: int                  # bytes for the model (default: the board's flash minus the firmware around it)
    ram: int
    instructions: int | None
    hard: bool                  # the caller gave flash=, ram= or max_instructions=


@dataclass(frozen=True)
class Cost:
    flash: int
    ram: int
    instructions: int | None
    how: str

    def fits(self, b: Budget) -> bool:
        return (self.flash <= b.flash and self.ram <= b.ram
                and (b.instructions is None or self.instructions is not None and self.instructions <= b.instructions))


def twin(board):
    """The emulated board a board's cost is measured on: itself, else the emulated board of the same core (uno ->
    qemu-uno), else one of the same family (the core's name up to its last digit run: cortex-m0plus -> qemu-m0),
    else None."""
    from . import boards
    if board.emulated:
        return board
    emu = [b for b in boards.all_boards() if b.emulated]
    same = [b for b in emu if b.core == board.core]
    if same:
        return same[0]
    fam = board.core.rstrip("abcdefghijklmnopqrstuvwxyz")
    same = [b for b in emu if b.core.rstrip("abcdefghijklmnopqrstuvwxyz") == fam]
    return same[0] if same else None


def budget(board: str, n_inputs: int, n_outputs: int, flash=None, ram=None, max_instructions=None, workdir=None) -> Budget:
    """The model's budget on `board`: flash= and ram= in bytes (default: the board's flash and RAM minus what the
    firmware around an empty model takes there, measured)."""
    from . import boards
    b = boards.load(board)
    for name, v in (("flash", flash), ("ram", ram), ("max_instructions", max_instructions)):
        if v is not None and (not isinstance(v, (int, np.integer)) or v < 1):
            raise ConfigError(f"{name}={v}: give a positive number of {'instructions' if name[0] == 'm' else 'bytes'}", argument=name)
    t = twin(b)
    base_flash = base_ram = 0
    if t is not None and (flash is None or ram is None):
        from . import measure as device
        with _workdir(workdir) as wd:
            s = device.trivial_size(t.name, n_inputs, n_outputs, wd)
        base_flash, base_ram = s.flash, s.ram
    elif t is None:
        base_flash, base_ram = b.footprint.firmware_flash, b.footprint.firmware_ram
    return Budget(b.name, t.name if t else None, int(flash or b.flash_bytes - base_flash), int(ram or b.ram_bytes - base_ram),
                  None if max_instructions is None else int(max_instructions),
                  any(v is not None for v in (flash, ram, max_instructions)))


def measure(sk, layout: str, bud: Budget, xq: np.ndarray, workdir=None) -> Cost:
    """The sketch's measured cost: built for the budget's emulated board and run on xq under QEMU (flash, static RAM
    plus peak stack, median instructions). A sketch that export's estimate (edgesketch.export.footprint) says does
    not fit the board is not built, and a firmware the linker refuses is not run: they cost the estimate, or more than
    the budget by what overflows, so that they never count as fitting."""
    from . import boards, codegen, export

    def over(fp, what: str, flash_over: int, ram_over: int) -> Cost:
        return Cost(max(fp.flash, bud.flash + flash_over) if flash_over > 0 else fp.flash,
                    max(fp.ram, bud.ram + ram_over) if ram_over > 0 else fp.ram, None, what)

    target = boards.load(bud.board)
    fp = export.footprint(sk, layout, target)
    if fp.total_flash > target.flash_bytes or fp.total_ram > target.ram_bytes:
        return over(fp, f"estimate: does not fit {target.name}, not built", fp.total_flash - target.flash_bytes,
                    fp.total_ram - target.ram_bytes)
    if bud.measured_on is None:
        flash = _object_flash(sk, layout, target, workdir)
        if flash is None:
            return Cost(fp.flash, fp.ram, None, "estimate (no emulated board of this core)")
        return Cost(flash, fp.ram, None, f"model object built with {target.compile_check.cc}, RAM estimated (no emulated board of this core)")
    from . import measure as device
    with _workdir(workdir) as wd:
        try:
            r = device.run(bud.measured_on, codegen.generate(sk, layout), xq, sk.n_inputs, sk.n_outputs, wd, "tune")
        except device.DoesNotFit as e:
            fp = export.footprint(sk, layout, boards.load(bud.measured_on))
            by = {m: sum(o.over or 1 for o in e.overflows if o.memory == m) for m in ("flash", "RAM")}
            return over(fp, f"estimate: does not link on {bud.measured_on} ({e.over or '?'} bytes over)", by["flash"],
                        by["RAM"])
    return Cost(int(r.flash), int(r.ram + (r.stack or 0)), r.instructions, f"measured on {bud.measured_on}")


def _object_flash(sk, layout: str, board, workdir=None) -> int | None:
    """text+data of the model's object file built with the board's compile-check compiler (-O2), or None when the
    board has none or it is not installed."""
    import subprocess
    from . import build, codegen
    cc = board.compile_check.cc if board.compile_check else None
    if not cc or not shutil.which(cc) or not shutil.which(cc[:-3] + "size"):
        return None
    with _workdir(workdir) as wd:
        for name, text in {**codegen.generate(sk, layout), **codegen.runtime_files()}.items():   # the model includes
            (wd / name).write_text(text)                                                           # the runtime
        obj = wd / "es_model.o"
        r = subprocess.run([cc, *board.compile_check.flags, "-ffreestanding", "-O2", "-c", str(wd / "es_model.c"), "-o", str(obj)],
                           capture_output=True, text=True)
        if r.returncode:
            return None
        out = subprocess.run([cc[:-3] + "size", "-B", str(obj)], capture_output=True, text=True).stdout.splitlines()
    text, data = (int(v) for v in out[1].split()[:2])
    return text + data


@contextlib.contextmanager
def _workdir(path=None):
    if path is not None:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
        return
    d = tempfile.mkdtemp(prefix="es-tune-")
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- the search space
def spatial_axes(input_shape) -> int:
    from .distillation import spatial_axes
    return len(spatial_axes(input_shape))


def _geometry_choices(input_shape, name: str, base: list) -> list:
    """Choices of stride or dilation: `base` and the values of distill's windowed geometries for this input (a long
    input's strides are long: distill.geometry), so that distill's candidates are points of the space."""
    from .distillation import READOUTS, geometry
    n = spatial_axes(input_shape)
    return sorted(set(base) | {geometry(input_shape, r)[name][0] for r in READOUTS.get(n, READOUTS[2])} if n else set(base))


HYPERPLANES = [8, 16, 24, 32, 48, 64, 96]


# flat branches beside a window: none, the 2-D family's (distill.FAMILIES), a bigger and a smaller one
FLAT_BRANCHES = ["none", "8,6,48,8", "12,6,48,8", "4,5,24,6"]


def suggest(trial, input_shape, fixed: dict, space: dict) -> dict:
    """One configuration (distill options, plus `window` and `layout`) drawn from the trial. Every option distill has
    is searched unless `fixed` pins it; `space` narrows an option to a list of choices."""
    def pick(name, choices, *, ints=None, log=False):
        if name in fixed:
            return fixed[name]
        if name in space:
            opts = list(space[name])
            return opts[0] if len(opts) == 1 else trial.suggest_categorical(name, [_encode(v) for v in opts])
        if ints is not None:
            return trial.suggest_int(name, *ints, log=log)
        return trial.suggest_categorical(name, [_encode(v) for v in choices])

    n_sp = spatial_axes(input_shape)
    p = {"layout": pick("layout", ["unrolled", "compact"])}
    p["window"] = pick("window", ["auto", "flat"]) if n_sp else "flat"
    windowed = p["window"] != "flat"
    p["mode"] = "learned" if windowed else pick("mode", ["learned", "representer"])
    if windowed:
        sizes = [3, 5, 7, 9, 11] if n_sp == 1 else [2, 3, 4, 5]
        p["window"] = (pick("window_size", sizes),) * n_sp
        p["stride"] = (pick("stride", _geometry_choices(input_shape, "stride", [1, 2, 3])),)
        p["dilation"] = (pick("dilation", _geometry_choices(input_shape, "dilation", [1, 2])),)
        p["padding"] = pick("padding", ["same", "valid"])
        p["pool"] = (pick("pool", [1, 2]),)
        p["regions"] = pick("regions", [1, 2, 4])
        p["flat_branch"] = pick("flat_branch", FLAT_BRANCHES)
    # a name has the same choices in every branch (Optuna's distributions are per name)
    p["tables"] = pick("tables", None, ints=(2, 32), log=True)
    p["bits"] = pick("bits", None, ints=(3, 8))
    p["augment"] = pick("augment", ["mixup", "signal", "both", "none"] if n_sp else ["mixup", "none"])
    if windowed:
        p["hyperplanes"] = pick("hyperplanes", HYPERPLANES)
        p["thresholds"] = pick("thresholds", [1, 2])
        p["taps"] = pick("taps", None, ints=(2, 16))
        if p["augment"] in ("signal", "both"):
            p["shift"] = pick("shift", [0, 2, 4])
    else:
        if p["mode"] == "representer":
            p["representers"] = pick("representers", [32, 64, 128, 256])
            p["density"] = pick("density", [0.1, 1 / 3, 0.5])
        else:
            p["hyperplanes"] = pick("hyperplanes", HYPERPLANES)
            p["taps"] = pick("taps", None, ints=(2, 16))
            p["thresholds"] = pick("thresholds", [1, 2])
            p["selectors"] = pick("selectors", ["random", "window"])
    if p["mode"] == "learned":
        p["weights"] = pick("weights", [1, 3, 7])
        if p["weights"] == 1:
            p["signs"] = pick("signs", ["free", "balanced"])
    p["count_bits"] = pick("count_bits", [4, 8, 16])
    if not windowed and p["count_bits"] != 4:
        p["codebook"] = pick("codebook", [0, 64, 256])
    p["noise"] = pick("noise", [0.05, 0.1, 0.2])
    p["temperature"] = pick("temperature", [1.0, 2.0])
    p["table_dropout"] = pick("table_dropout", [0.0, 0.1])
    p["lr"] = pick("lr", [0.003, 0.01, 0.03])
    for k, v in fixed.items():              # pinned options the space does not draw (epochs, aug_size, ...)
        if k != "window_size":
            p.setdefault(k, v)
    if isinstance(p.get("flat_branch"), str):
        p["flat_branch"] = () if p["flat_branch"] == "none" else tuple(int(v) for v in p["flat_branch"].split(","))
    return p


def defaults(input_shape, fixed: dict, space: dict | None = None) -> dict:
    """The configuration of the family's defaults (the windowed one for an input with a time or image axis), as
    Optuna parameters (not checked: a space whose defaults distill refuses gets them as an invalid first trial)."""
    from .distillation import Config, family_defaults
    return params_of(Config(**family_defaults(input_shape)), fixed, space)


def starts(input_shape, n_outputs: int, fixed: dict, space: dict | None = None) -> list[dict]:
    """distill's candidates (edgesketch.choose: the flat sketch, then windowed geometries, cheapest first by
    estimated M0 instructions), with the fixed options that are distill options, as Optuna parameters: the first
    trials of every study, so that a budget that holds distill's choice gets a sketch at least as good on the
    validation split (the same split, the same seeds)."""
    from .choose import candidates
    from .distillation import Config
    known = {f.name for f in fields(Config)}
    opts = {k: v for k, v in fixed.items() if k in known}
    try:
        cands = candidates(input_shape, n_outputs, opts)
    except ConfigError:      # options distill refuses for its candidates: the family's defaults, refused as a trial
        return [defaults(input_shape, fixed, space)]
    out = []
    for c in cands:
        p = params_of(c.cfg, fixed, space)
        if p not in out:
            out.append(p)
    return out


def params_of(cfg, fixed: dict, space: dict | None = None) -> dict:
    """A distill.Config as Optuna parameters (what suggest() turns back into it), less what `fixed` pins and what
    `space` does not offer."""
    from .distillation import Config
    kw = {f.name: getattr(cfg, f.name) for f in fields(Config)}
    out = {"layout": "unrolled", "window": "auto" if cfg.windowed else "flat",
           "window_size": kw["window"][0] if cfg.windowed else None,
           "stride": kw["stride"][0], "dilation": kw["dilation"][0], "pool": kw["pool"][0],
           "flat_branch": ",".join(map(str, kw["flat_branch"])) if kw["flat_branch"] else "none"}
    for k in ("mode", "padding", "regions", "tables", "bits", "hyperplanes", "thresholds", "taps", "augment", "shift",
              "representers", "selectors", "weights", "signs", "count_bits", "codebook", "noise", "temperature",
              "table_dropout", "lr", "density"):
        out.setdefault(k, kw[k])
    space = space or {}
    allowed = lambda k, v: k not in space or len(space[k]) > 1 and _encode(v) in [_encode(c) for c in space[k]]
    return {k: _encode(v) for k, v in out.items() if v is not None and k not in fixed and allowed(k, v)}


def _encode(v):
    """Optuna's categorical choices are scalars: a tuple becomes "12,6,48,8"."""
    return ",".join(map(str, v)) if isinstance(v, tuple) else v


# ---------------------------------------------------------------- one trial (runs in a worker)
_teachers: dict = {}


def _teacher(path: str, task):
    from .teacher import resolve as load
    if path not in _teachers:
        _teachers.clear()
        _teachers[path] = load(path, task)
    return _teachers[path]


def score(sk, x, y) -> float:
    """Validation score of the integer sketch: accuracy, or minus the RMSE for regression (higher is better)."""
    from .sketch import int_outputs
    o = int_outputs(sk, x)
    if sk.task == "classification":
        return float(np.mean(o.argmax(1) == y))
    return -float(np.sqrt(np.mean((o - np.asarray(y).reshape(len(x), -1)) ** 2)))


def lower_bound_flash(p: dict, n_outputs: int) -> int:
    """Bytes of the count tables alone, before training: a configuration over the flash budget by this much is
    refused without distilling it."""
    cells = p["tables"] * (1 << p["bits"]) * (p.get("regions", 1) or 1)
    fb = p.get("flat_branch") or ()
    if fb and p.get("window", "flat") != "flat":
        cells += fb[0] * (1 << fb[1])
    if p.get("codebook"):
        return cells * (1 if p["codebook"] <= 256 else 2)
    return cells * n_outputs * p["count_bits"] // 8


def run_trial(job: dict, teacher_path: str, data: dict) -> dict:
    """Distil one configuration over its seeds on the fit split, measure the first seed's sketch, stop early when it
    does not fit or is clearly behind `job["reference"]`. Returns what the driver tells Optuna. Deterministic for a
    given job: the same job gives the same numbers on any worker."""
    from . import api
    p, bud = dict(job["params"]), Budget(**job["budget"])
    t0, accs = time.time(), []
    t = _teacher(teacher_path, job["task"])
    layout, window = p.pop("layout"), p.pop("window")
    out = {"number": job["number"], "config": _jsonable(dict(p, layout=layout, window=window)), "accs": accs,
           "worker": f"{__import__('socket').gethostname()}:{os.getpid()}"}
    try:
        api.config(t.input_shape, window, **p)
    except ConfigError as e:
        return dict(out, state="invalid", reason=str(e), seconds=time.time() - t0)
    low = lower_bound_flash(dict(p, window=window), t.n_outputs)
    if low > bud.flash:
        return dict(out, state="infeasible", cost=asdict(Cost(low, 0, None, "tables alone (not distilled)")),
                    seconds=time.time() - t0)
    cost = None
    for i, seed in enumerate(job["seeds"]):
        m = api.distill(t, data["x_fit"], data["y_fit"], window=window, progress=False,
                        **dict(p, **job.get("short", {}), seed=seed))
        accs.append(score(m.sketch, data["x_val"], data["y_val"]))
        if i == 0:
            cost = measure(m.sketch, layout, bud, m.quantize(data["x_val"][:job["samples"]]))
            out["cost"] = asdict(cost)
            out["model_bytes"] = int(m.sketch.table_bytes + m.sketch.projection_bytes)
            if not cost.fits(bud):
                return dict(out, state="infeasible", seconds=time.time() - t0)
        if i + 1 < len(job["seeds"]) and _behind(float(np.mean(accs)), cost, job):
            return dict(out, state="pruned", reason=f"behind after {i + 1} seed(s)", seconds=time.time() - t0)
    return dict(out, state="complete", seconds=time.time() - t0)


def _behind(acc: float, cost: Cost, job: dict) -> bool:
    """A finished trial beats this one by more than the margin while costing no more (accuracy alone under a hard
    budget: cost does not matter there)."""
    for r in job["reference"]:
        if r["acc"] > acc + job["margin"] and (job["hard"] or r["flash"] <= cost.flash
                                               and (r["instructions"] or 0) <= (cost.instructions or 0)):
            return True
    return False


def _jsonable(v):
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


# ---------------------------------------------------------------- executors
class _Inline:
    """Trials in this process, one at a time."""

    def __init__(self, teacher_path, data):
        self.args = (teacher_path, data)

    def submit(self, job):
        from concurrent.futures import Future
        f = Future()
        try:
            f.set_result(run_trial(job, *self.args))
        except BaseException as e:            # noqa: BLE001  (handed to the driver, which raises it)
            f.set_exception(e)
        return f

    def wait(self, futures):
        return list(futures)

    def result(self, f):
        return f.result()

    def close(self):
        pass


class _Processes:
    """Trials in `jobs` spawned processes (TensorFlow does not survive fork); the data is sent once per process."""

    def __init__(self, teacher_path, data, jobs):
        from concurrent.futures import ProcessPoolExecutor
        import multiprocessing as mp
        self.pool = ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                        initargs=(teacher_path, data))

    def submit(self, job):
        return self.pool.submit(_worker_trial, job)

    def wait(self, futures):
        from concurrent.futures import FIRST_COMPLETED, wait
        return list(wait(futures, return_when=FIRST_COMPLETED).done)

    def result(self, f):
        return f.result()

    def close(self):
        self.pool.shutdown(cancel_futures=True)


_worker_args: tuple = ()


def _init_worker(teacher_path, data):
    global _worker_args
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _worker_args = (teacher_path, data)


def _worker_trial(job):
    return run_trial(job, *_worker_args)


class _Ray:
    """Trials as Ray tasks on the cluster at `address` (one CPU each): the teacher file's bytes and the arrays go to
    the object store once; each worker process writes the teacher to a file of its own and keeps it loaded."""

    def __init__(self, teacher_path, data, address):
        from .errors import require
        require("edgesketch.tune(ray=...)", "ray", extra="tune")
        import ray
        self.started = not ray.is_initialized()
        if not ray.is_initialized() and address in (None, "local"):   # a cluster on this machine: workers import this copy
            src = str(Path(__file__).resolve().parents[1])
            env = {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}}
            ray.init(runtime_env=env, log_to_driver=False, include_dashboard=False, configure_logging=False)
        elif not ray.is_initialized():                                 # a cluster's nodes have edgesketch[tune] installed
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        self.ray, self.cpus = ray, int(ray.cluster_resources().get("CPU", 1))
        self.teacher = ray.put((Path(teacher_path).name, _read_teacher(teacher_path)))
        self.data = ray.put(data)
        self.fn = ray.remote(num_cpus=1, max_retries=0)(_ray_trial)

    def submit(self, job):
        return self.fn.remote(job, self.teacher, self.data)

    def wait(self, futures):
        done, _ = self.ray.wait(list(futures), num_returns=1)
        return done

    def result(self, f):
        return self.ray.get(f)

    def close(self):
        if self.started:                # a connection (or a cluster) this run made: ended with it
            self.ray.shutdown()


def _read_teacher(path: str) -> dict[str, bytes]:
    """A teacher file, or every file of a SavedModel folder, as {relative path: bytes}."""
    p = Path(path)
    if p.is_file():
        return {"": p.read_bytes()}
    return {str(f.relative_to(p)): f.read_bytes() for f in p.rglob("*") if f.is_file()}


def _ray_trial(job, teacher, data):
    name, files = teacher
    key = hashlib.sha256(b"".join(files[k] for k in sorted(files))).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"es-tune-teacher-{key}" / name
    if not path.exists():
        tmp = path.parent.with_name(path.parent.name + f".{os.getpid()}")
        for rel, blob in files.items():
            f = tmp / name / rel if rel else tmp / name
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(blob)
        with contextlib.suppress(OSError):
            tmp.rename(path.parent)
        shutil.rmtree(tmp, ignore_errors=True)
    return run_trial(job, str(path), data)


# ---------------------------------------------------------------- the result
@dataclass
class Result:
    board: str
    budget: Budget
    objectives: list[str]
    trials: list[dict]               # every trial: config, state, validation scores per seed, cost, seconds
    best: dict                       # the chosen trial
    pareto: list[dict]               # feasible trials no other feasible trial beats on every objective
    final: dict                      # the chosen configuration on the whole training set: seeds, validation and test
    model: object                    # api.Model of the first seed, distilled on the whole training set
    storage: str
    seconds: float
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return _jsonable({"board": self.board, "budget": asdict(self.budget), "objectives": self.objectives,
                          "best": self.best, "final": self.final, "pareto": [t["number"] for t in self.pareto],
                          "storage": self.storage, "seconds": self.seconds, "model_id": self.model.model_id,
                          "trials": self.trials})

    def table(self):
        """The Pareto front as a rich Table (the chosen trial marked)."""
        from rich.table import Table
        t = Table(title=f"Pareto front (validation accuracy, flash, instructions) of {len(self.trials)} trials on {self.board}; "
                        f"budget {self.budget.flash:,} B flash, {self.budget.ram:,} B RAM"
                        + (f", {self.budget.instructions:,} instructions" if self.budget.instructions else ""))
        for c in ("trial", "validation (mean ± spread)", "flash", "RAM", "instructions", "configuration"):
            t.add_column(c, justify="left" if c == "configuration" else "right")
        for r in sorted(self.pareto, key=lambda r: -r["mean"]):
            c = r["cost"]
            t.add_row(f"{r['number']}{' *' if r['number'] == self.best['number'] else ''}", f"{r['mean']:.4f} ± {r['spread']:.4f}",
                      f"{c['flash']:,}", f"{c['ram']:,}", "" if c["instructions"] is None else f"{c['instructions']:,}",
                      describe(r["config"]))
        return t

    def plot(self, path) -> Path:
        """A PNG: validation accuracy against flash and against instructions, every feasible trial, the front joined,
        the budget drawn. Written to a temporary file, then renamed."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        ok = [r for r in self.trials if r.get("cost") and r["state"] in ("complete", "infeasible") and r["accs"]]
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        for ax, key, limit in ((axes[0], "flash", self.budget.flash), (axes[1], "instructions", self.budget.instructions)):
            pts = [(r["cost"][key], r["mean"], r["state"] == "complete") for r in ok if r["cost"].get(key) is not None]
            for good, style in ((True, dict(c="tab:blue", label="fits")), (False, dict(c="tab:gray", marker="x", label="over budget"))):
                xs = [(x, y) for x, y, g in pts if g == good]
                if xs:
                    ax.scatter(*zip(*xs), s=18, **style)
            front = sorted((r["cost"][key], r["mean"]) for r in self.pareto if r["cost"].get(key) is not None)
            if front:
                ax.step(*zip(*front), where="post", c="tab:orange", label="Pareto front")
            b = self.best
            if b["cost"].get(key) is not None:
                ax.scatter([b["cost"][key]], [b["mean"]], s=90, facecolors="none", edgecolors="tab:red", label="chosen")
            if limit and limit < INFEASIBLE:
                ax.axvline(limit, c="tab:red", ls="--", lw=1, label=f"budget {limit:,}")
            ax.set_xlabel(f"{key} ({'bytes' if key == 'flash' else 'per inference'}, {self.budget.measured_on or 'estimate'})")
            ax.set_ylabel("validation accuracy (mean over seeds)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(f"edgesketch tune on {self.board}: {len(self.trials)} trials")
        fig.tight_layout()
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp.png")
        fig.savefig(tmp, dpi=110)
        plt.close(fig)
        tmp.replace(path)
        return path

    def save(self, path, force: bool = False) -> dict[str, Path]:
        """The chosen .esk at `path`, and beside it <stem>.trials.json and <stem>.pareto.png; refuses to replace any
        of them unless force=True."""
        path = Path(path)
        files = {"esk": path, "json": path.with_suffix(".trials.json"), "png": path.with_suffix(".pareto.png")}
        clash = [p for p in files.values() if p.exists()]
        if clash and not force:
            raise UserError(f"{clash[0]} already exists; use force=True to replace it or another path", argument="force")
        self.model.save(path, force=force)
        tmp = files["json"].with_name(f".{files['json'].name}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        tmp.replace(files["json"])
        self.plot(files["png"])
        return files


def describe(c: dict) -> str:
    """A configuration in a line."""
    w = c.get("window", "flat")
    head = "flat" if w in ("flat", None) else f"window {'x'.join(map(str, w))} stride {c['stride'][0]} pool {c['pool'][0]}"
    if c.get("mode") == "representer":
        head += f" representer M={c['representers']}"
    s = f"{head} L={c['tables']} K={c['bits']}"
    if c.get("mode") != "representer":
        s += f" P={c['hyperplanes']} s={c['taps']} w={c.get('weights', 1)}"
    s += f" {c['count_bits']}-bit {c['layout']}"
    if c.get("codebook"):
        s += f" codebook {c['codebook']}"
    if c.get("flat_branch"):
        s += f" +flat {','.join(map(str, c['flat_branch']))}"
    return s


def pareto(rows: list[dict], hard: bool) -> list[dict]:
    """Feasible trials not dominated in (validation mean up, flash down, instructions down)."""
    ok = [r for r in rows if r["state"] == "complete"]
    key = lambda r: (r["mean"], -r["cost"]["flash"], -(r["cost"]["instructions"] or 0))
    return [r for r in ok if not any(all(a >= b for a, b in zip(key(o), key(r))) and key(o) != key(r) for o in ok)]


# ---------------------------------------------------------------- the driver
def tune(teacher, x_train, y_train, x_test=None, y_test=None, *, board: str = "qemu-m4", flash: int | None = None,
         ram: int | None = None, max_instructions: int | None = None, trials: int = 40, seeds=(0, 1, 2),
         jobs: int | None = None, ray: str | None = None, storage: str | None = None, resume: bool = False,
         sampler_seed: int = 0, fixed: dict | None = None, space: dict | None = None, start_from_defaults: bool = True,
         trial_options: dict | None = None, finalists: int = 3, prune_margin: float = 0.03, samples: int = 8,
         task: str | None = None, progress=True, workdir=None, source: str | None = None, class_names=None) -> Result:
    """Search distill's options for the most accurate sketch whose measured cost fits `board` (see the module).

    teacher: a keras.Model or a path; x_train, y_train: the training data (y_train is required: the validation split
    is stratified by it); x_test, y_test: scored once, for the chosen configuration only. flash, ram: bytes for the
    model, max_instructions: per inference (any of them makes the search single-objective). trials: the study's
    total (resume=True continues a stored study up to it). seeds: each configuration is distilled with every seed.
    jobs: parallel processes (default: the machine's cores, at most trials); ray: a Ray address ("local" starts
    one) to run the trials on a cluster instead. storage: an Optuna storage URL or a .db path (default: a SQLite file
    in workdir). fixed: distill options held fixed (epochs=, aug_size=, ...); space: {option: [choices]} narrows the
    search. trial_options: distill options for the search's trials only ({"epochs": 6, "aug_size": 10000}): trials
    train shorter and only rank the configurations; the chosen one is distilled for the final with its own values.
    finalists: with trial_options, the best `finalists` trials that fit, and distill's candidates (the first trials)
    that fit, are distilled again with full training on the same split and the choice is made on those scores (0: choose on
    the shortened scores, which the report then gives as validation). progress: True prints a line per trial, False
    nothing, or a callback(event dict)."""
    from . import api
    from .errors import require
    require("edgesketch.tune", "optuna", extra="tune")
    require("edgesketch.tune", "tensorflow", "keras", "sklearn")
    import optuna
    t0 = time.time()
    seeds = [int(s) for s in (seeds if isinstance(seeds, (list, tuple, range)) else [seeds])]
    if not seeds:
        raise ConfigError("seeds=[]: give at least one seed", argument="seeds")
    if trials < 1:
        raise ConfigError(f"trials={trials}: must be at least 1", argument="trials")
    fixed, space, short = dict(fixed or {}), dict(space or {}), dict(trial_options or {})
    from .distillation import Config
    known = {f.name for f in fields(Config)} | {"layout", "window", "window_size"}
    for name in list(fixed) + list(space) + list(short):
        if name not in known or name == "seed":
            raise ConfigError(f"{name}=...: not a searchable option; use one of {', '.join(sorted(known - {'seed'}))}",
                              argument=name)
    t = api._teacher(teacher, task, y_train)
    if y_train is None:
        raise DataError("tune needs y_train: the validation split is stratified by it", argument="y_train")
    xtr = api._array(x_train, t.n_inputs, "x_train").reshape(len(x_train), -1).astype(np.float32)
    ytr = np.asarray(y_train)
    if len(ytr) != len(xtr):
        raise DataError(f"x_train has {len(xtr)} samples but y_train {len(ytr)}", argument="y_train")
    from . import boards
    boards.load(board)                                   # an unknown board lists the boards
    say = _printer(progress)
    with _workdir(workdir) as wd:
        tpath = _teacher_file(t, wd)
        bud = budget(board, t.n_inputs, t.n_outputs, flash, ram, max_instructions, wd)
        fit, val = split(xtr, ytr, t.task)
        data = {"x_fit": xtr[fit], "y_fit": ytr[fit], "x_val": xtr[val], "y_val": ytr[val]}
        spec = _jsonable({"board": board, "budget": asdict(bud), "seeds": seeds, "fixed": fixed, "space": space,
                          **({"trial_options": short} if short else {}),
                          "data": hashlib.sha256(xtr.tobytes() + ytr.tobytes()).hexdigest()[:16],
                          "teacher": tpath if t.path != "<in-memory model>" else "<in-memory>", "sampler_seed": sampler_seed})
        url = _storage_url(storage, wd)
        study = _study(optuna, url, spec, bud.hard, resume, sampler_seed)
        if start_from_defaults and not study.trials:      # distill's candidates first, cheapest first
            first = starts(t.input_shape, t.n_outputs, fixed, space)
            for params in first:
                study.enqueue_trial(params, skip_if_exists=True)
            study.set_user_attr("starts", len(first))
        if ray is not None:
            ex = _Ray(tpath, data, ray)
            jobs = max(1, min(jobs or ex.cpus, trials))
        else:
            jobs = max(1, min(jobs or os.cpu_count() or 1, trials))
            ex = _Inline(tpath, data) if jobs == 1 else _Processes(tpath, data, jobs)
        try:
            _drive(optuna, study, ex, t, spec, bud, seeds, trials, jobs, fixed, space, short, prune_margin, samples, say)
            rows = _rows(study)
            feasible = [r for r in rows if r["state"] == "complete"]
            if not feasible:
                raise _nothing_fits(rows, bud)
            if short and finalists:
                feasible = _rerun(study, ex, feasible, bud, seeds, t.task, samples, finalists, say)
        finally:
            ex.close()
        best = max(feasible, key=lambda r: (r["mean"], -r["cost"]["flash"], -(r["cost"]["instructions"] or 0), -r["number"]))
        say({"event": "final", "text": f"chosen: trial {best['number']} ({describe(best['config'])}), validation "
                                       f"{best['mean']:.4f} ± {best['spread']:.4f}; distilling it on the whole training set"})
        final, model = _final(t, xtr, ytr, x_test, y_test, best, bud, seeds, samples, source, class_names)
        final["trial_options"] = short
        final["finalists"] = [{k: r.get(k) for k in ("number", "shortened_mean", "mean", "spread")}
                              for r in feasible if "shortened_mean" in r]
    return Result(board, bud, ["accuracy"] if bud.hard else ["accuracy", "flash", "instructions"], rows, best,
                  pareto(rows, bud.hard), final, model, url, time.time() - t0)


def _printer(progress):
    if callable(progress):
        return progress
    if not progress:
        return lambda ev: None
    from .report import console
    from rich.markup import escape
    return lambda ev: console.print(escape(ev["text"]))


def _teacher_file(t, wd: Path) -> str:
    """A path workers can load the teacher from: its own file, or the in-memory model saved into the work folder."""
    if t.path != "<in-memory model>":
        return str(Path(t.path).resolve())
    p = wd / "teacher.keras"
    t.model.save(p)
    return str(p)


def _storage_url(storage, wd: Path) -> str:
    if storage is None:
        return f"sqlite:///{(wd / 'study.db').resolve()}"
    s = str(storage)
    return s if "://" in s else f"sqlite:///{Path(s).resolve()}"


def _study(optuna, url, spec, hard, resume, sampler_seed):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=sampler_seed, n_startup_trials=10, multivariate=True, group=True)
    directions = ["maximize"] if hard else ["maximize", "minimize", "minimize"]
    try:
        names = optuna.study.get_all_study_names(url)
    except Exception as e:                                   # noqa: BLE001  (a bad URL or an unreadable file)
        raise ConfigError(f"storage={url!r} cannot be opened: {str(e).splitlines()[0][:160]}", argument="storage") from None
    if STUDY in names:
        study = optuna.load_study(study_name=STUDY, storage=url, sampler=sampler)
        if not resume and study.trials:
            raise ConfigError(f"storage={url} already holds a study of {len(study.trials)} trials; pass resume=True to "
                              "continue it, or another storage", argument="resume")
        old = study.user_attrs.get("spec")
        if old is not None and old != spec:
            diff = [k for k in spec if old.get(k) != spec[k]]
            raise ConfigError(f"storage={url} holds a study of other settings ({', '.join(diff)} differ); resume it with "
                              "the same teacher, data, board, budget, seeds and options, or use another storage", argument="resume")
        return study
    if resume:
        raise ConfigError(f"resume=True but storage={url} holds no study yet; start one without resume", argument="resume")
    study = optuna.create_study(study_name=STUDY, storage=url, directions=directions, sampler=sampler)
    study.set_user_attr("spec", spec)
    return study


def _drive(optuna, study, ex, t, spec, bud, seeds, trials, jobs, fixed, space, short, margin, samples, say):
    """Ask Optuna for configurations, run them on the executor (up to `jobs` at once), tell it the results, until the
    study holds `trials` finished trials. Trials left running by an interrupted run are failed and run again."""
    from optuna.trial import TrialState
    for ft in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        if ft.state == TrialState.RUNNING:
            study.enqueue_trial(ft.params, skip_if_exists=False)
            study.tell(ft.number, state=TrialState.FAIL)
    failed = [0]               # trials of this run that raised: counted, so that a broken configuration ends the run
    invalid = [0]              # configurations distill refuses (no training): not counted, up to a limit
    done = lambda: failed[0] + sum(ft.state.is_finished() and ft.state != TrialState.FAIL
                                   and ft.user_attrs.get("state") != "invalid" for ft in study.get_trials(deepcopy=False))
    running: dict = {}
    total = trials
    while done() + len(running) < total or running:
        while len(running) < jobs and done() + len(running) < total:
            tr = study.ask()
            p = suggest(tr, t.input_shape, fixed, space)
            running[ex.submit(_job(tr.number, p, short, bud, seeds, t.task, _reference(study), margin, samples))] = tr
        for f in ex.wait(running):
            tr = running.pop(f)
            try:
                res = ex.result(f)
            except UserError:              # the machine, not the configuration (a toolchain missing, ...): stop
                study.tell(tr, state=TrialState.FAIL)
                raise
            except Exception as e:         # noqa: BLE001  (one configuration that breaks: recorded, the study goes on)
                why = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
                tr.set_user_attr("error", why)
                study.tell(tr, state=TrialState.FAIL)
                failed[0] += 1
                say({"event": "error", "text": f"trial #{tr.number} failed: {why}"})
                continue
            _tell(optuna, study, tr, res, bud)
            if res["state"] == "invalid":
                invalid[0] += 1
                if invalid[0] > 5 * total:
                    raise ConfigError(f"{invalid[0]} configurations drawn were invalid (the last: {res['reason']}); "
                                      "narrow the search (space=) to valid ones", argument="space")
            say(_line(study, res, done(), total))


def _job(number, params, short, bud, seeds, task, reference, margin, samples) -> dict:
    """What run_trial gets: a configuration, the options that shorten it, the budget, the seeds, and the finished
    trials it is pruned against (reference, margin)."""
    return {"number": number, "params": params, "short": short, "budget": asdict(bud), "seeds": seeds, "task": task,
            "reference": reference, "margin": margin, "hard": bud.hard, "samples": samples}


def _params(config: dict) -> dict:
    """A stored configuration (JSON: tuples became lists) as distill options again."""
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in config.items()}


def shortened(epochs: int | None = None, aug_size: int | None = None) -> dict:
    """trial_options for a shorter search: `epochs` per phase (refit half of them, rounded up), `aug_size` samples."""
    return ({"epochs": epochs, "refit_epochs": -(-epochs // 2)} if epochs else {}) | ({"aug_size": aug_size} if aug_size else {})


def _rerun(study, ex, feasible, bud, seeds, task, samples, n, say) -> list[dict]:
    """Shortened trials only rank configurations: the n best that fit (and the first trials, distill's candidates) are
    distilled again with full training on the same split, no pruning; these rows, scored that way, are the ones to
    choose from. Results are kept in the study (a resumed study does not run them again)."""
    top = sorted(feasible, key=lambda r: (-r["mean"], r["number"]))[:n]
    first = int(study.user_attrs.get("starts", 1))
    top += [r for r in feasible if r["number"] < first and r not in top]
    out, todo = [], {}
    for r in top:
        done = study.user_attrs.get(f"full:{r['number']}")
        if done is None:
            todo[ex.submit(_job(r["number"], _params(r["config"]), {}, bud, seeds, task, [], 1.0, samples))] = r
        else:
            out.append((r, done))
    say({"event": "finalists", "text": f"finalists: trials {', '.join(str(r['number']) for r in top)}, distilled again with "
                                       "full training (shortened trials only rank configurations)"})
    while todo:
        for f in ex.wait(todo):
            r = todo.pop(f)
            res = ex.result(f)
            res = {k: res.get(k) for k in ("state", "accs", "cost")}
            study.set_user_attr(f"full:{r['number']}", _jsonable(res))
            out.append((r, res))
    rows = []
    for r, res in sorted(out, key=lambda o: o[0]["number"]):
        if res["state"] != "complete":
            say({"event": "finalist", "text": f"finalist trial {r['number']} ({describe(r['config'])}): {res['state']} when "
                                              f"trained fully ({_cost_text(res.get('cost') or {'flash': 0})})"})
            continue
        a = res["accs"]
        rows.append(dict(r, shortened_mean=r["mean"], accs=a, mean=float(np.mean(a)), spread=float(np.std(a)), cost=res["cost"]))
        say({"event": "finalist", "text": f"finalist trial {r['number']} ({describe(r['config'])}): validation "
                                          f"{r['mean']:.4f} shortened, {rows[-1]['mean']:.4f} ± {rows[-1]['spread']:.4f} full"})
    if not rows:
        raise ConfigError("no finalist fits the budget when trained fully; run with finalists=0 or without "
                          "trial_options", argument="trial_options")
    return rows


def _reference(study) -> list[dict]:
    out = []
    for ft in study.get_trials(deepcopy=False):
        a = ft.user_attrs
        if a.get("state") == "complete":
            out.append({"acc": float(np.mean(a["accs"])), "flash": a["cost"]["flash"], "instructions": a["cost"]["instructions"]})
    return out


def _tell(optuna, study, tr, res, bud):
    from optuna.trial import TrialState
    for k in ("state", "accs", "cost", "config", "seconds", "reason", "model_bytes", "worker"):
        if k in res:
            tr.set_user_attr(k, res[k])
    cost = res.get("cost")
    over = 0.0 if res["state"] == "complete" else 1.0
    if cost:
        over = max([cost["flash"] / bud.flash - 1, cost["ram"] / bud.ram - 1]
                   + ([(cost["instructions"] or INFEASIBLE) / bud.instructions - 1] if bud.instructions else []))
        over = over if res["state"] != "complete" else min(over, 0.0)
        over = max(over, 1e-6) if res["state"] == "infeasible" else over
    tr.set_user_attr("over", float(over))
    tr.set_constraint("budget", float(over))           # > 0: over the budget (TPE samples away from it)
    if res["state"] in ("invalid", "pruned"):
        study.tell(tr, state=TrialState.PRUNED)
        return
    acc = float(np.mean(res["accs"])) if res["accs"] else 0.0
    if bud.hard:
        study.tell(tr, [acc])
    else:
        study.tell(tr, [acc, float(cost["flash"]), float(cost["instructions"] if cost["instructions"] is not None else INFEASIBLE)])


def _line(study, res, n, total) -> dict:
    if res["state"] == "invalid":
        return {"event": "invalid", "n": n, "total": total, "result": res,
                "text": f"(#{res['number']}, not counted: {describe(res['config'])}: {res.get('reason', '')})"}
    c = res.get("cost") or {}
    what = {"complete": "fits", "infeasible": "over budget", "pruned": "pruned", "invalid": "invalid"}[res["state"]]
    acc = f"validation {np.mean(res['accs']):.4f}" if res["accs"] else "not distilled:"
    cost = _cost_text(c) if c else res.get("reason", "")
    best = [r for r in _rows(study) if r["state"] == "complete"]
    b = max(best, key=lambda r: r["mean"]) if best else None
    tail = f"; best so far: trial {b['number']} {b['mean']:.4f}" if b else "; nothing fits yet"
    text = f"trial {n} of {total} (#{res['number']}): {describe(res['config'])}: {acc} {cost} [{what}] ({res['seconds']:.0f} s){tail}"
    return {"event": "trial", "n": n, "total": total, "result": res, "text": text}


def _rows(study) -> list[dict]:
    rows = []
    for ft in study.get_trials(deepcopy=False):
        a = ft.user_attrs
        if "state" not in a:
            continue
        accs = list(a.get("accs") or [])
        rows.append({"number": ft.number, "state": a["state"], "config": a.get("config"), "accs": accs,
                     "mean": float(np.mean(accs)) if accs else None, "spread": float(np.std(accs)) if accs else None,
                     "cost": a.get("cost"), "seconds": a.get("seconds"), "reason": a.get("reason"),
                     "model_bytes": a.get("model_bytes"), "worker": a.get("worker")})
    return rows


def _nothing_fits(rows, bud) -> UserError:
    sized = [r for r in rows if r.get("cost")]
    where = f"{bud.flash:,} bytes of flash and {bud.ram:,} of RAM" + (f" and {bud.instructions:,} instructions" if bud.instructions else "")
    if not sized:
        return ConfigError(f"no sketch of {len(rows)} trials could be made for {bud.board}; widen the search", argument="board")
    s = min(sized, key=lambda r: (r["cost"]["flash"], r["cost"]["ram"]))
    return ConfigError(f"no sketch fits {where} on {bud.board}: the smallest of {len(rows)} tried, trial {s['number']} "
                       f"({describe(s['config'])}), needs {_cost_text(s['cost'], True)}; raise the budget, narrow the "
                       "search to smaller sketches or pick a bigger board", argument="flash")


def _cost_text(c: dict, long: bool = False) -> str:
    if not c.get("ram"):       # the tables alone, never distilled
        return f"{c['flash']:,} bytes of flash for its tables alone" if long else f"tables {c['flash']:,} B"
    if not long:
        return f"flash {c['flash']:,} RAM {c['ram']:,}" + (f" instr {c['instructions']:,}" if c.get("instructions") else "")
    return (f"{c['flash']:,} bytes of flash and {c['ram']:,} of RAM" + (f" and {c['instructions']:,} instructions"
            if c.get("instructions") else "") + f" ({c['how']})")


def _final(t, xtr, ytr, x_test, y_test, best, bud, seeds, samples, source, class_names):
    """The chosen configuration on the whole training set, every seed; test scores once; the first seed's model,
    measured again."""
    from . import api
    p = _params(best["config"])
    layout, window = p.pop("layout"), p.pop("window")
    window = window if isinstance(window, str) else tuple(window)
    models, tests = [], []
    for seed in seeds:
        m = api.distill(t, xtr, ytr, x_test=x_test, y_test=y_test, window=window, progress=False, source=source,
                        class_names=class_names, meta={"tune": {"trial": best["number"], "layout": layout, "board": bud.board}},
                        **dict(p, seed=seed))
        models.append(m)
        if x_test is not None and y_test is not None:
            tests.append(score(m.sketch, m.x_test, np.asarray(y_test)))
    m = models[0]
    cost = measure(m.sketch, layout, bud, m.quantize(xtr[:samples]))
    final = {"seeds": seeds, "validation": best["accs"], "validation_mean": best["mean"], "validation_spread": best["spread"],
             "test": tests, "test_mean": float(np.mean(tests)) if tests else None,
             "test_spread": float(np.std(tests)) if tests else None, "cost": asdict(cost), "fits": cost.fits(bud),
             "layout": layout, "config": best["config"]}
    return final, m
