"""Names and prefixes (issue 34): two exported models in one program.

export(..., prefix="walk") writes walk_model.h/.c with walk_* functions and WALK_* macros in the c, arduino, cmake and
espidf formats, and the README and example code use them; the runtime both models ship (es_sketch*, es_port.h) keeps
its names and is compiled once. The Arduino library is named after the model (name=, else the .esk file's stem from
the command line, else the folder's name).

- fast: the files, the names in the generated text, one-line refusals of bad prefixes and names, library.properties;
- slow: the c format's README examples of two models (walk, gear) compiled with gcc into one program, each model's
  class equal to the integer reference's; THE demonstration: one Arduino sketch calling two models, built against
  Arduino's real AVR core (Debian arduino-core-avr, through the qemu-uno dev-platform and PlatformIO, as
  test_formats builds the classify example) and run under qemu-system-avr (uno), printing both class names.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import serial

from edgesketch import api, build, cli, codegen, emulate, esk, export, formats
from edgesketch.errors import ConfigError
from edgesketch.sketch import int_scores, random_sketch
from test_build import session_core

RUNTIME = codegen.RUNTIME
WALK_NAMES = ["walk", "run", "idle"]
GEAR_NAMES = ["low", "mid", "high"]


def _sketch(seed: int, names: list[str]):
    """A small sketch (16 inputs, 3 classes, 4 tables of 16 cells, 4-bit counts) with class names and its id."""
    sk = random_sketch(D=16, C=3, L=4, K=4, count_bits=4, seed=seed)
    sk.meta["class_names"] = list(names)
    esk.assign_id(sk)
    return sk


@pytest.fixture(scope="module")
def two():
    return _sketch(11, WALK_NAMES), _sketch(12, GEAR_NAMES)


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def _run(cmd, cwd=None, timeout=300) -> str:
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, " ".join(map(str, cmd)) + "\n" + r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


def _cli(capsys, *args):
    """The command line in this process (no interpreter start-up): (exit code, stdout, stderr)."""
    code = cli.main([str(a) for a in args])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _one_line_error(code, err, *needles):
    assert code == 2 and "Traceback" not in err, err
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("edgesketch: error:")]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], lines[0]


def _usage(readme: str, lang: str) -> str:
    return re.search(rf"## Usage\n+```{lang}\n(.*?)```", readme, re.S).group(1)


# ---------------------------------------------------------------- fast: files and names
def test_c_format_with_a_prefix_names_files_symbols_and_readme(two, tmp_path):
    walk, _ = two
    out = export.export(walk, None, tmp_path / "walk", format="c", prefix="walk")[0]
    assert _files(out) == {"walk_model.h", "walk_model.c", "README.md", *RUNTIME}
    h = (out / "walk_model.h").read_text()
    for needle in ("#define WALK_N_INPUTS", "int walk_predict_q(", "const char *walk_class_name(int i);"):
        assert needle in h, needle
    readme = (out / "README.md").read_text()
    example = _usage(readme, "c")
    assert '#include "walk_model.h"' in example and "walk_predict_q(xq, scores)" in example
    assert "WALK_N_INPUTS" in example and "walk_argmax(scores)" in example
    # every name of the model's API in the README is the prefixed one; the runtime's keep theirs
    assert not re.search(r"\bES_[A-Z_]+\b|\bes_(predict|argmax|debug|class_name|in_|out_)|\bes_model\.", readme), readme
    assert "## API (`walk_model.h`)" in readme and "es_sketch_argmax.c" in readme


def test_default_prefix_keeps_the_es_names(two, tmp_path):
    walk, _ = two
    assert export.export(walk, None, tmp_path / "c", format="c")[0].joinpath("es_model.h").is_file()
    lib = export.export(walk, None, tmp_path / "lib", format="arduino")[0]
    props = dict(ln.split("=", 1) for ln in (lib / "library.properties").read_text().splitlines())
    assert props["includes"] == "es_model.h" and props["name"] == "lib"
    assert "es_predict_q(x, scores);" in (lib / "examples" / "classify" / "classify.ino").read_text()


def test_cmake_and_arduino_formats_with_a_prefix(two, tmp_path):
    _, gear = two
    comp = export.export(gear, None, tmp_path / "gear_comp", format="cmake", prefix="gear")[0]
    assert _files(comp) == {"CMakeLists.txt", "gear_model.h", "gear_model.c", "README.md", *RUNTIME}
    cm = (comp / "CMakeLists.txt").read_text()
    assert "add_library(gear_model STATIC" in cm and '"gear_model.c"' in cm and "es_model" not in cm
    creadme = (comp / "README.md").read_text()
    assert "target_link_libraries(app PRIVATE gear_model)" in creadme and "gear_argmax(scores)" in _usage(creadme, "c")
    idf = export.export(gear, None, tmp_path / "gear_idf", format="espidf", prefix="gear")[0]
    assert (idf / "CMakeLists.txt").read_text() == cm

    lib = export.export(gear, None, tmp_path / "gear", format="arduino", prefix="gear", layout="compact")[0]
    assert {"src/gear_model.h", "src/gear_model.c", *(f"src/{r}" for r in RUNTIME)} <= _files(lib)
    props = dict(ln.split("=", 1) for ln in (lib / "library.properties").read_text().splitlines())
    assert props["includes"] == "gear_model.h" and props["dot_a_linkage"] == "true"
    ino = (lib / "examples" / "classify" / "classify.ino").read_text()
    for needle in ("#include <gear_model.h>", "kSample[GEAR_N_INPUTS]", "gear_predict_q(x, scores);",
                   "gear_argmax(scores)", '"edgesketch model " GEAR_MODEL_ID'):
        assert needle in ino, needle
    assert not re.search(r"\bES_[A-Z]|\bes_[a-z]", ino), ino
    readme = (lib / "README.md").read_text()
    assert "#include <gear_model.h>" in _usage(readme, "cpp") and "`src/gear_model.h`" in readme


def test_arduino_stream_example_with_a_prefix(tmp_path):
    from edgesketch.sketch import Window
    sk = random_sketch(L=0, C=3, windows=[(Window.over((40, 1), 9, 2), 8, 4, 16, 6)], seed=2)
    sk.meta["class_names"] = WALK_NAMES
    lib = export.export(sk, None, tmp_path / "walk", format="arduino", prefix="walk", hop=2)[0]
    ino = (lib / "examples" / "stream" / "stream.ino").read_text()
    for needle in ("#include <walk_model.h>", "static walk_stream_t stream;", "walk_stream_init(&stream);",
                   "walk_stream_push(&stream, x, out) != WALK_STREAM_READY", "walk_class_name(cls)",
                   "float x[WALK_STREAM_CHANNELS], out[WALK_N_OUTPUTS];"):
        assert needle in ino, needle
    assert not re.search(r"\bES_[A-Z]|\bes_[a-z]", ino), ino


# ---------------------------------------------------------------- fast: refusals
@pytest.mark.parametrize("bad", ["9x", "a-b", "", "Walk", "x" * 32])
def test_a_bad_prefix_is_a_one_line_config_error(two, tmp_path, bad):
    walk, _ = two
    for fmt in ("c", "arduino", "cmake", "espidf"):
        with pytest.raises(ConfigError) as e:
            export.export(walk, None, tmp_path / fmt, format=fmt, prefix=bad)
        assert e.value.argument == "prefix" and "prefix" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError) as e:
        formats.write_c(walk, tmp_path / "direct", prefix=bad)
    assert e.value.argument == "prefix"
    with pytest.raises(ConfigError) as e:
        api.Model(walk).export(tmp_path / "api", format="arduino", prefix=bad)
    assert e.value.argument == "prefix"
    assert not list(tmp_path.iterdir()), "nothing is written for a refused prefix"


def test_bad_prefix_and_name_from_the_command_line(two, tmp_path, capsys):
    walk, _ = two
    path = tmp_path / "walk.esk"
    esk.save(walk, path)
    for bad in ("9x", "a-b"):
        code, _, err = _cli(capsys, "export", path, "--format", "c", "-o", tmp_path / "x", "--prefix", bad)
        _one_line_error(code, err, f"--prefix {bad}", "C identifier")
    code, _, err = _cli(capsys, "export", path, "--format", "c", "-o", tmp_path / "x", "--prefix", "")
    _one_line_error(code, err, "prefix is empty")
    # platformio's firmware calls es_*: another prefix is refused there
    code, _, err = _cli(capsys, "export", path, "-o", tmp_path / "x", "--prefix", "walk")
    _one_line_error(code, err, "--prefix walk", "platformio", "es_*")
    code, _, err = _cli(capsys, "export", path, "--format", "c", "-o", tmp_path / "x", "--name", "walker")
    _one_line_error(code, err, "--name walker", "--format arduino")
    code, _, err = _cli(capsys, "export", path, "--format", "arduino", "-o", tmp_path / "x", "--name", "my lib")
    _one_line_error(code, err, "not an Arduino library name", "my_lib")
    assert not (tmp_path / "x").exists()
    with pytest.raises(ConfigError) as e:
        export.export(walk, None, tmp_path / "x", prefix="walk")          # platformio
    assert e.value.argument == "prefix"
    with pytest.raises(SystemExit) as e:
        cli.main(["export", "--help"])
    stdout = " ".join(capsys.readouterr().out.split())
    assert e.value.code == 0 and "--prefix P" in stdout and "two models can live in one program" in stdout
    assert "--name NAME" in stdout and "walk_predict_q" in stdout


# ---------------------------------------------------------------- fast: the Arduino library's name
def test_library_name_from_name_argument(two, tmp_path):
    walk, _ = two
    out = export.export(walk, None, tmp_path / "folder", format="arduino", prefix="walk", name="WalkClassifier",
                        zip=True)[0]
    assert out == (tmp_path / "folder").resolve()                          # the folder written is still out_dir
    props = dict(ln.split("=", 1) for ln in (out / "library.properties").read_text().splitlines())
    assert props["name"] == "WalkClassifier" and props["includes"] == "walk_model.h"
    assert "WalkClassifier" in (out / "examples" / "classify" / "classify.ino").read_text()
    with zipfile.ZipFile(tmp_path / "folder.zip") as z:                    # the zip's top folder is the library's name
        assert {n.split("/")[0] for n in z.namelist()} == {"WalkClassifier"}
        assert "WalkClassifier/src/walk_model.h" in z.namelist()
    for bad in ("my lib", "-x", "123", ""):
        with pytest.raises(ConfigError) as e:
            export.export(walk, None, tmp_path / "bad", format="arduino", name=bad)
        assert e.value.argument == "name" and "\n" not in str(e.value)
    with pytest.raises(ConfigError) as e:
        export.export(walk, None, tmp_path / "bad", format="cmake", name="walker")
    assert e.value.argument == "name"
    assert not (tmp_path / "bad").exists()


def test_library_name_from_the_esk_stem_on_the_command_line(two, tmp_path, capsys):
    walk, gear = two
    esk.save(walk, tmp_path / "walk_detector.esk")
    esk.save(gear, tmp_path / "gear box.esk")
    code, stdout, err = _cli(capsys, "export", tmp_path / "walk_detector.esk", "--format", "arduino", "-o",
                             tmp_path / "lib_a", "--prefix", "walk", "--zip")
    assert code == 0, err
    props = dict(ln.split("=", 1) for ln in (tmp_path / "lib_a" / "library.properties").read_text().splitlines())
    assert props["name"] == "walk_detector" and props["includes"] == "walk_model.h"
    assert "File > Examples > walk_detector > classify" in " ".join(stdout.split())
    with zipfile.ZipFile(tmp_path / "lib_a.zip") as z:
        assert {n.split("/")[0] for n in z.namelist()} == {"walk_detector"}
    # a stem outside the library specification is made safe; --name wins over the stem
    code, _, err = _cli(capsys, "export", tmp_path / "gear box.esk", "--format", "arduino", "-o", tmp_path / "lib_b",
                        "--prefix", "gear")
    assert code == 0, err
    assert "name=gear_box\n" in (tmp_path / "lib_b" / "library.properties").read_text()
    code, _, err = _cli(capsys, "export", tmp_path / "gear box.esk", "--format", "arduino", "-o", tmp_path / "lib_c",
                        "--prefix", "gear", "--name", "Gearbox")
    assert code == 0, err
    assert "name=Gearbox\n" in (tmp_path / "lib_c" / "library.properties").read_text()
    # the API without name=: the folder's name, as before
    out = api.Model(walk).export(tmp_path / "from_api", format="arduino", sample=None, prefix="walk")
    assert "name=from_api\n" in (out / "library.properties").read_text()


# ---------------------------------------------------------------- slow: two models in one C program
@pytest.mark.slow
def test_two_c_models_readme_examples_in_one_program(two, tmp_path):
    """The c format under prefixes walk and gear: both README examples (their main renamed, nothing else changed)
    and a main that classifies one input with each model compile with gcc into one program with the runtime
    compiled once; each model's class is the integer reference's."""
    walk, gear = two
    wdir = export.export(walk, None, tmp_path / "walk", format="c", prefix="walk")[0]
    gdir = export.export(gear, None, tmp_path / "gear", format="c", prefix="gear")[0]
    assert _files(wdir) == {"walk_model.h", "walk_model.c", "README.md", *RUNTIME}
    assert _files(gdir) == {"gear_model.h", "gear_model.c", "README.md", *RUNTIME}
    for r in RUNTIME:                                  # the same runtime in both folders: one copy is compiled
        assert (wdir / r).read_bytes() == (gdir / r).read_bytes(), r
    src = tmp_path / "src"
    src.mkdir()
    (src / "walk_example.c").write_text(_usage((wdir / "README.md").read_text(), "c"))
    (src / "gear_example.c").write_text(_usage((gdir / "README.md").read_text(), "c"))
    xq = np.random.default_rng(5).integers(-128, 128, 16).astype(np.int8)
    (src / "main.c").write_text(f"""#include <stdio.h>
#include "walk_model.h"
#include "gear_model.h"
int walk_example(void);
int gear_example(void);
static const int8_t x[16] = {{{", ".join(map(str, xq.tolist()))}}};
int main(void)
{{
    int32_t ws[WALK_N_OUTPUTS], gs[GEAR_N_OUTPUTS];
    if (walk_example() != 0 || gear_example() != 0) return 1;
    if (walk_predict_q(x, ws) != WALK_OK || gear_predict_q(x, gs) != GEAR_OK) return 1;
    printf("walk %d %s\\n", walk_argmax(ws), walk_class_name(walk_argmax(ws)));
    printf("gear %d %s\\n", gear_argmax(gs), gear_class_name(gear_argmax(gs)));
    return 0;
}}
""")
    flags = ["-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", f"-I{wdir}", f"-I{gdir}"]
    objs = []
    for name, c, extra in [("walk_example", src / "walk_example.c", ["-Dmain=walk_example"]),
                           ("gear_example", src / "gear_example.c", ["-Dmain=gear_example"]),
                           ("main", src / "main.c", []), ("walk_model", wdir / "walk_model.c", []),
                           ("gear_model", gdir / "gear_model.c", []),
                           *((Path(r).stem, wdir / r, []) for r in RUNTIME if r.endswith(".c"))]:
        objs.append(tmp_path / f"{name}.o")
        _run(["gcc", *flags, *extra, "-c", c, "-o", objs[-1]])
    exe = tmp_path / "two"
    _run(["gcc", *objs, "-o", exe])
    syms = _run(["nm", exe])
    assert len(re.findall(r" T es_sketch_argmax\b", syms)) == 1
    assert re.search(r" T walk_predict_q\b", syms) and re.search(r" T gear_predict_q\b", syms)
    lines = _run([exe]).strip().splitlines()
    zeros = np.zeros((1, 16), np.int8)
    want_zero = [int(np.argmax(int_scores(sk, zeros)[0])) for sk in (walk, gear)]
    assert lines[0].endswith(f"int8 input: class {want_zero[0]}") and lines[1].endswith(f"int8 input: class "
                                                                                           f"{want_zero[1]}"), lines
    w, g = (int(np.argmax(int_scores(sk, xq[None])[0])) for sk in (walk, gear))
    assert lines[2:] == [f"walk {w} {WALK_NAMES[w]}", f"gear {g} {GEAR_NAMES[g]}"], lines


# ---------------------------------------------------------------- slow: two models in one Arduino sketch on the Uno
TWO_MODEL_INO = """// Two edgesketch models in one Arduino sketch: each library exported with its own prefix.
#include <Arduino.h>
#include <walk_model.h>
#include <gear_model.h>

static const int8_t kWalk[WALK_N_INPUTS] = {%(walk)s};
static const int8_t kGear[GEAR_N_INPUTS] = {%(gear)s};
static int32_t walk_scores[WALK_N_OUTPUTS];
static int32_t gear_scores[GEAR_N_OUTPUTS];

void setup()
{
  Serial.begin(115200);
  while (Serial.available() == 0) {   // wait for the host to listen: pyserial's socket:// open() drops what came before
  }
  Serial.read();
  Serial.println(F("two models"));
  walk_predict_q(kWalk, walk_scores);
  const int w = walk_argmax(walk_scores);
  Serial.print(F("walk: class "));
  Serial.print(w);
  Serial.print(F(" "));
  Serial.println(walk_class_name(w));
  gear_predict_q(kGear, gear_scores);
  const int g = gear_argmax(gear_scores);
  Serial.print(F("gear: class "));
  Serial.print(g);
  Serial.print(F(" "));
  Serial.println(gear_class_name(g));
  Serial.println(F("done"));
}

void loop()
{
}
"""


@pytest.mark.slow
def test_two_model_arduino_sketch_on_the_real_avr_core_runs_on_qemu_uno(two, tmp_path, tmp_path_factory):
    """THE demonstration: the libraries of two models exported with --format arduino under prefixes walk and gear
    (compact layout), one sketch that includes both headers and calls walk_predict_q and gear_predict_q, built as
    test_formats builds the classify example (Arduino's AVR core from Debian's arduino-core-avr with the flags of its
    platform.txt, the libraries under lib/, through PlatformIO and the qemu-uno dev-platform), run under
    qemu-system-avr -M uno: the class names it prints over the UART are those of the integer reference's argmax."""
    walk, gear = two
    libs = tmp_path / "libs"
    wlib = export.export(walk, "qemu-uno", libs / "walk", layout="compact", format="arduino", prefix="walk",
                         name="WalkModel")[0]
    glib = export.export(gear, "qemu-uno", libs / "gear", layout="compact", format="arduino", prefix="gear",
                         name="GearModel")[0]
    rng = np.random.default_rng(7)
    xw, xg = (rng.integers(-128, 128, 16).astype(np.int8) for _ in range(2))
    want_w = int(np.argmax(int_scores(walk, xw[None])[0]))
    want_g = int(np.argmax(int_scores(gear, xg[None])[0]))

    proj = build.write_project("qemu-uno", {"es_model.h": "", "es_model.c": ""}, tmp_path / "uno")
    shutil.rmtree(proj / "src")
    shutil.rmtree(proj / "lib" / "es_model")
    (proj / "src").mkdir()
    (proj / "src" / "main.cpp").write_text(TWO_MODEL_INO % dict(walk=", ".join(map(str, xw.tolist())),
                                                                gear=", ".join(map(str, xg.tolist()))))
    for lib in (wlib, glib):
        shutil.copytree(lib, proj / "lib" / lib.name)
    with open(proj / "platformio.ini", "a") as fh:           # no framework in this dev-platform: take every library
        fh.write("lib_compat_mode = off\n")
    elf = build.run_pio(proj, session_core(tmp_path_factory))
    # both libraries ship the runtime and are linked as archives (what dot_a_linkage asks of the Arduino IDE): each
    # archive holds es_sketch_argmax.o, and the link takes it once (no multiple definition). The core links with
    # -flto: the entry points are inlined into setup(); the models' data keeps its prefixed names.
    for lib in ("walk", "gear"):
        archive = next((proj / ".pio" / "build").rglob(f"lib{lib}.a"))
        assert "es_sketch_argmax.o" in _run(["avr-ar", "t", archive]).split(), archive
    syms = _run(["avr-nm", elf])
    assert re.search(r" t walk_class_names_\b", syms) and re.search(r" t gear_class_names_\b", syms), syms
    size = build.elf_size(elf)
    # link-time identical code folding once merged the two models' own-frame hashing step into one unspecialised
    # 21 KB function (25,504 bytes of text); the models' names in it keep them apart (4,950 bytes)
    assert size.text < 8000, size
    with emulate.qemu("qemu-uno", elf) as url:
        port = serial.serial_for_url(url, timeout=20)
        try:
            port.write(b"g")                                  # the sketch starts printing once the host listens
            lines = []
            while not lines or lines[-1] not in ("done", ""):
                lines.append(port.readline().decode(errors="replace").strip())
        finally:
            port.close()
    assert lines == ["two models", f"walk: class {want_w} {WALK_NAMES[want_w]}",
                     f"gear: class {want_g} {GEAR_NAMES[want_g]}", "done"], lines
    print(f"\nqemu-uno two-model sketch (text {size.text:,} data {size.data} bss {size.bss}) printed:\n  "
          + "\n  ".join(lines))
