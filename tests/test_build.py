"""edgesketch.build: offline PlatformIO (tool-scons + the local dev-platform), the generated project, `pio run` for
every emulated board in a fresh PLATFORMIO_CORE_DIR, ELF sizes, and offline compile checks of the firmware core and
the Arduino entry for every real board's core (ARM M0+/M3/M4F/M7, RV32IMC, Xtensa)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgesketch import boards, build
from edgesketch.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
STANDIN = FIXTURES / "standin_model"
FIRMWARE = ROOT / "firmware"
EMULATED = [b.name for b in boards.all_boards() if b.emulated]
REAL = [b.name for b in boards.all_boards() if not b.emulated]
ELF_MACHINE = {"arm-none-eabi-": 40, "riscv64-unknown-elf-": 243, "xtensa-lx106-elf-": 94, "avr-": 83}

# Shared with tests/test_emulate.py (it imports this module): one core dir and one build per board per session.
_SESSION: dict = {}


def standin_model() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(STANDIN.glob("es_model.*"))}


def session_core(tmp_path_factory) -> Path:
    if "core" not in _SESSION:
        core = tmp_path_factory.mktemp("pio-core")
        t0 = time.perf_counter()
        build.ensure_platformio(core)
        _SESSION["ensure_s"] = time.perf_counter() - t0
        _SESSION["core"] = core
    return _SESSION["core"]


def built_elf(tmp_path_factory, name: str) -> Path:
    """The stand-in model's firmware for an emulated board, built with pio once per session."""
    key = ("elf", name)
    if key not in _SESSION:
        core = session_core(tmp_path_factory)
        proj = build.write_project(name, standin_model(), tmp_path_factory.mktemp("proj") / name)
        t0 = time.perf_counter()
        elf = build.run_pio(proj, core)
        _SESSION[("seconds", name)] = time.perf_counter() - t0
        _SESSION[key] = elf
    return _SESSION[key]


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    return session_core(tmp_path_factory)


# ---------------------------------------------------------------- tool-scons
@pytest.mark.slow
def test_ensure_platformio_installs_tool_scons_once(core):
    pkg = core / "packages" / "tool-scons"
    meta = json.loads((pkg / ".piopm").read_text())
    assert meta["spec"]["owner"] == "platformio" and meta["spec"]["uri"] is None
    assert (pkg / "scons.py").is_file() and (pkg / "SCons" / "Script" / "__init__.py").is_file()
    assert not (pkg / "SCons" / "Tool" / "docbook" / "docbook-xsl-1.76.1").exists()   # 20 MB we do not need
    print(f"\nensure_platformio first run: {_SESSION['ensure_s']:.2f} s")
    t0 = time.perf_counter()
    assert build.ensure_platformio(core) == pkg
    assert time.perf_counter() - t0 < 0.1                 # the re-run only reads .piopm
    # the packed SCons runs
    out = subprocess.run([sys.executable, str(pkg / "scons.py"), "--version"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "SCons" in out.stdout


@pytest.mark.slow
def test_ensure_platformio_repairs_a_foreign_owner(tmp_path):
    # a tool-scons whose .piopm lost the owner is not recognised by PlatformIO: ensure_platformio redoes it
    core = tmp_path / "core"
    pkg = build.ensure_platformio(core)
    meta = json.loads((pkg / ".piopm").read_text())
    meta["spec"]["owner"] = None
    (pkg / ".piopm").write_text(json.dumps(meta))
    build.ensure_platformio(core)
    assert json.loads((pkg / ".piopm").read_text())["spec"]["owner"] == "platformio"


def test_pio_env_never_uses_home_platformio(tmp_path):
    env = build.pio_env(tmp_path)
    assert env["PLATFORMIO_CORE_DIR"] == str(tmp_path.resolve())
    assert env["PLATFORMIO_SETTING_ENABLE_TELEMETRY"] == "No"
    assert ".platformio" not in str(build.default_core_dir())


# ---------------------------------------------------------------- the project
def test_write_project_layout(tmp_path):
    out = build.write_project("qemu-m4", standin_model(), tmp_path / "fw", model_id="5eed")
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    for f in ["platformio.ini", "README.md", "src/es_app.c", "src/es_main.c", "src/es_proto.c", "src/es_proto.h",
              "src/es_bsp.h", "src/es_ring.c", "src/cortexm.c", "src/cmsdk_uart.c", "src/cortexm_vectors.c",
              "ld/mps2.ld", "ld/sections.ld", "lib/es_model/es_model.h", "lib/es_model/es_model.c"]:
        assert f in files, f
    plat = [f for f in files if f.startswith("platform-") and f.endswith("/platform.json")]
    assert len(plat) == 1 and any(f.endswith("builder/main.py") for f in files)
    ini = (out / "platformio.ini").read_text()
    assert f"platform = file://{plat[0].split('/')[0]}" in ini       # relative: the project is self-contained
    assert "symlink://" not in ini and str(ROOT) not in ini
    assert '-DES_CORE_NAME=\\"cortex-m4\\"' in ini and "-DES_COUNTER_SYSTICK=1" in ini
    assert "monitor_speed = 115200" in ini and "board_build.ldscript = ld/mps2.ld" in ini
    readme = (out / "README.md").read_text()
    assert "pio run" in readme and "qemu-system-arm -M mps2-an386" in readme and "-icount shift=8" in readme
    # nothing left next to it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fw"]


def test_write_project_refuses_existing_dir_unless_forced(tmp_path):
    out = tmp_path / "fw"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="already exists"):
        build.write_project("qemu-m4", standin_model(), out)
    assert (out / "keep.txt").read_text() == "mine"
    build.write_project("qemu-m0", standin_model(), out, force=True)
    assert not (out / "keep.txt").exists() and (out / "src" / "nrf51_uart.c").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fw"]


def test_write_project_rejects_bad_model_files(tmp_path):
    with pytest.raises(UserError, match="es_model.h"):
        build.write_project("qemu-m4", {"es_model.c": ""}, tmp_path / "a")
    with pytest.raises(UserError, match="plain file name"):
        build.write_project("qemu-m4", {"es_model.h": "", "../es_model.c": ""}, tmp_path / "b")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UserError, match="unknown board"):
        build.write_project("no-such-board", standin_model(), tmp_path / "c")


def test_platform_folder_name_follows_its_contents(tmp_path, monkeypatch):
    a = build._platform_hash()
    fake = tmp_path / "firmware"
    shutil.copytree(FIRMWARE / "platformio", fake / "platformio")
    monkeypatch.setattr(build, "firmware_dir", lambda: fake)
    assert build._platform_hash() == a
    (fake / "platformio" / "builder" / "main.py").write_text("# changed\n")
    assert build._platform_hash() != a


@pytest.mark.slow
@pytest.mark.parametrize("name", EMULATED)
def test_pio_run_offline(tmp_path_factory, name):
    board = boards.load(name)
    elf = built_elf(tmp_path_factory, name)
    assert elf.name == "firmware.elf" and elf.is_file()
    head = elf.read_bytes()[:20]
    assert int.from_bytes(head[18:20], "little") == ELF_MACHINE[board.platformio.toolchain]
    size = build.elf_size(elf)
    assert 1000 < size.text < board.flash_bytes and size.ram < board.ram_bytes
    print(f"\n{name}: pio run {_SESSION[('seconds', name)]:.2f} s, text {size.text} data {size.data} bss {size.bss}")


@pytest.mark.slow
def test_pio_rebuild_is_incremental(tmp_path_factory):
    elf = built_elf(tmp_path_factory, "qemu-m4")
    t0 = time.perf_counter()
    assert build.run_pio(elf.parents[3], session_core(tmp_path_factory)) == elf
    assert time.perf_counter() - t0 < 30


@pytest.mark.slow
def test_missing_toolchain_names_the_apt_package(tmp_path, monkeypatch):
    proj = build.write_project("qemu-rv32", standin_model(), tmp_path / "fw")
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(UserError, match=r"riscv64-unknown-elf-gcc is not on PATH: apt-get install gcc-riscv64-unknown-elf"):
        build.run_pio(proj, tmp_path / "core")
    assert not (tmp_path / "core").exists()          # failed before touching PlatformIO


@pytest.mark.slow
def test_failed_build_is_a_user_error_with_log(tmp_path_factory, tmp_path):
    model = standin_model()
    model["es_model.c"] += "\n#error deliberately broken\n"
    proj = build.write_project("qemu-m4", model, tmp_path / "fw")
    with pytest.raises(UserError, match="pio run failed") as e:
        build.run_pio(proj, session_core(tmp_path_factory))
    assert "\n" not in str(e.value) and (proj / ".pio" / "edgesketch-pio.log").is_file()
    assert "deliberately broken" in (proj / ".pio" / "edgesketch-pio.log").read_text()


def test_elf_size_rejects_non_elf(tmp_path):
    p = tmp_path / "x.elf"
    p.write_bytes(b"not an elf")
    with pytest.raises(UserError, match="not an ELF"):
        build.elf_size(p)


# ---------------------------------------------------------------- real boards
@pytest.mark.slow
@pytest.mark.parametrize("name", REAL)
def test_real_board_project_config_parses_offline(tmp_path, name):
    board = boards.load(name)
    proj = build.write_project(name, standin_model(), tmp_path / name)
    assert (proj / "src" / "main.cpp").is_file() and not (proj / "src" / "es_main.c").exists()
    assert not any(p.name.startswith("platform-") for p in proj.iterdir())
    out = subprocess.run([sys.executable, "-m", "platformio", "project", "config", "-d", str(proj), "--json-output"],
                         env=build.pio_env(tmp_path / "core"), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    cfg = dict(json.loads(out.stdout))
    env = dict(cfg[f"env:{name}"])
    assert env["platform"] == board.platformio.platform and env["board"] == board.platformio.board
    assert env["framework"] == ["arduino"] and int(env["monitor_speed"]) == board.serial.monitor_speed
    assert any(f'-DES_CORE_NAME=\\"{board.core}\\"' in f for f in env["build_flags"])


def _compile(cc: str, flags: list[str], src: Path, out: Path, lang_flags: list[str]) -> None:
    cmd = [cc, *flags, *lang_flags, "-Wall", "-Wextra", "-Werror", "-O2", "-c", str(src), "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, " ".join(cmd) + "\n" + r.stderr


@pytest.mark.parametrize("name", REAL)
def test_core_and_arduino_entry_compile_for_real_board(tmp_path, name):
    board = boards.load(name)
    chk = board.compile_check
    assert chk is not None and shutil.which(chk.cc), f"{chk.cc} missing"
    src = tmp_path / "src"
    for dst, rel in build.project_files(board).items():
        if dst.startswith("src/"):
            (src / Path(dst).name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(FIRMWARE / rel, src / Path(dst).name)
    defines = board.define_flags() + [f"-D{k}={v}" for k, v in chk.defines.items()]
    inc = [f"-I{src}", f"-I{STANDIN}", f"-I{FIXTURES / 'arduino_stub'}"]
    flags = [*chk.flags, *defines, *inc]
    if "xtensa" in chk.cc or "riscv" in chk.cc:
        flags.append("-ffreestanding")   # no libc headers for these here; the core needs only stdint/stddef
    for c in ["es_app.c", "es_proto.c"]:
        _compile(chk.cc, flags, src / c, tmp_path / (c + ".o"), ["-std=c99"])
    _compile(chk.cxx, flags, src / "main.cpp", tmp_path / "main.o", ["-std=gnu++11", "-fno-exceptions", "-fno-rtti"])
    nm = subprocess.run([chk.cc[:-3] + "nm", str(tmp_path / "main.o")], capture_output=True, text=True, timeout=60)
    syms = nm.stdout
    for s in ["es_bsp_init", "es_bsp_rx", "es_bsp_tx", "es_bsp_counter_read", "es_bsp_reset", "setup", "loop"]:
        assert any(line.split()[-1].startswith(s if s not in ("setup", "loop") else "_Z" + str(len(s)) + s)
                   for line in syms.splitlines() if line.strip()), s
    # the counter each real board's toml names is the one main.cpp reads
    undefined = {line.split()[-1] for line in syms.splitlines() if line.split()[0] == "U"}
    if board.counter.source == "esp_cycle_count":
        assert any("getCycleCount" in u for u in undefined)
    else:
        assert not any("getCycleCount" in u for u in undefined)


def test_real_board_core_compiles_without_division_helpers_on_xtensa(tmp_path):
    # xtensa-lx106's libgcc has no division helpers: with scale 1/1 the core must not call any
    board = boards.load("esp32")
    chk = board.compile_check
    obj = tmp_path / "es_app.o"
    _compile(chk.cc, [*chk.flags, "-ffreestanding", *board.define_flags(), f"-I{FIRMWARE / 'core'}", f"-I{STANDIN}"],
             FIRMWARE / "core" / "es_app.c", obj, ["-std=c99"])
    nm = subprocess.run(["xtensa-lx106-elf-nm", "-u", str(obj)], capture_output=True, text=True, timeout=60).stdout
    assert not any(h in nm for h in ("__udivdi3", "__divsi3", "__udivsi3", "__umoddi3")), nm


def test_xtensa_runtime_helpers_compute_what_libgcc_would(tmp_path):
    """firmware/bsp/xtensa_rt.c (division, 64-bit multiply, mem*: what Debian's lx106 libgcc and the missing libc do not
    provide), built for the host under other names, against C's own operators on random and edge values."""
    names = ["__udivsi3", "__umodsi3", "__divsi3", "__umulsidi3", "__muldi3", "memcpy", "memmove", "memset", "memcmp"]
    renames = [f"-D{n}=es_t_{n.strip('_')}" for n in names]
    (tmp_path / "drv.c").write_text(r"""
#include <stdint.h>
#include <stdio.h>
#include <string.h>
uint32_t es_t_udivsi3(uint32_t, uint32_t); uint32_t es_t_umodsi3(uint32_t, uint32_t); int32_t es_t_divsi3(int32_t, int32_t);
uint64_t es_t_umulsidi3(uint32_t, uint32_t); uint64_t es_t_muldi3(uint64_t, uint64_t);
void *es_t_memmove(void *, const void *, size_t); int es_t_memcmp(const void *, const void *, size_t);
static uint64_t s = 88172645463325252ull;
static uint64_t rnd(void) { s ^= s << 13; s ^= s >> 7; s ^= s << 17; return s; }
int main(void)
{
    static const uint32_t edge[] = {0, 1, 2, 3, 5, 7, 0x7fffffffu, 0x80000000u, 0x80000001u, 0xffffffffu, 0xfffffffeu, 10};
    char buf[64], ref[64];
    long i;
    for (i = 0; i < 2000000; i++) {
        uint32_t a = i < 144 ? edge[i % 12] : (uint32_t)rnd() >> (rnd() & 31);
        uint32_t b = i < 144 ? edge[i / 12] : (uint32_t)rnd() >> (rnd() & 31);
        uint64_t x = rnd(), y = rnd();
        if (b && (es_t_udivsi3(a, b) != a / b || es_t_umodsi3(a, b) != a % b)) return 1;
        if (b && !((int32_t)a == INT32_MIN && (int32_t)b == -1) && es_t_divsi3((int32_t)a, (int32_t)b) != (int32_t)a / (int32_t)b) return 2;
        if (es_t_umulsidi3(a, b) != (uint64_t)a * b || es_t_muldi3(x, y) != x * y) return 3;
    }
    for (i = 0; i < 64; i++) buf[i] = ref[i] = (char)i;
    es_t_memmove(buf + 3, buf, 40); memmove(ref + 3, ref, 40);
    es_t_memmove(buf, buf + 5, 40); memmove(ref, ref + 5, 40);
    if (memcmp(buf, ref, 64) || es_t_memcmp("ab", "ac", 2) >= 0 || es_t_memcmp("ab", "ab", 2)) return 4;
    puts("ok");
    return 0;
}
""")
    exe, rt = tmp_path / "drv", tmp_path / "rt.o"
    subprocess.run(["gcc", "-O1", "-fno-builtin", *renames, "-c", str(FIRMWARE / "bsp" / "xtensa_rt.c"), "-o", str(rt)],
                   check=True, capture_output=True, text=True)
    subprocess.run(["gcc", "-O1", str(tmp_path / "drv.c"), str(rt), "-o", str(exe)], check=True, capture_output=True,
                   text=True)
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.returncode, r.stdout)
