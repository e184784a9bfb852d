"""Boards as data: read boards/<name>.toml into typed records. Board facts live there, never in `if board == ...`.

Schema of one board file (all sizes in bytes):

    name, description, core          strings; `core` is what HELLO reports (e.g. "cortex-m4")
    kind                             "emulated" (QEMU, builds offline) or "real" (Arduino, `pio run -t upload`)
    default                          true on exactly one board (qemu-m4)
    flash_bytes, ram_bytes
    [platformio]  platform, board, framework     real: a standard platform (espressif32, ...) + arduino
                  toolchain, toolchain_apt       emulated: platform = "local" (firmware/platformio), the compiler
                                                 prefix on PATH and the Debian package(s) that provide it
                  arduino_core, arduino_board    emulated with the Arduino entry: the Debian package holding the
                                                 Arduino core (e.g. arduino-core-avr) and the board id in its boards.txt
    [serial]      baud, monitor_speed
    [counter]     kind: "cycles" | "instructions" | "none"
                  source: "systick" | "dwt" | "minstret" | "mcycle" | "ccount" | "esp_cycle_count" | "timer1" |
                          "icount_plugin" (QEMU counts the instructions: [qemu] plugin) | "none"
                  clock_hz (SysTick, CCOUNT, Timer1), scale_num, scale_den: cost = round(ticks * num / den)
    [firmware]    entry: "baremetal" | "arduino"; bsp (files under firmware/); startup; linker_script;
                  linker_includes; cpu_flags (CPU, ABI and C-library specs: used to compile, assemble and
                  link), c_flags (C only), link_flags, libs (linked after the objects) (lists); defines (table of
                  strings, e.g. ES_PROTO_MAX_BODY for boards with little RAM)
    [qemu]        binary, apt, machine, args (list), uart (text), load ("-kernel" or "-bios": how QEMU takes the
                  ELF), icount_shift (absent: no -icount), plugin (a TCG plugin's C source under firmware/, built
                  and loaded by edgesketch.emulate), idle_sleeps (default true: the waiting firmware sleeps and
                  QEMU uses almost no host CPU)                                        emulated boards only
    [compile_check]  cc, flags, defines: an offline cross-compile check of the core     real boards only
    [footprint]   what `export` assumes around the model (edgesketch/export.py: flash = firmware_flash + the model's
                  const data + its code; RAM = firmware_ram - firmware_stack + the firmware's per-model arrays +
                  max(min_stack, firmware_stack + the model's stack)): firmware_flash, firmware_ram (bytes the firmware
                  takes besides the model: its code and data; its static RAM and its stack outside the model),
                  firmware_stack (the stack part of firmware_ram), min_stack (stack the linker reserves whatever the
                  need), dsp (the core has the DSP extension: the model's SXTAB16/SMLAD paths), harvard (const data
                  not marked ES_ROM is copied into RAM: AVR), align (static arrays start at multiples of it: default
                  4, AVR 1). Sub-tables: [footprint.unrolled] and [footprint.compact], bytes of code per feature of
                  the model in that layout, [footprint.stack_unrolled] and [footprint.stack_compact], bytes of its
                  stack per feature (the features: edgesketch.codegen.footprint; unknown names are an error, missing
                  ones the conservative defaults DEFAULT_CODE / DEFAULT_STACK). Fitted to linked firmware by
                  examples/studies/footprint_fit.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:   # Python 3.10: the same parser, from PyPI (tomli)
    import tomli as tomllib

from .errors import UserError
from .paths import boards_dir

KINDS = ("emulated", "real")
ENTRIES = ("baremetal", "arduino")
COUNTER_KINDS = {"none": 0, "cycles": 1, "instructions": 2}       # the HELLO counter-kind codes
COUNTER_SOURCES = ("none", "systick", "dwt", "minstret", "mcycle", "ccount", "esp_cycle_count", "timer1", "icount_plugin")


@dataclass(frozen=True)
class PlatformIOEnv:
    platform: str                  # "local" = the dev-platform shipped in firmware/platformio
    board: str | None = None
    framework: str | None = None
    toolchain: str | None = None   # compiler prefix on PATH, e.g. "arm-none-eabi-" (local platform)
    toolchain_apt: str | None = None
    arduino_core: str | None = None   # local platform, Arduino entry: Debian package of the Arduino core
    arduino_board: str | None = None  # ... and the board id in its boards.txt

    @property
    def local(self) -> bool:
        return self.platform == "local"


@dataclass(frozen=True)
class SerialSettings:
    baud: int
    monitor_speed: int


@dataclass(frozen=True)
class Counter:
    kind: str                      # "cycles" | "instructions" | "none"
    source: str                    # which hardware counter the BSP reads
    clock_hz: int | None = None    # the counter's clock (SysTick boards)
    scale_num: int = 1             # cost = round(ticks * scale_num / scale_den)
    scale_den: int = 1

    @property
    def kind_code(self) -> int:
        return COUNTER_KINDS[self.kind]

    @property
    def scale(self) -> Fraction:
        return Fraction(self.scale_num, self.scale_den)


@dataclass(frozen=True)
class Firmware:
    entry: str                     # "baremetal" (core/es_main.c) or "arduino" (arduino/main.cpp)
    bsp: tuple[str, ...] = ()      # paths under firmware/
    startup: str | None = None
    linker_script: str | None = None
    linker_includes: tuple[str, ...] = ()
    cpu_flags: tuple[str, ...] = ()
    c_flags: tuple[str, ...] = ()
    link_flags: tuple[str, ...] = ()
    libs: tuple[str, ...] = ()
    defines: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Qemu:
    binary: str
    apt: str                       # Debian package with the binary
    machine: str
    args: tuple[str, ...] = ()
    uart: str = ""
    icount_shift: int | None = 0   # None: no -icount (the virtual clock follows host time)
    load: str = "-kernel"          # how QEMU takes the ELF: -kernel, or -bios (AVR)
    plugin: str | None = None      # TCG plugin source under firmware/ (edgesketch.emulate builds and loads it)
    idle_sleeps: bool = True       # the idle firmware sleeps (False: QEMU keeps a host core busy while it waits)

    @property
    def icount(self) -> str | None:
        """-icount value: instructions << shift is the virtual time in ns; no sleeping, no host-time alignment."""
        return None if self.icount_shift is None else f"shift={self.icount_shift},align=off,sleep=off"

    def argv(self, elf: str | Path, plugin_so: str | Path | None = None) -> list[str]:
        """QEMU command line without the -serial/-display/-monitor part (edgesketch.emulate adds it). plugin_so: the
        built plugin (required when the board has one)."""
        icount = [] if self.icount is None else ["-icount", self.icount]
        if self.plugin and plugin_so is None:
            raise UserError(f"{self.binary} needs the plugin {self.plugin} built (edgesketch.emulate.plugin_library)")
        if self.plugin and "," in f"{plugin_so}{elf}":
            raise UserError(f"QEMU cannot take a plugin or firmware path with a comma: {plugin_so}, {elf}")
        plugin = ["-plugin", f"{plugin_so},elf={elf}"] if self.plugin else []
        return [self.binary, "-M", self.machine, *self.args, *icount, *plugin, self.load, str(elf)]


@dataclass(frozen=True)
class CompileCheck:
    cc: str
    flags: tuple[str, ...] = ()
    defines: dict[str, str] = field(default_factory=dict)

    @property
    def cxx(self) -> str:
        return self.cc[:-3] + "g++" if self.cc.endswith("gcc") else self.cc


# Bytes per feature of edgesketch.codegen.footprint, for a board whose toml has no [footprint] sub-table: the largest
# of the fitted emulated boards' (examples/studies/footprint_fit.py), so that such a board is refused rather than
# overflowed. Filled from the fit; every feature codegen.footprint reports has a value here.
DEFAULT_CODE = {
    "unrolled": {"model": 2000.0, "class": 64.0, "branch": 800.0, "window": 600.0, "pad": 400.0, "pool": 400.0,
                 "region": 200.0, "branch_class": 64.0, "tap": 12.0, "tap_weight": 8.0, "reg_tap": 12.0,
                 "reg_tap_weight": 8.0, "preload": 8.0,
                 "smlad_word": 12.0, "smlad_term": 12.0, "hyperplane": 16.0, "bit_set": 8.0, "table": 24.0,
                 "table_class": 24.0, "table_class16": 24.0, "table_lane": 16.0, "table_plane": 24.0, "table_book": 24.0},
    "compact": {"model": 2000.0, "class": 64.0, "branch": 800.0, "window": 600.0, "pad": 400.0, "pool": 400.0,
                "region": 200.0, "branch_class": 64.0, "c_branch": 1200.0, "c_bytes": 400.0, "c_words": 400.0,
                "c_neg": 400.0, "c_weights": 400.0, "c_shared": 400.0, "c_term": 24.0, "c_term_weight": 48.0,
                "c_select": 48.0, "c_class": 64.0, "c_class16": 64.0, "c_lane": 64.0, "c_plane": 64.0, "c_book": 200.0},
}
_STACK = {"base": 400.0, "src": 1.0, "neg": 1.0, "hash": 8.0, "pool": 1.0, "acc16": 4.0, "acc32": 4.0, "lane": 8.0,
          "plane": 8.0, "class": 8.0, "branch": 64.0, "window": 64.0}
DEFAULT_STACK = {"unrolled": dict(_STACK), "compact": dict(_STACK)}


@dataclass(frozen=True)
class FootprintModel:
    """export's estimate of what a model needs on this board besides the firmware (edgesketch.export.footprint)."""
    firmware_flash: int = 16 * 1024   # the firmware around the model: protocol, UART, start-up
    firmware_ram: int = 11 * 1024     # its static RAM besides the per-model arrays, and its stack outside the model
    firmware_stack: int = 0           # the stack part of firmware_ram (an interrupt's included)
    min_stack: int = 0                # the stack the linker reserves, whatever the need (firmware/ld/sections.ld)
    dsp: bool = False                 # the core has the DSP extension (the model's SXTAB16 / SMLAD paths)
    harvard: bool = False             # const data outside program memory (not ES_ROM) is copied into RAM (AVR)
    align: int = 4                    # static arrays start at multiples of this (bytes of padding the linker adds)
    unrolled: dict = field(default_factory=lambda: dict(DEFAULT_CODE["unrolled"]))   # bytes of code per feature
    compact: dict = field(default_factory=lambda: dict(DEFAULT_CODE["compact"]))
    stack_unrolled: dict = field(default_factory=lambda: dict(DEFAULT_STACK["unrolled"]))   # bytes of stack per feature
    stack_compact: dict = field(default_factory=lambda: dict(DEFAULT_STACK["compact"]))

    def code(self, features: dict, layout: str) -> int:
        """Bytes of code of a model with these features (codegen.footprint(...)["code"]) in this layout."""
        coef = self.unrolled if layout == "unrolled" else self.compact
        return int(round(sum(coef.get(k, 0.0) * v for k, v in features.items())))

    def stack_bytes(self, features: dict, layout: str) -> int:
        """Bytes of the model's deepest stack (codegen.footprint(...)["stack"]) in this layout."""
        coef = self.stack_unrolled if layout == "unrolled" else self.stack_compact
        return int(round(coef.get("base", 0.0) + sum(coef.get(k, 0.0) * v for k, v in features.items())))


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    kind: str
    core: str
    flash_bytes: int
    ram_bytes: int
    platformio: PlatformIOEnv
    serial: SerialSettings
    counter: Counter
    firmware: Firmware
    qemu: Qemu | None = None
    compile_check: CompileCheck | None = None
    footprint: FootprintModel = field(default_factory=FootprintModel)
    default: bool = False
    path: Path | None = None

    @property
    def emulated(self) -> bool:
        return self.kind == "emulated"

    @property
    def env_name(self) -> str:
        """The PlatformIO environment name: the board name."""
        return self.name

    def build_defines(self) -> dict[str, str]:
        """Every -D the firmware needs for this board: core name, baud, counter, stack floor, [firmware].defines."""
        d = {"ES_CORE_NAME": '"%s"' % self.core, "ES_BAUD": f"{self.serial.baud}u",
             "ES_COUNTER_KIND": str(self.counter.kind_code),
             "ES_COUNTER_SCALE_NUM": f"{self.counter.scale_num}u", "ES_COUNTER_SCALE_DEN": f"{self.counter.scale_den}u"}
        if self.counter.source != "none":
            d["ES_COUNTER_" + self.counter.source.upper()] = "1"
        if "ld/sections.ld" in self.firmware.linker_includes:
            d["ES_STACK_FLOOR"] = "_ebss"   # end of .bss: the stack-painting window stays above it
        d.update(self.firmware.defines)
        return d

    def define_flags(self) -> list[str]:
        """build_defines() as compiler arguments (strings quoted for a shell-less argv)."""
        return [f"-D{k}={v}" for k, v in self.build_defines().items()]


# ---------------------------------------------------------------- parsing
class _Table:
    """One TOML table being read: typed getters, and unknown keys are an error (catches typos)."""

    def __init__(self, data: dict, where: str):
        self.data, self.where, self.used = data, where, set()

    def _fail(self, msg: str):
        raise UserError(f"{self.where}: {msg}")

    def get(self, key: str, typ, default=..., choices=None):
        self.used.add(key)
        if key not in self.data:
            if default is ...:
                self._fail(f"missing key {key!r}")
            return default
        v = self.data[key]
        if typ is int and isinstance(v, bool) or not isinstance(v, typ):
            self._fail(f"{key} must be {typ.__name__}, got {type(v).__name__}")
        if choices is not None and v not in choices:
            self._fail(f"{key} = {v!r} is not one of {', '.join(map(str, choices))}")
        return v

    def strings(self, key: str) -> tuple[str, ...]:
        v = self.get(key, list, [])
        if not all(isinstance(s, str) for s in v):
            self._fail(f"{key} must be a list of strings")
        return tuple(v)

    def mapping(self, key: str) -> dict[str, str]:
        v = self.get(key, dict, {})
        if not all(isinstance(x, str) for x in v.values()):
            self._fail(f"{key} values must be strings")
        return dict(v)

    def table(self, key: str, required: bool = True) -> "_Table | None":
        self.used.add(key)
        if key not in self.data:
            if required:
                self._fail(f"missing table [{key}]")
            return None
        if not isinstance(self.data[key], dict):
            self._fail(f"{key} must be a table")
        return _Table(self.data[key], f"{self.where} [{key}]")

    def done(self):
        extra = sorted(set(self.data) - self.used)
        if extra:
            self._fail(f"unknown key(s) {', '.join(extra)}")


def _parse(path: Path) -> Board:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not valid TOML: {e}") from None
    top = _Table(data, str(path))
    name = top.get("name", str)
    if name != path.stem:
        top._fail(f"name {name!r} differs from the file name {path.stem!r}")
    kind = top.get("kind", str, choices=KINDS)

    t = top.table("platformio")
    pio = PlatformIOEnv(platform=t.get("platform", str), board=t.get("board", str, None),
                        framework=t.get("framework", str, None), toolchain=t.get("toolchain", str, None),
                        toolchain_apt=t.get("toolchain_apt", str, None), arduino_core=t.get("arduino_core", str, None),
                        arduino_board=t.get("arduino_board", str, None))
    t.done()
    t = top.table("serial")
    serial = SerialSettings(baud=t.get("baud", int), monitor_speed=t.get("monitor_speed", int))
    t.done()
    t = top.table("counter")
    counter = Counter(kind=t.get("kind", str, choices=tuple(COUNTER_KINDS)), source=t.get("source", str, choices=COUNTER_SOURCES),
                      clock_hz=t.get("clock_hz", int, None), scale_num=t.get("scale_num", int, 1),
                      scale_den=t.get("scale_den", int, 1))
    t.done()
    t = top.table("firmware")
    fw = Firmware(entry=t.get("entry", str, choices=ENTRIES), bsp=t.strings("bsp"), startup=t.get("startup", str, None),
                  linker_script=t.get("linker_script", str, None), linker_includes=t.strings("linker_includes"),
                  cpu_flags=t.strings("cpu_flags"), c_flags=t.strings("c_flags"), link_flags=t.strings("link_flags"),
                  libs=t.strings("libs"), defines=t.mapping("defines"))
    t.done()
    qemu = None
    t = top.table("qemu", required=False)
    if t is not None:
        qemu = Qemu(binary=t.get("binary", str), apt=t.get("apt", str), machine=t.get("machine", str),
                    args=t.strings("args"), uart=t.get("uart", str, ""), icount_shift=t.get("icount_shift", int, None),
                    load=t.get("load", str, "-kernel", choices=("-kernel", "-bios")), plugin=t.get("plugin", str, None),
                    idle_sleeps=t.get("idle_sleeps", bool, True))
        t.done()
    check = None
    t = top.table("compile_check", required=False)
    if t is not None:
        check = CompileCheck(cc=t.get("cc", str), flags=t.strings("flags"), defines=t.mapping("defines"))
        t.done()

    foot = FootprintModel()
    t = top.table("footprint", required=False)
    if t is not None:
        kw = {f: t.get(f, int, getattr(foot, f)) for f in ("firmware_flash", "firmware_ram", "firmware_stack", "min_stack",
                                                            "align")}
        kw.update({f: t.get(f, bool, getattr(foot, f)) for f in ("dsp", "harvard")})
        for sub, known in (("unrolled", DEFAULT_CODE["unrolled"]), ("compact", DEFAULT_CODE["compact"]),
                           ("stack_unrolled", DEFAULT_STACK["unrolled"]), ("stack_compact", DEFAULT_STACK["compact"])):
            u = t.table(sub, required=False)
            coef = dict(known)
            if u is not None:
                for k in u.data:
                    if k not in known:
                        u._fail(f"unknown feature {k!r} (known: {', '.join(known)})")
                    u.used.add(k)
                    v = u.data[k]
                    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                        u._fail(f"{k} must be a number of bytes >= 0")
                    coef[k] = float(v)
                u.done()
            kw[sub] = coef
        foot = FootprintModel(**kw)
        t.done()

    board = Board(name=name, description=top.get("description", str), kind=kind, core=top.get("core", str),
                  flash_bytes=top.get("flash_bytes", int), ram_bytes=top.get("ram_bytes", int), platformio=pio,
                  serial=serial, counter=counter, firmware=fw, qemu=qemu, compile_check=check, footprint=foot,
                  default=top.get("default", bool, False), path=path)
    top.done()
    _validate(board, top)
    return board


def _validate(b: Board, top: _Table) -> None:
    """Cross-field rules: what the build and the emulator rely on."""
    fail = top._fail
    if b.emulated:
        if b.qemu is None:
            fail("an emulated board needs a [qemu] table")
        if not (b.platformio.local and b.platformio.toolchain and b.platformio.toolchain_apt):
            fail('an emulated board builds with platform = "local", a toolchain prefix and its toolchain_apt')
        if b.firmware.entry == "arduino":
            if not (b.platformio.arduino_core and b.platformio.arduino_board):
                fail("an emulated board with the Arduino entry needs [platformio] arduino_core and arduino_board")
        elif not (b.firmware.startup and b.firmware.linker_script):
            fail("an emulated bare-metal board needs a startup file and a linker_script")
        if b.counter.kind == "instructions" and b.qemu.icount_shift is None and b.counter.source != "icount_plugin":
            fail("instruction counts need -icount: set [qemu] icount_shift")
    else:
        if b.platformio.local or not (b.platformio.board and b.platformio.framework):
            fail("a real board needs a standard PlatformIO platform, board and framework")
        if b.firmware.entry != "arduino":
            fail('a real board uses entry = "arduino"')
    if b.counter.source == "icount_plugin":
        if not (b.emulated and b.qemu.plugin) or b.counter.kind != "instructions" or b.counter.scale != 1:
            fail('counter source "icount_plugin" is for emulated boards with a [qemu] plugin, kind "instructions", '
                 'scale 1/1')
    if b.counter.scale_num < 1 or b.counter.scale_den < 1:
        fail("counter scale_num and scale_den must be positive")
    if b.counter.source in ("systick", "ccount") and b.emulated:
        # under -icount one instruction lasts 2^shift ns; the tick is 1e9/clock_hz ns. Rounding ticks*num/den to
        # the nearest integer is exact only if one instruction spans at least 2 ticks (a read is off by < 1 tick).
        if not b.counter.clock_hz or b.qemu.icount_shift is None:
            fail(f"a {b.counter.source} counter under QEMU needs clock_hz and icount_shift")
        want = Fraction(10**9, b.counter.clock_hz * 2**b.qemu.icount_shift)
        if b.counter.scale != want:
            fail(f"counter scale {b.counter.scale_num}/{b.counter.scale_den} should be {want} "
                 f"(1e9 / (clock_hz * 2^icount_shift))")
        if want > Fraction(1, 2):
            fail(f"icount_shift {b.qemu.icount_shift} is too small for exact counts: an instruction must span "
                 f">= 2 counter ticks")
    if b.counter.source in ("minstret", "mcycle") and b.emulated:
        # QEMU derives both from the virtual clock, instructions << icount_shift
        if b.qemu.icount_shift is None or b.counter.scale != Fraction(1, 2**b.qemu.icount_shift):
            fail(f"counter scale should be 1/{2**b.qemu.icount_shift} (1 / 2^icount_shift)")


# ---------------------------------------------------------------- public API
_cache: dict[Path, Board] = {}


def _files() -> list[Path]:
    return sorted(boards_dir().glob("*.toml"))


def names() -> list[str]:
    """Names of every known board, sorted."""
    return [p.stem for p in _files()]


def load(name: str) -> Board:
    """The board called `name`. Unknown name -> UserError listing the known boards."""
    known = names()
    by_lower = {n.lower(): n for n in known}
    if isinstance(name, str) and name.lower() in by_lower:          # case-insensitive: QEMU-M4, Uno, ESP32
        name = by_lower[name.lower()]
    path = boards_dir() / f"{name}.toml"
    if not name or "/" in name or "\\" in name or not path.is_file():
        import difflib
        norm = {n.lower().replace("_", "-"): n for n in known}
        close = difflib.get_close_matches(str(name).lower().replace("_", "-"), list(norm), n=1, cutoff=0.6)
        hint = f"did you mean {norm[close[0]]}? " if close else ""
        raise UserError(f"unknown board {name!r}; {hint}known boards: {', '.join(known)}", argument="board")
    path = path.resolve()
    if path not in _cache:
        _cache[path] = _parse(path)
    return _cache[path]


def all_boards() -> list[Board]:
    """Every board, sorted by name."""
    return [load(n) for n in names()]


def default_board() -> Board:
    """The board marked default = true (qemu-m4)."""
    found = [b for b in all_boards() if b.default]
    if len(found) != 1:
        raise UserError(f"exactly one board must be marked default = true, found {len(found)}")
    return found[0]
