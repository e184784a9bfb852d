"""Write a PlatformIO project for a board (atomically), run `pio run` offline, find toolchains, read ELF sizes.

Offline PlatformIO (docs: shared notes platformio-offline.md) needs two local pieces:
  1. the core's SCons tool: `ensure_platformio(core_dir)` packs the pip-installed SCons as `tool-scons` and installs it
     into that core dir once (later calls return at once);
  2. a dev-platform: emulated boards use the one in firmware/platformio (cross compilers from PATH). Each project
     carries its own copy in `platform-<hash>/` (the hash is of its contents) and names it `platform =
     file://platform-<hash>`: relative, so the project can be moved, and PlatformIO installs it into the core dir
     under that unique spec, so projects of different edgesketch versions never share a stale copy.
Real boards use the standard platforms (espressif32, ststm32, ...) with framework = arduino: building them needs the
PlatformIO registry (internet) the first time.

PlatformIO always runs with PLATFORMIO_CORE_DIR set (never ~/.platformio) and telemetry off.
"""
from __future__ import annotations

import configparser
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from . import codegen
from .boards import Board, load
from .errors import UserError
from .paths import firmware_dir

MODEL_LIB = "es_model"                # lib/es_model/: the generated model, found by PlatformIO's LDF
CORE_FILES = ("core/es_app.c", "core/es_app.h", "core/es_bsp.h", "core/es_proto.c", "core/es_proto.h")
ENTRY_FILES = {"baremetal": ("core/es_main.c", "core/es_ring.c", "core/es_ring.h"),
               "arduino": ("arduino/main.cpp",)}
SRC_WARNINGS = ("-Wall", "-Wextra", "-Werror")   # our own sources, bare-metal builds
C_STD = "-std=c99"
PIO_TIMEOUT = 900                     # seconds for one `pio run`
# Debian packages of the cross toolchains, by compiler prefix (for error messages)
TOOLCHAIN_APT = {"arm-none-eabi-": "gcc-arm-none-eabi libnewlib-arm-none-eabi",
                 "riscv64-unknown-elf-": "gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf",
                 "xtensa-lx106-elf-": "gcc-xtensa-lx106", "avr-": "gcc-avr avr-libc binutils-avr"}
_ELF_MACHINE_PREFIX = {40: "arm-none-eabi-", 243: "riscv64-unknown-elf-", 94: "xtensa-lx106-elf-", 83: "avr-"}


# ---------------------------------------------------------------- PlatformIO core
def default_core_dir() -> Path:
    """Where edgesketch keeps its PlatformIO core when the caller names none (not ~/.platformio)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgesketch" / "platformio-core"


def pio_env(core_dir: str | os.PathLike) -> dict[str, str]:
    """Environment for running PlatformIO: this core dir, no telemetry, no update checks, no progress bars."""
    env = dict(os.environ)
    env.update(PLATFORMIO_CORE_DIR=str(Path(core_dir).resolve()), PLATFORMIO_SETTING_ENABLE_TELEMETRY="No",
               PLATFORMIO_SETTING_CHECK_PLATFORMIO_INTERVAL="3650", PLATFORMIO_DISABLE_PROGRESSBAR="true",
               PLATFORMIO_NO_ANSI="true")
    return env


def _pio() -> list[str]:
    return [sys.executable, "-m", "platformio"]


def _scons_version_wanted() -> str:
    """The tool-scons version this PlatformIO asks for (6.2.0: ~4.41101.0 -> 4.41101.0)."""
    try:
        from platformio.dependencies import get_core_dependencies
        req = get_core_dependencies()["tool-scons"]
    except Exception:  # pragma: no cover - another PlatformIO layout
        req = "~4.41101.0"
    return req.lstrip("~^=<> ")


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _scons_ok(pkg: Path, version: str) -> bool:
    try:
        meta = json.loads((pkg / ".piopm").read_text())
    except (OSError, ValueError):
        return False
    return (meta.get("spec", {}).get("owner") == "platformio" and meta.get("version") == version
            and (pkg / "scons.py").is_file() and (pkg / "SCons" / "__init__.py").is_file())


def ensure_platformio(core_dir: str | os.PathLike) -> Path:
    """Make `pio run` work offline in this core dir: install a tool-scons packed from the pip-installed SCons.

    Idempotent: when the package is already there this only reads one small JSON file. Returns the package folder.
    """
    core = Path(core_dir).resolve()
    version = _scons_version_wanted()
    pkg = core / "packages" / "tool-scons"
    if _scons_ok(pkg, version):
        return pkg
    try:
        import SCons
    except ImportError:
        raise UserError("the SCons Python package is missing: pip install scons==4.11.1") from None
    with _locked(core / ".edgesketch.lock"):
        if _scons_ok(pkg, version):
            return pkg
        with tempfile.TemporaryDirectory(prefix="tool-scons-", dir=core) as tmp:
            src = Path(tmp) / "tool-scons"
            shutil.copytree(Path(SCons.__file__).parent, src / "SCons",
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "docbook-xsl*"))
            (src / "scons.py").write_text(
                "import os, sys\n"
                "sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))\n"
                "import SCons.Script\n"
                "SCons.Script.main()\n")
            (src / "package.json").write_text(json.dumps(
                {"name": "tool-scons", "version": version,
                 "description": f"SCons {SCons.__version__} from PyPI, packed by edgesketch for offline PlatformIO"}))
            if pkg.exists():
                shutil.rmtree(pkg)
            proc = subprocess.run(_pio() + ["pkg", "install", "--global", "--tool", src.as_uri()],
                                  env=pio_env(core), capture_output=True, text=True, timeout=300)
            if proc.returncode != 0 or not (pkg / ".piopm").is_file():
                raise UserError(f"could not install tool-scons into {core}: {_last_error(proc.stdout + proc.stderr)}")
        meta = json.loads((pkg / ".piopm").read_text())
        meta["spec"]["owner"] = "platformio"      # else the core does not recognise it and asks the registry
        meta["spec"]["uri"] = None
        (pkg / ".piopm").write_text(json.dumps(meta))
        (pkg / ".piokeep").touch()                # never pruned as "unnecessary"
    if not _scons_ok(pkg, version):
        raise UserError(f"tool-scons in {pkg} is not usable after installing it")
    return pkg


def _last_error(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if "error" in ln.lower():
            return ln
    return lines[-1] if lines else "no output"


# ---------------------------------------------------------------- toolchains
def toolchain_apt(prefix: str) -> str:
    return TOOLCHAIN_APT.get(prefix, f"the {prefix}gcc cross compiler")


def check_toolchain(prefix: str, apt: str | None = None) -> str:
    """Path of `<prefix>gcc`; missing -> UserError naming the apt package."""
    path = shutil.which(prefix + "gcc")
    if not path:
        raise UserError(f"{prefix}gcc is not on PATH: apt-get install {apt or toolchain_apt(prefix)}")
    return path


# ---------------------------------------------------------------- the project
def _platform_hash() -> str:
    h = hashlib.sha256()
    root = firmware_dir() / "platformio"
    for p in sorted(root.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def _ini_flag(flag: str) -> str:
    """A -D flag as platformio.ini's build_flags needs it (quotes escaped, so the C macro keeps them)."""
    return flag.replace('"', '\\"')


def _qemu_command(board: Board, env_name: str) -> str:
    q = board.qemu
    argv = q.argv(f".pio/build/{env_name}/firmware.elf", f".pio/{Path(q.plugin).stem}.so" if q.plugin else None)
    argv += ["-serial", "tcp:127.0.0.1:4444,server=on,wait=on,nodelay=on", "-display", "none", "-monitor", "none"]
    return " ".join(argv)


def _copy(src_rel: str, dst: Path, seen: dict[str, str]) -> None:
    src = firmware_dir() / src_rel
    if not src.is_file():
        raise UserError(f"firmware file {src_rel} is missing from {firmware_dir()}")
    if dst.name in seen and seen[dst.name] != src_rel:
        raise UserError(f"firmware files {seen[dst.name]} and {src_rel} would both be {dst.name} in the project")
    seen[dst.name] = src_rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def project_files(board: Board) -> dict[str, str]:
    """Project-relative destination -> firmware/-relative source, for every firmware file this board needs."""
    fw = board.firmware
    out: dict[str, str] = {}
    for rel in CORE_FILES + ENTRY_FILES[fw.entry] + fw.bsp + ((fw.startup,) if fw.startup else ()):
        out[f"src/{Path(rel).name}"] = rel
    for rel in ((fw.linker_script,) if fw.linker_script else ()) + fw.linker_includes:
        out[f"ld/{Path(rel).name}"] = rel
    if board.qemu is not None and board.qemu.plugin:
        out[f"qemu/{Path(board.qemu.plugin).name}"] = board.qemu.plugin
    return out


def refuse_existing(path: str | os.PathLike, force: bool) -> Path:
    """path, resolved; an existing path without force -> UserError naming the argument `force` (the CLI: --force)."""
    p = Path(path).resolve()
    if p.exists() and not force:
        raise UserError(f"{p} already exists: choose another path or pass force=True to replace it", argument="force")
    return p


@contextmanager
def atomic_dir(out_dir: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder next to out_dir; when the block ends without an error it replaces out_dir whole
    (rename), else it is removed and out_dir is left as it was. An existing out_dir -> UserError unless force."""
    out = refuse_existing(out_dir, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}-{time.monotonic_ns()}"
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_project(board: Board | str, model_files: dict[str, str], out_dir: str | os.PathLike,
                  force: bool = False, model_id: str | None = None) -> Path:
    """Write a complete PlatformIO project for `board` with the generated model into out_dir; return out_dir.

    model_files: {"es_model.h": text, "es_model.c": text} (edgesketch.codegen.generate); the runtime they run on
    (codegen.runtime_files) goes beside them in lib/es_model/. Everything is written into a temporary folder next to
    out_dir, then renamed into place. An existing out_dir -> UserError unless force.
    """
    board = load(board) if isinstance(board, str) else board
    out = Path(out_dir).resolve()
    if "es_model.h" not in model_files or not any(n.endswith(".c") for n in model_files):
        raise UserError("the model files must include es_model.h and its .c file (edgesketch.codegen.generate)")
    for name in model_files:
        if not name or Path(name).name != name or name.startswith("."):
            raise UserError(f"model file name {name!r} must be a plain file name")
    with atomic_dir(out, force) as tmp:
        seen: dict[str, str] = {}
        for dst, src in project_files(board).items():
            _copy(src, tmp / dst, seen)
        lib = tmp / "lib" / MODEL_LIB
        lib.mkdir(parents=True)
        for name, text in {**codegen.runtime_files(), **model_files}.items():
            (lib / name).write_text(text, encoding="utf-8")

        local = None
        if board.platformio.local:
            local = f"platform-{_platform_hash()}"
            shutil.copytree(firmware_dir() / "platformio", tmp / local,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            platform = f"file://{local}"
        else:
            platform = board.platformio.platform
        fw = board.firmware
        ctx = dict(board=board, env_name=board.env_name, platform=platform, local_platform=local,
                   model_id=model_id, build_flags=[_ini_flag(f) for f in board.define_flags()],
                   src_flags=list(SRC_WARNINGS) if fw.entry == "baremetal" else [],
                   c_flags=[C_STD, *fw.c_flags], ld_dir="ld",
                   qemu_command=_qemu_command(board, board.env_name) if board.qemu else "")
        (tmp / "platformio.ini").write_text(codegen.render("project/platformio.ini.j2", **ctx), encoding="utf-8")
        (tmp / "README.md").write_text(codegen.render("project/README.md.j2", **ctx), encoding="utf-8")
        (tmp / ".gitignore").write_text(".pio/\n")
    return out


# ---------------------------------------------------------------- pio run
@dataclass(frozen=True)
class ProjectInfo:
    env_name: str
    toolchain: str | None
    toolchain_apt: str | None


def read_project(project_dir: str | os.PathLike) -> ProjectInfo:
    ini = Path(project_dir) / "platformio.ini"
    if not ini.is_file():
        raise UserError(f"{project_dir} is not a PlatformIO project (no platformio.ini)")
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(ini, encoding="utf-8")
    envs = [s[4:] for s in cp.sections() if s.startswith("env:")]
    default = cp.get("platformio", "default_envs", fallback="").split(",")[0].strip()
    env_name = default or (envs[0] if envs else "")
    if not env_name:
        raise UserError(f"{ini} has no [env:...] section")
    sec = f"env:{env_name}"
    return ProjectInfo(env_name, cp.get(sec, "custom_toolchain", fallback=None),
                       cp.get(sec, "custom_toolchain_apt", fallback=None))


def run_pio(project_dir: str | os.PathLike, core_dir: str | os.PathLike, target: str | None = None,
            timeout: float = PIO_TIMEOUT) -> Path:
    """`pio run [-t target]` in project_dir with PLATFORMIO_CORE_DIR=core_dir; returns the firmware ELF path.

    The full output goes to .pio/edgesketch-pio.log in the project. Failure -> UserError with the first error line.
    """
    project = Path(project_dir).resolve()
    info = read_project(project)
    if info.toolchain:
        check_toolchain(info.toolchain, info.toolchain_apt)
    ensure_platformio(core_dir)
    cmd = _pio() + ["run", "-d", str(project)] + (["-t", target] if target else [])
    try:
        proc = subprocess.run(cmd, env=pio_env(core_dir), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise UserError(f"pio run in {project} took longer than {timeout:.0f} s") from None
    log = project / ".pio" / "edgesketch-pio.log"
    log.parent.mkdir(exist_ok=True)
    log.write_text(f"$ {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    if proc.returncode != 0:
        text = proc.stdout + "\n" + proc.stderr
        over = overflow(text, _map_text(project / ".pio" / "build" / info.env_name / "firmware.map"))
        if over:
            raise DoesNotFit(over, info.env_name, log)
        hint = " (PlatformIO needs internet to install this board's platform the first time)" \
            if "HTTPClientError" in text or "Could not resolve" in text else ""
        raise UserError(f"pio run failed in {project}: {_last_error(text)}{hint}; log: {log}")
    elf = project / ".pio" / "build" / info.env_name / "firmware.elf"
    if not elf.is_file():
        raise UserError(f"pio run succeeded but {elf} is missing; log: {log}")
    return elf


# ---------------------------------------------------------------- a firmware too big for its board
@dataclass(frozen=True)
class Overflow:
    """One memory region the linker could not fit: its name, the kind of memory, the section that did not fit (if
    the linker named it) and the bytes over (None when the linker's message gives no number and no map tells it)."""
    region: str
    memory: str            # "flash" or "RAM"
    section: str | None
    over: int | None
    note: str | None = None

    def text(self) -> str:
        where = (f"{self.memory} (the linker's region {self.region}" + (f", section {self.section}" if self.section else "")
                 + (f": {self.note}" if self.note else "") + ")")
        return f"{self.over:,} bytes over in {where}" if self.over is not None else f"too big for {where}"


_CODE_REGIONS = ("flash", "text", "rom", "irom", "iram", "instr", "code", "itcm")


def _memory(region: str) -> str:
    r = region.lower()
    return "flash" if any(k in r for k in _CODE_REGIONS) and "dram" not in r else "RAM"


def _map_text(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def _map_regions(map_text: str | None) -> dict[str, tuple[int, int]]:
    """region -> (origin, length), from a linker map's Memory Configuration."""
    out: dict[str, tuple[int, int]] = {}
    if not map_text:
        return out
    block = map_text.split("Memory Configuration", 1)[-1].split("Linker script and memory map", 1)[0]
    for m in re.finditer(r"^(\S+)\s+0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)", block, re.M):
        out[m.group(1)] = (int(m.group(2), 16), int(m.group(3), 16))
    return out


def _map_symbol(map_text: str | None, name: str) -> int | None:
    m = re.search(rf"^\s+0x([0-9a-fA-F]+)\s+{re.escape(name)} = ", map_text or "", re.M)
    return int(m.group(1), 16) if m else None


def overflow(log: str, map_text: str | None = None) -> list[Overflow]:
    """What a failed link says about memory that overflowed, from its output (and the linker map, when there is one):
    GNU ld's "region `FLASH' overflowed by N bytes" and "section `.text' will not fit in region `FLASH'", AVR's
    "address 0x80093b of firmware.elf section `.bss' is not within region `data'" (N from the map's regions),
    firmware/ld/sections.ld's "RAM is too small for .data, .bss and the stack" (N from the map's _ebss and _estack)
    and PlatformIO's "The program size (N bytes) is greater than maximum allowed (M bytes)". [] when the failure is
    something else."""
    found: dict[str, Overflow] = {}
    sections: dict[str, str] = {}

    def put(region: str, section: str | None, over: int | None, note: str | None = None) -> None:
        old = found.get(region)
        section = section or sections.get(region) or (old.section if old else None)
        if old is not None and over is None:
            over = old.over
        found[region] = Overflow(region, _memory(region), section, over, note or (old.note if old else None))

    for m in re.finditer(r"section [`'](\S+?)' will not fit in region [`'](\S+?)'", log):
        sections.setdefault(m.group(2), m.group(1))
        put(m.group(2), m.group(1), None)
    for m in re.finditer(r"region [`'](\S+?)' overflowed by (\d+) bytes?", log):
        put(m.group(1), None, int(m.group(2)))
    regions = _map_regions(map_text)
    for m in re.finditer(r"address 0x([0-9a-fA-F]+) of \S+ section [`'](\S+?)' is not within region [`'](\S+?)'", log):
        end, (origin, length) = int(m.group(1), 16), regions.get(m.group(3), (None, None))
        over = end - (origin + length) if origin is not None and end > origin + length else None
        if m.group(3) not in found or over is not None and (found[m.group(3)].over or 0) < over:
            put(m.group(3), m.group(2), over)
    if "RAM is too small for .data, .bss and the stack" in log:
        ebss, estack, need = (_map_symbol(map_text, s) for s in ("_ebss", "_estack", "ES_MIN_STACK"))
        over = need - (estack - ebss) if None not in (ebss, estack, need) else None
        put("RAM", None, over, f".data and .bss leave less than the {need:,}-byte stack reserve" if need else
            ".data and .bss leave too little for the stack")
    for m in re.finditer(r"The (program|data) size \((\d+) bytes\) is greater than maximum allowed \((\d+) bytes\)", log):
        region = "flash" if m.group(1) == "program" else "RAM"
        put(region, None, int(m.group(2)) - int(m.group(3)))
    return list(found.values())


class DoesNotFit(UserError):
    """The linker refused the firmware: it is too big for the board's memory. `overflows`: what overflowed."""

    ADVICE = {"flash": "layout=compact, fewer tables or hash bits, count_bits=4 or shared rows (codebook=) make the model "
                       "smaller",
              "RAM": "RAM holds the input (a byte an input), DEBUG's hash bits and buckets of every position (a board's "
                     "ES_DEBUG_RAM caps them) and the model's stack (its padded window; the other layout may take less)"}

    def __init__(self, overflows: list[Overflow], board: str, log: Path | None = None):
        self.overflows, self.board = list(overflows), board
        kinds = sorted({o.memory for o in self.overflows})
        super().__init__(f"the firmware for {board} does not fit: " + " and ".join(o.text() for o in self.overflows)
                         + "; " + "; ".join(self.ADVICE[k] for k in kinds) + ", or pick a bigger board (edgesketch boards)"
                         + (f"; log: {log}" if log else ""), argument="layout")

    @property
    def over(self) -> int | None:
        """Bytes over, all regions together (None when the linker did not say)."""
        total = [o.over for o in self.overflows]
        return None if None in total else sum(total)


# ---------------------------------------------------------------- sizes
@dataclass(frozen=True)
class ElfSize:
    text: int
    data: int
    bss: int

    @property
    def flash(self) -> int:
        return self.text + self.data

    @property
    def ram(self) -> int:
        return self.data + self.bss


def elf_prefix(elf: str | os.PathLike) -> str:
    """The cross-toolchain prefix for an ELF, from its e_machine field."""
    head = Path(elf).read_bytes()[:20]
    if head[:4] != b"\x7fELF":
        raise UserError(f"{elf} is not an ELF file")
    machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    if machine not in _ELF_MACHINE_PREFIX:
        raise UserError(f"{elf}: no known cross toolchain for ELF machine {machine}")
    return _ELF_MACHINE_PREFIX[machine]


def elf_size(elf: str | os.PathLike) -> ElfSize:
    """text, data and bss of an ELF, from the matching toolchain's `size` (Berkeley format)."""
    prefix = elf_prefix(elf)
    tool = shutil.which(prefix + "size")
    if not tool:
        raise UserError(f"{prefix}size is not on PATH: apt-get install {toolchain_apt(prefix)}")
    proc = subprocess.run([tool, "-B", str(elf)], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise UserError(f"{prefix}size failed on {elf}: {_last_error(proc.stderr)}")
    fields = proc.stdout.splitlines()[1].split()
    return ElfSize(int(fields[0]), int(fields[1]), int(fields[2]))
