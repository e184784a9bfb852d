"""Build and run generated model C from tests: host gcc (plain or sanitised), cross compilers, a driver program.

The driver (C, written here) reads rows on stdin and writes binary records on stdout:
  mode q: int8 rows [D]    -> per row: int32 scores[C], int32 argmax, int32 rc_predict, int32 rc_debug,
                              uint8 bits[n_debug_bits], uint16 buckets[n_debug_buckets]
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
    "avr5": ["avr-gcc", "-mmcu=atmega328p", "-Os"],        # the Uno: const arrays in program memory (PROGMEM)
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
            uint8_t bits[@P@_N_DEBUG_BITS];
            uint16_t buckets[@P@_N_DEBUG_BUCKETS];
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
        uint8_t bits[@P@_N_DEBUG_BITS];
        uint16_t buckets[@P@_N_DEBUG_BUCKETS];
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
    """The generated model and the runtime (firmware/model/) in workdir; returns the model's .c."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for name, text in {**codegen.generate(sketch, layout, prefix), **codegen.runtime_files()}.items():
        (workdir / name).write_text(text)
    return workdir / f"{prefix}_model.c"


def runtime_sources(workdir: Path) -> list[Path]:
    """The runtime's .c files written by write_model."""
    return [Path(workdir) / n for n in codegen.RUNTIME if n.endswith(".c")]


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
          str(src), *map(str, runtime_sources(workdir)), str(drv), "-o", str(exe)])
    return exe


def run_q(exe: Path, sketch: Sketch, xq: np.ndarray) -> dict:
    """Run mode q over int8 rows; returns scores [N, C], argmax, rc_predict, rc_debug [N], bits [N, P], buckets [N, L]."""
    C, P, L = sketch.n_outputs, sketch.n_debug_bits, sketch.n_debug_buckets
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
    _run([*CROSS[target], *WARN, *extra, "-ffunction-sections", "-fdata-sections", "-I", str(workdir), "-c", str(src),
          "-o", str(obj)])
    for rt in runtime_sources(workdir):
        _run([*CROSS[target], *WARN, *extra, "-ffunction-sections", "-fdata-sections", "-I", str(workdir), "-c", str(rt),
              "-o", str(rt.with_suffix(f".{target}.o"))])
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


# ---------------------------------------------------------------- bare-metal Cortex-M under qemu-system-arm
# The model compiled for a real Cortex-M (M4: the SXTAB16 path; M3: the plain path), run by a tiny semihosting
# program on QEMU's MPS2 boards. Each row's scores come back as hex lines; then a SysTick measurement of 50 calls
# (QEMU -icount shift=0 runs one instruction per ns; the MPS2 SysTick counts at 25 MHz, so one tick = 40 instructions).
QEMU_MACHINES = {"cortex-m4": "mps2-an386", "cortex-m3": "mps2-an385", "cortex-m0": "mps2-an385"}   # M0 code (ARMv6-M) runs unchanged on the M3

_ARM_LD = """
MEMORY { FLASH (rx) : ORIGIN = 0x00000000, LENGTH = 4M
         RAM (rwx)  : ORIGIN = 0x20000000, LENGTH = 4M }
SECTIONS {
  .text : { KEEP(*(.vectors)) *(.text*) *(.rodata*) . = ALIGN(4); } > FLASH
  .data : { _sdata = .; *(.data*) . = ALIGN(4); _edata = .; } > RAM AT > FLASH
  _sidata = LOADADDR(.data);
  .bss (NOLOAD) : { _sbss = .; *(.bss*) *(COMMON) . = ALIGN(4); _ebss = .; } > RAM
  _estack = ORIGIN(RAM) + LENGTH(RAM);
}
"""

_ARM_MAIN = r"""
#include <stdint.h>
#include "es_model.h"
#include "rows.h"

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
int main(void);

static int semi(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ __volatile__("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}
static void done(int ok) { semi(0x18, (const void *)(ok ? 0x20026 : 0x20023)); for (;;) {} }
void Reset_Handler(void)
{
    uint32_t *s = &_sidata, *d = &_sdata;
    while (d < &_edata) *d++ = *s++;
    for (d = &_sbss; d < &_ebss; ) *d++ = 0;
    done(main() == 0);
}
void Fault_Handler(void) { semi(0x04, "FAULT\n"); done(0); }
__attribute__((section(".vectors"), used)) static const void *const vectors[16] = {
    &_estack, (const void *)Reset_Handler, (const void *)Fault_Handler, (const void *)Fault_Handler,
    (const void *)Fault_Handler, (const void *)Fault_Handler, (const void *)Fault_Handler };

static char line[16 + 9 * ES_N_OUTPUTS];
static void hex(char *p, uint32_t v) { int i; for (i = 7; i >= 0; --i, v >>= 4) p[i] = "0123456789abcdef"[v & 15u]; }
static int empty(const int8_t *x, int32_t *s) { (void)x; (void)s; return 0; }
static int (*volatile target)(const int8_t *, int32_t *);

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
static uint32_t ticks(int (*fn)(const int8_t *, int32_t *))
{
    int32_t s[ES_N_OUTPUTS];
    uint32_t t0, t1, k;
    target = fn;
    t0 = SYST_CVR;
    for (k = 0; k < 50u; ++k) target(es_rows[k % ES_N_ROWS], s);
    t1 = SYST_CVR;
    return (t0 - t1) & 0xFFFFFFu;
}

int main(void)
{
    int32_t s[ES_N_OUTPUTS];
    uint32_t i, c;
    for (i = 0; i < ES_N_ROWS; ++i) {
        if (es_predict_q(es_rows[i], s) != ES_OK) return 1;
        for (c = 0; c < ES_N_OUTPUTS; ++c) { hex(line + 9 * c, (uint32_t)s[c]); line[9 * c + 8] = ' '; }
        line[9 * ES_N_OUTPUTS - 1] = '\n';
        line[9 * ES_N_OUTPUTS] = 0;
        semi(0x04, line);
    }
    SYST_RVR = 0xFFFFFFu; SYST_CVR = 0; SYST_CSR = 5u;
    hex(line, ticks(es_predict_q)); line[8] = ' ';
    hex(line + 9, ticks(empty)); line[17] = '\n'; line[18] = 0;
    semi(0x04, "T ");
    semi(0x04, line);
    return 0;
}
"""


def run_qemu_cortex_m(sketch: Sketch, layout: str, xq: np.ndarray, workdir: Path, cpu: str = "cortex-m4",
                      extra=(), opt: str = "-O2", timeout: float = 120) -> tuple[np.ndarray, float]:
    """Build the model for cpu with arm-none-eabi-gcc and run es_predict_q on every row of xq under QEMU.
    Returns (scores [N, C] int32, instructions per es_predict_q call from SysTick, the empty call subtracted)."""
    workdir = Path(workdir)
    src = write_model(sketch, layout, workdir)
    xq = np.asarray(xq, np.int8).reshape(len(xq), -1)
    rows = ",\n".join("{" + ",".join(map(str, r)) + "}" for r in xq.tolist())
    (workdir / "rows.h").write_text(f"#define ES_N_ROWS {len(xq)}u\nstatic const int8_t es_rows[][ES_N_INPUTS] = {{\n{rows}\n}};\n")
    (workdir / "arm_main.c").write_text(_ARM_MAIN)
    (workdir / "link.ld").write_text(_ARM_LD)
    elf = workdir / f"model_{cpu}.elf"
    arch = ["arm-none-eabi-gcc", f"-mcpu={cpu}", "-mthumb", opt, "-ffunction-sections", "-fdata-sections"]
    objs = []
    for c in [src, *runtime_sources(workdir)]:   # the model and the runtime: pedantic C99
        objs.append(workdir / f"{c.stem}_arm.o")
        _run([*arch, *WARN, *extra, "-I", str(workdir), "-c", str(c), "-o", str(objs[-1])])
    _run([*arch, "-std=gnu99", "-Wall", "-Werror", "-nostdlib", "-nostartfiles", "-Wl,--gc-sections",
          "-T", str(workdir / "link.ld"), "-I", str(workdir), str(workdir / "arm_main.c"), *map(str, objs),
          "-lc", "-lgcc", "-o", str(elf)])
    r = _run(["qemu-system-arm", "-M", QEMU_MACHINES[cpu], "-nographic", "-monitor", "none", "-serial", "none",
              "-semihosting-config", "enable=on,target=native", "-icount", "shift=0,align=off,sleep=off",
              "-kernel", str(elf)], timeout=timeout, text=True)
    lines = r.stderr.splitlines()   # QEMU writes semihosting console output (SYS_WRITE0) to its stderr
    t = [l for l in lines if l.startswith("T ")]
    assert t, f"no timing line from QEMU; output ends: {lines[-3:]}"
    model_ticks, empty_ticks = (int(v, 16) for v in t[-1].split()[1:3])
    data = [l for l in lines if l and not l.startswith("T ")]
    assert len(data) == len(xq), f"QEMU printed {len(data)} score lines for {len(xq)} rows"
    scores = np.array([[int(v, 16) for v in l.split()] for l in data], np.uint32).view(np.int32)
    return scores, (model_ticks - empty_ticks) * 40 / 50
