"""edgesketch.boards: every boards/*.toml loads into a typed record, the facts the build and the emulator rely on
hold, and mistakes in a board file or name are one-line UserErrors."""
from __future__ import annotations

import re
import shutil
from fractions import Fraction
from pathlib import Path

import pytest

from edgesketch import boards
from edgesketch.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
EMULATED = {"qemu-m4": "mps2-an386", "qemu-m3": "mps2-an385", "qemu-m7": "mps2-an500", "qemu-m55": "mps3-an547",
            "qemu-m0": "microbit", "qemu-rv32": "virt", "qemu-lx106": "lx60", "qemu-uno": "uno"}
REAL = {"esp32": ("espressif32", "esp32dev"), "esp32s3": ("espressif32", "esp32-s3-devkitc-1"),
        "esp32c3": ("espressif32", "esp32-c3-devkitm-1"), "nucleo_f401re": ("ststm32", "nucleo_f401re"),
        "nrf52840_dk": ("nordicnrf52", "nrf52840_dk"), "pico": ("raspberrypi", "pico"),
        "bluepill_f103c8": ("ststm32", "bluepill_f103c8"), "teensy41": ("teensy", "teensy41"),
        "esp8266": ("espressif8266", "d1_mini"), "uno": ("atmelavr", "uno")}


@pytest.fixture
def board_dir(tmp_path, monkeypatch):
    """A private copy of boards/ that a test may break."""
    d = tmp_path / "boards"
    shutil.copytree(ROOT / "boards", d)
    monkeypatch.setattr(boards, "boards_dir", lambda: d)
    monkeypatch.setattr(boards, "_cache", {})
    return d


def test_all_boards_load():
    got = {b.name: b for b in boards.all_boards()}
    assert set(got) == set(EMULATED) | set(REAL)
    assert boards.names() == sorted(got)
    assert boards.default_board().name == "qemu-m4"
    assert [b.name for b in got.values() if b.default] == ["qemu-m4"]
    for b in got.values():
        assert b.flash_bytes > 0 and b.ram_bytes > 0 and b.core and b.description
        assert b.serial.baud == b.serial.monitor_speed == 115200


@pytest.mark.parametrize("name", sorted(EMULATED))
def test_emulated_board_facts(name):
    b = boards.load(name)
    assert b.emulated and b.qemu.machine == EMULATED[name] and b.platformio.local and b.platformio.toolchain_apt
    assert b.counter.kind == "instructions"
    if b.firmware.entry == "arduino":        # qemu-uno: Arduino's own core from a Debian package, QEMU counts
        assert b.platformio.arduino_core and b.platformio.arduino_board and not b.firmware.startup
        assert b.qemu.icount is None and b.counter.source == "icount_plugin" and b.qemu.plugin
        argv = b.qemu.argv("fw.elf", "p.so")
        assert argv[:3] == [b.qemu.binary, "-M", b.qemu.machine] and "-icount" not in argv
        assert argv[-2:] == [b.qemu.load, "fw.elf"] and argv[argv.index("-plugin") + 1] == "p.so,elf=fw.elf"
        return
    assert b.firmware.entry == "baremetal" and b.firmware.startup and b.firmware.linker_script
    assert b.qemu.icount == f"shift={b.qemu.icount_shift},align=off,sleep=off"
    argv = b.qemu.argv("fw.elf")
    assert argv[:3] == [b.qemu.binary, "-M", b.qemu.machine] and argv[-2:] == ["-kernel", "fw.elf"]
    if b.counter.source in ("systick", "ccount"):
        # QEMU: an instruction lasts 2^shift ns, a tick 1e9/clock ns. cost = round(ticks * num/den) is exact when an
        # instruction spans at least 2 ticks (a SysTick or CCOUNT read is off by less than one tick).
        ticks_per_insn = Fraction(2 ** b.qemu.icount_shift * b.counter.clock_hz, 10 ** 9)
        assert b.counter.scale == 1 / ticks_per_insn and ticks_per_insn >= 2
        width = 24 if b.counter.source == "systick" else 32
        assert 2 ** width / ticks_per_insn > 1_000_000      # a call may run a million instructions before it wraps
    else:
        assert b.counter.source == "minstret" and b.counter.scale == Fraction(1, 2 ** b.qemu.icount_shift)


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_board_facts(name):
    b = boards.load(name)
    assert not b.emulated and b.qemu is None
    assert (b.platformio.platform, b.platformio.board, b.platformio.framework) == (*REAL[name], "arduino")
    assert b.firmware.entry == "arduino" and b.compile_check is not None
    assert b.counter.kind in ("cycles", "none")
    if b.core.startswith("cortex-m") and b.core != "cortex-m0plus":
        assert b.counter.source == "dwt"
    if name.startswith("esp"):
        assert b.counter.source == "esp_cycle_count"
    if b.core == "avr5":
        assert b.counter.source == "timer1" and int(b.build_defines()["ES_PROTO_MAX_BODY"]) <= 256


@pytest.mark.parametrize("name", sorted(EMULATED) + sorted(REAL))
def test_firmware_files_exist(name):
    b = boards.load(name)
    fw = ROOT / "firmware"
    files = list(b.firmware.bsp) + [f for f in (b.firmware.startup, b.firmware.linker_script) if f]
    files += list(b.firmware.linker_includes)
    for f in files:
        assert (fw / f).is_file(), f


def test_build_defines_come_from_the_toml():
    d = boards.load("qemu-m0").build_defines()
    assert d["ES_CORE_NAME"] == '"cortex-m0"' and d["ES_COUNTER_KIND"] == "2" and d["ES_COUNTER_SYSTICK"] == "1"
    assert d["ES_COUNTER_SCALE_NUM"] == "125u" and d["ES_COUNTER_SCALE_DEN"] == "512u"
    assert d["ES_UART_BASE"] == "0x40002000u" and d["ES_BAUD"] == "115200u"
    d = boards.load("pico").build_defines()
    assert d["ES_COUNTER_KIND"] == "0" and not any(k.startswith("ES_COUNTER_") and k[11:] in
                                                   ("SYSTICK", "DWT", "MINSTRET") for k in d)
    assert '-DES_CORE_NAME="xtensa-lx6"' in boards.load("esp32").define_flags()


def test_unknown_board_lists_the_known_ones():
    for bad in ["nope", "", "../boards/qemu-m4", "qemu-m4.toml"]:
        with pytest.raises(UserError) as e:
            boards.load(bad)
        msg = str(e.value)
        assert "\n" not in msg and "unknown board" in msg
        assert all(n in msg for n in ["qemu-m4", "qemu-rv32", "esp32", "teensy41", "pico"])


def test_board_facts_are_not_in_python_code():
    """Board facts live in boards/*.toml: no board names or addresses in build.py / emulate.py."""
    for mod in ["build.py", "emulate.py"]:
        text = (ROOT / "edgesketch" / mod).read_text()
        for name in list(EMULATED) + list(REAL) + list(EMULATED.values()):
            assert not re.search(rf"[\"']{re.escape(name)}[\"']", text), (mod, name)
        assert "0x4000" not in text


@pytest.mark.parametrize("edit,match", [
    (lambda s: s.replace('kind = "emulated"', 'kind = "virtual"'), "kind = 'virtual' is not one of"),
    (lambda s: s.replace("scale_den = 32", "scale_den = 40"), "counter scale 5/40 should be 5/32"),
    (lambda s: s.replace("icount_shift = 8", "icount_shift = 0").replace("scale_num = 5", "scale_num = 40")
     .replace("scale_den = 32", "scale_den = 1"), "too small for exact counts"),
    (lambda s: s.replace("flash_bytes = 4194304", 'flash_bytes = "4M"'), "flash_bytes must be int"),
    (lambda s: s.replace("[serial]", "[serial]\nparity = 'N'"), "unknown key"),
    (lambda s: s.replace('name = "qemu-m4"', 'name = "qemu-m4x"'), "differs from the file name"),
    (lambda s: s.replace("[qemu]", "[qemu_disabled]"), "unknown key"),
    (lambda s: s + "\n[[oops\n", "not valid TOML"),
])
def test_broken_board_file_is_a_one_line_user_error(board_dir, edit, match):
    f = board_dir / "qemu-m4.toml"
    f.write_text(edit(f.read_text()))
    with pytest.raises(UserError, match=re.escape(match) if "'" in match else match) as e:
        boards.load("qemu-m4")
    assert "\n" not in str(e.value) and "qemu-m4.toml" in str(e.value)


def test_emulated_board_without_qemu_table_is_rejected(board_dir):
    f = board_dir / "qemu-m3.toml"
    text = f.read_text()
    f.write_text(text[:text.index("[qemu]")])
    with pytest.raises(UserError, match=r"needs a \[qemu\] table"):
        boards.load("qemu-m3")


def test_two_defaults_are_rejected(board_dir):
    f = board_dir / "qemu-m3.toml"
    f.write_text(f.read_text().replace('kind = "emulated"', 'kind = "emulated"\ndefault = true'))
    with pytest.raises(UserError, match="exactly one board"):
        boards.default_board()
