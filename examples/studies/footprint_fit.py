"""Fit export's flash and RAM estimate (edgesketch.export.footprint) to firmware actually linked, and say how far off
it is: the figures behind every board's [footprint] (boards/*.toml).

    python examples/studies/footprint_fit.py measure            # build every sketch of the matrix for every emulated
                                                                # board (PlatformIO, offline), store what was linked
    python examples/studies/footprint_fit.py fit                # fit each board's coefficients, print [footprint]
    python examples/studies/footprint_fit.py check              # the boards' [footprint] against the linked firmware:
                                                                # the error table (largest error, bytes and %)
    options: --boards qemu-m4,qemu-uno  --only NAME-REGEX  --store DIR (default build/study/footprint)

measure: for each emulated board one PlatformIO project (boards/<board>.toml as it is, DEBUG included where the board
keeps it), rebuilt for every (sketch, layout) of the matrix: tests/test_codegen.py's SKETCHES (flat, windowed, 4-bit,
int16, codebook; learned and representer) in both layouts, and a hold-out set the fit never sees (the digits CNN
default's shape, sensor windows, examples/studies/cost_fit.py's structures). Per build it stores the ELF's text, data
and bss, every symbol's size (nm), and the stack: es_model.c compiled again with the build's own command plus
-fstack-usage (and -fcallgraph-info on gcc 12; LTO off) gives the frame of every model function and who calls whom.
Per board once: the firmware around a model that does nothing (edgesketch.bench.device.trivial_files) gives the
firmware's flash and static RAM; its sources compiled with -fstack-usage give the stack it takes outside the model.
A build the linker refuses is stored as such, with the bytes over (edgesketch.build.overflow).

fit: for each board, the model's code is what the linked firmware holds beyond the firmware's own flash and the
model's const data (codegen.footprint: exact); its features (codegen.footprint(...).code) are fitted by a linear
programme: non-negative bytes per feature, an upper bound on every build of the matrix, as tight as possible (least
total slack). The model's stack beyond its buffers is fitted the same way. Prints each board's [footprint] table.

check: edgesketch.export.footprint with the boards' [footprint] as they are, against every linked build (matrix and
hold-out): flash = firmware + model, RAM = static + stack, per board family; the largest error in bytes and percent
of the firmware's total, and whether the estimate is an upper bound. Sketches the linker refused must be refused by
the estimate too.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _src_from_argv() -> Path:
    """--src DIR: measure, fit and check another checkout (its edgesketch, firmware, templates, tests, boards): a
    snapshot that others' edits of a shared working tree cannot change under a long run."""
    argv = sys.argv[1:]
    for i, a in enumerate(argv):
        if a == "--src" and i + 1 < len(argv):
            return Path(argv[i + 1]).resolve()
        if a.startswith("--src="):
            return Path(a.split("=", 1)[1]).resolve()
    return ROOT


SRC = _src_from_argv()
sys.path.insert(0, str(SRC))
sys.path.insert(0, str(SRC / "tests"))

STORE = ROOT / "build/study/footprint"
EMULATED = ["qemu-m4", "qemu-m3", "qemu-m7", "qemu-m55", "qemu-m0", "qemu-rv32", "qemu-lx106", "qemu-uno"]
FAMILY = {"qemu-m4": "Thumb-2 (M3/M4/M7/M55)", "qemu-m3": "Thumb-2 (M3/M4/M7/M55)", "qemu-m7": "Thumb-2 (M3/M4/M7/M55)",
          "qemu-m55": "Thumb-2 (M3/M4/M7/M55)", "qemu-m0": "Thumb-1 (M0)", "qemu-rv32": "RV32", "qemu-lx106": "Xtensa lx106",
          "qemu-uno": "AVR"}
LAYOUTS = ("unrolled", "compact")
PER_MODEL = ("es_input", "es_scores", "es_bits", "es_buckets")     # es_app.c's arrays sized by the model


# ---------------------------------------------------------------- the sketches
def matrix() -> dict[str, dict]:
    """tests/test_codegen.py's SKETCHES: random_sketch arguments by name."""
    import test_codegen
    return dict(test_codegen.SKETCHES)


def holdout() -> dict[str, dict]:
    """Sketches the fit never sees: the digits CNN default's shape, sensor windows, cost_fit.py's structures."""
    from edgesketch.sketch import Window
    out = {
        "digits-cnn-default": dict(L=8, K=6, P=48, taps=8, thresholds=2, weights=7, seed=3,
                                   windows=[(Window.over((8, 8, 1), 3, 1), 8, 6, 32, 9)]),
        "vibration-1500": dict(L=0, seed=41, windows=[(Window.over((1500, 1), 9, 8), 8, 5, 16, 9)]),
        "accel-64x3": dict(L=0, seed=40, windows=[(Window.over((64, 3), 9, 2), 8, 5, 16, 9)]),
        "flat-32-L8K4": dict(D=32, C=5, L=8, K=4, seed=11),
    }
    sys.path.insert(0, str(SRC / "examples/studies"))
    import cost_fit
    for name, kw in cost_fit.cases():
        out["cost_fit " + name] = kw
    return out


def make(name: str, kw: dict):
    from edgesketch import esk
    from edgesketch.sketch import random_sketch
    import test_codegen
    sk = test_codegen.make(name) if name in test_codegen.SKETCHES else random_sketch(**kw)
    esk.assign_id(sk)
    return sk


def source_hash() -> str:
    """The generated C's inputs and the firmware: a measurement is stale when they change."""
    h = hashlib.sha256()
    for d in ("firmware/model", "firmware/core", "firmware/arduino", "firmware/bsp", "codegen_templates"):
        for p in sorted((SRC / d).rglob("*")):
            if p.is_file():
                h.update(p.relative_to(SRC).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:12]


def commit() -> str:
    """The commit SRC was made from (a snapshot: --commit, else git rev-parse in SRC or this checkout)."""
    for d in (SRC, ROOT):
        r = subprocess.run(["git", "-C", str(d), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip():
            return r.stdout.strip() + ("" if d == SRC else " (of the checkout; --src is a copy)")
    return "?"


def c_hash(files: dict[str, str]) -> str:
    """The generated C of one build (codegen.py is not in source_hash: a change there that alters the C shows here)."""
    return hashlib.sha256("".join(files[k] for k in sorted(files)).encode()).hexdigest()[:12]


# ---------------------------------------------------------------- tools
def tool(board, name: str) -> str:
    from edgesketch import boards
    return boards.load(board).platformio.toolchain + name


def symbols(board: str, path: Path) -> dict[str, list]:
    """{name: [nm type, size]} of every sized symbol (suffixes such as .constprop.0 / .lto_priv.3 kept)."""
    out = subprocess.run([tool(board, "nm"), "-S", str(path)], capture_output=True, text=True, check=True).stdout
    syms = {}
    for f in map(str.split, out.splitlines()):
        if len(f) == 4:
            syms[f[3]] = [f[2], int(f[1], 16)]
    return syms


def pio(project: Path, verbose: bool = False) -> subprocess.CompletedProcess:
    from edgesketch import build
    build.ensure_platformio(build.default_core_dir())
    return subprocess.run([sys.executable, "-m", "platformio", "run", "-d", str(project)] + (["-v"] if verbose else []),
                          env=build.pio_env(build.default_core_dir()), capture_output=True, text=True, timeout=900)


def compile_commands(log: str) -> dict[str, list[str]]:
    """Source file -> its compile command, from a verbose `pio run`."""
    cmds = {}
    for line in log.splitlines():
        if " -c " in line and ("gcc" in line.split(" ", 1)[0] or "g++" in line.split(" ", 1)[0]):
            argv = shlex.split(line)
            cmds[argv[-1]] = argv
    return cmds


def stack_usage(argv: list[str], project: Path, src: str, workdir: Path) -> dict:
    """Compile `src` again with its build command plus -fstack-usage (and -fcallgraph-info=su where gcc has it), LTO
    off: {"su": {function: bytes}, "dynamic": [functions whose frame is not static], "edges": [[caller, callee]]}."""
    workdir.mkdir(parents=True, exist_ok=True)
    obj = workdir / (Path(src).name + ".o")
    out = []
    skip = False
    for a in argv[1:]:
        if skip:
            skip = False
            continue
        if a == "-o":
            skip = True
            continue
        if a.startswith("-flto") or a in ("-fno-fat-lto-objects", "-fuse-linker-plugin", "-MMD"):
            continue
        out.append(a)
    gcc12 = not argv[0].startswith("avr-")
    extra = ["-fstack-usage"] + (["-fcallgraph-info=su"] if gcc12 else [])
    r = subprocess.run([argv[0], *out, *extra, "-o", str(obj)], cwd=project, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"stack-usage compile of {src} failed: {r.stderr[-2000:]}")
    su, dynamic = {}, []
    for line in obj.with_suffix(".su").read_text().splitlines():
        where, n, kind = line.rsplit("\t", 2)
        fn = where.rsplit(":", 1)[-1]
        su[fn] = int(n)
        if kind != "static":
            dynamic.append(fn)
    edges = []
    ci = obj.with_suffix(".ci")
    if ci.is_file():
        for m in re.finditer(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"', ci.read_text()):
            edges.append([m.group(1), m.group(2)])
    defined = symbols_of_object(argv[0], obj)
    return {"su": su, "dynamic": dynamic, "edges": edges, "defined": defined}


def symbols_of_object(cc: str, obj: Path) -> dict[str, list]:
    nm = cc[:-3] + "nm"
    out = subprocess.run([nm, "-S", str(obj)], capture_output=True, text=True, check=True).stdout
    return {f[3]: [f[2], int(f[1], 16)] for f in map(str.split, out.splitlines()) if len(f) == 4}


# ---------------------------------------------------------------- measure
def write_model(project: Path, files: dict[str, str]) -> None:
    from edgesketch import codegen
    lib = project / "lib" / "es_model"
    for name, text in {**codegen.runtime_files(), **files}.items():
        (lib / name).write_text(text)


def link(board: str, project: Path, files: dict[str, str]) -> dict:
    """Build the project with these model files: the ELF's sizes and symbols, or the linker's refusal."""
    from edgesketch import build
    from edgesketch.errors import UserError
    write_model(project, files)
    try:
        elf = build.run_pio(project, build.default_core_dir())
    except build.DoesNotFit as e:
        return {"status": "overflow", "error": str(e)[:500], "over": [dataclasses.asdict(o) for o in e.overflows]}
    except UserError as e:
        return {"status": "error", "error": str(e)[:500]}
    s = build.elf_size(elf)
    return {"status": "ok", "text": s.text, "data": s.data, "bss": s.bss, "syms": symbols(board, elf)}


def firmware_frames(board: str, project: Path, cmds: dict[str, list[str]], workdir: Path) -> dict:
    """The firmware's own sources compiled with -fstack-usage: their frames and calls (for the stack outside the
    model)."""
    out = {"su": {}, "dynamic": [], "edges": []}
    for src, argv in cmds.items():
        if "es_model" in src or "/ArduinoCore" in src or "framework" in src:
            continue
        if not src.endswith((".c", ".cpp")):
            continue
        try:
            r = stack_usage(argv, project, src, workdir / "fw")
        except RuntimeError:
            continue
        out["su"].update(r["su"])
        out["dynamic"] += r["dynamic"]
        out["edges"] += r["edges"]
    return out


def measure(boards_: list[str], only: str | None, store: Path) -> None:
    from edgesketch import build, codegen
    from edgesketch.bench import device
    store.mkdir(parents=True, exist_ok=True)
    src = source_hash()
    cases = [("matrix", n, kw) for n, kw in matrix().items()] + [("holdout", n, kw) for n, kw in holdout().items()]
    if only:
        cases = [c for c in cases if re.search(only, c[1])]
    for board in boards_:
        path = store / f"{board}.jsonl"
        done = set()
        if path.is_file():
            for line in path.read_text().splitlines():
                r = json.loads(line)
                if r.get("source") == src:
                    done.add((r["kind"], r.get("sketch"), r.get("layout")))
        work = store / "work" / board
        project = work / "project"
        t0 = time.time()
        with path.open("a") as fh:
            def put(rec):
                fh.write(json.dumps({**rec, "board": board, "source": src}) + "\n")
                fh.flush()

            if not (project / "platformio.ini").is_file() or ("firmware", None, None) not in done:
                if work.exists():
                    shutil.rmtree(work)
                sk0 = make(cases[0][1], cases[0][2])
                build.write_project(board, codegen.generate(sk0, "compact"), project, force=True)
                r = pio(project, verbose=True)
                if r.returncode:
                    raise SystemExit(f"{board}: the first build failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
                cmds = compile_commands(r.stdout)
                (work / "commands.json").write_text(json.dumps(cmds))
                # the firmware around a model that does nothing: its flash and static RAM
                trivial = {}
                for D, C in ((16, 2), (64, 10), (1500, 5)):
                    rec = link(board, project, device.trivial_files(D, C))
                    trivial[f"{D}x{C}"] = {k: rec.get(k) for k in ("status", "text", "data", "bss")} | {
                        "per_model": {n: rec["syms"][n][1] for n in PER_MODEL if n in rec.get("syms", {})},
                        "model": {n: v for n, v in rec.get("syms", {}).items() if n.split(".")[0] in
                                  ("es_predict_q", "es_debug_q", "es_argmax", "es_predict", "es_in_scale", "es_in_zero")}}
                put({"kind": "firmware", "trivial": trivial, "stack": firmware_frames(board, project, cmds, work),
                     "src": str(SRC), "commit": commit()})
                done.add(("firmware", None, None))
            cmds = json.loads((work / "commands.json").read_text())
            model_cmd = next(v for k, v in cmds.items() if k.endswith("es_model.c"))
            for kind, name, kw in cases:
                for layout in LAYOUTS:
                    if (kind, name, layout) in done:
                        continue
                    sk = make(name, kw)
                    files = codegen.generate(sk, layout)
                    rec = link(board, project, files)
                    if rec["status"] == "ok" or rec["status"] == "overflow":
                        st = stack_usage(model_cmd, project, next(k for k in cmds if k.endswith("es_model.c")),
                                         work / "su")
                        rec["stack"] = st
                    put({"kind": kind, "sketch": name, "layout": layout, "c": c_hash(files), **rec})
                    print(f"{board:10s} {kind:7s} {layout:8s} {name:45s} {rec['status']:8s} "
                          f"{rec.get('text', 0) + rec.get('data', 0):8,} {time.time() - t0:7.0f} s", flush=True)


# ---------------------------------------------------------------- reading the measurements
def load(store: Path, board: str) -> tuple[dict, list[dict]]:
    """The board's firmware record and its builds (the latest of each sketch and layout) of the sources of its latest
    firmware record (measure --src: a snapshot)."""
    path = store / f"{board}.jsonl"
    if not path.is_file():
        raise SystemExit(f"no measurements for {board} in {store}: run `footprint_fit.py measure --boards {board}`")
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    fws = [r for r in recs if r["kind"] == "firmware"]
    if not fws:
        raise SystemExit(f"{board}: no firmware record in {path}: measure again")
    fw = fws[-1]
    builds = {(r["kind"], r["sketch"], r["layout"]): r for r in recs if r["kind"] != "firmware" and r["source"] == fw["source"]}
    return fw, list(builds.values())


def _base(name: str) -> str:
    """A function's name without its file (gcc's .ci: src/es_app.c:f) and its clone number (.su says
    f.constprop where .ci says f.constprop.0); clones stay apart from their original (es_predict_q.part calls
    es_predict_q's body, es_predict_q calls it)."""
    return re.sub(r"\.\d+$", "", name.rsplit(":", 1)[-1])


def _named(su: dict, name: str) -> list[str]:
    """The functions of `su` that are `name` or a clone of it."""
    return [k for k in su if k == name or k.startswith(name + ".")]


def call_depth(st: dict, entry: str, call: int = 0) -> int | None:
    """Deepest stack from calling `entry`: its frame and its deepest callee's, recursively (-fstack-usage frames;
    edges from -fcallgraph-info, or on avr-gcc 5, which has none, every other function of the unit as a callee).
    call: bytes a call itself pushes beyond the callee's frame (the return address on AVR). None: entry unknown."""
    su = {}
    for k, v in st["su"].items():
        su[_base(k)] = max(su.get(_base(k), 0), v)
    if entry not in su:
        return None
    edges: dict[str, set] = {}
    if st["edges"]:
        for a, b in st["edges"]:
            edges.setdefault(_base(a), set()).add(_base(b))
    else:
        others = {f for f in su if f not in ("es_predict_q", "es_debug_q", "es_predict", "es_argmax")}
        edges = {e: others for e in ("es_predict_q", "es_debug_q")}

    def depth(f, seen):
        if f in seen:
            raise ValueError(f"recursion through {f}")
        return call + su.get(f, 0) + max([depth(g, seen | {f}) for g in edges.get(f, ()) if g in su] or [0])
    return depth(entry, frozenset())


def model_stack(rec: dict, board: str) -> int:
    """The model's deepest stack: es_predict_q's or es_debug_q's, with their callees."""
    call = 2 if board == "qemu-uno" else 0        # an AVR call pushes the return address outside the callee's frame
    return max(call_depth(rec["stack"], e, call) or 0 for e in ("es_predict_q", "es_debug_q"))   # (clones: callees)


def per_model_arrays(rec: dict) -> int:
    return sum(rec["syms"][n][1] for n in PER_MODEL if n in rec["syms"])


# ---------------------------------------------------------------- the firmware around the model
# An interrupt's entry: the C handler (its frames come from -fstack-usage) and what the hardware or the assembly entry
# pushes before it (Cortex-M: 8 words and up to 4 bytes of alignment; RV32: the handler saves its registers itself;
# Xtensa: FRAME in startup/xtensa_start.S). AVR's firmware stack was measured on the device (examples/studies/uno_ram.py).
ISR = {"arm-none-eabi-": ("es_uart_irq_handler", 36), "riscv64-unknown-elf-": ("es_trap_handler", 0),
       "xtensa-lx106-elf-": ("es_xtensa_irq", 64)}
AVR_STACK = 72      # examples/studies/uno_ram.py: 52 bytes outside es_predict_q at the deepest point + 20 for an interrupt


def min_stack(board: str) -> int:
    """The stack the linker reserves: ES_MIN_STACK of firmware/ld/sections.ld, for boards that include it."""
    from edgesketch import boards
    if "ld/sections.ld" not in boards.load(board).firmware.linker_includes:
        return 0
    m = re.search(r"ES_MIN_STACK = (\d+)([KM]?);", (SRC / "firmware/ld/sections.ld").read_text())
    return int(m.group(1)) * {"": 1, "K": 1024, "M": 1 << 20}[m.group(2)]


def firmware_stack(board: str, fw: dict) -> tuple[int, str]:
    """The stack the firmware holds outside the model at its deepest (where it calls es_predict_q or es_debug_q: the
    frames on the way from the reset handler), plus an interrupt taken there."""
    from edgesketch import boards
    prefix = boards.load(board).platformio.toolchain
    if prefix == "avr-":
        return AVR_STACK, "examples/studies/uno_ram.py (QEMU pmemsave of SRAM)"
    st = fw["stack"]
    su = {}
    for k, v in st["su"].items():
        su[_base(k)] = max(su.get(_base(k), 0), v)
    edges: dict[str, set] = {}
    for a, b in st["edges"]:
        edges.setdefault(_base(a), set()).add(_base(b))

    def to(f, target, seen=frozenset()):
        """Largest sum of frames on a call path from f down to a function that calls `target` (None: no path)."""
        if f in seen:
            return None
        here = su.get(f, 0)
        if target in edges.get(f, ()):
            return here
        best = [to(g, target, seen | {f}) for g in edges.get(f, ())]
        best = [b for b in best if b is not None]
        return here + max(best) if best else None

    root = "es_reset_handler" if "es_reset_handler" in su else "main"
    # es_measure calls es_predict_q through a pointer; es_do_debug calls es_debug_q
    paths = [to(root, m) for m in _named(su, "es_measure")]
    paths = [p + su[m] for p, m in zip(paths, _named(su, "es_measure")) if p is not None]
    paths += [to(root, d) for d in _named(su, "es_debug_q") + ["es_debug_q"]]
    outside = max(v for v in paths if v is not None)
    handler, pushed = ISR[prefix]
    isr = pushed + call_depth(st, handler)
    return outside + isr, f"-fstack-usage: {outside} bytes of frames down to the model's call + {isr} for an interrupt"


# ---------------------------------------------------------------- fit
def lp_upper(X, y, lower=None, weight=None):
    """Non-negative coefficients c with X c >= y for every row, least total (weighted) slack: scipy's HiGHS."""
    import numpy as np
    from scipy.optimize import linprog
    X, y = np.asarray(X, float), np.asarray(y, float)
    w = np.ones(len(y)) if weight is None else np.asarray(weight, float)
    cost = (w[:, None] * X).sum(0)
    bounds = [(lo, None) for lo in (lower if lower is not None else [0] * X.shape[1])]
    r = linprog(cost, A_ub=-X, b_ub=-y, bounds=bounds, method="highs")
    if not r.success:
        raise RuntimeError(f"linear programme failed: {r.message}")
    return r.x


DSP = ("qemu-m4", "qemu-m7", "qemu-m55")      # the cores with the DSP extension (ES_DSP: SXTAB16 / SMLAD paths)


def rows(board: str, builds: list[dict], kinds=("matrix",)):
    """(record, codegen.footprint of its sketch, sketch) of every linked build of these kinds."""
    from edgesketch import codegen
    cases = {**matrix(), **holdout()}
    out = []
    for r in builds:
        if r["kind"] not in kinds or r["status"] != "ok":
            continue
        sk = make(r["sketch"], cases[r["sketch"]])
        out.append((r, codegen.footprint(sk, r["layout"], dsp=board in DSP), sk))
    return out


def arrays_bytes(sk, align: int) -> int:
    """es_app.c's per-model arrays, each padded to `align` (DEBUG's included: boards that cap them measure without)."""
    up = lambda n: -(-n // align) * align
    return up(sk.n_inputs) + 4 * sk.n_outputs + up(sk.n_debug_bits) + up(2 * sk.n_debug_buckets)


def _up(v: float) -> float:
    """A coefficient as written into the toml: rounded up to 0.1, so that the bound still holds."""
    return math.ceil(round(v * 10, 6)) / 10


def fit_code(data, layout: str, fw_flash: int, defaults: dict):
    """Bytes of code per feature of `layout`: the least total (relative) slack over every build, never under one."""
    import numpy as np
    sel = [(r, f) for r, f, _ in data if r["layout"] == layout]
    names = list(defaults)
    X = np.array([[f["code"].get(k, 0) for k in names] for _, f in sel], float)
    y = np.array([r["text"] + r["data"] - fw_flash - f["data"] - f["data_ram"] for r, f in sel], float)
    seen = X.any(0)
    c = np.array(list(defaults.values()), float)        # a feature no build has: the conservative default
    if seen.any():
        c[seen] = lp_upper(X[:, seen], y, weight=[1 / max(1, r["text"] + r["data"]) for r, _ in sel])
    return {k: _up(v) for k, v in zip(names, c)}, [n for n, ok in zip(names, seen) if not ok]


def fit_stack(data, layout: str, board: str, defaults: dict):
    """Bytes of stack per feature of `layout` (its buffers src, neg and hash weigh at least their bytes)."""
    import numpy as np
    sel = [(r, f) for r, f, _ in data if r["layout"] == layout]
    names = [k for k in defaults if k != "base"]
    X = np.array([[1] + [f["stack"][k] for k in names] for _, f in sel], float)
    y = np.array([model_stack(r, board) for r, _ in sel], float)
    lower = [0] + [1 if k in ("src", "neg", "hash") else 0 for k in names]
    c = lp_upper(X, y, lower=lower, weight=1 / np.maximum(1, y))
    return {k: _up(v) for k, v in zip(["base"] + names, c)}


def estimate_code(coef: dict, f: dict) -> float:
    return sum(coef.get(k, 0.0) * v for k, v in f["code"].items())


def estimate_stack(coef: dict, f: dict) -> float:
    return coef.get("base", 0.0) + sum(coef.get(k, 0.0) * v for k, v in f["stack"].items())


def fit_board(board: str, store: Path, say=print, folds: int = 5) -> dict:
    """Every [footprint] value of an emulated board, fitted to every build measured (the test matrix and the other
    structures), and a `folds`-fold cross-validation by sketch: the code and stack fitted without a fifth of the
    sketches, estimated on them (how the estimate does on structures it was not fitted to)."""
    import numpy as np
    from edgesketch import boards
    b = boards.load(board)
    fw, builds = load(store, board)
    harvard = b.platformio.toolchain == "avr-"
    align = 1 if harvard else 4
    triv = [t for t in fw["trivial"].values() if t["status"] == "ok"]
    fw_flash = max(t["text"] + t["data"] for t in triv)
    data = rows(board, builds, kinds=("matrix", "holdout"))
    out = {"firmware_flash": fw_flash, "dsp": board in DSP, "harvard": harvard, "align": align,
           "min_stack": min_stack(board), "n": len(data)}
    # static RAM besides the per-model arrays (and the const data AVR copies into RAM)
    cap = b.firmware.defines.get("ES_DEBUG_RAM")
    static = []
    for r, f, sk in data:
        arr = arrays_bytes(sk, align)
        if cap is not None and sk.n_debug_bits + 2 * sk.n_debug_buckets > int(str(cap).rstrip("uU")):
            arr = -(-sk.n_inputs // align) * align + 4 * sk.n_outputs
        static.append(r["data"] + r["bss"] - arr - (f["data_ram"] if harvard else 0))
    for t in triv:
        static.append(t["data"] + t["bss"] - sum(t["per_model"].values()))
    out["firmware_static"] = max(static)
    out["firmware_stack"], out["stack_how"] = firmware_stack(board, fw)
    out["firmware_ram"] = out["firmware_static"] + out["firmware_stack"]
    for layout in LAYOUTS:
        out[layout], unseen = fit_code(data, layout, fw_flash, boards.DEFAULT_CODE[layout])
        out[f"stack_{layout}"] = fit_stack(data, layout, board, boards.DEFAULT_STACK[layout])
        sel = [(r, f) for r, f, _ in data if r["layout"] == layout]
        code = np.array([r["text"] + r["data"] - fw_flash - f["data"] - f["data_ram"] for r, f in sel])
        err = np.array([estimate_code(out[layout], f) for _, f in sel]) - code
        serr = np.array([estimate_stack(out[f"stack_{layout}"], f) - model_stack(r, board) for r, f in sel])
        say(f"{board} {layout}: {len(sel)} builds; code: estimate - linked {err.min():+.0f} .. {err.max():+.0f} B "
            f"(median {np.median(err):+.0f}); stack: {serr.min():+.0f} .. {serr.max():+.0f} B"
            + (f"; no build has {', '.join(unseen)} (conservative defaults)" if unseen else ""))
    # cross-validation by sketch
    names = sorted({r["sketch"] for r, _, _ in data})
    fold = {n: int(hashlib.sha256(n.encode()).hexdigest(), 16) % folds for n in names}
    cv = []
    for k in range(folds):
        train = [d for d in data if fold[d[0]["sketch"]] != k]
        test = [d for d in data if fold[d[0]["sketch"]] == k]
        for layout in LAYOUTS:
            coef, _ = fit_code(train, layout, fw_flash, boards.DEFAULT_CODE[layout])
            scoef = fit_stack(train, layout, board, boards.DEFAULT_STACK[layout])
            for r, f, sk in test:
                if r["layout"] != layout:
                    continue
                flash = r["text"] + r["data"]
                est = fw_flash + f["data"] + f["data_ram"] + estimate_code(coef, f)
                cv.append({"board": board, "family": FAMILY[board], "sketch": r["sketch"], "layout": layout,
                           "kind": r["kind"], "flash": flash, "est_flash": round(est), "model_flash": flash - fw_flash,
                           "est_model_flash": round(est) - fw_flash, "stack": model_stack(r, board),
                           "est_stack": round(estimate_stack(scoef, f))})
    out["cv"] = cv
    return out


# Boards whose model code the fit borrows from a board of the same compiler and flags (Thumb-2 with the DSP
# extension, arm-none-eabi-gcc -O2): their own firmware is measured, their model figures are the donor's, and `check`
# measures how far off that is on the builds measured there (a subset: measure --only).
BORROW = {"qemu-m7": "qemu-m4", "qemu-m55": "qemu-m4"}


def borrow(board: str, donor: dict, store: Path) -> dict:
    """The [footprint] values of `board`: its firmware measured (the trivial builds and -fstack-usage), the model's
    code and stack coefficients of `donor` (a fit_board result)."""
    from edgesketch import boards
    fw, builds = load(store, board)
    triv = [t for t in fw["trivial"].values() if t["status"] == "ok"]
    out = dict(donor, n=donor["n"], cv=[], borrowed=BORROW[board], dsp=board in DSP, min_stack=min_stack(board))
    out["firmware_flash"] = max(t["text"] + t["data"] for t in triv)
    out["firmware_static"] = max(t["data"] + t["bss"] - sum(t["per_model"].values()) for t in triv)
    out["firmware_stack"], out["stack_how"] = firmware_stack(board, fw)
    out["firmware_ram"] = out["firmware_static"] + out["firmware_stack"]
    boards.load(board)
    return out


def fit(boards_: list[str], store: Path, write: bool = False) -> dict:
    result = {}
    for board in [b for b in boards_ if b not in BORROW] + [b for b in boards_ if b in BORROW]:
        if board in BORROW:
            donor = result.get(BORROW[board]) or fit_board(BORROW[board], store, say=lambda *_: None)
            result[board] = borrow(board, donor, store)
        else:
            result[board] = fit_board(board, store)
        print(toml_block(board, result[board]))
    print(f"\ncross-validation: the code and stack fitted without a fifth of the sketches, estimated on that fifth")
    report([r for v in result.values() for r in v["cv"]], figures=(("flash (firmware + model)", "flash", "flash"),
                                                                  ("flash, the model alone", "model_flash", "model_flash"),
                                                                  ("the model's stack", "stack", "stack")))
    if write:
        write_tomls(result)
    return result


# ---------------------------------------------------------------- check
def check(boards_: list[str], store: Path, kinds=("matrix", "holdout")) -> list[dict]:
    """export.footprint with the boards' [footprint] as they are, against every build: a row per build."""
    from edgesketch import boards, export
    out = []
    cases = {**matrix(), **holdout()}
    for board in boards_:
        b = boards.load(board)
        fw, builds = load(store, board)
        fw_stack = firmware_stack(board, fw)[0]
        ms = min_stack(board)
        for r in builds:
            if r["kind"] not in kinds or r["status"] not in ("ok", "overflow"):
                continue
            sk = make(r["sketch"], cases[r["sketch"]])
            fp = export.footprint(sk, r["layout"], b)
            row = {"board": board, "family": FAMILY[board], "kind": r["kind"], "sketch": r["sketch"],
                   "layout": r["layout"], "status": r["status"], "est_flash": fp.total_flash, "est_ram": fp.total_ram,
                   "refused": fp.total_flash > b.flash_bytes or fp.total_ram > b.ram_bytes}
            if r["status"] == "ok":
                stack = model_stack(r, board)
                flash, static = r["text"] + r["data"], r["data"] + r["bss"]
                row.update(flash=flash, ram=static + max(ms, fw_stack + stack), model_flash=flash - b.footprint.firmware_flash,
                           est_model_flash=fp.flash, stack=stack, est_stack=fp.stack, static=static,
                           est_static=fp.total_ram - max(fp.min_stack, fp.firmware_stack + fp.stack),
                           fits=flash <= b.flash_bytes and static + max(ms, fw_stack + stack) <= b.ram_bytes)
            out.append(row)
    return out


FIGURES = (("flash (firmware + model)", "flash", "flash"), ("flash, the model alone", "model_flash", "model_flash"),
           ("static RAM", "static", "static"), ("the model's stack", "stack", "stack"), ("RAM (static + stack)", "ram", "ram"))


def report(rows_: list[dict], figures=FIGURES) -> None:
    """The error table: per board family and kind of build, the largest error of the estimate in bytes and percent."""
    def line(name, rs, key, base):
        errs = [(r[f"est_{key}"] - r[key], r) for r in rs]
        if not errs:
            return
        over, r_over = max(errs, key=lambda e: e[0])
        under, r_under = min(errs, key=lambda e: e[0])
        pct = lambda e, r: 100.0 * e / max(1, r[base])
        worst = max(errs, key=lambda e: abs(pct(*e)))
        bound = ("upper bound" if under >= 0 else f"under by up to {-under:,} B ({pct(under, r_under):+.1f}%: "
                 f"{r_under['sketch']}, {r_under['layout']}, {r_under['board']})")
        print(f"  {name:26s} {len(rs):4d}  {over:+7,} B {pct(over, r_over):+6.1f}%  {pct(*worst):+7.1f}% ({worst[0]:+,} B)  "
              f"{bound}")

    fams = list(dict.fromkeys(r["family"] for r in rows_))
    print("estimate - linked firmware (% of the linked figure): the largest over-estimate, the largest error in %, and "
          "the largest under-estimate")
    print(f"  {'family / figure':26s} {'n':>4s}  {'largest over':>17s}  {'largest |%|':>18s}")
    for fam in fams:
        for kind, label in (("matrix", "the test matrix (tests/test_codegen.py SKETCHES)"),
                            ("holdout", "more structures (digits CNN, sensor windows, cost_fit.py's)")):
            rs = [r for r in rows_ if r["family"] == fam and r["kind"] == kind and r.get("status", "ok") == "ok"]
            if not rs:
                continue
            print(f"{fam}, {label}: {', '.join(sorted({r['board'] for r in rs}))}")
            for name, key, base in figures:
                line(name, rs, key, base)
    if all("status" not in r for r in rows_):
        return
    refused = [r for r in rows_ if r["status"] == "overflow"]
    missed = [r for r in refused if not r["refused"]]
    false = [r for r in rows_ if r["status"] == "ok" and r["refused"] and r.get("fits")]
    print(f"the linker refused {len(refused)} builds; the estimate refused {len(refused) - len(missed)} of them"
          + (f", let through {len(missed)}: " + ", ".join(f"{r['board']} {r['sketch']} {r['layout']}" for r in missed)
             if missed else ""))
    print(f"the estimate refused {len(false)} builds that linked and fit"
          + (": " + ", ".join(f"{r['board']} {r['sketch']} {r['layout']} ({r['est_flash']:,} / {r['est_ram']:,})"
                              for r in false[:12]) if false else ""))


# ---------------------------------------------------------------- the board files
TWIN = {"uno": "qemu-uno", "bluepill_f103c8": "qemu-m3", "nucleo_f401re": "qemu-m4", "nrf52840_dk": "qemu-m4",
        "teensy41": "qemu-m7", "pico": "qemu-m0", "esp32c3": "qemu-rv32", "esp8266": "qemu-lx106", "esp32": "qemu-lx106",
        "esp32s3": "qemu-lx106"}
SCRIPT = "python examples/studies/footprint_fit.py"


def _num(v) -> str:
    return str(int(v)) if float(v) == int(v) else f"{v:g}"


def _coef_table(name: str, coef: dict, note: str) -> str:
    return f"[footprint.{name}]    # {note}\n" + "".join(f"{k} = {_num(v)}\n" for k, v in coef.items())


def toml_block(board: str, v: dict, real: str | None = None) -> str:
    """The [footprint] of an emulated board (real: of the real board `real`, its twin's model figures)."""
    src = f"{SCRIPT} fit --write"
    if real is None and v.get("borrowed"):
        head = (f"# [footprint]: export's estimate on this board (edgesketch/export.py): the firmware measured here, the "
                f"model's code and\n# stack those fitted on {v['borrowed']} (the same compiler and flags) by {src}; how "
                f"far off that is here: {SCRIPT} check.\n[footprint]\n"
                f"firmware_flash = {v['firmware_flash']}   # text + data of the firmware around a model that does nothing\n"
                f"firmware_ram = {v['firmware_ram']}       # {v['firmware_static']} static (data + bss, the per-model arrays "
                f"apart) + firmware_stack\n"
                f"firmware_stack = {v['firmware_stack']}     # {v['stack_how']}\n")
    elif real is None:
        head = (f"# [footprint]: export's estimate on this board (edgesketch/export.py), fitted to {v['n']} firmware builds "
                f"linked here\n# ({src}; how far off it is: {SCRIPT} check).\n[footprint]\n"
                f"firmware_flash = {v['firmware_flash']}   # text + data of the firmware around a model that does nothing\n"
                f"firmware_ram = {v['firmware_ram']}       # {v['firmware_static']} static (data + bss, the per-model arrays "
                f"apart) + firmware_stack\n"
                f"firmware_stack = {v['firmware_stack']}     # {v['stack_how']}\n")
    else:
        head = (f"# [footprint]: the model's figures (code, stack) are those of its emulated twin {board}, fitted by {src}\n"
                f"# (-O2; Arduino cores build with -Os, usually smaller). firmware_*: the Arduino firmware needs PlatformIO's\n"
                f"# {real} platform (internet) to measure; these are assumptions, not measurements.\n[footprint]\n"
                f"firmware_flash = 16384\nfirmware_ram = 11264\n")
    head += (f"min_stack = {v['min_stack'] if real is None else 0}\n"
             + ("dsp = true\n" if v["dsp"] else "") + ("harvard = true\n" if v["harvard"] else "")
             + (f"align = {v['align']}\n" if v["align"] != 4 else ""))
    return (head + _coef_table("unrolled", v["unrolled"], "bytes of code per feature (edgesketch.codegen.footprint)")
            + _coef_table("compact", v["compact"], "the same, compact layout")
            + _coef_table("stack_unrolled", v["stack_unrolled"], "bytes of the model's stack per feature, unrolled")
            + _coef_table("stack_compact", v["stack_compact"], "the same, compact layout"))


def _replace_footprint(text: str, block: str) -> str:
    """The board file with its [footprint] (and [footprint.*], and the comment lines just above) replaced by block."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, l in enumerate(lines) if l.startswith("[footprint]")), None)
    if start is None:
        return text.rstrip("\n") + "\n\n" + block
    while start > 0 and lines[start - 1].startswith("#") and "[footprint]" in "".join(lines[max(0, start - 8):start]):
        start -= 1
    end = start + 1
    while end < len(lines) and not (lines[end].startswith("[") and not lines[end].startswith("[footprint")):
        end += 1
    while end > start and lines[end - 1].strip() == "":
        end -= 1
    return "".join(lines[:start]) + block + "".join(lines[end:])


def write_tomls(result: dict) -> None:
    from edgesketch import boards
    for name in boards.names():
        b = boards.load(name)
        if name in result:
            block = toml_block(name, result[name])
        elif TWIN.get(name) in result:
            block = toml_block(TWIN[name], result[TWIN[name]], real=b.platformio.platform)
            if name == "uno":     # the Uno's firmware was measured on a stand-in (examples/studies/uno_ram.py): keep it
                fm = b.footprint
                block = block.replace("firmware_flash = 16384\nfirmware_ram = 11264\n",
                                      f"firmware_flash = {fm.firmware_flash}\nfirmware_ram = {fm.firmware_ram}\n"
                                      f"firmware_stack = {fm.firmware_stack}\n")
        else:
            continue
        for root in dict.fromkeys((ROOT, SRC)):           # this checkout's boards, and the snapshot's (--src)
            path = root / "boards" / f"{name}.toml"
            path.write_text(_replace_footprint(path.read_text(), block))
            print(f"wrote {path}")
        boards._cache.clear()
        boards.load(name)          # it still parses


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["measure", "fit", "check"])
    ap.add_argument("--boards", default=",".join(EMULATED))
    ap.add_argument("--only", help="sketch names matching this regex")
    ap.add_argument("--store", default=str(STORE))
    ap.add_argument("--src", help="a checkout to measure, fit and check instead of this one (e.g. a snapshot of HEAD: "
                    "git archive HEAD | tar -x -C DIR)")
    ap.add_argument("--write", action="store_true", help="fit: write each board's [footprint] into boards/*.toml "
                    "(real boards: their emulated twin's model figures)")
    a = ap.parse_args(argv)
    boards_ = a.boards.split(",")
    if a.what == "measure":
        measure(boards_, a.only, Path(a.store))
    elif a.what == "fit":
        fit(boards_, Path(a.store), a.write)
    else:
        report(check(boards_, Path(a.store)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
