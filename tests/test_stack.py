"""Peak stack of es_predict_q, measured by painting (firmware/core/es_app.c, STACK in docs/protocol.md).

A stack stand-in model writes the top 2 * x[1] words of a local array, so the painted peak must grow by exactly 8
bytes per unit of x[1] and report "at least the window" once it outgrows it: on the host (the core built with gcc,
ASan and UBSan) and on qemu-m4, qemu-m0 and qemu-rv32. Generated models on qemu-m4: the peak lies between what the
code must keep on the stack (compact: the negated copy of the input, 2 * D bytes, and bits[P] at once) and gcc's own
frame sizes (-fstack-usage)."""
from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

import test_build
from edgesketch import boards, build, codegen, emulate, sketch
from edgesketch import protocol as p
from test_emulate import _boot
from test_protocol import APP_DRIVER, CORE

pytestmark = pytest.mark.slow   # trains, builds firmware or runs QEMU: the full suite's tier (tests/conftest.py)

WINDOW = 1024                       # ES_STACK_PAINT's default
STACK_MODEL = r"""
/* Stack stand-in (tests/test_stack.py): es_predict_q writes the top 2 * (uint8_t)x[1] words of a local array (at
 * most all of it: 160 words on AVR, whose 2 KB of RAM hold no 2 KB array). */
#include "es_model.h"
#if defined(__AVR__)
#define ES_TEST_WORDS 160
#else
#define ES_TEST_WORDS 512
#endif
int es_predict_q(const int8_t *x, int32_t *scores)
{
    volatile uint32_t buf[ES_TEST_WORDS];
    unsigned i, n;
    int c;
    if (!x || !scores)
        return ES_ERR_NULL;
    n = 2u * (uint8_t)x[1];
    if (n > ES_TEST_WORDS)
        n = ES_TEST_WORDS;
    for (i = 0; i < n; i++)
        buf[ES_TEST_WORDS - 1 - i] = i;
    (void)buf;
    for (c = 0; c < ES_N_OUTPUTS; c++)
        scores[c] = x[0] + c;
    return ES_OK;
}
int es_debug_q(const int8_t *x, uint8_t *bits, uint16_t *buckets)
{
    int i;
    if (!x || !bits || !buckets)
        return ES_ERR_NULL;
    for (i = 0; i < ES_N_HASHBITS; i++)
        bits[i] = 0;
    for (i = 0; i < ES_N_TABLES; i++)
        buckets[i] = 0;
    return ES_OK;
}
"""
STEPS = [0, 1, 2, 3, 10, 50, 100, 7, 200, 3]   # x[1] per INFER; 100 * 8 bytes fits the window, 200 * 8 does not


def stack_model() -> dict[str, str]:
    return {"es_model.h": (test_build.STANDIN / "es_model.h").read_text(), "es_model.c": STACK_MODEL}


def x_of(k: int) -> np.ndarray:
    x = np.zeros(16, np.int8)
    x[0], x[1] = 5, np.uint8(k).view(np.int8)
    return x


def check_steps(stacks: list[p.StackInfo], window: int = WINDOW) -> int:
    """stacks[i]: STACK after INFER with x[1] = STEPS[i]. The running maximum grows by exactly 8 bytes per unit of
    x[1] while the array fits the window, then is 'at least the window'. Returns the peak at x[1] = 1."""
    assert len(stacks) == len(STEPS)
    peak = {}
    for k, st in zip(STEPS, stacks):
        assert st.window == window, st
        peak.setdefault(k, st)
    assert peak[0].peak < peak[1].peak < window and not peak[1].full
    for k in (2, 3, 10, 50, 100):
        if 8 * k + peak[1].peak - 8 < window:
            assert not peak[k].full and peak[k].peak - peak[1].peak == 8 * (k - 1), (k, peak[k], peak[1])
    assert peak[200] == p.StackInfo(window, window, True), peak[200]
    assert stacks[-1] == stacks[-2] and stacks[STEPS.index(7)] == stacks[STEPS.index(100)]   # a running maximum
    return peak[1].peak


# ---------------------------------------------------------------- the core on the host
def host_core(tmp_path: Path, files: dict[str, str], *defines: str) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "driver.c").write_text(APP_DRIVER)
    exe = tmp_path / "core"
    subprocess.run(["gcc", "-std=c99", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-fsanitize=address,undefined",
                    "-fno-sanitize-recover=all", '-DES_CORE_NAME="host"', *defines, f"-I{CORE}", f"-I{tmp_path}",
                    str(tmp_path / "driver.c"), str(CORE / "es_app.c"), str(CORE / "es_proto.c"),
                    str(tmp_path / "es_model.c"), "-o", str(exe)], check=True, capture_output=True, text=True)
    return exe


def host_session(exe: Path, requests: list[tuple[int, bytes]]) -> list[p.Frame]:
    """Feed the requests to the host build in one go; its frames after BOOT (BOOTs after a RESET included). A RESET
    is followed by a 0x00: the rebooted receiver waits for one."""
    stream = b"\x00" + b"".join(p.encode_frame(c, i % 255 + 1, b) + (b"\x00" if c == p.ES_CMD_RESET else b"")
                                for i, (c, b) in enumerate(requests))
    out = subprocess.run([str(exe)], input=stream, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    frames = p.decode_stream(b"\x00" + out.stdout)
    assert all(isinstance(f, p.Frame) for f in frames) and frames[0].cmd == p.ES_MSG_BOOT
    return frames[1:]


def steps_requests() -> list[tuple[int, bytes]]:
    return [r for k in STEPS for r in ((p.ES_CMD_INFER, p.pack_infer(x_of(k))), (p.ES_CMD_STACK, b""))]


def stacks_of(frames: list[p.Frame]) -> list[p.StackInfo]:
    return [p.unpack_stack_reply(f.body) for f in frames if f.cmd == p.ES_CMD_STACK | p.ES_REPLY]


@pytest.mark.parametrize("paint", [None, 512])
def test_host_peak_grows_exactly_and_saturates(tmp_path, paint):
    window = WINDOW if paint is None else paint
    exe = host_core(tmp_path, stack_model(), *([] if paint is None else [f"-DES_STACK_PAINT={paint}u"]))
    reqs = [(p.ES_CMD_STACK, b"")] + steps_requests() + [(p.ES_CMD_RESET, b""), (p.ES_CMD_STACK, b"")]
    frames = host_session(exe, reqs)
    stacks = stacks_of(frames)
    assert stacks[0] == p.StackInfo(0, window, False)                   # no inference yet
    assert frames[-2].cmd == p.ES_MSG_BOOT and stacks[-1] == p.StackInfo(0, window, False)   # RESET starts over
    print(f"\nhost (x86-64, ASan): peak at x[1]=1 {check_steps(stacks[1:-1], window)} bytes, window {window}")


def test_host_no_painting(tmp_path):
    exe = host_core(tmp_path, stack_model(), "-DES_STACK_PAINT=0")
    stacks = stacks_of(host_session(exe, steps_requests()))
    assert stacks == [p.StackInfo(0, 0, False)] * len(STEPS) and not stacks[0].measured


def test_host_window_stays_above_the_floor(tmp_path):
    """es_stack_low: sp - ES_STACK_PAINT, clamped to ES_STACK_FLOOR (rounded up to a word), empty at or below it."""
    (tmp_path / "es_model.h").write_text((test_build.STANDIN / "es_model.h").read_text())
    (tmp_path / "drv.c").write_text(r"""
#include <stdio.h>
#include "es_app.c"
uint32_t drv_floor[4];
int es_predict_q(const int8_t *x, int32_t *s) { (void)x; (void)s; return ES_OK; }
int es_debug_q(const int8_t *x, uint8_t *b, uint16_t *k) { (void)x; (void)b; (void)k; return ES_OK; }
void es_bsp_tx(const uint8_t *q, size_t n) { (void)q; (void)n; }
void es_bsp_tx_flush(void) {}
void es_bsp_counter_start(void) {}
uint32_t es_bsp_counter_read(void) { return 0; }
int es_bsp_counter_stop(void) { return 0; }
void es_bsp_reset(void) {}
int es_bsp_rx(uint8_t *b) { (void)b; return 0; }
int main(void)
{
    const long d[] = {5000, 1028, 1024, 100, 4, 0, -64};
    uintptr_t f = (uintptr_t)drv_floor;
    size_t i;
    for (i = 0; i < sizeof d / sizeof d[0]; i++)
        printf("%ld ", (long)(es_stack_low(f + (uintptr_t)d[i]) - f));
    return 0;
}
""")
    exe = tmp_path / "drv"
    subprocess.run(["gcc", "-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", '-DES_CORE_NAME="host"',
                    "-DES_STACK_FLOOR=drv_floor", f"-I{CORE}", f"-I{tmp_path}", str(tmp_path / "drv.c"),
                    str(CORE / "es_proto.c"), "-o", str(exe)], check=True, capture_output=True, text=True)
    got = [int(v) for v in subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()]
    assert got == [5000 - WINDOW, 4, 0, 0, 0, 0, -64]


# ---------------------------------------------------------------- emulated boards
@pytest.mark.parametrize("name", ["qemu-m4", "qemu-m0", "qemu-rv32", "qemu-lx106", "qemu-uno"])
def test_device_peak_grows_exactly_and_saturates(tmp_path_factory, name):
    """The board's own window (512 bytes on the Uno), or 1024 where the board paints more (qemu-lx106: 4096), so that
    the stand-in's 200 * 8 bytes outgrow it."""
    board = boards.load(name)
    paint = int(board.build_defines().get("ES_STACK_PAINT", f"{WINDOW}u").rstrip("u"))
    window = min(WINDOW, paint)
    if window != paint:
        board = dataclasses.replace(board, firmware=dataclasses.replace(
            board.firmware, defines={**board.firmware.defines, "ES_STACK_PAINT": f"{window}u"}))
    proj = build.write_project(board, stack_model(), tmp_path_factory.mktemp("stack") / name)
    elf = build.run_pio(proj, test_build.session_core(tmp_path_factory))
    with emulate.qemu(name, elf) as url:
        link, _ = _boot(url)
        link.send_raw(b"\x00")
        stacks = [p.unpack_stack_reply(link.request(p.ES_CMD_STACK, 1).body)]
        for i, k in enumerate(STEPS):
            _, scores = link.infer(x_of(k), seq=i + 2)
            assert scores.tolist() == [5, 6, 7, 8]
            stacks.append(p.unpack_stack_reply(link.request(p.ES_CMD_STACK, i + 2).body))
        assert link.request(p.ES_CMD_RESET, 99).cmd == p.ES_CMD_RESET | p.ES_REPLY
        assert link.frame(timeout=10).cmd == p.ES_MSG_BOOT
        after_reset = p.unpack_stack_reply(link.request(p.ES_CMD_STACK, 100, flush=True).body)
        link.close()
    assert stacks[0] == after_reset == p.StackInfo(0, window, False)
    print(f"\n{name}: stack stand-in peak at x[1]=1 {check_steps(stacks[1:], window)} bytes, window {window}")


def _stack_usage(board: boards.Board, src: Path, tmp: Path) -> dict[str, int]:
    """gcc -fstack-usage of the model with the flags the firmware build uses: {function: frame bytes} (a function gcc
    split into parts, such as es_predict_q and es_predict_q.part.0, under its name with the parts' frames added)."""
    cc = board.platformio.toolchain + "gcc"
    subprocess.run([cc, *board.firmware.cpu_flags, build.C_STD, *board.firmware.c_flags, *board.define_flags(),
                    "-ffunction-sections", "-fdata-sections", "-fstack-usage", "-I", str(src.parent), "-c", str(src),
                    "-o", str(tmp / "m.o")], check=True, capture_output=True, text=True)
    su: dict[str, int] = {}
    for line in (tmp / "m.su").read_text().splitlines():
        fn, size, _ = line.split("\t")
        name = re.sub(r"\..*", "", fn.rsplit(":", 1)[-1])
        su[name] = su.get(name, 0) + int(size)
    return su


@pytest.mark.parametrize("layout,D", [("unrolled", 64), ("compact", 64), ("compact", 256)])
def test_generated_model_peak_within_sound_bounds(tmp_path_factory, layout, D):
    """Lower bound from the generated code: compact keeps the input and its negation (2 * D bytes: the sketch's taps
    are free signs) and bits[P] on the stack at once and writes the first word of each; unrolled keeps w[N_W] words.
    Upper bound: es_predict_q's frame (all its parts: the runtime is inlined into it) plus the frame of the generated
    hash function it calls (unrolled), as gcc reports them for the same flags. Painting sees only written words, so
    the peak may fall short of gcc's frames by unwritten padding."""
    name, P = "qemu-m4", 48
    board = boards.load(name)
    sk = sketch.random_sketch(D=D, C=10, L=16, K=6, P=P, taps=8, seed=5)
    files = codegen.generate(sk, layout=layout)
    tmp = tmp_path_factory.mktemp(f"gen-{layout}-{D}")
    proj = build.write_project(name, files, tmp / "fw")
    elf = build.run_pio(proj, test_build.session_core(tmp_path_factory))
    su = _stack_usage(board, proj / "lib" / "es_model" / "es_model.c", tmp)
    upper = su["es_predict_q"] + su.get("es_b0_hash_", 0)
    n_w = int(re.search(r"\.n_words = (\d+),", files["es_model.c"]).group(1)) if layout == "unrolled" else 0
    lower = 2 * D + P if layout == "compact" else 4 * n_w
    xs = np.random.default_rng(1).integers(-128, 128, (20, D), dtype=np.int8)
    with emulate.qemu(name, elf) as url:
        link, _ = _boot(url)
        link.send_raw(b"\x00")
        for i, x in enumerate(xs):
            f = link.request(p.ES_CMD_INFER, i + 1, p.pack_infer(x))
            assert np.array_equal(p.unpack_infer_reply(f.body, 10)[1], sketch.int_scores(sk, x[None])[0])
        st = p.unpack_stack_reply(link.request(p.ES_CMD_STACK, 30).body)
        link.close()
    print(f"\n{name} {layout} D={D} P={P}: peak {st.peak} bytes, code's lower bound {lower}, gcc frames {upper} ({su})")
    assert st.window == WINDOW and not st.full and st.peak % 4 == 0
    assert lower <= st.peak <= upper and upper - st.peak <= 16
