"""edgesketch command line: thin. Parse arguments, call one step, print its table. User mistakes exit 2 with one line."""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from . import __version__
from .errors import UserError

DESCRIPTION = """\
Run a trained neural network on a microcontroller without running the network: distil it into a
Representer Sketch (integer hashing, L table lookups and a sum), generate C, build, and verify on a device.

a day with edgesketch:
  edgesketch distill teacher.keras --data sklearn:digits -o digits.esk
  edgesketch eval digits.esk
  edgesketch export digits.esk --board qemu-m4 -o fw/
  edgesketch verify digits.esk --board qemu-m4          (emulated, built and run for you)
  edgesketch verify digits.esk --port /dev/ttyUSB0      (a flashed real board)
"""


def _fmt(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="edgesketch", description=DESCRIPTION, formatter_class=_fmt)
    ap.add_argument("--version", action="version", version=f"edgesketch {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("distill", help="distil a Keras teacher into a sketch file (.esk)", formatter_class=_fmt,
                       description="Distil a Keras teacher into a Representer Sketch and its bit-exact integer form.",
                       epilog="""examples:
  edgesketch distill teacher.keras --data sklearn:digits -o digits.esk
  edgesketch distill teacher.keras --data my.npz -o m.esk --tables 32 --bits 6      (bigger, more accurate)
  edgesketch distill teacher.keras --data mnist1d -o r.esk --mode representer      (the paper's construction)
  edgesketch distill teacher.keras --data sklearn:digits -o d4.esk --count-bits 4  (half the table flash)
  edgesketch distill teacher.keras --data mnist1d -o m.esk --transfer more.npz    (the teacher labels more inputs)
  edgesketch distill teacher.keras --data sklearn:digits -o s.esk -K 4 -P 32 --count-bits 4 --selectors window --signs balanced
                                                       (small and fast; check its accuracy: the structure can cost some)
  edgesketch distill teacher.keras --data sklearn:digits -o c.esk --codebook 256   (int8 tables in about a third of the bytes)
  edgesketch distill conv1d.keras --data accel.npz -o a.esk                         (a (T, C) input: the cheapest that keeps the teacher)
  edgesketch distill conv1d.keras --data accel.npz -o a.esk --max-loss 0            (the most accurate candidate)
  edgesketch distill conv1d.keras --data mnist1d -o m.esk --window 9 --stride 3     (this geometry: no choice)
  edgesketch distill cnn.keras --data sklearn:digits -o d.esk --window flat         (the flat sketch of an image teacher)

the choice: for a teacher input with a time axis (T x C, T > 1) or image axes (H x W x C), distill tries the flat
sketch, then windowed geometries (every position of a window hashes with the same hyperplanes and tables, so a
pattern is recognised wherever it is), cheapest first by Cortex-M0 instructions estimated from the structure, two at
a time; each is distilled on 80% of the training set (half its epochs and augmented samples) and scored on the other
20% (never the test set). It keeps the first within --max-loss points of the teacher's accuracy there (regression:
RMSE within that percentage above the teacher's; without labels, agreement with the teacher), or the most accurate,
prints the candidates, and continues the kept one on the whole training set with its full recipe (from its
hyperplanes and tables: the straight-through and table phases), or distils its geometry afresh when it is more than 5
points from the teacher (its short training is then a poor start). --window, --stride, --dilation,
--padding, --pool, --regions or --flat-branch fix the geometry and skip the choice; other options (--tables, --bits,
--count-bits, --codebook, ...) apply to every candidate.
Windowed geometries follow the input's length: stride ceil(T / 32) (8, 16 and 32 read-out positions are the
candidates; 4 x 4 and 8 x 8 for images), a window of 9 taps (3 x 3) with dilation stride // 2.
Inputs with no such axis get the flat sketch. `edgesketch info` shows the geometry, `info --json` the candidates.

sizes: tables take L * 2^K * C bytes (int8 counts; half that with --count-bits 4; L * 2^K + R * C with
--codebook R <= 256); hashing costs P * taps
additions, lookups L * C.
data: """ + _data_help())
    d.add_argument("teacher", help="Keras model: .keras, .h5 or a SavedModel folder, one input tensor")
    d.add_argument("--data", required=True, metavar="DATA", help="training/test data (see below)")
    d.add_argument("-o", "--out", required=True, metavar="OUT.esk", help="sketch file to write")
    d.add_argument("--mode", choices=["learned", "representer"], default="learned",
                   help="learned: trained sparse hyperplanes (default); representer: the paper's random-hash RACE sketch (flat)")
    d.add_argument("--max-loss", default="1", metavar="POINTS",
                   help="the choice keeps the cheapest candidate within this many points of the teacher's validation "
                   "accuracy (regression: percent above its RMSE); 0: the most accurate (default 1)")
    g = d.add_argument_group("the sketch's shape (defaults depend on the teacher's input: see below)")
    g.add_argument("--window", default="auto", metavar="SIZE",
                   help="auto (default): choose between the flat sketch and windows over the time or image axes when the "
                   "teacher's input has them (T x C, H x W x C), else flat; flat: hash the whole input at once; or a "
                   "size per spatial axis: 9, 3x3")
    g.add_argument("--stride", metavar="S", help="window step per axis: 2, 2x2 (windowed default: ceil(length / 32), "
                   "ceil(side / 8) for images)")
    g.add_argument("--dilation", metavar="D", help="gap between window taps per axis (default: stride // 2 with the "
                   "default stride, else 1)")
    g.add_argument("--padding", choices=["same", "valid"], help="same: windows centred on every position, padded with the "
                   "zero point (default); valid: only windows inside the input")
    g.add_argument("--pool", metavar="Q", help="OR the hash bits of Q neighbouring positions before the tables read them "
                   "(fewer lookups; default 1)")
    g.add_argument("--regions", type=int, metavar="R", help="tables of their own for R groups of positions (default 1: "
                   "every position reads the same tables)")
    g.add_argument("--flat-branch", metavar="L,K,P,S", help="add a flat branch (L tables, K bits, P hyperplanes, S taps) to "
                   "the windowed one; 'none' for none (2-D default: %s)" % _fam("flat_branch", 3))
    g.add_argument("--tables", "-L", type=int, metavar="L", help="count tables (flat default 16)")
    g.add_argument("--bits", "-K", type=int, metavar="K", help="hash bits per table: 2^K cells (default 6)")
    g.add_argument("--hyperplanes", "-P", type=int, metavar="P", help="hyperplanes (flat default 48, windowed %s)" % _fam("hyperplanes"))
    g.add_argument("--taps", "-s", type=int, metavar="S", help="taps per hyperplane (flat default 8, windowed %s)" % _fam("taps"))
    g.add_argument("--weights", type=int, metavar="W", help="largest tap weight: 1 (ternary, additions only) up "
                   "to 7 (a multiply per tap) (flat default 1, windowed %s)" % _fam("weights"))
    g.add_argument("--thresholds", type=int, metavar="T", help="hash bits per projection sum: the P hyperplanes are P/T tap "
                   "sets, each sum compared with T thresholds and computed once (windowed default %s)" % _fam("thresholds"))
    g.add_argument("--selectors", choices=["random", "window"],
                   help="which hyperplanes a table reads: random, or window (K consecutive bits of the packed hash word: "
                   "the C reads a bucket with one shift instead of writing each bit into every bucket that reads it) "
                   "(flat default random, windowed %s)" % (_fam("selectors") or "random"))
    g.add_argument("--signs", choices=["free", "balanced"], default="free",
                   help="tap signs of each hyperplane: free, or balanced (half +1, half -1: the compact C needs no negated "
                   "copy of the input) (default free)")
    g.add_argument("--representers", type=int, default=128, metavar="M", help="kernel representers, representer mode (default 128)")
    g.add_argument("--count-bits", type=int, choices=[4, 8, 16], default=8, help="bits per table cell: 4 (packed two a byte, trained through the 4-bit grid), "
                   "8 (default) or 16")
    g.add_argument("--codebook", type=int, default=0, metavar="R", help="store the tables as R shared rows of C counts "
                   "and a row number per cell, one byte for R <= 256 (k-means of the cells, then the rows are trained; "
                   "on digits 256 rows were as accurate as --count-bits 4 in 70%% of its bytes; flat and windowed sketches, one set "
                   "of rows for every branch); 0: every cell its own row (default 0)")
    t = d.add_argument_group("training")
    t.add_argument("--epochs", type=int, help="epochs per training phase (flat default 30, windowed %s)" % _fam("epochs"))
    t.add_argument("--augment", choices=["mixup", "signal", "both", "none"],
                   help="made-up inputs for the teacher to label: mixup (pairs blended, plus noise: flat default), signal "
                   "(shifts, amplitude and jitter along the time/image axes), both (windowed default), none")
    t.add_argument("--no-augment", action="store_true", help="the same as --augment none")
    t.add_argument("--shift", type=int, metavar="N", help="signal augmentation: largest shift in samples or pixels (default: half the window)")
    t.add_argument("--transfer", metavar="X.npz", help="unlabelled inputs (an .npz with an array x) for the teacher to label; "
                   "they take the place of made-up samples, and real inputs teach more (mnist1d: +3 to +7 points)")
    d.add_argument("--task", choices=["classification", "regression"], help="override the task detected from the teacher")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--class-names", metavar="NAMES", help="the classes' names in the order of the teacher's outputs, "
                   "comma-separated (walk,run,idle) or @FILE (a name a line); default: the data's class_names, else 0..C-1. "
                   "They reach the C (es_class_name) and the Arduino examples")
    d.add_argument("--input-units", metavar="UNITS", help="the inputs' unit (g), or one a channel (g,g,g,dps,dps,dps): "
                   "recorded with the training data's range per channel, stated in the generated header; eval warns "
                   "when data lie far outside those ranges")
    d.add_argument("--force", action="store_true", help="replace OUT.esk if it exists")

    e = sub.add_parser("eval", help="accuracy of a sketch (teacher, float, integer) on a test set",
                       formatter_class=_fmt, description="Evaluate a sketch on the test set it was distilled with, or on --data.",
                       epilog="example:\n  edgesketch eval digits.esk --teacher teacher.keras --json\n\ndata: " + _data_help())
    e.add_argument("sketch", metavar="MODEL.esk")
    e.add_argument("--data", metavar="DATA", help="test data (default: the source recorded in the sketch)")
    e.add_argument("--teacher", metavar="TEACHER", help="also score the teacher (default: the recorded teacher, if it still exists)")
    e.add_argument("--json", action="store_true", help="print the figures as JSON")

    b = sub.add_parser("boards", help="list the boards edgesketch can export for",
                       description="List the boards (boards/*.toml): real ones build with PlatformIO's standard platforms, "
                                   "emulated ones build offline and run under QEMU here.")
    b.add_argument("--json", action="store_true")

    x = sub.add_parser("export", help="write the model as a PlatformIO project, plain C, an Arduino library or a CMake/ESP-IDF component",
                       formatter_class=_fmt,
                       description="Generate the model's C (es_model.h/.c) and write it in one of the formats below. Checks "
                                   "the model fits the board's flash and RAM first (when there is a board); writes into a "
                                   "temporary folder and renames it into place.",
                       epilog="""formats (--format):
  platformio  (default) a complete PlatformIO project for --board (default qemu-m4): firmware that speaks edgesketch's
              serial protocol, so `edgesketch verify` checks the model on the device
                edgesketch export digits.esk --board qemu-m4 -o fw-m4      (then: edgesketch verify digits.esk --board qemu-m4 --project fw-m4)
                edgesketch export digits.esk --board esp32 -o fw-esp32     (then: cd fw-esp32 && pio run -t upload)
  c           es_model.h, es_model.c and a README.md (the API and a usage example): add them to any C or C++ build
                edgesketch export digits.esk --format c -o model
  arduino     an Arduino library: library.properties, src/es_model.h/.c and examples/classify/classify.ino, which
              classifies the first test sample of the sketch's data (zeros if that data cannot be loaded) and prints
              the class, the microseconds and the cycles; --zip also writes DIR.zip for the IDE's Add .ZIP Library
                edgesketch export digits.esk --format arduino -o ~/Arduino/libraries/digits
                edgesketch export digits.esk --format arduino -o digits --zip
  cmake       a component folder: its CMakeLists.txt registers an ESP-IDF component under IDF and is a static library
              target es_model elsewhere (Zephyr, any CMake build: add_subdirectory(DIR), then
              target_link_libraries(app PRIVATE es_model))
                edgesketch export digits.esk --format cmake -o app/es_model
  espidf      the same folder as cmake, to copy into an ESP-IDF project's components/
                edgesketch export digits.esk --format espidf -o components/digits --board esp32

two models in one program (c, arduino, cmake, espidf): give each its own --prefix; they share the runtime
                edgesketch export walk.esk --format c -o walk --prefix walk     (walk_model.h, walk_predict_q, WALK_N_INPUTS)
                edgesketch export gear.esk --format c -o gear --prefix gear     (gear_model.h, gear_predict_q, ...)

--board picks the board of a platformio project; with the other formats it is optional and only checks that the
model fits that board. --layout compact: smaller code, a loop over tap lists. List boards with: edgesketch boards""")
    x.add_argument("sketch", metavar="MODEL.esk")
    x.add_argument("--format", "-f", choices=["platformio", "c", "arduino", "cmake", "espidf"], default="platformio",
                   help="what to write (default platformio; see below)")
    x.add_argument("--board", default=None, help="board name: platformio's target (default qemu-m4); other formats: "
                   "check the model fits it")
    x.add_argument("-o", "--out", metavar="DIR", help="folder to write (default: <model>-<board> for platformio, "
                   "<model>-<format> otherwise)")
    x.add_argument("--layout", choices=["unrolled", "compact"], default="unrolled",
                   help="unrolled: straight-line code per hyperplane, fastest (default); compact: loops over tap lists, least flash")
    x.add_argument("--zip", action="store_true", help="arduino: also write DIR.zip (the library for Add .ZIP Library)")
    x.add_argument("--hop", type=int, metavar="H", help="also generate the model's stream: push samples one at a time, "
                   "get the outputs of the window ending there every H samples, at the cost of the window's new "
                   "read-outs only (1-D windowed sketches; H a multiple of stride x pool); arduino: also "
                   "examples/stream/stream.ino")
    x.add_argument("--stream-state", choices=["keep", "recompute"], help="with --hop: keep each read-out's "
                   "contribution (fastest) or hash the leaving read-outs again (least RAM); default: keep when the "
                   "board has the RAM for it")
    x.add_argument("--prefix", metavar="P", default="es",
                   help="prefix of the model's files, functions and macros: P_model.h, P_predict_q, P_N_INPUTS "
                   "(default es), so that two models can live in one program: export each with its own prefix "
                   "(lower-case letters, digits, _). They share the runtime (es_sketch*), which keeps its names. "
                   "c, arduino, cmake, espidf; a platformio project's firmware calls es_*")
    x.add_argument("--name", metavar="NAME", help="arduino: the library's name (library.properties, the zip's "
                   "folder, File > Examples > NAME; default: the .esk file's name)")
    x.add_argument("--class-names", metavar="NAMES", help="the outputs' names in the C and the examples, in place of "
                   "those the .esk records: comma-separated (idle,walk,run) or @FILE (a name a line)")
    x.add_argument("--force", action="store_true", help="replace DIR (and DIR.zip) if it exists")

    v = sub.add_parser("verify", help="run the test set on a device and check it agrees bit for bit", formatter_class=_fmt,
                       description="Stream the whole test set through a device over serial and compare every score with the "
                                   "host's integer reference. Reports on-device accuracy, bit-exact agreements, "
                                   "instructions (QEMU) or cycles (hardware) per inference, the peak stack of one "
                                   "inference (painted on the device), and throughput. "
                                   "Exits 1 on any mismatch.",
                       epilog="""examples:
  edgesketch verify digits.esk --board qemu-m4                 (export, build with PlatformIO, run under QEMU, verify)
  edgesketch verify digits.esk --board qemu-m0 --project fw    (build and run an exported project as it is)
  edgesketch verify digits.esk --port /dev/ttyUSB0             (a real board flashed with `pio run -t upload`)
  edgesketch verify digits.esk --port socket://127.0.0.1:4321  (any pyserial URL, e.g. from `edgesketch flash`)

data: """ + _data_help())
    where = v.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", help="serial port or pyserial URL of a flashed device")
    where.add_argument("--board", help="an emulated board (qemu-*): build and run it here")
    v.add_argument("sketch", metavar="MODEL.esk")
    v.add_argument("--baud", type=int, default=115200, help="serial speed (default 115200)")
    v.add_argument("--data", metavar="DATA", help="test data (default: the source recorded in the sketch)")
    v.add_argument("--project", metavar="DIR", help="with --board: an exported project to build, instead of a fresh export")
    v.add_argument("--layout", choices=["unrolled", "compact"], default="unrolled", help="with --board: code layout to export")
    v.add_argument("--limit", type=int, help="only the first N test samples")
    v.add_argument("--stream", nargs="?", const=True, metavar="FILE.npz", help="verify the model's stream instead: "
                   "the recording in FILE.npz (an array `stream` of shape (N, channels)), or without FILE the test "
                   "windows laid end to end; every hop's outputs against the host's; with --board also --hop")
    v.add_argument("--hop", type=int, metavar="H", help="with --board: export the stream with this hop (implies --stream)")
    v.add_argument("--stream-state", choices=["keep", "recompute"], help="with --hop: how the stream keeps its state")
    v.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE ('-' for stdout)")

    f = sub.add_parser("flash", help="upload a project to a board (pio run -t upload), or start the emulator",
                       formatter_class=_fmt,
                       description="Real boards: build and upload an exported project with PlatformIO. Emulated boards: build it, "
                                   "start QEMU and print the socket:// URL to verify against, until Ctrl-C.",
                       epilog="examples:\n  edgesketch flash --board esp32 fw-esp32\n  edgesketch flash --board qemu-m4 fw-m4")
    f.add_argument("--board", required=True)
    f.add_argument("project", metavar="DIR")

    bn = sub.add_parser("bench", help="side-by-side benchmark against TFLite int8, TFLite Micro, emlearn and an int8 MLP",
                        add_help=False, description="Run `edgesketch bench --help` for the benchmark's own options.")
    bn.add_argument("args", nargs=argparse.REMAINDER)

    tu = sub.add_parser("tune", help="search for the most accurate sketch that fits a board's budget (measured)",
                        formatter_class=_fmt,
                        description="Search every option distill has (windows too, where the teacher's input has a time or "
                                    "image axis) for the most accurate sketch whose measured cost fits --board: each trial is "
                                    "distilled on 80% of the training set (stratified, fixed seed) over --seeds, scored on "
                                    "the other 20%, built for the emulated board of the budget's core and run under QEMU "
                                    "(flash, RAM, instructions). The chosen configuration is distilled again on the whole "
                                    "training set and scored once on the test set.",
                        epilog="""examples:
  edgesketch tune teacher.keras --data sklearn:digits --board uno -o uno.esk            (fit an Arduino Uno, measured on qemu-uno)
  edgesketch tune teacher.keras --data sklearn:digits --board qemu-m0 --flash 16384 --ram 4096 -o m0.esk
  edgesketch tune conv1d.keras --data mnist1d --board qemu-m4 --trials 60 -o m4.esk    (no hard budget: the Pareto front
                                                                                       of accuracy, flash and instructions)
  edgesketch tune teacher.keras --data sklearn:digits --board qemu-m0 --flash 16384 -o m0.esk --resume --trials 80 --force
                                                                                       (continue it, up to 80 trials)
  edgesketch tune teacher.keras --data sklearn:digits --board uno -o uno.esk --ray ray://head:10001      (a Ray cluster)
  edgesketch tune teacher.keras --data sklearn:digits --board uno -o quick.esk --trials 8 --seeds 0 --epochs 5
                                                                                       (a quick look: fewer trials, seeds, epochs)
  edgesketch tune conv1d.keras --data mnist1d --board uno -o uno.esk --trial-epochs 8 --trial-aug-size 10000
                                             (trials train shorter to rank configurations; the chosen one trains fully)

budget: --flash and --ram are bytes for the model (what the firmware around an empty model takes is not counted);
without them, the board's flash and RAM minus that firmware, and the search trades accuracy against flash and
instructions (the Pareto front) instead of maximising accuracy alone.
writes: OUT.esk (the chosen sketch, first seed), OUT.trials.json (every trial), OUT.pareto.png (accuracy against
flash and instructions, the budget drawn) and the study OUT.tune.db (SQLite; --resume continues it).
a Ray cluster: every node needs edgesketch with its [tune] extra (pip install 'edgesketch[tune]') and the
toolchains of the board (.ci/setup); --ray local starts a cluster on this machine.

data: """ + _data_help())
    tu.add_argument("teacher", help="Keras model: .keras, .h5 or a SavedModel folder")
    tu.add_argument("--data", required=True, metavar="DATA", help="training/test data with labels (see below)")
    tu.add_argument("--board", required=True, help="the board to fit (edgesketch boards)")
    tu.add_argument("-o", "--out", required=True, metavar="OUT.esk", help="the chosen sketch")
    tu.add_argument("--flash", type=int, metavar="BYTES", help="flash for the model (a hard budget)")
    tu.add_argument("--ram", type=int, metavar="BYTES", help="RAM for the model, static and stack (a hard budget)")
    tu.add_argument("--max-instructions", type=int, metavar="N", help="instructions per inference on the emulated core (a hard budget)")
    tu.add_argument("--trials", type=int, default=40, metavar="N", help="configurations the study tries in all (default 40)")
    tu.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], metavar="S", help="seeds of every configuration (default 0 1 2)")
    tu.add_argument("--epochs", type=int, metavar="N", help="hold the epochs per training phase at N (default: distill's)")
    tu.add_argument("--trial-epochs", type=int, metavar="N", help="a shorter search: trials train N epochs per phase "
                    "(refit N/2) and only rank configurations; the chosen one is distilled with distill's epochs")
    tu.add_argument("--trial-aug-size", type=int, metavar="N", help="a shorter search: trials train on N augmented "
                    "samples (default: distill's, max(40000, 10 x train))")
    tu.add_argument("--finalists", type=int, default=3, metavar="N", help="with a shorter search: the N best trials "
                    "that fit, and distill's defaults, are distilled again with full training and chosen on that (default 3)")
    tu.add_argument("--jobs", type=int, metavar="N", help="trials at once (default: the machine's cores; with --ray the cluster's CPUs)")
    tu.add_argument("--ray", metavar="ADDRESS", help="run the trials on a Ray cluster (ray://HOST:10001, auto, or local)")
    tu.add_argument("--storage", metavar="URL", help="the Optuna storage (default: sqlite OUT.tune.db)")
    tu.add_argument("--sampler-seed", type=int, default=0, metavar="S", help="the search's own seed (default 0)")
    tu.add_argument("--resume", action="store_true", help="continue the study in the storage (the same arguments)")
    tu.add_argument("--force", action="store_true", help="replace OUT.esk and its side files")

    i = sub.add_parser("info", help="show what a sketch file holds", description="Show a sketch file's contents readably.")
    i.add_argument("sketch", metavar="MODEL.esk")
    i.add_argument("--json", action="store_true", help="print the metadata as JSON")
    return ap


def _fam(key: str, ndim: int = 2):
    """A windowed-family default for the help text (ndim 2: T x C inputs, 3: H x W x C)."""
    from .distillation import family_defaults
    v = family_defaults((16,) * (ndim - 1) + (1,)).get(key, 1 if key in ("weights", "thresholds") else None)
    return ("," if key == "flat_branch" else "x").join(map(str, v)) if isinstance(v, (tuple, list)) else v


def _data_help() -> str:
    from .data import describe_sources
    return describe_sources()


# ---------------------------------------------------------------- commands
def _axes(text, flag):
    """'9' -> (9,), '3x3' or '3,3' -> (3, 3)."""
    try:
        v = tuple(int(p) for p in str(text).replace(",", "x").split("x"))
    except ValueError:
        raise UserError(f"{flag} {text!r}: give a number per spatial axis, like 9 or 3x3") from None
    if not v or min(v) < 0:
        raise UserError(f"{flag} {text!r}: give a positive number per spatial axis, like 9 or 3x3")
    return v


def distill_options(a) -> dict:
    """The library options (distill.Config fields) the command line asks for; the family's defaults fill the rest."""
    kw = dict(mode=a.mode, representers=a.representers, count_bits=a.count_bits, seed=a.seed, signs=a.signs,
              codebook=a.codebook, **({"selectors": a.selectors} if a.selectors else {}))
    for name in ("stride", "dilation", "pool"):
        if getattr(a, name) is not None:
            kw[name] = _axes(getattr(a, name), f"--{name}")
    if a.flat_branch is not None:
        kw["flat_branch"] = () if a.flat_branch == "none" else _axes(a.flat_branch, "--flat-branch")
        if len(kw["flat_branch"]) not in (0, 4):
            raise UserError(f"--flat-branch {a.flat_branch!r}: give L,K,P,S (tables, bits, hyperplanes, taps), e.g. 12,6,48,8")
    for name in ("padding", "regions", "tables", "bits", "hyperplanes", "taps", "weights", "thresholds", "epochs", "shift",
                 "augment"):
        if getattr(a, name, None) is not None:
            kw[name] = getattr(a, name)
    if a.no_augment:
        kw["augment"] = "none"
    return kw


def cmd_distill(a) -> int:
    from . import api, data, report, teacher as tmod
    from .choose import check_max_loss
    out = Path(a.out)
    if out.exists() and not a.force:
        raise UserError(f"{out} already exists; pass --force to replace it or choose another -o")
    window = a.window if a.window in ("auto", "flat") else _axes(a.window, "--window")
    options = distill_options(a)
    max_loss = check_max_loss(a.max_loss)                      # before loading anything
    ds = data.load(a.data)
    t = tmod.load(a.teacher, a.task, ds.y_train)
    t.check_data(ds.x_train, a.data)
    t.check_labels(ds.y_train, f"{a.data} training labels")
    names = _class_names(a.class_names, ds.class_names, t) if t.task == "classification" else None
    planned = api.plan(t.input_shape, t.n_outputs, window, **options)   # a bad combination fails here, before training
    xt = data.load_transfer(a.transfer, int(ds.x_train[0].size)) if a.transfer else None
    report.console.print(f"teacher {a.teacher}: input {t.input_shape}, {t.n_outputs} outputs, {t.task}; "
                         f"data {ds.source}: {len(ds.x_train)} train / {len(ds.x_test)} test"
                         + (f"; transfer {a.transfer}: {len(xt)} unlabelled" if xt is not None else ""))
    if isinstance(planned, list):
        report.console.print(f"sketch: the cheapest of {len(planned)} candidates within --max-loss {max_loss:g} of the "
                             "teacher (fix one with --window flat, --window 9 --stride 2, ...): "
                             + "; ".join(f"{c.name} (~{c.instructions:,} M0 instructions)" for c in planned), markup=False)
    else:
        report.console.print("sketch: " + _family_text(planned), markup=False)
    meta = {"split": ds.split}
    if xt is not None:
        meta["transfer"] = {"file": str(Path(a.transfer).resolve()), "samples": len(xt)}
    m = api.distill(t, ds.x_train, ds.y_train, x_test=ds.x_test, y_test=ds.y_test,
                    window=window, task=a.task, transfer=xt, source=ds.source, class_names=names, meta=meta,
                    input_units=a.input_units.split(",") if a.input_units else None,
                    max_loss=max_loss, **options)
    m.save(out, force=a.force)
    choice = m.sketch.meta.get("choice")
    for line in _choice_lines(choice) if choice else ():
        report.out.print(line, markup=False)
    report.out.print(report.metrics_table(m.sketch.meta["metrics"], f"{out} (model id {m.model_id[:16]})"))
    return 0


def _choice_lines(choice: dict) -> list[str]:
    """What distill prints after a choice: what it kept and why, its time, and, when no candidate came within
    --max-loss (0 asks for the best, so not then), what to try."""
    lines = [f"chose {choice['chosen']} ({choice['reason'].split(': ', 1)[1]}); choice {choice['seconds']:.0f} s, "
             f"final distil on the whole training set {choice['final_seconds']:.0f} s"]
    if choice["max_loss"] > 0 and not choice["qualified"]:
        lines.append(f"hint: no candidate came within --max-loss {choice['max_loss']:g} of the teacher. More tables may "
                     "bring the sketch closer, at more distil time and instructions (--tables is a size option: every "
                     "candidate gets it; --tables 25 took the gesture GRU from 1.03 to 0.43 points below its teacher: "
                     "examples/gestures/README.md); a larger --max-loss accepts a cheaper sketch.")
    return lines


FLAGS = {"tables": "--tables", "bits": "--bits", "hyperplanes": "--hyperplanes", "taps": "--taps", "window": "--window",
         "stride": "--stride", "dilation": "--dilation", "pool": "--pool", "regions": "--regions", "padding": "--padding",
         "flat_branch": "--flat-branch", "weights": "--weights", "count_bits": "--count-bits", "codebook": "--codebook",
         "selectors": "--selectors", "signs": "--signs", "augment": "--augment", "epochs": "--epochs", "mode": "--mode",
         "representers": "--representers", "refit_epochs": "--epochs", "force": "--force", "task": "--task",
         "thresholds": "--thresholds", "shift": "--shift", "seed": "--seed", "layout": "--layout", "board": "--board",
         "flash": "--flash", "ram": "--ram", "max_instructions": "--max-instructions", "trials": "--trials", "seeds": "--seeds",
         "resume": "--resume", "storage": "--storage", "jobs": "--jobs", "max_loss": "--max-loss",
         "hop": "--hop", "stream_state": "--stream-state", "zip": "--zip", "format": "--format", "prefix": "--prefix", "class_names": "--class-names",
         "name": "--name"}


def _names_flag(flag: str) -> list[str]:
    """--class-names a,b,c, or @FILE: a name a line."""
    if flag.startswith("@"):
        try:
            return [ln.strip() for ln in Path(flag[1:]).read_text(encoding="utf-8").splitlines() if ln.strip()]
        except OSError as e:
            raise UserError(f"--class-names {flag}: cannot read {flag[1:]} ({e.strerror})") from None
    return [n.strip() for n in flag.split(",")]


def _class_names(flag: str | None, from_data, t) -> list[str] | None:
    """--class-names a,b,c (or @FILE, a name a line), else the data's class_names, else None (0..C-1)."""
    if not flag:
        return from_data
    names = _names_flag(flag)
    if len(names) != t.n_outputs or not all(names):
        raise UserError(f"--class-names: {len(names)} names for a teacher of {t.n_outputs} outputs; give {t.n_outputs}, "
                        "comma-separated, in the order of its outputs")
    return names


def _flag_message(e) -> str:
    """A library error in the command line's words: every `name=value` of an argument becomes `--flag value`."""
    import re
    msg = str(e)
    arg = getattr(e, "argument", None)
    if arg in FLAGS and re.match(rf"{arg}\b(?!=)", msg):       # "class_names: 2 names ..." names its argument first
        msg = FLAGS[arg] + msg[len(arg):]
    for arg, flag in FLAGS.items():
        msg = re.sub(rf"\b{arg}=(\S+?)([,;:)]?(\s|$))",
                     lambda m: (flag if m.group(1) == "True" else f"{flag} {m.group(1).strip(chr(39))}") + m.group(2), msg)
    return msg


def _family_text(cfg) -> str:
    if not cfg.windowed:
        return f"flat, L={cfg.tables} K={cfg.bits} P={cfg.hyperplanes} s={cfg.taps} (--window flat)"
    j = lambda v: "x".join(map(str, v if isinstance(v, (tuple, list)) else (v,)))
    return (f"windows {j(cfg.window)}, stride {j(cfg.stride)}, dilation {j(cfg.dilation)}, padding {cfg.padding}, pool {j(cfg.pool)}, "
            f"{cfg.regions} region(s); L={cfg.tables} K={cfg.bits} P={cfg.hyperplanes} s={cfg.taps}"
            + (f"; flat branch L,K,P,s={','.join(map(str, cfg.flat_branch))}" if cfg.flat_branch else "")
            + f"; augment {cfg.augment}, {cfg.epochs} epochs (--window flat for the flat sketch)")


def _sketch_and_test_data(a):
    """The sketch named on the command line and its test data: --data, else the source recorded at distil time."""
    from . import data, esk
    sk = esk.load(a.sketch)
    source = a.data or sk.meta.get("source")
    if not source or source == "<arrays>":
        raise UserError(f"{a.sketch} records no data source (it was distilled from arrays); pass --data DATA")
    ds = data.load(source)
    if int(ds.x_test[0].size) != sk.n_inputs:
        raise UserError(f"{source} has {ds.x_test[0].size} values per sample but the sketch expects {sk.n_inputs}; pass the data it was distilled on")
    return sk, ds, source


def cmd_eval(a) -> int:
    import warnings

    from . import api, report, teacher as tmod
    sk, ds, source = _sketch_and_test_data(a)
    tpath = a.teacher or (sk.meta.get("teacher") if sk.meta.get("teacher") and Path(sk.meta["teacher"]).exists() else None)
    t = tmod.load(tpath, sk.task) if tpath else None
    if t is not None:
        t.check_data(ds.x_test, source)
        t.check_labels(ds.y_test, f"{source} test labels")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", api.RangeWarning)
        m = api.Model(sk, t).evaluate(ds.x_test, ds.y_test).to_dict()
    for w in caught:
        if issubclass(w.category, api.RangeWarning):
            print(f"edgesketch: warning: {source}: {w.message}", file=sys.stderr)
    if a.json:
        print(json.dumps(m, indent=2))
    else:
        report.out.print(report.metrics_table(m, f"{a.sketch} on {source}"))
    return 0


def cmd_info(a) -> int:
    from . import esk, report
    from .sketch import bit_order, projection_bound, score_bound, shared_rows, sum_group
    sk = esk.load(a.sketch)
    if a.json:
        print(json.dumps(sk.meta, indent=2, default=str))
        return 0
    m, shared = sk.meta, shared_rows(sk)
    rows = [("model id", m.get("model_id")), ("format", f"{m.get('format')} v{m.get('format_version')} (edgesketch {m.get('edgesketch_version')})"),
            ("mode", m.get("mode")), ("task", sk.task), ("outputs", ", ".join(m.get("class_names", [])[:12])),
            ("input", f"{sk.n_inputs} int8 values (teacher shape {tuple(m.get('input_shape', []))}), quantised "
                      + ("per feature" if len(sk.in_scale) == sk.n_inputs else f"per channel ({len(sk.in_scale)})"))]
    for j, b in enumerate(sk.branches):
        tag = f"branch {j}: " if len(sk.branches) > 1 else ""
        w = b.window
        rows.append((f"{tag}geometry", "flat: one window over the whole input" if w.is_flat else
                     f"window {_x(w.size)} over {_x(w.shape)} (spatial x channels), stride {_x(w.stride)}, dilation "
                     f"{_x(w.dilation)}, padding {_x(w.padding)}, pool {_x(w.pool)}: {w.n_positions} positions "
                     f"({_x(w.grid)}), {w.n_readouts} read-outs, {w.regions} region(s)"))
        cells = b.counts.shape[0] * b.counts.shape[1]
        rows += [(f"{tag}tables", f"{b.counts.shape[0]} x {1 << b.n_bits} x {sk.n_outputs} x {sk.count_bits}-bit"
                  + (f" ({w.regions} regions of {b.n_tables})" if w.regions > 1 else "") + f": {cells:,} cells"),
                 (f"{tag}hyperplanes P", f"{b.n_hyperplanes}, {b.n_taps} {'ternary' if b.ternary else 'integer-weight'} taps "
                  f"over {w.n_elements} window values" + (f" ({b.sum_taps} in distinct sums)" if b.sum_taps < b.n_taps else "")),
                 (f"{tag}hash structure", _structure(b) if w.is_flat else "every position: straight-line sums over the "
                  "window (unrolled) or tap lists (compact); " + (f"{sum_group(b)} thresholds per sum" if sum_group(b) > 1 else
                                                                  "one threshold per sum") + "; "
                  + ("window selectors (unrolled C: a bucket is one shift of the packed hash word)" if bit_order(b) is not None
                     else "random selectors (unrolled C: each hash bit is written into every bucket that reads it)"))]
    rows += [("table bytes", f"{sk.table_bytes:,}" + (f" ({len(shared[1])} shared rows and a row number per cell)" if shared is not None else "")),
             ("hashing bytes", f"{sk.projection_bytes:,}"),
             ("ops per inference", f"{sk.ops_per_inference:,} ({sum(b.window.n_positions * b.sum_taps for b in sk.branches):,} "
                                   f"{'adds' if all(b.ternary for b in sk.branches) else 'tap terms (a multiply each for weights beyond 1)'} to hash, "
                                   f"{sum(b.n_reads for b in sk.branches) * sk.n_outputs:,} lookups+adds)"),
             ("worst-case |projection|", projection_bound(sk)), ("worst-case |score|", score_bound(sk)),
             ("data", f"{m.get('source')} {m.get('split', '')}"), ("teacher", m.get("teacher"))]
    if m.get("transfer"):
        rows.append(("transfer inputs", f"{m['transfer']['samples']:,} unlabelled from {m['transfer']['file']}"))
    for k in ("int_accuracy", "float_accuracy", "teacher_accuracy", "int_rmse"):
        if m.get("metrics", {}).get(k) is not None:
            rows.append((k.replace("_", " ") + " (at distil time)", m["metrics"][k]))
    report.out.print(report.kv_table(rows, str(a.sketch)))
    return 0


def _x(v) -> str:
    return "x".join(map(str, v))


def _structure(b) -> str:
    from .sketch import hash_structure
    h = hash_structure(b)
    return (f"{'window' if h['windows'] else 'random'} selectors, {'balanced' if h['balanced'] else 'free'} signs "
            f"(compact C: {'packed hash bits' if h['windows'] else 'a byte per hash bit'}, "
            f"{'reads x directly' if h['balanced'] else 'a negated copy of x'})")


def cmd_boards(a) -> int:
    from . import boards, report
    bs = boards.all_boards()
    if a.json:
        print(json.dumps([{"name": b.name, "kind": b.kind, "core": b.core, "flash_bytes": b.flash_bytes, "ram_bytes": b.ram_bytes,
                           "description": b.description} for b in bs], indent=2))
        return 0
    from rich.table import Table
    t = Table(title="boards (edgesketch export --board NAME)")
    for c in ("name", "kind", "core", "flash", "RAM", "PlatformIO", "counter"):
        t.add_column(c, justify="right" if c in ("flash", "RAM") else "left")
    for b in bs:
        pio = "local dev-platform" if b.platformio.local else f"{b.platformio.platform}/{b.platformio.board}/{b.platformio.framework}"
        t.add_row(b.name + (" (default)" if b.default else ""), b.kind, b.core, f"{b.flash_bytes // 1024:,} KB",
                  f"{b.ram_bytes // 1024:,} KB", pio, b.counter.kind)
    report.out.print(t)
    return 0


def cmd_export(a) -> int:
    from . import api, boards, report
    from .formats import safe_library_name, zip_path
    if a.zip and a.format != "arduino":
        raise UserError(f"--zip is for --format arduino (a zipped Arduino library), not --format {a.format}")
    if a.stream_state and a.hop is None:
        raise UserError("--stream-state goes with --hop H (the samples between two outputs of the stream)")
    m = api.load(a.sketch)
    sk = m.sketch
    board = boards.load(a.board) if a.board else boards.default_board() if a.format == "platformio" else None
    out = Path(a.out or f"{Path(a.sketch).stem}-{board.name if a.format == 'platformio' else a.format}")
    # the Arduino library is named after the model: --name, else the .esk file's name
    name = (a.name or safe_library_name(Path(a.sketch).stem)) if a.format == "arduino" else a.name
    path = m.export(out, board.name if board else None, a.format, a.layout, a.force, zip=a.zip, hop=a.hop,
                    stream_state=a.stream_state, prefix=a.prefix, name=name,
                    class_names=_names_flag(a.class_names) if a.class_names else None)
    fp = m.footprint(board.name if board else None, a.layout, a.format)
    note = (path / "examples" / "classify" / "classify.ino").read_text() if a.format == "arduino" else ""
    rows = [("folder" if a.format != "platformio" else "project", str(path)), ("format", a.format)]
    if board is not None:
        rows.append(("board", f"{board.name}: {board.description}"))
    rows += [("model id", sk.meta.get("model_id")), ("layout", a.layout)]
    if board is not None:
        rows += [("flash (estimate)", f"{fp.total_flash:,} of {board.flash_bytes:,} bytes (the model {fp.flash:,})"),
                 ("RAM (estimate)", f"{fp.total_ram:,} of {board.ram_bytes:,} bytes (the model {fp.ram:,})")]
    else:
        rows.append(("model flash (estimate)", f"{fp.flash:,} bytes (no board given: conservative defaults)"))
    if a.hop is not None:
        from .codegen import stream_ram
        from .export import stream_choice
        state = stream_choice(sk, a.hop, board, a.layout, a.stream_state)
        rows.append(("stream", f"a window of {m.stream_plan(a.hop).length} samples every {a.hop}; state {state}, "
                               f"{stream_ram(sk, a.hop, state)['total']:,} bytes of RAM"))
    if a.format == "platformio":
        nxt = (f"edgesketch verify {a.sketch} --board {board.name} --project {out}" if board.emulated
               else f"cd {out} && pio run -t upload && edgesketch verify {a.sketch} --port /dev/ttyUSB0")
    elif a.format == "c":
        nxt = f"add {out}/*.c to your build and {out} to its include path; API and example: {out}/README.md"
    elif a.format == "arduino":
        import re
        found = re.search(r"The input, int8 as \w+_predict_q takes it: (.*?)\.?\n", note)
        if found:
            rows.append(("example input", found.group(1)))
        if a.zip:
            rows.append(("zip", str(zip_path(path))))
        nxt = (f"copy {out} into ~/Arduino/libraries/ (or Add .ZIP Library), then File > Examples > "
               f"{name} > classify")
    else:
        nxt = (f"ESP-IDF: copy {out} into your project's components/; other CMake builds: add_subdirectory({out}) and "
               f"target_link_libraries(app PRIVATE {a.prefix}_model)")
    rows.append(("next", nxt))
    report.out.print(report.kv_table(rows, "exported"))
    return 0


def cmd_verify(a) -> int:
    from . import api, boards, report
    streaming = a.stream is not None or a.hop is not None
    if a.hop is not None and not a.board:
        raise UserError("--hop goes with --board (the stream is exported with it); a flashed device streams with the hop "
                        "it was exported with: verify --port PORT --stream")
    if streaming:
        m = api.load(a.sketch)
        x = None
        if a.stream is None or a.stream is True:            # the test windows laid end to end
            _, ds, _ = _sketch_and_test_data(a)
            x = ds.x_test[:a.limit] if a.limit else ds.x_test
        stream = a.stream if isinstance(a.stream, str) else True
        board = boards.load(a.board) if a.board else None
        res = m.verify(a.board, a.port, x=x, layout=a.layout, project=a.project, baud=a.baud, hop=a.hop,
                       stream=stream, stream_state=a.stream_state)
    else:
        sk, ds, source = _sketch_and_test_data(a)
        x, y = ds.x_test, ds.y_test
        if a.limit:
            x, y = x[:a.limit], (y[:a.limit] if y is not None else None)
        m = api.Model(sk)
        board = boards.load(a.board) if a.board else None
        if board is not None and not board.emulated:
            raise UserError(f"{board.name} is a real board: flash it (edgesketch flash --board {board.name} DIR), then verify with --port")
        res = m.verify(a.board, a.port, x=x, y=y, layout=a.layout, project=a.project, baud=a.baud)
        if source != sk.meta.get("source") or a.limit:
            res.teacher_accuracy = None        # the recorded teacher accuracy is of the whole recorded test set
    how = "QEMU plugin" if board is not None and board.counter.source == "icount_plugin" else "QEMU -icount"
    unit = {"instructions": f"instructions ({how}, exact)", "cycles": "cycles"}.get(res.counter, res.counter)
    rows = [("device", f"{res.board} ({res.core}) on {res.port}")]
    if res.stream:
        st = res.stream
        rows += [("stream", f"{st['samples']:,} samples of {st['channels']}, a window of {st['length']} every "
                            f"{st['hop']}: {st['hops']:,} hops"),
                 ("bit-exact hops", f"{res.bit_exact} / {res.n}" + ("" if res.ok else "  MISMATCH"))]
        if res.cost_median is not None:
            rows.append((f"{unit} per hop", f"median {res.cost_median:,.0f}, min {res.cost_min:,}, max {res.cost_max:,}"))
        if st.get("window_cost") is not None:
            rows.append((f"{unit} of a whole window", f"{st['window_cost']:,} (es_predict_q on the first window)"))
        if st.get("fill_cost") is not None:
            rows.append(("filling the first window", f"{st['fill_cost']:,}"))
    else:
        rows += [("samples", res.n), ("bit-exact agreements", f"{res.bit_exact} / {res.n}" + ("" if res.ok else "  MISMATCH")),
                 ("on-device accuracy", res.device_accuracy), ("host integer accuracy", res.host_int_accuracy),
                 ("teacher accuracy", res.teacher_accuracy)]
        if res.cost_median is not None:
            rows.append((f"{unit} per inference", f"median {res.cost_median:,.0f}, min {res.cost_min:,}, max {res.cost_max:,}"))
    if not res.stream:
        rows.append(("peak stack of es_predict_q", res.stack_text))
    rows += [("flash", res.flash_text), ("static RAM", res.static_ram_text)]
    rows += [("throughput", f"{res.samples_per_second:,.1f} samples/s round trip ({res.seconds:.2f} s)"),
             ("link", f"{res.link.get('retries', 0)} retries, {res.link.get('boots', 0)} resets, {res.link.get('bad_frames', 0)} bad frames")]
    if res.mismatch:
        rows.append(("first mismatch", f"sample {res.mismatch['sample']}: {res.mismatch['stage']}"))
    report.out.print(report.kv_table(rows, f"verify {a.sketch}"))
    if a.json:
        text = json.dumps(res.to_json(), indent=2)
        print(text) if a.json == "-" else Path(a.json).write_text(text + "\n")
    return 0 if res.ok else 1


def cmd_flash(a) -> int:
    import time

    from . import boards, build, emulate, report
    board = boards.load(a.board)
    if not board.emulated:
        build.run_pio(a.project, build.default_core_dir(), target="upload")
        report.out.print(f"uploaded {a.project} to {board.name}; now: edgesketch verify MODEL.esk --port PORT")
        return 0
    elf = build.run_pio(a.project, build.default_core_dir())
    with emulate.qemu(board, elf) as url:
        report.out.print(f"{board.name} is running under {board.qemu.binary}; its UART is {url}\n"
                         f"  edgesketch verify MODEL.esk --port {url}\n(Ctrl-C stops the emulator)")
        while url.alive:
            time.sleep(0.5)
    return 0


def cmd_bench(a) -> int:
    from .bench import run
    return run.main(a.args)


def _trial_options(a) -> dict | None:
    for flag, v, low in (("--trial-epochs", a.trial_epochs, 1), ("--trial-aug-size", a.trial_aug_size, 1),
                         ("--finalists", a.finalists, 0)):
        if v is not None and v < low:
            raise UserError(f"{flag} {v}: must be at least {low}")
    from .tuning import shortened
    return shortened(a.trial_epochs, a.trial_aug_size) or None


def cmd_tune(a) -> int:
    from . import data, report, teacher as tmod
    from .errors import require
    from .tuning import describe, tune
    require("edgesketch tune", "optuna", "tensorflow", "sklearn", extra="tune")   # a lean install: name the extra first
    out = Path(a.out)
    side = [out, out.with_suffix(".trials.json"), out.with_suffix(".pareto.png")]
    clash = [p for p in side if p.exists()]
    if clash and not a.force:
        raise UserError(f"{clash[0]} already exists; pass --force to replace it or choose another -o")
    from . import boards
    boards.load(a.board)                          # an unknown board: the list, before loading anything
    short = _trial_options(a)
    ds = data.load(a.data)
    if ds.y_train is None:
        raise UserError(f"{a.data} has no labels (y_train); tune scores trials on a labelled validation split")
    t = tmod.load(a.teacher, None, ds.y_train)
    t.check_data(ds.x_train, a.data)
    t.check_labels(ds.y_train, f"{a.data} training labels")
    storage = a.storage or str(out.with_suffix(".tune.db"))
    report.console.print(f"tune {a.teacher} on {ds.source} ({len(ds.x_train)} train / {len(ds.x_test)} test) for {a.board}: "
                         f"{a.trials} trials x {len(a.seeds)} seed(s); study {storage}")
    r = tune(t, ds.x_train, ds.y_train, ds.x_test, ds.y_test, board=a.board, flash=a.flash, ram=a.ram,
             max_instructions=a.max_instructions, trials=a.trials, seeds=a.seeds, jobs=a.jobs, ray=a.ray, storage=storage,
             resume=a.resume, sampler_seed=a.sampler_seed, fixed={"epochs": a.epochs} if a.epochs else None,
             trial_options=short, finalists=a.finalists,
             source=ds.source, class_names=ds.class_names)
    files = r.save(out, force=a.force)
    report.out.print(r.table())
    f, c = r.final, r.final["cost"]
    pm = lambda m, s: "n/a" if m is None else f"{m:.4f} ± {s:.4f}"
    rows = [("chosen", f"trial {r.best['number']}: {describe(r.best['config'])}"),
            ("validation (seeds " + " ".join(map(str, f["seeds"])) + ")" + (", shortened trials" if f["trial_options"]
                                                                     and not f["finalists"] else ""),
             pm(f["validation_mean"], f["validation_spread"])),
            *[(f"finalist trial {x['number']}", f"validation {x['shortened_mean']:.4f} shortened, {x['mean']:.4f} ± "
               f"{x['spread']:.4f} fully trained") for x in f["finalists"]],
            ("test, distilled on the whole training set", pm(f["test_mean"], f["test_spread"])),
            ("flash / RAM (model)", f"{c['flash']:,} / {c['ram']:,} bytes of {r.budget.flash:,} / {r.budget.ram:,} ({c['how']})"),
            ("instructions per inference", "n/a" if c["instructions"] is None else f"{c['instructions']:,}"),
            ("fits", "yes" if f["fits"] else "NO"), ("wall time", f"{r.seconds:,.0f} s"),
            ("files", ", ".join(str(p) for p in files.values())), ("study", f"{r.storage} (--resume continues it)")]
    report.out.print(report.kv_table(rows, f"tune {a.board}"))
    return 0


COMMANDS = {"tune": cmd_tune, "verify": cmd_verify, "flash": cmd_flash, "bench": cmd_bench, "distill": cmd_distill, "eval": cmd_eval, "info": cmd_info, "boards": cmd_boards, "export": cmd_export}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = build_parser()
    if argv[:1] == ["bench"]:  # the bench has its own parser: hand it every argument, --help included
        a = argparse.Namespace(command="bench", args=argv[1:])
    else:
        a = ap.parse_args(argv)
    if not a.command:
        ap.print_help()
        return 2
    try:
        return COMMANDS[a.command](a)
    except UserError as e:
        from .report import error
        error(_flag_message(e))
        return e.exit_code
    except ModuleNotFoundError as e:   # an optional dependency of a lean install: name the extra that installs it
        from .errors import missing_extra
        from .report import error
        err = missing_extra(e.name or "", f"edgesketch {a.command}")
        if err is None:
            raise
        error(str(err))
        return err.exit_code
    except KeyboardInterrupt:
        print("edgesketch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
