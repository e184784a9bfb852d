"""Fit figures (issue 30, part 2): the flash and RAM estimate from the model as generated (codegen.footprint, weighed
by the boards' [footprint]: examples/studies/footprint_fit.py), refusals before any build by export, verify, tune and
the API, and a firmware the linker still refuses reported as "does not fit: N bytes over"."""
from __future__ import annotations

import re

import numpy as np
import pytest

import test_codegen
from edgesketch import boards, build, cli, codegen, esk, export
from edgesketch.errors import UserError
from edgesketch.sketch import Window, random_sketch

# the digits CNN default's shape (distill's 2-D family: a 3x3 window of stride 1 over 8x8x1, and a flat branch), too
# big for the Uno's flash in the unrolled layout
DIGITS_CNN = dict(L=8, K=6, P=48, taps=8, thresholds=2, weights=7, seed=3,
                  windows=[(Window.over((8, 8, 1), 3, 1), 8, 6, 32, 9)])
VIBRATION = dict(L=0, seed=41, windows=[(Window.over((1500, 1), 9, 8), 8, 5, 16, 9)])   # 1,500 int8 inputs
CTYPE = {"int8_t": 1, "uint8_t": 1, "int16_t": 2, "uint16_t": 2, "int32_t": 4, "uint32_t": 4, "float": 4}
DECL = re.compile(r"^(?:static )?const (?:ES_ROM )?(int8_t|uint8_t|int16_t|uint16_t|int32_t|uint32_t|float) (\w+)\[(\w+)\] = \{",
                  re.M)


def _footprint_fit():
    """examples/studies/footprint_fit.py as a module (its TWIN: the emulated board of each real board)."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "examples" / "studies" / "footprint_fit.py"
    spec = importlib.util.spec_from_file_location("footprint_fit", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def c_arrays(files: dict[str, str], sk, dsp: bool) -> dict[str, int]:
    """Every const array the generated C defines, in bytes (the DSP path's tap weights only when dsp)."""
    c = files["es_model.c"]
    if not dsp:     # drop what only #if ES_DSP compiles
        c = re.sub(r"#if ES_DSP\n.*?#endif\n", "", c, flags=re.S)
    sizes = {"ES_N_QPARAMS": len(sk.in_scale), "ES_N_OUTPUTS": sk.n_outputs}
    return {name: CTYPE[t] * (int(n) if n.isdigit() else sizes[n]) for t, name, n in DECL.findall(c)}


@pytest.mark.parametrize("layout", codegen.LAYOUTS)
@pytest.mark.parametrize("name", sorted(test_codegen.FAST) + ["learned-codebook-int16-u16rows-C3", "win1d-window-selectors",
                                                            "learned-wide-D200-P300-int4", "win2d-window-selectors-P48-int4"])
def test_const_data_is_exactly_what_the_c_holds(name, layout):
    """codegen.footprint's arrays and bytes are the generated C's, quantisation arrays and DSP tap weights included."""
    sk = test_codegen.make(name)
    files = codegen.generate(sk, layout)
    for dsp in (False, True):
        f = codegen.footprint(sk, layout, dsp=dsp)
        got = {n: b for n, _, _, b in f["arrays"]}
        assert got == c_arrays(files, sk, dsp), (name, layout, dsp)
        names = re.findall(r'^static const char ES_ROM es_cn\d+_\[\] = "((?:[^"\\]|\\.)*)";', files["es_model.c"], re.M)
        assert len(names) == sk.n_outputs
        names_bytes = sum(len(n.encode().decode("unicode_escape").encode("latin-1")) + 1 + 4 for n in names)
        assert f["data"] + f["data_ram"] + f["quant"] == sum(got.values()) + names_bytes
    assert set(f["code"]) <= set(boards.DEFAULT_CODE[layout]) and set(f["stack"]) == set(boards.DEFAULT_STACK[layout]) - {"base"}


def test_estimate_follows_the_structure():
    """Fewer tables and bits, the layout and the input buffer all move the figures (they used not to)."""
    b = boards.load("uno")
    big, small = random_sketch(D=64, L=16, K=6, P=48, taps=8, seed=1), random_sketch(D=64, L=8, K=5, P=48, taps=8, seed=1)
    fb, fs = export.footprint(big, "unrolled", b), export.footprint(small, "unrolled", b)
    assert fs.total_flash < fb.total_flash - (big.table_bytes - small.table_bytes) // 2 and fs.data < fb.data
    assert fs.code < fb.code and fs.ram <= fb.ram
    fc = export.footprint(big, "compact", b)
    assert fc.code < fb.code and fc.stack != fb.stack
    wide = random_sketch(D=640, L=16, K=6, P=48, taps=8, seed=1)
    assert export.footprint(wide, "unrolled", b).arrays - fb.arrays == 640 - 64     # the input buffer: a byte an input
    # DEBUG's arrays count unless the board caps them (the Uno: ES_DEBUG_RAM 384)
    win = random_sketch(**VIBRATION)
    assert export.footprint(win, "compact", boards.load("qemu-m4")).debug == win.n_debug_bits + 2 * win.n_debug_buckets
    assert export.footprint(win, "compact", boards.load("qemu-uno")).debug == 0


def test_every_board_has_a_fitted_footprint():
    """Every board's [footprint] weighs every feature codegen.footprint reports; a real board's model figures are its
    emulated twin's (examples/studies/footprint_fit.py TWIN)."""
    twins = _footprint_fit().TWIN
    for b in boards.all_boards():
        text = b.path.read_text()
        for sub in ("unrolled", "compact", "stack_unrolled", "stack_compact"):
            assert f"[footprint.{sub}]" in text, (b.name, sub)
        assert "footprint_fit.py" in text, b.name
        for sub in ("unrolled", "compact"):
            assert set(getattr(b.footprint, sub)) == set(boards.DEFAULT_CODE[sub]), (b.name, sub)
        twin = b if b.emulated else boards.load(twins[b.name])
        fm, ft = b.footprint, twin.footprint
        assert (fm.unrolled, fm.compact, fm.stack_unrolled, fm.stack_compact, fm.dsp, fm.harvard) == (
            ft.unrolled, ft.compact, ft.stack_unrolled, ft.stack_compact, ft.dsp, ft.harvard), b.name


def test_overflow_messages_are_parsed():
    """The linker's words for a firmware too big for its board, on every toolchain here."""
    avr_map = ("Memory Configuration\n\nName             Origin             Length             Attributes\n"
               "text             0x0000000000000000 0x0000000000008000 xr\n"
               "data             0x0000000000800100 0x0000000000000800 rw !x\n\nLinker script and memory map\n")
    arm_map = ("Memory Configuration\n\nName Origin Length Attributes\nRAM 0x20000000 0x00004000 xrw\n\n"
               "Linker script and memory map\n                0x00001000                        ES_MIN_STACK = 0x1000\n"
               "                0x20003598                        _ebss = .\n"
               "                0x20004000                        _estack = (ORIGIN (RAM) + LENGTH (RAM))\n")
    cases = [
        ("ld: firmware.elf section `.text' will not fit in region `text'\nld: region `text' overflowed by 2764 bytes\n"
         "collect2: error: ld returned 1 exit status", None, [("text", "flash", ".text", 2764)]),
        ("ld: address 0x80093b of firmware.elf section `.bss' is not within region `data'\n" * 2, avr_map,
         [("data", "RAM", ".bss", 59)]),
        ("ld: firmware.elf section `.bss' will not fit in region `RAM'\nld: region `RAM' overflowed by 836 bytes", None,
         [("RAM", "RAM", ".bss", 836)]),
        ("ld: RAM is too small for .data, .bss and the stack\ncollect2: error: ld returned 1 exit status", arm_map,
         [("RAM", "RAM", None, 1432)]),
        ("Error: The program size (35532 bytes) is greater than maximum allowed (32256 bytes)", None,
         [("flash", "flash", None, 3276)]),
        ("region `FLASH' overflowed by 10 bytes\nregion `RAM' overflowed by 20 bytes", None,
         [("FLASH", "flash", None, 10), ("RAM", "RAM", None, 20)]),
        ("src/x.c:3: error: expected ';'", None, []),
    ]
    for log, map_text, want in cases:
        got = [(o.region, o.memory, o.section, o.over) for o in build.overflow(log, map_text)]
        assert got == want, log
    e = build.DoesNotFit(build.overflow(cases[0][0]), "qemu-uno")
    assert str(e).startswith("the firmware for qemu-uno does not fit: 2,764 bytes over in flash") and e.over == 2764
    assert "\n" not in str(e) and "collect2" not in str(e)


def _cnn_esk(tmp_path):
    sk = random_sketch(**DIGITS_CNN)
    path = tmp_path / "cnn.esk"
    esk.save(sk, path)
    x = np.random.default_rng(0).normal(size=(20, 8, 8, 1)).astype(np.float32)
    np.savez(tmp_path / "digits8x8.npz", x_train=x, x_test=x[:5], y_train=np.arange(20) % 10, y_test=np.arange(5))
    return sk, path, tmp_path / "digits8x8.npz"


def _cli(capsys, *args) -> tuple[int, str]:
    code = cli.main([str(a) for a in args])
    err = capsys.readouterr().err
    return code, err


def test_digits_cnn_too_big_for_the_uno_is_refused_before_any_build(tmp_path, capsys):
    """export --board uno and verify --board qemu-uno refuse the digits CNN default's shape with one line of figures
    and advice, before PlatformIO is started (the fast tier makes build.run_pio raise)."""
    sk, path, data = _cnn_esk(tmp_path)
    out = tmp_path / "fw"
    code, err = _cli(capsys, "export", path, "--board", "uno", "-o", out)
    lines = [ln for ln in err.splitlines() if ln.startswith("edgesketch: error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    msg = lines[0]
    fp = export.footprint(sk, "unrolled", boards.load("uno"))
    assert f"the model needs about {fp.total_flash:,} bytes of flash" in msg and "but uno has 32,256" in msg
    assert f"{sk.table_bytes:,} of them tables" in msg and "--layout compact" in msg and "--count-bits 4" in msg
    assert not out.exists()
    code, err = _cli(capsys, "verify", path, "--board", "qemu-uno", "--data", data)
    lines = [ln for ln in err.splitlines() if ln.startswith("edgesketch: error:")]
    assert code == 2 and len(lines) == 1 and "bytes of flash" in lines[0] and "but qemu-uno has 32,768" in lines[0], err
    print("\n" + msg + "\n" + lines[0])
    # the API alike (export and verify); and tune does not build it
    from edgesketch.api import Model
    api = Model(sk)
    with pytest.raises(UserError, match="bytes of flash") as e:
        api.export(tmp_path / "api", board="uno")
    assert "layout=compact" in str(e.value) and e.value.argument == "layout"
    with pytest.raises(UserError, match="bytes of flash"):
        api.verify(board="qemu-uno", x=np.zeros((2, 64), np.float32))
    from edgesketch import tuning as tune
    bud = tune.Budget("uno", "qemu-uno", 32256 - 4764, 2048 - 446, None, False)
    cost = tune.measure(sk, "unrolled", bud, np.zeros((2, 64), np.int8))
    assert cost.how.startswith("estimate: does not fit uno") and not cost.fits(bud)


def test_1500_inputs_export_for_qemu_m0(tmp_path):
    """A 1,500-input window fits qemu-m0's 16 KB of RAM (measured: it runs there, tests/test_multiframe.py); the
    estimate used to refuse it (10,820 + 11,264 > 16,384)."""
    sk = random_sketch(**VIBRATION)
    b = boards.load("qemu-m0")
    for layout in codegen.LAYOUTS:
        fp = export.check_fits(sk, b, layout)
        assert fp.total_ram <= b.ram_bytes and fp.arrays >= 1500
        out, _ = export.export(sk, b, tmp_path / layout, layout)
        assert (out / "platformio.ini").is_file()


def test_1500_inputs_on_the_uno_are_refused_with_figures():
    """The Uno's 2 KB cannot hold a 1,500-value input and the model's stack: refused in one line, with the parts."""
    sk = random_sketch(**VIBRATION)
    for layout in codegen.LAYOUTS:
        with pytest.raises(UserError) as e:
            export.check_fits(sk, boards.load("qemu-uno"), layout)
        msg = str(e.value)
        assert "bytes of RAM" in msg and "1,500 for the input" in msg and "qemu-uno has 2,048" in msg and "\n" not in msg


@pytest.mark.slow
def test_a_firmware_the_linker_refuses_reads_does_not_fit(tmp_path, capsys):
    """The estimate bypassed (write_project directly), a huge model on qemu-uno: the build ends on "does not fit: N
    bytes over in flash", not on the linker's lines; verify --project says the same in one line."""
    sk = random_sketch(D=64, C=10, L=24, K=7, P=48, taps=8, seed=5)         # 30 KB of tables + code: over 32 KB
    esk.assign_id(sk)
    proj = build.write_project("qemu-uno", codegen.generate(sk, "unrolled"), tmp_path / "fw")
    with pytest.raises(build.DoesNotFit) as e:
        build.run_pio(proj, build.default_core_dir())
    msg = str(e.value)
    assert re.search(r"the firmware for qemu-uno does not fit: [\d,]+ bytes over in flash \(the linker's region text, "
                     r"section \.text\)", msg) and e.value.over > 0 and "collect2" not in msg, msg
    path = tmp_path / "big.esk"
    esk.save(sk, path)
    x = np.zeros((3, 64), np.float32)
    np.savez(tmp_path / "d.npz", x_train=x, x_test=x, y_train=np.arange(3), y_test=np.arange(3))
    code, err = _cli(capsys, "verify", path, "--board", "qemu-uno", "--project", proj, "--data", tmp_path / "d.npz")
    lines = [ln for ln in err.splitlines() if ln.startswith("edgesketch: error:")]
    assert code == 2 and len(lines) == 1 and "does not fit: " in lines[0] and "bytes over in flash" in lines[0], err
    assert "Traceback" not in err and "collect2" not in err


@pytest.mark.slow
@pytest.mark.parametrize("board", ["qemu-m4", "qemu-m0", "qemu-rv32", "qemu-lx106", "qemu-uno"])
def test_estimate_bounds_the_linked_firmware(board, tmp_path):
    """The estimate against firmware linked here, a few sketches of the matrix (footprint_fit.py check does all): an
    upper bound on flash and static RAM, and not far above it."""
    b = boards.load(board)
    for name in ("learned-L8K4-int8", "win1d-thresholds-weights-int4", "learned-codebook-int8"):
        sk = test_codegen.make(name)
        esk.assign_id(sk)
        for layout in codegen.LAYOUTS:
            fp = export.footprint(sk, layout, b)
            proj = build.write_project(b, codegen.generate(sk, layout), tmp_path / f"{name}-{layout}")
            size = build.elf_size(build.run_pio(proj, build.default_core_dir()))
            # AVR's code follows the structure less linearly (footprint_fit.py check: up to +29% of a build over)
            slack = 1.35 if b.footprint.harvard else 1.15
            assert size.flash <= fp.total_flash <= slack * size.flash + 256, (name, layout, size, fp)
            static = fp.total_ram - max(fp.min_stack, fp.firmware_stack + fp.stack)
            assert size.ram <= static <= size.ram + 64, (name, layout, size, fp)
