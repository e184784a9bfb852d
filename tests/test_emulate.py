"""The firmware on every emulated board under QEMU (built by tests/test_build.py's helpers with pio, stand-in model
from tests/fixtures/standin_model): BOOT, HELLO, 1000 INFER round trips with checked CRCs and scores, BATCH, DEBUG,
NAKs, RESET; an idle QEMU must sleep (interrupts + WFI); costs are exact instruction counts (checked against the
stand-in's 2-instruction loop and against QEMU's own per-instruction trace); edgesketch.emulate always stops QEMU."""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import serial
import socket

import test_build
import test_codegen
from edgesketch import boards, build, codegen, emulate, sketch
from edgesketch import protocol as p
from edgesketch.errors import UserError

pytestmark = pytest.mark.slow   # trains, builds firmware or runs QEMU: the full suite's tier (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[1]
EMULATED = test_build.EMULATED
N_IN, N_OUT, N_TABLES, N_BITS, N_HASHBITS = 16, 4, 3, 4, 12     # tests/fixtures/standin_model/es_model.h
MODEL_ID = bytes.fromhex("5eed0123456789ab")
REPLY_TIMEOUT = 5.0


def standin_reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Host twin of the stand-in model: (scores, hash bits, buckets)."""
    x = x.astype(np.int64)
    acc = int(np.sum(x * np.arange(1, N_IN + 1)))
    wrap = lambda v: (v + 2**31) % 2**32 - 2**31
    scores = np.array([wrap(acc * (c + 1) - 1000 * c) for c in range(N_OUT)], np.int32)
    bits = (x[:N_HASHBITS] > 0).astype(np.uint8)
    buckets = np.array([sum(int(bits[t * N_BITS + k]) << k for k in range(N_BITS)) for t in range(N_TABLES)], np.uint16)
    return scores, bits, buckets


class Link:
    """A minimal host side of the protocol over a plain TCP socket (edgesketch.harness does this with pyserial).

    Not pyserial here: its socket:// open() calls reset_input_buffer(), which throws away whatever the guest sent
    the moment the connection was accepted, i.e. part or all of the BOOT frame (see test_pyserial_handshake)."""

    def __init__(self, url: str):
        host, port = url.removeprefix("socket://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.dec = p.FrameDecoder(synced=True)   # the guest waits for us (wait=on): its first byte starts a frame
        self.pending: list = []

    def event(self, timeout: float = REPLY_TIMEOUT):
        end = time.monotonic() + timeout
        while not self.pending:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame from the device")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            if not data:
                raise ConnectionError("QEMU closed the connection")
            self.pending += self.dec.feed(data)
        return self.pending.pop(0)

    def frame(self, timeout: float = REPLY_TIMEOUT) -> p.Frame:
        ev = self.event(timeout)
        assert isinstance(ev, p.Frame), f"device sent a bad frame: {ev}"   # CRC and COBS checked by the decoder
        return ev

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, cmd: int, seq: int, body: bytes = b"", flush: bool = False) -> p.Frame:
        self.sock.sendall((b"\x00" if flush else b"") + p.encode_frame(cmd, seq, body))
        f = self.frame()
        assert f.seq == seq, (f, seq)
        return f

    def infer(self, x: np.ndarray, seq: int = 1) -> tuple[int, np.ndarray]:
        f = self.request(p.ES_CMD_INFER, seq, p.pack_infer(x))
        assert f.cmd == p.ES_CMD_INFER | p.ES_REPLY, f
        return p.unpack_infer_reply(f.body, N_OUT)

    def close(self):
        self.sock.close()


@pytest.fixture(scope="module")
def elfs(tmp_path_factory):
    return {name: test_build.built_elf(tmp_path_factory, name) for name in EMULATED}


def _boot(url) -> tuple[Link, p.HelloInfo]:
    link = Link(url)
    boot = link.frame(timeout=10)
    assert boot.cmd == p.ES_MSG_BOOT and boot.seq == 0
    return link, p.unpack_hello(boot.body)


# ---------------------------------------------------------------- protocol on every board
@pytest.mark.parametrize("name", EMULATED)
def test_hello_and_1000_infer_round_trips(elfs, name):
    board = boards.load(name)
    rng = np.random.default_rng(1)
    xs = rng.integers(-128, 128, size=(1000, N_IN), dtype=np.int8)
    with emulate.qemu(board, elfs[name]) as url:
        link, boot = _boot(url)
        max_body = int(board.build_defines().get("ES_PROTO_MAX_BODY", p.ES_PROTO_MAX_BODY))
        max_batch = min((max_body - 1) // N_IN, (max_body - 1) // (4 + 4 * N_OUT))       # 51 with 1024-byte bodies
        assert boot == p.HelloInfo(p.ES_PROTO_VERSION, MODEL_ID, N_IN, N_OUT, N_TABLES, N_BITS, N_HASHBITS,
                                   p.ES_COUNTER_INSTRUCTIONS, max_batch, board.core, max_body)
        hello = link.request(p.ES_CMD_HELLO, 7, flush=True)
        assert hello.cmd == p.ES_CMD_HELLO | p.ES_REPLY and p.unpack_hello(hello.body) == boot
        t0 = time.perf_counter()
        for i, x in enumerate(xs):
            cost, scores = link.infer(x, seq=i & 0xFF)
            assert np.array_equal(scores, standin_reference(x)[0]), (i, scores)
            assert 0 < cost < 5000
        dt = time.perf_counter() - t0
        link.close()
    print(f"\n{name}: 1000 INFER round trips in {dt:.2f} s = {1000 / dt:.0f}/s")


@pytest.mark.parametrize("name", EMULATED)
def test_batch_debug_nak_and_reset(elfs, name):
    rng = np.random.default_rng(2)
    with emulate.qemu(name, elfs[name]) as url:
        link, boot = _boot(url)
        link.send_raw(b"\x00")
        # BATCH: the same scores as INFER, one cost each
        xs = rng.integers(-128, 128, size=(boot.max_batch, N_IN), dtype=np.int8)
        f = link.request(p.ES_CMD_BATCH, 3, p.pack_batch(xs))
        assert f.cmd == p.ES_CMD_BATCH | p.ES_REPLY
        costs, scores = p.unpack_batch_reply(f.body, N_OUT, len(xs))
        for x, s, c in zip(xs, scores, costs):
            assert np.array_equal(s, standin_reference(x)[0])
            assert link.infer(x)[0] == c                     # deterministic instruction counts
        # DEBUG
        x = rng.integers(-128, 128, size=N_IN, dtype=np.int8)
        f = link.request(p.ES_CMD_DEBUG, 4, p.pack_debug(x))
        bits, buckets = p.unpack_debug_reply(f.body)
        _, rbits, rbuckets = standin_reference(x)
        assert f.cmd == p.ES_CMD_DEBUG | p.ES_REPLY
        assert np.array_equal(bits, rbits.astype(bool)) and np.array_equal(buckets, rbuckets)
        # NAKs: each malformed frame gets one NAK with its seq, and the device keeps working
        naks = [(p.encode_frame(0x42, 9), 9, p.ES_NAK_UNKNOWN),
                (p.encode_frame(p.ES_CMD_INFER, 10, bytes(N_IN - 1)), 10, p.ES_NAK_LENGTH),
                (p.encode_frame(p.ES_CMD_HELLO, 11, b"x"), 11, p.ES_NAK_LENGTH),
                (p.encode_frame(p.ES_CMD_BATCH, 12, bytes([0])), 12, p.ES_NAK_BATCH),
                (p.encode_frame(p.ES_CMD_BATCH, 13, bytes([boot.max_batch + 1]) + bytes(N_IN)), 13, p.ES_NAK_BATCH),
                (p.encode_frame(p.ES_CMD_BATCH, 14, bytes([2]) + bytes(N_IN)), 14, p.ES_NAK_LENGTH),
                (p.cobs_encode(bytes([p.ES_CMD_HELLO, 15, 0x12, 0x34])) + b"\x00", 15, p.ES_NAK_CRC),
                (p.cobs_encode(bytes([p.ES_CMD_HELLO, 16])) + b"\x00", 16, p.ES_NAK_SHORT),
                (b"\x05\x01\x00", 0, p.ES_NAK_COBS),
                (b"\x01" * (p.ES_PROTO_MAX_WIRE + 10) + b"\x00", 0, p.ES_NAK_TOO_LONG)]
        for data, seq, reason in naks:
            link.send_raw(data)
            f = link.frame()
            assert (f.cmd, f.seq, f.body) == (p.ES_MSG_NAK, seq, bytes([reason])), (data[:8], f)
        assert link.request(p.ES_CMD_HELLO, 17).cmd == p.ES_CMD_HELLO | p.ES_REPLY
        # RESET: the reply, then the device starts over and sends BOOT again
        f = link.request(p.ES_CMD_RESET, 18)
        assert (f.cmd, f.body) == (p.ES_CMD_RESET | p.ES_REPLY, b"")
        boot2 = link.frame(timeout=10)
        assert boot2.cmd == p.ES_MSG_BOOT and p.unpack_hello(boot2.body) == boot
        assert link.request(p.ES_CMD_HELLO, 19, flush=True).cmd == p.ES_CMD_HELLO | p.ES_REPLY
        link.close()


@pytest.mark.parametrize("name", EMULATED)
def test_idle_qemu_sleeps(elfs, name):
    with emulate.qemu(name, elfs[name]) as url:
        link, _ = _boot(url)
        link.request(p.ES_CMD_HELLO, 1, flush=True)
        time.sleep(0.2)
        c0, t0 = emulate.cpu_seconds(url.pid), time.monotonic()
        time.sleep(1.5)
        used = (emulate.cpu_seconds(url.pid) - c0) / (time.monotonic() - t0)
        assert link.request(p.ES_CMD_HELLO, 2).cmd == p.ES_CMD_HELLO | p.ES_REPLY   # still awake on a byte
        link.close()
    print(f"\n{name}: idle QEMU uses {100 * used:.1f}% of a host core")
    if boards.load(name).qemu.idle_sleeps:
        assert used < 0.05
    else:   # the board file says so (qemu-uno: QEMU 7.2's AVR SLEEP never wakes): it spins, taking what share of a
            # core the machine's load leaves it (0.11 with four busy processes on 2 cores; a sleeping QEMU stays < 0.05)
        assert used > 0.05


# ---------------------------------------------------------------- exact instruction counts
@pytest.mark.parametrize("name", EMULATED)
def test_cost_is_exact_per_instruction(elfs, name):
    """The stand-in spins (uint8)x[0] times around a 2-instruction loop, so for n >= 1 cost(n) - cost(1) must be
    exactly 2 (n - 1): a counter that were only 40-instruction granular (SysTick at icount shift 0) would fail."""
    with emulate.qemu(name, elfs[name]) as url:
        link, _ = _boot(url)
        link.send_raw(b"\x00")
        costs = {}
        for rep in range(2):
            for n in list(range(1, 42)) + [100, 199, 255]:
                x = np.zeros(N_IN, np.int8)
                x[0] = np.int8(np.uint8(n).view(np.int8))
                c, _ = link.infer(x)
                assert costs.setdefault(n, c) == c, (n, rep)        # repeatable
        link.close()
    base = costs[1]
    assert all(costs[n] - base == 2 * (n - 1) for n in costs), costs
    print(f"\n{name}: cost(x0=n) = {base} + 2 (n - 1) exactly for n in 1..41, 100, 199, 255")


def _symbol_ranges(elf: Path, prefix: str) -> dict[str, tuple[int, int]]:
    out = subprocess.run([prefix + "nm", "-S", str(elf)], capture_output=True, text=True, check=True).stdout
    ranges = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) == 4 and f[2] in "tT":
            start = int(f[0], 16) & ~1
            ranges[f[3]] = (start, start + int(f[1], 16))
    return ranges


@pytest.mark.parametrize("name", ["qemu-m4", "qemu-m0", "qemu-rv32", "qemu-lx106", "qemu-uno"])
def test_cost_matches_qemu_instruction_trace(elfs, tmp_path, name):
    """Count the instructions independently: QEMU's own trace (-singlestep -d exec,nochain logs every executed
    instruction's PC). cost must equal (instructions inside es_predict_q) - (instructions inside the empty function
    es_null_predict), the calibration the firmware subtracts."""
    board = boards.load(name)
    elf = elfs[name]
    prefix = board.platformio.toolchain
    syms = _symbol_ranges(elf, prefix)
    pred = [syms["es_predict_q"]]
    null = [syms["es_null_predict"]]
    log = tmp_path / "exec.log"
    xs = [0, 1, 7, 200]
    with emulate.qemu(board, elf, extra_args=["-singlestep", "-d", "exec,nochain", "-D", str(log)]) as url:
        link, _ = _boot(url)
        link.send_raw(b"\x00")
        costs = []
        for n in xs:
            x = np.zeros(N_IN, np.int8)
            x[0] = np.int8(np.uint8(n).view(np.int8))
            costs.append(link.infer(x)[0])
        link.close()
    pcs = [int(m.group(1), 16) for m in re.finditer(r"\[[0-9a-f]+/([0-9a-f]+)/", log.read_text())]

    def enclosing(pc):
        return next(((lo, hi) for lo, hi in syms.values() if lo <= pc < hi), (pc, pc + 1))

    # per call: the instructions from the function's entry until the PC is back in the function that called it
    # (its callees included: es_spin if not inlined, AVR's 32-bit multiply helper)
    def runs(ranges):
        counts, cur, caller = [], 0, None
        for prev, pc in zip([None] + pcs, pcs):
            if caller is None:
                if prev is not None and any(lo <= pc < hi for lo, hi in ranges):
                    caller, cur = enclosing(prev), 1
            elif caller[0] <= pc < caller[1]:
                counts.append(cur)
                caller = None
            else:
                cur += 1
        return counts
    null_runs = runs(null)
    pred_runs = runs(pred)
    assert len(set(null_runs)) == 1 and len(null_runs) == 3, null_runs       # 3 calibration calls at start-up
    assert len(pred_runs) >= len(xs)
    traced = [r - null_runs[0] for r in pred_runs[-len(xs):]]
    assert costs == traced, (costs, traced, null_runs)
    print(f"\n{name}: costs {costs} == QEMU trace counts (es_predict_q - {null_runs[0]} of the empty function)")


# ---------------------------------------------------------------- emulate.py itself
def test_qemu_is_killed_on_exit_and_on_exception(elfs):
    with emulate.qemu("qemu-m4", elfs["qemu-m4"]) as url:
        pid = url.pid
        assert url == f"socket://127.0.0.1:{url.port}" and url.alive
        assert "-icount" in url.argv and "shift=8,align=off,sleep=off" in url.argv
        assert "nodelay=on" in " ".join(url.argv) and "-display" in url.argv and "-monitor" in url.argv
    assert emulate.wait_closed(pid, 5) and not url.alive
    with pytest.raises(RuntimeError, match="boom"):
        with emulate.qemu("qemu-m4", elfs["qemu-m4"]) as url:
            pid = url.pid
            raise RuntimeError("boom")
    assert emulate.wait_closed(pid, 5)
    with pytest.raises(KeyboardInterrupt):
        with emulate.qemu("qemu-m4", elfs["qemu-m4"]) as url:
            pid = url.pid
            raise KeyboardInterrupt
    assert emulate.wait_closed(pid, 5)


def _child(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("when", ["inside Popen, after exec", "while QEMU starts listening"])
def test_ctrl_c_while_qemu_starts_leaves_no_qemu(elfs, monkeypatch, when):
    """Ctrl-C as Popen returns (QEMU already exec'd: a CI run once left one behind this way) or while waiting for
    QEMU's port: the QEMU is stopped before KeyboardInterrupt leaves `emulate.qemu`, not at interpreter exit."""
    import signal
    real, pids = subprocess.Popen, []

    def popen(*a, **kw):
        proc = real(*a, **kw)
        pids.append(proc.pid)
        if when.startswith("inside"):
            signal.raise_signal(signal.SIGINT)      # as a Ctrl-C landing just before Popen returns
        return proc

    real_wait = emulate.threading.Event.wait

    def wait(self, timeout=None):               # Ctrl-C only in _start's wait for the port, not in Thread.start's
        if sys._getframe(1).f_code.co_name == "_start":
            signal.raise_signal(signal.SIGINT)
        return real_wait(self, timeout)

    old = signal.signal(signal.SIGINT, signal.default_int_handler)     # a run started with `&` ignores SIGINT
    try:
        with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
            m.setattr(emulate.subprocess, "Popen", popen)
            if not when.startswith("inside"):
                m.setattr(emulate.threading.Event, "wait", wait)
            with emulate.qemu("qemu-m4", elfs["qemu-m4"]):
                pass
        assert len(pids) == 1
        assert not any(p.pid == pids[0] for p in emulate._live.values())
        assert emulate.wait_closed(pids[0], 0.1), "QEMU left running after Ctrl-C"
    finally:
        signal.signal(signal.SIGINT, old)
        subprocess.run(["pkill", "-KILL", "-s", str(pids[0])]) if pids else None   # a failed run's QEMU


def test_qemu_is_killed_when_python_exits_or_dies(elfs):
    elf = elfs["qemu-m4"]
    # normal interpreter exit without leaving the with-block (atexit)
    child = _child(f"""
        from edgesketch import emulate
        ctx = emulate.qemu("qemu-m4", {str(elf)!r}); url = ctx.__enter__(); print(url.pid, flush=True)
        """)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert emulate.wait_closed(int(out.split()[0]), 5)
    # SIGKILL of the Python process (PR_SET_PDEATHSIG)
    child = _child(f"""
        import time
        from edgesketch import emulate
        with emulate.qemu("qemu-m4", {str(elf)!r}) as url:
            print(url.pid, flush=True); time.sleep(60)
        """)
    qpid = int(child.stdout.readline())
    child.kill()
    child.wait(10)
    assert emulate.wait_closed(qpid, 5)


def test_missing_qemu_binary_names_the_apt_package(elfs):
    board = boards.load("qemu-rv32")
    fake = dataclasses.replace(board, qemu=dataclasses.replace(board.qemu, binary="qemu-system-nonesuch"))
    with pytest.raises(UserError, match=r"qemu-system-nonesuch is not installed: apt-get install qemu-system-misc"):
        with emulate.qemu(fake, elfs["qemu-rv32"]):
            pass


def test_qemu_startup_failure_reports_its_stderr(elfs):
    board = boards.load("qemu-m4")
    fake = dataclasses.replace(board, qemu=dataclasses.replace(board.qemu, machine="no-such-machine"))
    with pytest.raises(UserError, match=r"failed to start: qemu-system-arm: unsupported machine type") as e:
        with emulate.qemu(fake, elfs["qemu-m4"]):
            pass
    assert "\n" not in str(e.value)


def test_real_board_and_missing_elf_are_user_errors(tmp_path, elfs):
    with pytest.raises(UserError, match="real board"):
        with emulate.qemu("esp32", elfs["qemu-m4"]):
            pass
    with pytest.raises(UserError, match="does not exist"):
        with emulate.qemu("qemu-m4", tmp_path / "nope.elf"):
            pass


def test_client_can_reconnect(elfs):
    """QEMU keeps listening (server=on): a second connection reaches the same running firmware."""
    with emulate.qemu("qemu-m0", elfs["qemu-m0"]) as url:
        link, _ = _boot(url)
        link.request(p.ES_CMD_HELLO, 1, flush=True)
        link.close()
        link = Link(url)
        assert link.request(p.ES_CMD_HELLO, 2, flush=True).cmd == p.ES_CMD_HELLO | p.ES_REPLY
        link.close()


def test_two_emulators_at_once_get_different_ports(elfs):
    with emulate.qemu("qemu-m4", elfs["qemu-m4"]) as a, emulate.qemu("qemu-rv32", elfs["qemu-rv32"]) as b:
        assert a.port != b.port
        la, ha = _boot(a)
        lb, hb = _boot(b)
        assert (ha.core, hb.core) == ("cortex-m4", "rv32imc")
        la.close()
        lb.close()


def test_pyserial_handshake(elfs):
    """What a pyserial host must do: its open() may eat the BOOT frame, so flush with 0x00, send HELLO, and skip
    anything before the reply (a partial BOOT shows up as one NAK-worthy frame error, or not at all)."""
    with emulate.qemu("qemu-m4", elfs["qemu-m4"]) as url:
        ser = serial.serial_for_url(url, timeout=0.1)
        dec = p.FrameDecoder(synced=False)
        ser.write(b"\x00" + p.encode_frame(p.ES_CMD_HELLO, 5))
        end, reply = time.monotonic() + REPLY_TIMEOUT, None
        while reply is None and time.monotonic() < end:
            for ev in dec.feed(ser.read(ser.in_waiting or 1)):
                if isinstance(ev, p.Frame) and ev.cmd == p.ES_CMD_HELLO | p.ES_REPLY and ev.seq == 5:
                    reply = ev
        ser.close()
    assert reply is not None and p.unpack_hello(reply.body).core == "cortex-m4"


@pytest.mark.parametrize("name,layout,taps", [("qemu-m4", "unrolled", None), ("qemu-m0", "compact", None),
                                              ("qemu-rv32", "unrolled", None), ("qemu-lx106", "compact", None),
                                              ("qemu-uno", "compact", None), ("qemu-uno", "unrolled", 8)])
def test_generated_model_is_bit_exact_on_the_board(tmp_path_factory, name, layout, taps):
    """A real generated model (edgesketch.codegen, random sketch) instead of the stand-in: INFER scores and DEBUG
    hash bits / buckets on the emulated board equal the integer reference of edgesketch.sketch. (Unrolled code for
    the Uno's 32 KB: 48 hyperplanes of 8 taps, the digits sketch's shape, not 96 of about 20.)"""
    sk = sketch.random_sketch(D=64, C=10, L=16, K=6, seed=11, **({} if taps is None else dict(P=48, taps=taps)))
    proj = build.write_project(name, codegen.generate(sk, layout=layout), tmp_path_factory.mktemp("gen") / name)
    elf = build.run_pio(proj, test_build.session_core(tmp_path_factory))
    rng = np.random.default_rng(3)
    xs = rng.integers(-128, 128, size=(40, sk.n_inputs), dtype=np.int8)
    want = sketch.int_scores(sk, xs)
    want_bits, want_buckets = sketch.int_hash_bits(sk, xs), sketch.int_buckets(sk, xs)
    with emulate.qemu(name, elf) as url:
        link, hello = _boot(url)
        link.send_raw(b"\x00")
        assert (hello.n_inputs, hello.n_outputs, hello.n_tables, hello.n_bits, hello.n_hashbits) == \
            (sk.n_inputs, sk.n_outputs, sk.n_tables, sk.n_bits, sk.n_hyperplanes)
        costs = []
        for i, x in enumerate(xs):
            f = link.request(p.ES_CMD_INFER, i + 1, p.pack_infer(x))
            cost, scores = p.unpack_infer_reply(f.body, sk.n_outputs)
            assert np.array_equal(scores, want[i]), i
            costs.append(cost)
            f = link.request(p.ES_CMD_DEBUG, i + 1, p.pack_debug(x))
            bits, buckets = p.unpack_debug_reply(f.body)
            assert np.array_equal(bits, want_bits[i]) and np.array_equal(buckets, want_buckets[i]), i
        link.close()
    print(f"\n{name} ({layout}): generated model bit-exact on 40 inputs, cost {min(costs)}..{max(costs)} "
          f"instructions, {build.elf_size(elf)}")


WINDOWED_DSP = {   # windowed sketches whose sums the DSP cores compute with SMLAD (codegen._plan_smlad)
    "1d-random-selectors": dict(thresholds=2, weights=7, windows=[(sketch.Window.over((40, 1), 9, 2), 15, 6, 32, 9)]),
    "1d-window-selectors": dict(thresholds=2, weights=7, selectors="window",
                                windows=[(sketch.Window.over((40, 1), 9, 2), 15, 6, 32, 9)]),
    "1d-pool2": dict(thresholds=2, weights=7, windows=[(sketch.Window.over((40, 1), 9, 2, pool=2), 15, 6, 32, 9)]),
    # unpadded: the last window word of the last position is read from 3 bytes before the input's end
    "2d-valid": dict(thresholds=2, weights=7, windows=[(sketch.Window.over((8, 8, 1), 3, 1, padding="valid"), 8, 6, 32, 9)]),
    "2d-same": dict(thresholds=2, weights=7, windows=[(sketch.Window.over((8, 8, 1), 3, 2), 8, 6, 32, 9)]),
}


@pytest.mark.parametrize("board", ["qemu-m4", "qemu-m55"])
def test_windowed_smlad_sums_are_bit_exact_on_dsp_cores(tmp_path_factory, board):
    """The SMLAD form of windowed sums (window words split into int16x2 lanes, two taps a multiply-add), with random
    and packed window selectors, 1-D and 2-D windows, padded and not (reads up to the input's end): INFER scores and
    DEBUG hash bits / buckets on a DSP core equal the integer reference on edge rows, exact threshold ties and random
    rows. The plain form of the same C is checked on the host by test_codegen."""
    rng = np.random.default_rng(5)
    for i, (name, kw) in enumerate(WINDOWED_DSP.items()):
        sk = sketch.random_sketch(L=0, seed=70 + i, **kw)
        files = codegen.generate(sk)
        assert "es_smlad(" in files["es_model.c"], name
        assert (sketch.bit_order(sk.branches[0]) is not None) == (name == "1d-window-selectors"), name   # packed words
        proj = build.write_project(board, files, tmp_path_factory.mktemp("smlad") / f"{board}-{name}")
        elf = build.run_pio(proj, test_build.session_core(tmp_path_factory))
        xs = np.concatenate([test_codegen.rows_for(sk, n=60, seed=i), rng.integers(-128, 128, (20, sk.n_inputs))]).astype(np.int8)
        test_codegen.check_ties_present(sk, xs)
        want, bits, buckets = sketch.int_scores(sk, xs), sketch.int_hash_bits(sk, xs), sketch.int_buckets(sk, xs)
        with emulate.qemu(board, elf) as url:
            link, _ = _boot(url)
            link.send_raw(b"\x00")
            for j, x in enumerate(xs):
                f = link.request(p.ES_CMD_INFER, j + 1, p.pack_infer(x))
                assert np.array_equal(p.unpack_infer_reply(f.body, sk.n_outputs)[1], want[j]), (name, j)
                f = link.request(p.ES_CMD_DEBUG, j + 1, p.pack_debug(x))
                got_bits, got_buckets = p.unpack_debug_reply(f.body)
                assert np.array_equal(got_bits, bits[j]) and np.array_equal(got_buckets, buckets[j]), (name, j)
            link.close()


def test_uno_timer1_counter_path_builds_and_runs(tmp_path_factory):
    """The real Uno's counter (Timer1 at clk/1, bsp/avr.h) only runs on hardware; here the same firmware, built against
    Arduino's core with qemu-uno's facts but the uno board's counter, must answer bit-exactly and never hang or reset.
    Its costs follow QEMU's host-time clock (no -icount on AVR), so only their form is checked."""
    board = boards.load("qemu-uno")
    real = boards.load("uno")
    board = dataclasses.replace(board, counter=real.counter)
    proj = build.write_project(board, test_build.standin_model(), tmp_path_factory.mktemp("uno-timer1") / "proj")
    elf = build.run_pio(proj, test_build.session_core(tmp_path_factory))
    rng = np.random.default_rng(4)
    with emulate.qemu(board, elf) as url:
        link, boot = _boot(url)
        link.send_raw(b"\x00")
        assert boot.counter_kind == p.ES_COUNTER_CYCLES
        costs = []
        for i in range(50):
            x = rng.integers(-128, 128, N_IN).astype(np.int8)
            c, s = link.infer(x, seq=i + 1)
            assert np.array_equal(s, standin_reference(x)[0]), i
            costs.append(c)
        link.close()
    assert all(c < 65536 or c == 0xFFFFFFFF for c in costs), costs   # 16 bits, or void after an overflow
