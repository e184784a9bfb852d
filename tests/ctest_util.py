"""Build and run generated model C from tests: host gcc (plain or sanitised), cross compilers, a driver program.

The driver (C, written here) reads rows on stdin and writes binary records on stdout:
  mode q: int8 rows [D]    -> per row: int32 scores[C], int32 argmax, int32 rc_predict, int32 rc_debug,
                              uint8 bits[P], uint16 buckets[L]
  mode f: float32 rows [D] -> per row: float32 out[C], int32 rc
  mode n: no input         -> the return codes of every API call given NULL pointers, as int32
Main entry for tests (and for the lead's trained sketches): assert_c_matches_reference(sketch, xq, layout).
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from edgesketch import codegen
from edgesketch.sketch import Sketch, int_buckets, int_hash_bits, int_scores

WARN = ["-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]

# name -> compiler argv (without -c/-o). riscv64-unknown-elf and xtensa-lx106 ship without a libc here, so they build
# freestanding (stdint.h/stddef.h come from gcc itself), which is what the generated model needs.
CROSS = {
    "cortex-m4": ["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-O2"],
    "cortex-m4f": ["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-O2"],
    "cortex-m0": ["arm-none-eabi-gcc", "-mcpu=cortex-m0", "-mthumb", "-O2"],
    "cortex-m3-os": ["arm-none-eabi-gcc", "-mcpu=cortex-m3", "-mthumb", "-Os"],
    "rv32imc": ["riscv64-unknown-elf-gcc", "-march=rv32imc", "-mabi=ilp32", "-ffreestanding", "-O2"],
    "xtensa-lx106": ["xtensa-lx106-elf-gcc", "-ffreestanding", "-O2"],
}

DRIVER = r"""
#include <stdio.h>
#include <string.h>
#include "@p@_model.h"

static int put(const void *p, size_t n) { return fwrite(p, 1, n, stdout) == n ? 0 : 1; }

int main(int argc, char **argv)
{
    char mode = argc > 1 ? argv[1][0] : 'q';
    if (mode == 'q') {
        int8_t x[@P@_N_INPUTS];
        while (fread(x, 1, sizeof x, stdin) == sizeof x) {
            int32_t s[@P@_N_OUTPUTS], rec[3];
            uint8_t bits[@P@_N_HASHBITS];
            uint16_t buckets[@P@_N_TABLES];
            memset(s, 0x55, sizeof s); memset(bits, 0x55, sizeof bits); memset(buckets, 0x55, sizeof buckets);
            rec[1] = @p@_predict_q(x, s);
            rec[0] = @p@_argmax(s);
            rec[2] = @p@_debug_q(x, bits, buckets);
            if (put(s, sizeof s) || put(rec, sizeof rec) || put(bits, sizeof bits) || put(buckets, sizeof buckets))
                return 3;
        }
    } else if (mode == 'f') {
        float x[@P@_N_INPUTS];
        while (fread(x, 1, sizeof x, stdin) == sizeof x) {
            float out[@P@_N_OUTPUTS];
            int32_t rc = @p@_predict(x, out);
            if (put(out, sizeof out) || put(&rc, sizeof rc)) return 3;
        }
    } else {
        int8_t x[@P@_N_INPUTS] = {0};
        float xf[@P@_N_INPUTS] = {0}, out[@P@_N_OUTPUTS];
        int32_t s[@P@_N_OUTPUTS];
        uint8_t bits[@P@_N_HASHBITS];
        uint16_t buckets[@P@_N_TABLES];
        int32_t rc[9];
        rc[0] = @p@_predict_q(NULL, s);
        rc[1] = @p@_predict_q(x, NULL);
        rc[2] = @p@_argmax(NULL);
        rc[3] = @p@_predict(NULL, out);
        rc[4] = @p@_predict(xf, NULL);
        rc[5] = @p@_debug_q(NULL, bits, buckets);
        rc[6] = @p@_debug_q(x, NULL, buckets);
        rc[7] = @p@_debug_q(x, bits, NULL);
        rc[8] = @P@_OK;
        if (put(rc, sizeof rc)) return 3;
    }
    return fflush(stdout) == 0 ? 0 : 3;
}
"""


def write_model(sketch: Sketch, layout: str, workdir: Path, prefix: str = "es") -> Path:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for name, text in codegen.generate(sketch, layout, prefix).items():
        (workdir / name).write_text(text)
    return workdir / f"{prefix}_model.c"


def _run(argv, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, capture_output=True, **kw)
    if r.returncode != 0:
        err = r.stderr.decode(errors="replace") if isinstance(r.stderr, bytes) else r.stderr
        raise AssertionError(f"{' '.join(map(str, argv))} exited {r.returncode}:\n{err[-4000:]}")
    return r


def build_host(sketch: Sketch, layout: str, workdir: Path, *, sanitize: bool = False, prefix: str = "es",
               cflags=("-O2",)) -> Path:
    """Generate the model into workdir and build it with the driver using the host gcc. Returns the executable."""
    src = write_model(sketch, layout, workdir, prefix)
    drv = Path(workdir) / "driver.c"
    drv.write_text(DRIVER.replace("@p@", prefix).replace("@P@", prefix.upper()))
    exe = Path(workdir) / ("driver_san" if sanitize else "driver")
    _run(["gcc", *WARN, *cflags, *(SANITIZE + ["-g"] if sanitize else []), "-I", str(workdir),
          str(src), str(drv), "-o", str(exe)])
    return exe


def run_q(exe: Path, sketch: Sketch, xq: np.ndarray) -> dict:
    """Run mode q over int8 rows; returns scores [N, C], argmax, rc_predict, rc_debug [N], bits [N, P], buckets [N, L]."""
    C, P, L = sketch.n_outputs, sketch.n_hyperplanes, sketch.n_tables
    rec = np.dtype([("scores", "<i4", (C,)), ("argmax", "<i4"), ("rc_predict", "<i4"), ("rc_debug", "<i4"),
                    ("bits", "u1", (P,)), ("buckets", "<u2", (L,))])
    xq = np.ascontiguousarray(np.asarray(xq, np.int8).reshape(len(xq), -1))
    out = _run([str(exe), "q"], input=xq.tobytes(), env=_san_env()).stdout
    assert len(out) == len(xq) * rec.itemsize, f"driver wrote {len(out)} bytes, expected {len(xq) * rec.itemsize}"
    r = np.frombuffer(out, rec)
    return {k: r[k] for k in rec.names}


def run_f(exe: Path, sketch: Sketch, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run mode f over float32 rows; returns (outputs [N, C] float32, return codes [N])."""
    rec = np.dtype([("out", "<f4", (sketch.n_outputs,)), ("rc", "<i4")])
    x = np.ascontiguousarray(np.asarray(x, np.float32).reshape(len(x), -1))
    out = _run([str(exe), "f"], input=x.tobytes(), env=_san_env()).stdout
    assert len(out) == len(x) * rec.itemsize
    r = np.frombuffer(out, rec)
    return r["out"], r["rc"]


def run_null(exe: Path) -> np.ndarray:
    return np.frombuffer(_run([str(exe), "n"], env=_san_env()).stdout, "<i4")


def _san_env():
    import os
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0:halt_on_error=1"
    env["UBSAN_OPTIONS"] = "halt_on_error=1:print_stacktrace=1"
    return env


def check_q(sketch: Sketch, xq: np.ndarray, got: dict) -> None:
    """Assert the driver's records equal the integer reference on every row, with the first mismatch named."""
    xq = np.asarray(xq, np.int8).reshape(len(xq), -1)
    assert np.all(got["rc_predict"] == 0) and np.all(got["rc_debug"] == 0), "an API call did not return ES_OK"
    want_bits = int_hash_bits(sketch, xq)
    bad = np.flatnonzero((got["bits"] != want_bits).any(1))
    assert bad.size == 0, f"{bad.size} rows with wrong hash bits; row {bad[0]}: hyperplanes " \
                          f"{np.flatnonzero(got['bits'][bad[0]] != want_bits[bad[0]]).tolist()}"
    want_b = int_buckets(sketch, xq)
    bad = np.flatnonzero((got["buckets"] != want_b).any(1))
    assert bad.size == 0, f"{bad.size} rows with wrong buckets; row {bad[0]}: {got['buckets'][bad[0]]} != {want_b[bad[0]]}"
    want = int_scores(sketch, xq)
    bad = np.flatnonzero((got["scores"] != want).any(1))
    assert bad.size == 0, f"{bad.size} of {len(xq)} rows differ from int_scores; row {bad[0]}: " \
                          f"C {got['scores'][bad[0]].tolist()} != ref {want[bad[0]].tolist()}"
    # first index of the maximum, as numpy's argmax
    assert np.array_equal(got["argmax"], want.argmax(1)), "es_argmax differs from argmax (first on ties)"


def assert_c_matches_reference(sketch: Sketch, xq: np.ndarray, layout: str = "unrolled", *, sanitize: bool = False,
                               workdir: Path | None = None, prefix: str = "es") -> None:
    """Generate C for sketch, build it on the host and assert es_predict_q / es_argmax / es_debug_q equal
    int_scores / argmax / int_hash_bits / int_buckets on every row of xq (int8 [N, D])."""
    tmp = None
    if workdir is None:
        workdir = Path(tmp := tempfile.mkdtemp(prefix="es_ctest_"))
    try:
        exe = build_host(sketch, layout, Path(workdir), sanitize=sanitize, prefix=prefix)
        check_q(sketch, xq, run_q(exe, sketch, xq))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def cross_compile(sketch: Sketch, layout: str, target: str, workdir: Path, extra=()) -> Path:
    """Generate and compile the model for a CROSS target with warnings as errors; returns the object file."""
    src = write_model(sketch, layout, workdir)
    obj = Path(workdir) / f"es_model_{target}.o"
    _run([*CROSS[target], *WARN, *extra, "-ffunction-sections", "-fdata-sections", "-c", str(src), "-o", str(obj)])
    return obj


def arm_size(obj: Path) -> dict:
    """arm-none-eabi-size (Berkeley) of an object: text, data, bss."""
    out = _run(["arm-none-eabi-size", str(obj)], text=True).stdout.splitlines()[1].split()
    return {"text": int(out[0]), "data": int(out[1]), "bss": int(out[2])}


def edge_rows(D: int) -> np.ndarray:
    """All -128, all 127, zeros, alternating extremes and each input alone at an extreme."""
    rows = [np.full(D, -128), np.full(D, 127), np.zeros(D), np.tile([-128, 127], D)[:D], np.tile([127, -128], D)[:D],
            np.full(D, -1), np.full(D, 1)]
    return np.array(rows, np.int8)
