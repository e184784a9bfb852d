"""edgesketch export --format c | arduino | cmake | espidf, each built for real:

- c: the README's usage example compiles with the host gcc against the exported files, runs, and prints the classes
  of edgesketch's integer reference;
- arduino: the example sketch is built against Arduino's REAL AVR core for the Uno (Debian's arduino-core-avr with
  gcc-avr, through the qemu-uno dev-platform's core build and PlatformIO), runs under QEMU and prints the class of
  the integer reference; its model tables stay in program memory. For Cortex-M (M4: the DWT cycle path, M0+: micros
  only) and the ESP32-C3's RISC-V (ESP.getCycleCount) it is compiled against the STAND-IN Arduino.h of
  tests/fixtures/arduino_stub (Debian has no ARM or ESP Arduino core);
- cmake/espidf: a CMake project adds the exported folder with add_subdirectory() and builds a static library with
  arm-none-eabi-gcc (Cortex-M4 toolchain file), and with the host compiler a program that checks es_predict_q against
  edgesketch.sketch.int_scores; the ESP-IDF branch is checked with a stand-in idf_component_register (no ESP-IDF here).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgesketch import build, cli, codegen, emulate, esk, export
from edgesketch.errors import ConfigError, UserError
from edgesketch.sketch import int_scores, quantize_inputs, random_sketch
from test_build import FIXTURES, session_core
from test_esk_cli import assert_user_error, run_cli


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A digits-shaped sketch (64 inputs, 10 classes, L=16 K=6 P=48 s=8) whose data source is sklearn:digits, so the
    Arduino example gets a real test sample."""
    sk = random_sketch(D=64, C=10, L=16, K=6, P=48, taps=8, seed=3)
    sk.meta["source"] = "sklearn:digits"
    path = tmp_path_factory.mktemp("formats") / "digits.esk"
    esk.save(sk, path)
    return path, esk.load(path)


def _run(cmd, cwd=None, timeout=300):
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, " ".join(map(str, cmd)) + "\n" + r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


RUNTIME = codegen.RUNTIME         # the hand-written runtime every export ships beside the model


def _runtime_c(folder: Path) -> list[Path]:
    return [folder / r for r in RUNTIME if r.endswith(".c")]


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


# ---------------------------------------------------------------- c
@pytest.mark.slow
def test_c_format_readme_example_builds_and_runs(model, tmp_path):
    path, sk = model
    out = tmp_path / "model"
    code, stdout, err = run_cli("export", path, "--format", "c", "-o", out)
    assert code == 0, err
    assert _files(out) == {"es_model.h", "es_model.c", "README.md", *RUNTIME}
    readme = (out / "README.md").read_text()
    assert sk.meta["model_id"] in readme and "es_predict_q" in readme and "es_argmax" in readme
    example = re.search(r"## Usage\n+```c\n(.*?)```", readme, re.S).group(1)
    assert 12 <= len(example.strip().splitlines()) <= 25
    (tmp_path / "main.c").write_text(example)
    exe = tmp_path / "main"
    _run(["gcc", "-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", f"-I{out}", tmp_path / "main.c", out / "es_model.c",
          *_runtime_c(out), "-o", exe])
    # float zeros quantise to the zero points; the int8 input is zeros
    want_f = int(np.argmax(int_scores(sk, quantize_inputs(sk, np.zeros((1, 64), np.float32)))[0]))
    want_q = int(np.argmax(int_scores(sk, np.zeros((1, 64), np.int8))[0]))
    assert _run([exe]).strip() == f"float input: class {want_f}; int8 input: class {want_q}"
    assert "exported" in stdout and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_c_and_arduino_formats_of_a_regression_sketch(tmp_path):
    """Regression sketches print outputs, not classes: the README example and the Arduino example both compile."""
    sk = random_sketch(D=13, C=2, L=8, K=4, P=16, taps=4, seed=4, task="regression")
    export.export(sk, None, tmp_path / "c", format="c")
    readme = (tmp_path / "c" / "README.md").read_text()
    (tmp_path / "main.c").write_text(re.search(r"## Usage\n+```c\n(.*?)```", readme, re.S).group(1))
    exe = tmp_path / "main"
    _run(["gcc", "-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", f"-I{tmp_path / 'c'}", tmp_path / "main.c",
          tmp_path / "c" / "es_model.c", *_runtime_c(tmp_path / "c"), "-o", exe])
    q = int_scores(sk, np.zeros((1, 13), np.int8))[0] * sk.out_scale + sk.out_bias
    lines = _run([exe]).strip().splitlines()
    assert len(lines) == 2 and all(f"{q[c]:.6f} (int8 input)" in lines[c] for c in range(2)), lines
    export.export(sk, None, tmp_path / "lib", format="arduino", sample=np.arange(13, dtype=np.int8))
    ino = (tmp_path / "lib" / "examples" / "classify" / "classify.ino").read_text()
    assert f"kExpected = {int_scores(sk, np.arange(13, dtype=np.int8)[None])[0][0]};" in ino and "score[0]" in ino
    _stub_compile("arm-none-eabi-g++", ["-mcpu=cortex-m4", "-mthumb"], tmp_path / "lib", tmp_path, "m4")


# ---------------------------------------------------------------- cmake / espidf
CMAKE_PROJECT = """cmake_minimum_required(VERSION 3.13)
project(es_component_test C)
add_subdirectory("{component}" es_model)
{body}
"""
ARM_TOOLCHAIN = """set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR arm)
set(CMAKE_C_COMPILER arm-none-eabi-gcc)
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)
set(CMAKE_C_FLAGS_INIT "-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16")
"""


def _cmake(src: Path, bdir: Path, *args) -> str:
    out = _run(["cmake", "-S", src, "-B", bdir, "-DCMAKE_BUILD_TYPE=Release", *args], timeout=120)
    return out + _run(["cmake", "--build", bdir, "--parallel", "2"], timeout=300)


@pytest.mark.slow
def test_cmake_component_builds_for_cortex_m4_and_checks_on_the_host(model, tmp_path):
    path, sk = model
    comp = tmp_path / "es_model"
    export.export(sk, None, comp, format="cmake")
    assert _files(comp) == {"CMakeLists.txt", "es_model.h", "es_model.c", "README.md", *RUNTIME}
    idf = tmp_path / "espidf"
    export.export(sk, "esp32", idf, format="espidf")          # the same folder, checked against the ESP32's memory
    for name in ("CMakeLists.txt", "es_model.h", "es_model.c"):
        assert (idf / name).read_text() == (comp / name).read_text()

    # Cortex-M4 with arm-none-eabi-gcc: the component's target es_model, and a library of the user's that calls it
    arm = tmp_path / "arm"
    arm.mkdir()
    (arm / "app.c").write_text('#include "es_model.h"\n'
                               "int app_classify(const int8_t *x)\n{\n    int32_t s[ES_N_OUTPUTS];\n"
                               "    return es_predict_q(x, s) == ES_OK ? es_argmax(s) : -1;\n}\n")
    (arm / "CMakeLists.txt").write_text(CMAKE_PROJECT.format(component=comp, body=(
        "add_library(app STATIC app.c)\ntarget_link_libraries(app PRIVATE es_model)")))
    (arm / "arm.cmake").write_text(ARM_TOOLCHAIN)
    _cmake(arm, arm / "build", f"-DCMAKE_TOOLCHAIN_FILE={arm / 'arm.cmake'}")
    lib, app = arm / "build" / "es_model" / "libes_model.a", arm / "build" / "libapp.a"
    attrs = _run(["arm-none-eabi-readelf", "-A", lib])
    assert "Tag_CPU_arch: v7E-M" in attrs and "Tag_THUMB_ISA_use: Thumb-2" in attrs and "Tag_ABI_VFP_args: VFP" in attrs
    assert re.search(r"\bT es_predict_q\b", _run(["arm-none-eabi-nm", lib]))
    assert re.search(r"\bU es_predict_q\b", _run(["arm-none-eabi-nm", app]))

    # the host: es_predict_q against the integer reference on random inputs
    rng = np.random.default_rng(0)
    xq = rng.integers(-128, 128, (16, sk.n_inputs)).astype(np.int8)
    want = int_scores(sk, xq)
    host = tmp_path / "host"
    host.mkdir()
    rows = lambda a: ",\n".join("{" + ", ".join(map(str, r)) + "}" for r in a.tolist())
    (host / "check.c").write_text(f"""#include <stdio.h>
#include "es_model.h"
static const int8_t x[{len(xq)}][ES_N_INPUTS] = {{{rows(xq)}}};
static const int32_t want[{len(xq)}][ES_N_OUTPUTS] = {{{rows(want)}}};
int main(void)
{{
    int32_t s[ES_N_OUTPUTS];
    int i, c, bad = 0;
    for (i = 0; i < {len(xq)}; i++) {{
        es_predict_q(x[i], s);
        for (c = 0; c < ES_N_OUTPUTS; c++)
            bad += s[c] != want[i][c];
    }}
    printf("%d mismatches\\n", bad);
    return bad != 0;
}}
""")
    (host / "CMakeLists.txt").write_text(CMAKE_PROJECT.format(component=comp, body=(
        "add_executable(check check.c)\ntarget_link_libraries(check PRIVATE es_model)")))
    _cmake(host, host / "build")
    assert _run([host / "build" / "check"]).strip() == "0 mismatches"

    # ESP-IDF: the same CMakeLists.txt calls idf_component_register when IDF defines it (a stand-in here)
    fake = tmp_path / "idf"
    fake.mkdir()
    (fake / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.13)\nproject(idf_standin C)\n"
        "function(idf_component_register)\n  message(STATUS \"idf_component_register(${ARGN})\")\nendfunction()\n"
        f'add_subdirectory("{idf}" es_model)\n'
        'if(TARGET es_model)\n  message(FATAL_ERROR "plain target made under IDF")\nendif()\n')
    log = _run(["cmake", "-S", fake, "-B", fake / "build"], timeout=120)
    srcs = ";".join(sorted(["es_model.c", *(r for r in RUNTIME if r.endswith(".c"))]))
    assert f"idf_component_register(SRCS;{srcs};INCLUDE_DIRS;.)" in log


# ---------------------------------------------------------------- arduino
@pytest.fixture(scope="module")
def arduino_lib(model, tmp_path_factory) -> tuple[Path, object]:
    """The library exported once by the command line, with --zip (tests only read it)."""
    path, sk = model
    out = tmp_path_factory.mktemp("arduino") / "digits_sketch"
    code, stdout, err = run_cli("export", path, "--format", "arduino", "-o", out, "--zip")
    assert code == 0, err
    assert "test sample 0 of sklearn:digits" in stdout
    return out, sk


@pytest.mark.slow
def test_arduino_library_layout_and_zip(arduino_lib):
    out, sk = arduino_lib
    ex = "examples/classify/classify.ino"
    assert _files(out) == {"library.properties", "README.md", "src/es_model.h", "src/es_model.c", ex,
                           "examples/classify_float/classify_float.ino",
                           *(f"src/{r}" for r in RUNTIME)}
    props = dict(line.split("=", 1) for line in (out / "library.properties").read_text().splitlines())
    # the command line names the library after the model: the .esk file's stem (digits), not the folder's name
    assert props["name"] == "digits" and props["includes"] == "es_model.h" and props["architectures"] == "*"
    assert {"version", "author", "maintainer", "sentence", "paragraph", "category"} <= set(props)
    with zipfile.ZipFile(out.with_name("digits_sketch.zip")) as z:     # one top folder, the library, as the IDE wants
        names = [n for n in z.namelist() if not n.endswith("/")]
        assert sorted(names) == sorted(f"digits/{f}" for f in _files(out))
        assert z.read(f"digits/{ex}") == (out / ex).read_bytes()
    # the sample is the first digits test image, quantised; the expected class is the integer reference's
    from edgesketch import data
    xq = quantize_inputs(sk, data.load("sklearn:digits").x_test[:1])[0]
    ino = (out / ex).read_text()
    body = re.search(r"kSample\[ES_N_INPUTS\] SAMPLE_IN_FLASH = \{(.*?)\};", ino, re.S).group(1)
    assert [int(v) for v in body.replace(",", " ").split()] == xq.tolist()
    assert f"kExpected = {int(np.argmax(int_scores(sk, xq[None])[0]))};" in ino
    # the float example holds the recorded values of the same sample (as float literals)
    flo = (out / "examples" / "classify_float" / "classify_float.ino").read_text()
    body = re.search(r"const float kSample\[ES_N_INPUTS\] SAMPLE_IN_FLASH = \{(.*?)\};", flo, re.S).group(1)
    vals = np.array([float(v.rstrip("f")) for v in body.replace(",", " ").split()], np.float32)
    assert np.allclose(vals, data.load("sklearn:digits").x_test[0].reshape(-1), rtol=1e-6) and "as recorded" in flo


def _stub_compile(cxx: str, flags: list[str], lib: Path, tmp_path: Path, tag: str) -> str:
    """Compile the example (C++) and the model (C) against the stand-in Arduino.h; return the example's nm."""
    cc = cxx[:-3] + "gcc"
    inc = [f"-I{lib / 'src'}", f"-I{FIXTURES / 'arduino_stub'}"]
    warn = ["-Wall", "-Wextra", "-Werror", "-Os"]
    obj = tmp_path / f"{tag}-classify.o"
    for ino in sorted((lib / "examples").glob("*/*.ino")):        # classify, classify_float, stream: each compiles
        _run([cxx, *flags, *inc, *warn, "-x", "c++", "-std=gnu++11", "-fno-exceptions", "-fno-rtti", "-c", ino,
              "-o", obj if ino.stem == "classify" else tmp_path / f"{tag}-{ino.stem}.o"])
    for c in ["es_model.c", *(r for r in RUNTIME if r.endswith(".c"))]:
        _run([cc, *flags, *inc, *warn, "-std=c99", "-c", lib / "src" / c, "-o", tmp_path / f"{tag}-{c}.o"])
    return _run([cxx[:-3] + "nm", obj])


@pytest.mark.slow
def test_arduino_example_compiles_for_cortex_m_and_esp_against_the_standin(arduino_lib, tmp_path):
    out, _ = arduino_lib
    m4 = _stub_compile("arm-none-eabi-g++", ["-mcpu=cortex-m4", "-mthumb"], out, tmp_path, "m4")
    m0 = _stub_compile("arm-none-eabi-g++", ["-mcpu=cortex-m0plus", "-mthumb"], out, tmp_path, "m0")
    # the ESP32-C3 (RISC-V; the lx106 compiler here has no C library headers)
    esp = _stub_compile("riscv64-unknown-elf-g++", ["-DARDUINO_ARCH_ESP32=1", "-march=rv32imc", "-mabi=ilp32",
                                                    "--specs=picolibc.specs"], out, tmp_path, "esp")
    for syms in (m4, m0, esp):
        assert re.search(r"\bU es_predict_q\b", syms) and re.search(r"\bU (_Z6)?micros", syms)
        assert re.search(r"\bT setup\b|_Z5setupv", syms) and "_Z4loopv" in syms
    assert "getCycleCount" in esp and "getCycleCount" not in m4 + m0
    # the M4 prints cycles (DWT), the M0+ has no cycle counter: its object has no " cycles" string
    assert b" cycles" in (tmp_path / "m4-classify.o").read_bytes()
    assert b" cycles" not in (tmp_path / "m0-classify.o").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("example", ["classify", "classify_float"])
def test_arduino_example_on_the_real_avr_core_runs_on_qemu_uno(arduino_lib, tmp_path, tmp_path_factory, example):
    """The examples, as the Arduino IDE would build them for an Uno: Arduino's AVR core (Debian arduino-core-avr) with
    the flags of its platform.txt, the library under lib/. Then each runs under qemu-system-avr and prints the class
    (the float one its name too) that the integer reference gives."""
    out, sk = arduino_lib
    proj = build.write_project("qemu-uno", {"es_model.h": "", "es_model.c": ""}, tmp_path / "uno")
    shutil.rmtree(proj / "src")
    shutil.rmtree(proj / "lib" / "es_model")
    (proj / "src").mkdir()
    ino = (out / "examples" / example / f"{example}.ino").read_text()
    assert ino.count("#include <Arduino.h>") == 1          # what the IDE adds to an .ino is already there
    (proj / "src" / "main.cpp").write_text(ino)
    shutil.copytree(out, proj / "lib" / out.name)
    with open(proj / "platformio.ini", "a") as fh:           # no framework in this dev-platform: take every library
        fh.write("lib_compat_mode = off\n")
    elf = build.run_pio(proj, session_core(tmp_path_factory))
    size = build.elf_size(elf)
    # the tables (10,240 bytes) and the sample stay in flash: RAM holds the core's data and the example's buffers
    assert size.data < 1024 and size.ram < 1536 and size.text > sk.table_bytes, size
    body = re.search(r"kSample\[ES_N_INPUTS\] SAMPLE_IN_FLASH = \{(.*?)\};", ino, re.S).group(1)
    if example == "classify":
        xq = np.array([int(v) for v in body.replace(",", " ").split()], np.int8)
    else:       # float values, quantised as es_predict does
        xq = quantize_inputs(sk, np.array([float(v.rstrip("f")) for v in body.replace(",", " ").split()], np.float32)[None])[0]
    want = int(np.argmax(int_scores(sk, xq[None])[0]))
    with emulate.qemu("qemu-uno", elf) as url:
        lines = _uart_lines(url, 2)
    if example == "classify_float":
        assert lines == [f"edgesketch model {sk.meta['model_id']} (float input)",
                         f"class {want} {sk.meta['class_names'][want]} (expected {want})"], lines
        return
    assert lines[0] == f"edgesketch model {sk.meta['model_id']}", lines
    # QEMU's Uno has no Timer0, so micros() stands still (0 us); the AVR has no cycle counter the example reads
    assert re.fullmatch(rf"class {want} \(expected {want}\), \d+ us", lines[1]), lines
    print(f"\nUno example: text {size.text:,} data {size.data} bss {size.bss}; {lines[1]}")


def _uart_lines(url: str, n: int, timeout: float = 20.0) -> list[str]:
    """The first n lines the guest writes, read from the raw socket: pyserial's socket:// open() empties its input
    buffer after connecting, which loses what a sketch that does not wait for the host printed first."""
    import socket
    host, port = str(url).removeprefix("socket://").rsplit(":", 1)
    buf = b""
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        while buf.count(b"\n") < n:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    return [ln.decode(errors="replace").strip() for ln in buf.split(b"\n")[:n]]


# ---------------------------------------------------------------- errors and force
def test_export_formats_refuse_overwrites_and_bad_arguments(model, tmp_path, capsys):
    path, sk = model

    def run_cli(*args):       # in this process: a dozen commands, not a dozen interpreters
        code = cli.main([str(a) for a in args])
        cap = capsys.readouterr()
        return code, cap.out, cap.err
    for fmt in ("c", "arduino", "cmake", "espidf"):
        out = tmp_path / fmt
        out.mkdir()
        (out / "mine.txt").write_text("user data")
        code, _, err = run_cli("export", path, "--format", fmt, "-o", out)
        assert_user_error(code, err, "already exists", "--force")
        assert (out / "mine.txt").read_text() == "user data"
        with pytest.raises(UserError, match="force=True") as e:
            export.export(sk, None, out, format=fmt)
        assert e.value.argument == "force"
        code, _, err = run_cli("export", path, "--format", fmt, "-o", out, "--force")
        assert code == 0, err
        assert not (out / "mine.txt").exists() and (out / "README.md").is_file()
    # an existing zip is refused too, before anything is written
    (tmp_path / "lib.zip").write_text("mine")
    code, _, err = run_cli("export", path, "--format", "arduino", "-o", tmp_path / "lib", "--zip")
    assert_user_error(code, err, "lib.zip already exists", "--force")
    assert not (tmp_path / "lib").exists() and (tmp_path / "lib.zip").read_text() == "mine"
    big = tmp_path / "big.esk"
    esk.save(random_sketch(D=64, C=10, L=32, K=6, P=96, taps=16, seed=2), big)
    for args, needles in [
        (["--format", "c", "--zip"], ["--zip is for --format arduino"]),
        (["--format", "cmake", "--board", "arduino-uno"], ["unknown board", "qemu-m4"]),
        (["--format", "arduino", "--board", "qemu-uno"], ["bytes of flash", "qemu-uno has 32,768"]),
    ]:
        code, _, err = run_cli("export", big if "qemu-uno" in args else path, *args, "-o", tmp_path / "x")
        assert_user_error(code, err, *needles)
    with pytest.raises(SystemExit) as e:
        run_cli("export", path, "--format", "zip", "-o", tmp_path / "x")
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err
    with pytest.raises(ConfigError) as e:
        export.export(sk, None, tmp_path / "x", format="arduino", sample=np.zeros(63, np.int8))
    assert e.value.argument == "sample"
    with pytest.raises(ConfigError) as e:
        export.export(sk, None, tmp_path / "x", format="tflite")
    assert e.value.argument == "format"
    assert not (tmp_path / "x").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_export_help_teaches_every_format():
    code, stdout, _ = run_cli("export", "--help")
    assert code == 0
    for fmt in ("platformio", "c", "arduino", "cmake", "espidf"):
        assert re.search(rf"^  {fmt}\s+\S", stdout, re.M), fmt
    for needle in ("--zip", "ESP-IDF", "add_subdirectory", "Add .ZIP Library",
                   "pio run -t upload"):
        assert needle in stdout, needle


@pytest.mark.slow
def test_arduino_stream_example_compiles_against_the_standin(tmp_path):
    """With a hop, the library has examples/stream/stream.ino (a sample at a fixed rate, the class at every hop): it
    compiles with the model's stream for Cortex-M4 and M0 against the stand-in Arduino.h, as classify and
    classify_float do."""
    from edgesketch.sketch import Window
    sk = random_sketch(L=0, C=3, windows=[(Window.over((40, 3), 9, 2, padding="valid"), 8, 5, 16, 6)], seed=5)
    sk.meta.update(class_names=["idle", "walk", "run"], input_units=["g"] * 3)
    esk.assign_id(sk)
    export.export(sk, None, tmp_path / "lib", format="arduino", hop=2)
    names = sorted(p.parent.name for p in (tmp_path / "lib" / "examples").glob("*/*.ino"))
    assert names == ["classify", "classify_float", "stream"]
    ino = (tmp_path / "lib" / "examples" / "stream" / "stream.ino").read_text()
    assert "es_stream_push" in ino and "SAMPLE_HZ" in ino and "(g,g,g)" in ino
    _stub_compile("arm-none-eabi-g++", ["-mcpu=cortex-m4", "-mthumb"], tmp_path / "lib", tmp_path, "m4")
    _stub_compile("arm-none-eabi-g++", ["-mcpu=cortex-m0plus", "-mthumb"], tmp_path / "lib", tmp_path, "m0")
