"""Inputs larger than a frame (protocol v3 on: LOAD pieces with a transfer id, then RUN; DEBUG of the loaded input).

- the pure parts of edgesketch/protocol.py: bodies, load_pieces, the InputBuffer rules;
- the C state machine (a host build of firmware/core/es_app.c with a stub board) against its Python twin
  (tests/fakedevice.DeviceModel on protocol.InputBuffer): the same random streams of LOAD / RUN / DEBUG / RESET frames
  with duplicates, gaps, stale transfer ids, overlong pieces and corrupted frames give byte-identical replies;
- the harness against the fake device, directly and through tests/faultproxy.py (flips, drops, garbage, immediate and
  late duplicates, resets): every sample answered once and bit-exact;
- real firmware under QEMU: a 192-input (64 x 3 accelerometer window) model on qemu-uno, whose frames carry 160 body
  bytes, and a 1,500-input model on qemu-m4, qemu-m0, qemu-rv32 and qemu-lx106 (frames of 1,024 bytes).
Every test runs under a hard timeout (SIGALRM), so nothing can hang."""
from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from edgesketch import protocol as P
from edgesketch import sketch as S
from edgesketch.errors import UserError
from edgesketch.harness import Device
from tests.fakedevice import DeviceModel, FakeDevice, fake_cost
from tests.faultproxy import FaultProxy, frame_pieces

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "firmware" / "core"
HARD_TIMEOUT = 120          # seconds per test; tests under QEMU get QEMU_HARD_TIMEOUT (they build firmware first)
QEMU_HARD_TIMEOUT = 600


@pytest.fixture(autouse=True)
def hard_timeout(request):
    limit = QEMU_HARD_TIMEOUT if "qemu" in request.node.name else HARD_TIMEOUT

    def fire(signum, frame):
        pytest.fail(f"hard timeout: {request.node.name} ran longer than {limit} s", pytrace=False)
    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, limit)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


# ---------------------------------------------------------------- pure: bodies, pieces, the transfer rules
def test_load_bodies_and_names():
    assert (P.ES_CMD_LOAD, P.ES_CMD_RUN, P.ES_PROTO_VERSION) == (0x07, 0x08, 4)
    assert P.pack_load(5, 0x0102, b"\x01\xff") == b"\x05\x02\x01\x01\xff"
    assert P.unpack_load(P.pack_load(200, 65535, np.array([-1, 2], np.int8))) == (200, 65535, b"\xff\x02")
    assert P.unpack_load_reply(P.pack_load_reply(7, 1500)) == (7, 1500) and P.pack_load_reply(7, 1500) == b"\x07\xdc\x05"
    assert P.pack_run(9) == b"\x09"
    for bad in (lambda: P.pack_load(256, 0, b"x"), lambda: P.pack_load(1, 65536, b"x"), lambda: P.pack_load(1, 0, b""),
                lambda: P.unpack_load(b"\x01\x00\x00"), lambda: P.unpack_load_reply(b"\x01\x00"), lambda: P.pack_run(-1)):
        with pytest.raises(P.ProtocolError):
            bad()
    for r, name in ((8, "out of order"), (9, "too much input"), (10, "input incomplete")):
        assert P.NAK_NAMES[r] == name and name in P.nak_name(r)
    assert P.cmd_name(0x87) == "LOAD reply" and P.cmd_name(0x88) == "RUN reply"
    # lengths: LOAD needs a header and one byte, RUN exactly the xfer, DEBUG an input or nothing (the loaded one)
    assert P.request_error(P.ES_CMD_LOAD, b"\x01\x00\x00", 10, 0) == P.ES_NAK_LENGTH
    assert P.request_error(P.ES_CMD_LOAD, b"\x01\x00\x00\x05", 10, 0) is None
    assert P.request_error(P.ES_CMD_RUN, b"", 10, 0) == P.request_error(P.ES_CMD_RUN, b"\x01\x02", 10, 0) == P.ES_NAK_LENGTH
    assert P.request_error(P.ES_CMD_RUN, b"\x01", 10, 0) is None
    assert P.request_error(P.ES_CMD_DEBUG, b"", 10, 0) is None and P.request_error(P.ES_CMD_DEBUG, b"\x01", 10, 0) == 2
    assert P.request_error(P.ES_CMD_BATCH, b"\x01" + bytes(10), 10, 0) == P.ES_NAK_BATCH     # max_batch 0: never


def test_load_pieces():
    assert P.load_pieces(192, 160) == [(0, 96), (96, 96)]
    assert P.load_pieces(157, 160) == [(0, 157)] and P.load_pieces(158, 160) == [(0, 79), (79, 79)]
    assert P.load_pieces(1500, 1024) == [(0, 750), (750, 750)]
    for n, mb in ((1, 32), (1021, 1024), (1022, 1024), (4097, 1024), (65535, 1024), (300, 32), (2000, 160)):
        pieces = P.load_pieces(n, mb)
        assert pieces[0][0] == 0 and sum(k for _, k in pieces) == n
        assert all(a + k == b for (a, k), (b, _) in zip(pieces, pieces[1:]))
        assert all(1 <= k <= mb - 3 for _, k in pieces) and len(pieces) == -(-n // (mb - 3))
        assert max(k for _, k in pieces) - min(k for _, k in pieces) <= 1
    for n, mb in ((0, 160), (65536, 1024), (10, 3)):
        with pytest.raises(P.ProtocolError):
            P.load_pieces(n, mb)
    info = P.HelloInfo(3, bytes(8), 192, 4, 0, 5, 256, 2, 0, "avr5", 160)
    assert not P.infer_fits(info) and P.batch_limit(info) == 0
    assert P.infer_fits(P.HelloInfo(**{**info.__dict__, "max_body": 192}))


def test_input_buffer_rules():
    """The rules of docs/protocol.md, case by case (the C firmware is held to the same by the twin test below)."""
    b = P.InputBuffer(10)
    load = lambda x, off, data: b.load(P.pack_load(x, off, bytes(data)))
    assert (b.xfer, b.have, b.complete) == (0, 0, False)
    assert b.run(b"\x00") == P.ES_NAK_INCOMPLETE and b.loaded() == P.ES_NAK_INCOMPLETE      # nothing after boot
    assert load(1, 4, [1]) == P.ES_NAK_ORDER                            # a gap in a transfer never started
    assert load(1, 0, range(11)) == P.ES_NAK_TOO_MUCH and (b.xfer, b.have) == (0, 0)         # no NAK changes the state
    assert load(1, 0, [1, 2, 3, 4]) == P.pack_load_reply(1, 4)
    assert load(1, 0, [1, 2, 3, 4]) == P.pack_load_reply(1, 4)          # resent: acknowledged, no change
    assert load(1, 2, [3, 4]) == P.pack_load_reply(1, 4)                # any piece inside what is held
    assert load(1, 6, [7]) == P.ES_NAK_ORDER                            # a gap
    assert load(2, 4, [5, 6]) == P.ES_NAK_ORDER                         # another transfer's next piece
    assert load(1, 4, range(5, 12)) == P.ES_NAK_TOO_MUCH and b.have == 4
    assert load(1, 3, [4, 5]) == P.ES_NAK_ORDER                         # overlapping what is held and beyond
    assert b.run(b"\x01") == P.ES_NAK_INCOMPLETE
    assert load(1, 4, [5, 6, 7, 8, 9, 10]) == P.pack_load_reply(1, 10) and b.complete
    assert np.array_equal(b.run(b"\x01"), np.arange(1, 11)) and np.array_equal(b.run(b"\x01"), np.arange(1, 11))
    assert b.run(b"\x02") == P.ES_NAK_INCOMPLETE                        # RUN names its transfer
    assert np.array_equal(b.loaded(), np.arange(1, 11))
    assert load(1, 0, [9]) == P.pack_load_reply(1, 10)                  # a late copy of a piece held: no change
    assert load(2, 0, [9]) == P.pack_load_reply(2, 1)                   # offset 0 of another transfer starts it
    assert b.run(b"\x01") == P.ES_NAK_INCOMPLETE and b.loaded() == P.ES_NAK_INCOMPLETE
    b.reset()
    assert (b.xfer, b.have) == (0, 0) and load(0, 0, [1]) == P.pack_load_reply(0, 1)


# ---------------------------------------------------------------- the C state machine against its Python twin
from test_protocol import APP_DRIVER   # noqa: E402  (the stub board: UART on stdin/stdout, RESET restarts the core)


def build_core(tmp: Path, sk: S.Sketch, max_body: int | None) -> tuple[Path, P.HelloInfo]:
    """es_app.c + es_proto.c + the sketch's generated model + the stub board, for the host (ASan, UBSan)."""
    from edgesketch import codegen
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed: run bash .ci/setup")
    model = tmp / "model"
    codegen.write(sk, model)                                        # the model and whatever sources it needs
    (tmp / "driver.c").write_text(APP_DRIVER)
    exe = tmp / "core"
    r = subprocess.run(["gcc", "-std=c99", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-fsanitize=address,undefined",
                        "-fno-sanitize-recover=all", '-DES_CORE_NAME="host"', f"-I{CORE}", f"-I{model}",
                        *([f"-DES_PROTO_MAX_BODY={max_body}"] if max_body else []),
                        str(tmp / "driver.c"), str(CORE / "es_app.c"), str(CORE / "es_proto.c"),
                        *sorted(map(str, model.glob("*.c"))), "-o", str(exe)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    boot = P.decode_stream(b"\x00" + subprocess.run([str(exe)], input=b"", capture_output=True, timeout=60).stdout)
    assert len(boot) == 1 and boot[0].cmd == P.ES_MSG_BOOT
    return exe, P.unpack_hello(boot[0].body)


class Host:
    """Writes the random request stream: mostly a well-behaved host, often not (see twin test)."""

    def __init__(self, rng: np.random.Generator, info: P.HelloInfo):
        self.rng, self.info, self.n = rng, info, info.n_inputs
        self.history: list[bytes] = []          # LOAD and RUN bodies sent, for resends and late copies
        self.xfer, self.off = 1, 0
        self.row = self.new_row()

    def new_row(self) -> bytes:
        return self.rng.integers(0, 256, self.n, dtype=np.uint8).tobytes()

    def piece(self) -> int:
        most = P.load_limit(self.info.max_body)
        return int(self.rng.integers(1, most + 1)) if self.rng.random() < 0.5 else most

    def request(self) -> tuple[int, bytes]:
        rng, k = self.rng, self.rng.random()
        if k < 0.34:                                               # the next piece of the current input
            n = min(self.piece(), self.n - self.off)
            if n <= 0:
                return P.ES_CMD_RUN, P.pack_run(self.xfer)
            body = P.pack_load(self.xfer, self.off, self.row[self.off:self.off + n])
            self.off += n
        elif k < 0.42:                                             # a new input: a new xfer (or a reused one)
            self.xfer = int(rng.integers(256)) if rng.random() < 0.2 else self.xfer % 255 + 1
            self.row, n = self.new_row(), min(self.piece(), self.n)
            body = P.pack_load(self.xfer, 0, self.row[:n])
            self.off = n
        elif k < 0.54 and self.history:                            # a resent or late copy of an earlier request
            body = self.history[-int(rng.integers(1, min(len(self.history), 12) + 1))]
            return (P.ES_CMD_RUN if len(body) == 1 else P.ES_CMD_LOAD), body
        elif k < 0.58:                                             # a gap
            off = self.off + int(rng.integers(1, 20))
            body = P.pack_load(self.xfer, min(off, 0xFFFF), bytes(rng.integers(0, 256, 3, dtype=np.uint8)))
        elif k < 0.62:                                             # too much: past n_inputs
            off = self.off if rng.random() < 0.5 else 0
            n = min(self.n - off + int(rng.integers(1, 4)), P.load_limit(self.info.max_body))
            if off + n <= self.n:
                off = self.n - n + 1
            body = P.pack_load(self.xfer, off, bytes(rng.integers(0, 256, n, dtype=np.uint8)))
        elif k < 0.66:                                             # a stale transfer id, anywhere
            body = P.pack_load(int(rng.integers(256)), int(rng.choice([0, self.off, int(rng.integers(self.n))])),
                               bytes(rng.integers(0, 256, int(rng.integers(1, 8)), dtype=np.uint8)))
        elif k < 0.8:                                              # RUN: this input's, or another's
            body = P.pack_run(self.xfer if rng.random() < 0.8 else int(rng.integers(256)))
        elif k < 0.86:
            return P.ES_CMD_DEBUG, b""
        elif k < 0.88:
            return P.ES_CMD_RESET, b""
        elif k < 0.92:                                             # wrong lengths
            cmd = int(rng.choice([P.ES_CMD_LOAD, P.ES_CMD_RUN, P.ES_CMD_DEBUG]))
            return cmd, bytes(rng.integers(0, 256, int(rng.choice([1, 2, 3, 5, 7])), dtype=np.uint8))[:3 if cmd == 7 else 99]
        elif k < 0.96 and P.infer_fits(self.info):                 # the one-frame commands still work beside LOAD
            if rng.random() < 0.5:
                return P.ES_CMD_INFER, self.new_row()
            n = int(rng.integers(1, P.batch_limit(self.info) + 1))
            return P.ES_CMD_BATCH, bytes([n]) + b"".join(self.new_row() for _ in range(n))
        else:
            return P.ES_CMD_HELLO, b""
        self.history.append(body)
        return (P.ES_CMD_RUN if len(body) == 1 else P.ES_CMD_LOAD), body


TWIN_CASES = {   # name: (sketch, ES_PROTO_MAX_BODY)
    "1500 inputs, 1024-byte frames": (dict(D=1500, C=3, L=6, K=5, P=24, taps=12, seed=31), None),
    "192 inputs, 160-byte frames (the Uno)": (dict(D=192, C=4, L=6, K=5, P=24, taps=12, seed=32), 160),
    "150 inputs, 64-byte frames": (dict(D=150, C=3, L=6, K=5, P=24, taps=12, seed=33), 64),
    "24 inputs: LOAD beside INFER and BATCH": (dict(D=24, C=3, L=6, K=5, seed=34), None),
}


@pytest.mark.parametrize("case", list(TWIN_CASES))
def test_firmware_load_run_matches_python_twin(tmp_path, case):
    """Random request streams into a host build of es_app.c and into DeviceModel (protocol.InputBuffer + the integer
    reference): byte-identical output, with every LOAD rule, NAK 8, 9 and 10, resets and corrupted frames exercised."""
    kw, max_body = TWIN_CASES[case]
    sk = S.random_sketch(**kw)
    exe, info = build_core(tmp_path, sk, max_body)
    assert info.version == 4 and info.max_body == (max_body or 1024) and info.n_inputs == sk.n_inputs
    assert info.max_batch == P.batch_limit(info) and (info.max_batch == 0) == (sk.n_inputs > info.max_body - 1)
    model = DeviceModel(sk, info, cost=lambda x: np.zeros(len(x), np.int64))
    rng = np.random.default_rng(kw["seed"])
    host = Host(rng, info)

    pieces = [b"noise\x00"]                                      # each piece ends with its one 0x00
    for _ in range(3000):
        cmd, body = host.request()
        pieces += frame_pieces(cmd, body, rng, 0.04)

    want = [model.boot()]
    dec = model.decoder()
    kinds = Counter()
    for piece in pieces:
        for ev in dec.feed(piece):
            before = (model.inputs.xfer, model.inputs.have)
            out, reset = model.handle(ev)
            want.append(out)
            got = P.decode_stream(b"\x00" + out)[0]
            if got.cmd == P.ES_MSG_NAK:
                kinds[P.nak_name(got.body[0])] += 1
            elif got.cmd == P.ES_CMD_LOAD | P.ES_REPLY:
                kinds["LOAD held already" if (model.inputs.xfer, model.inputs.have) == before else "LOAD taken"] += 1
                kinds["input completed"] += model.inputs.complete and before[1] != info.n_inputs
            else:
                kinds[P.cmd_name(got.cmd)] += 1
            if reset:
                want.append(model.boot())
                dec = model.decoder()
    stream = b"".join(pieces)
    run = subprocess.run([str(exe)], input=stream, capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    got_frames, want_frames = P.decode_stream(b"\x00" + run.stdout), P.decode_stream(b"\x00" + b"".join(want))
    for i, (g, w) in enumerate(zip(got_frames, want_frames)):
        assert g == w, f"reply {i}: firmware {g} vs twin {w}"
    assert len(got_frames) == len(want_frames) and run.stdout == b"".join(want)
    print(f"{case}: {len(stream):,} bytes in, {len(want_frames)} replies byte-identical: {dict(sorted(kinds.items()))}")
    for k in ("LOAD taken", "LOAD held already", "input completed", "RUN reply", "NAK 8 (out of order)",
              "NAK 9 (too much input)", "NAK 10 (input incomplete)", "RESET reply", "NAK 1 (bad CRC)", "DEBUG reply"):
        assert kinds[k] >= 5, (k, kinds)
    if P.infer_fits(info):
        assert kinds["INFER reply"] >= 5 and kinds["BATCH reply"] >= 5


# ---------------------------------------------------------------- the harness and the fake device
BIG = dict(D=300, C=4, L=8, K=4, seed=1)        # 300 inputs on a device with 128-byte frames: 3 LOAD pieces each


def rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-128, 128, (n, d)).astype(np.int8)


def test_fake_device_multiframe_round_trip_and_debug():
    sk = S.random_sketch(**BIG)
    x = rows(300, sk.n_inputs)
    with FakeDevice(sk, max_body=128, max_batch=None) as fd, Device(fd.url, timeout=1) as dev:
        assert dev.info.max_batch == 0 and not P.infer_fits(dev.info)
        scores, costs = dev.run(x, progress=lambda i, n: None)
        np.testing.assert_array_equal(scores, S.int_scores(sk, x))
        np.testing.assert_array_equal(costs, fake_cost(x))
        st = dev.last_run_stats
        assert st.requests == 300 * 4 and st.retries == st.restarts == 0            # 3 LOAD + 1 RUN each
        assert fd.counts["loads"] == 900 and fd.counts["runs"] == fd.counts["samples"] == 300
        bits, buckets = dev.debug(x[7])                                             # LOAD, then DEBUG of it
        assert np.array_equal(bits, S.int_hash_bits(sk, x[7:8])[0]) and np.array_equal(buckets, S.int_buckets(sk, x[7:8])[0])
        c1, s1 = dev.infer(x[5])
        assert c1 == costs[5] and np.array_equal(s1, scores[5])
        with pytest.raises(UserError, match="does not fit one frame"):
            dev.infer(x[5], load=False)
    # a small model: LOAD + RUN on request gives what BATCH gives
    sk = S.random_sketch(D=16, C=4, L=8, K=4, seed=1)
    x = rows(50, 16, seed=1)
    with FakeDevice(sk) as fd, Device(fd.url, timeout=1) as dev:
        s_batch, c_batch = dev.run(x)
        s_load, c_load = dev.run(x, load=True)
        assert np.array_equal(s_batch, s_load) and np.array_equal(c_batch, c_load) and fd.counts["runs"] == 50


def test_firmware_that_disagrees_about_n_inputs():
    """A device that takes fewer inputs than HELLO says NAKs the last piece with "too much input" every time: a clear
    one-line error, not an endless restart."""
    sk = S.random_sketch(**BIG)
    with FakeDevice(sk, max_body=128, max_batch=None) as fd, Device(fd.url, timeout=0.5) as dev:
        fd.model.inputs = P.InputBuffer(sk.n_inputs - 1)
        with pytest.raises(UserError) as e:
            dev.run(rows(3, sk.n_inputs))
    assert "rejects LOAD with NAK 9 (too much input)" in str(e.value) and "\n" not in str(e.value)


def test_dead_device_during_a_transfer_fails_clearly():
    sk = S.random_sketch(**BIG)
    with FakeDevice(sk, max_body=128, max_batch=None) as fd, FaultProxy(fd.addr, cut_after=6) as px:
        dev = Device(px.url, timeout=0.2, retries=2)
        dev.open()
        dev.hello()
        t = time.monotonic()
        with pytest.raises(UserError) as e:
            dev.run(rows(10, sk.n_inputs))
        dt = time.monotonic() - t
        dev.close()
    assert "could not transfer one input" in str(e.value) and "after" not in str(e.value)[:10] and "\n" not in str(e.value)
    assert dt < 3 * 2 * 0.2 * 2 + 2 and dev.stats.restarts == 2


MULTI_SCENARIOS = {
    "flipped bytes": dict(flip=0.001),
    "dropped bytes": dict(drop=0.001),
    "garbage": dict(garbage=0.001),
    "duplicated frames": dict(dup=0.05),
    "late duplicates": dict(dup_delayed=0.05),
    "reset mid-transfer (BOOT seen)": dict(reset_at=(6, 23, 41, 78, 131)),
    "reset mid-transfer (silent: BOOT swallowed)": dict(reset_at=(9, 34, 90), swallow_boot=True),
    "all at once": dict(flip=0.0005, drop=0.0005, garbage=0.0005, dup=0.03, dup_delayed=0.03, reset_at=(15, 50, 120)),
}


@pytest.mark.parametrize("name", list(MULTI_SCENARIOS))
def test_fault_proxy_multiframe(name):
    """Inputs of 300 bytes in 3 LOAD frames each, through the fault proxy: every score bit-exact, every sample once."""
    faults = MULTI_SCENARIOS[name]
    sk = S.random_sketch(**BIG)
    x = rows(250, sk.n_inputs, seed=5)
    with FakeDevice(sk, max_body=128, max_batch=None) as fd, FaultProxy(fd.addr, seed=7, **faults) as px, \
            Device(px.url, model_id=fd.info.model_id, timeout=0.25, retries=10) as dev:
        t = time.perf_counter()
        scores, costs = dev.run(x)
        dt = time.perf_counter() - t
        st, c = dev.stats, dict(px.counts)
    np.testing.assert_array_equal(scores, S.int_scores(sk, x))
    np.testing.assert_array_equal(costs, fake_cost(x))
    injected = {k: v for k, v in c.items() if k in ("flipped", "dropped", "garbage_bursts", "duplicated",
                                                    "duplicated_late", "resets_injected", "swallowed") and v}
    print(f"[{name}] 250 inputs of 300 bytes bit-exact in {dt:.2f} s; injected {injected}; harness retries "
          f"{st.retries}, restarts {st.restarts}, timeouts {st.timeouts}, naks {st.naks}, bad frames {st.bad_frames}, "
          f"stale {st.stale}, boots {st.boots}, probes {st.probes}")
    for key, count in (("flip", "flipped"), ("drop", "dropped"), ("garbage", "garbage_bursts"), ("dup", "duplicated"),
                       ("dup_delayed", "duplicated_late")):
        if faults.get(key):
            assert c[count] > 0, count
    if "reset_at" in faults:   # each reset lost the device's transfer: the input under way starts again
        assert c["resets_injected"] == len(faults["reset_at"]) and st.restarts >= 1
    if faults.get("dup") or faults.get("dup_delayed"):
        assert st.stale > 0                                     # the copies' replies were seen and discarded
    assert st.retries + st.restarts + st.stale > 0


def test_late_duplicate_of_an_earlier_input_never_mixes_inputs():
    """A late copy of input A's first piece lands while input B is loading: the device switches to A's transfer, B's
    next piece gets "out of order" and B starts again under a new xfer; B's score is B's."""
    sk = S.random_sketch(**BIG)
    x = rows(2, sk.n_inputs, seed=9)
    with FakeDevice(sk, max_body=128, max_batch=None) as fd, Device(fd.url, timeout=0.5) as dev:
        pieces = P.load_pieces(sk.n_inputs, 128)
        real_transact = dev._transact
        injected = []

        def transact(cmd, body, parse, probe=True, transfer=False):
            if cmd == P.ES_CMD_LOAD and P.unpack_load(body)[:2] == (2, pieces[1][0]) and not injected:
                # before B's (xfer 2) second piece: a copy of A's (xfer 1) first piece, with an old seq
                dev._write(P.encode_frame(P.ES_CMD_LOAD, 250, P.pack_load(1, 0, x[0].tobytes()[:pieces[0][1]])))
                injected.append(1)
            return real_transact(cmd, body, parse, probe, transfer)
        dev._transact = transact
        scores, _ = dev.run(x)
        assert injected and dev.stats.restarts == 1 and dev.stats.naks == 1 and dev.stats.stale >= 1
    np.testing.assert_array_equal(scores, S.int_scores(sk, x))


# ---------------------------------------------------------------- real firmware under QEMU
ACCEL = dict(L=0, seed=40, windows=[(S.Window.over((64, 3), 9, 2), 8, 5, 16, 9)])     # 64 x 3 window: 192 int8 inputs
VIBRATION = dict(L=0, seed=41, windows=[(S.Window.over((1500, 1), 9, 8), 8, 5, 16, 9)])  # 1,500 int8 inputs
BIG_BOARDS = ["qemu-m4", "qemu-m0", "qemu-rv32", "qemu-lx106"]


def floats_for(sk: S.Sketch, xq: np.ndarray) -> np.ndarray:
    """Float inputs that quantise to exactly xq (verify.run takes floats and quantises them like the device's host)."""
    q = len(sk.in_scale)
    ch = np.arange(sk.n_inputs) % q
    x = (xq.astype(np.float64) - sk.in_zero[ch]) * sk.in_scale[ch].astype(np.float64)
    assert np.array_equal(S.quantize_inputs(sk, x), xq)
    return x


def firmware(tmp_path_factory, board: str, sk: S.Sketch) -> Path:
    """The sketch's firmware for an emulated board (compact layout), built offline with PlatformIO."""
    import test_build
    from edgesketch import build, codegen, esk
    esk.assign_id(sk)
    proj = build.write_project(board, codegen.generate(sk, layout="compact"), tmp_path_factory.mktemp("mf") / board)
    return build.run_pio(proj, test_build.session_core(tmp_path_factory))


def check_sizes(res, elf: Path, board: str) -> None:
    """verify's flash and static RAM are the ELF's, and fit the board."""
    from edgesketch import boards, build
    size, b = build.elf_size(elf), boards.load(board)
    assert (res.flash, res.static_ram) == (size.flash, size.ram) and 0 < res.static_ram < b.ram_bytes
    assert 0 < res.flash < b.flash_bytes and f"{res.flash:,} bytes" in res.flash_text


@pytest.mark.slow
def test_qemu_uno_192_inputs_bit_exact(tmp_path_factory):
    """A 64 x 3 accelerometer window (192 int8 inputs) on the Uno, whose frames carry 160 body bytes: INFER cannot take
    it and BATCH is off (max_batch 0), so each input goes in two LOAD frames and RUN; 300 random inputs bit-exact."""
    from edgesketch import emulate, verify
    sk = S.random_sketch(**ACCEL)
    assert sk.n_inputs == 192
    elf = firmware(tmp_path_factory, "qemu-uno", sk)
    xq = rows(300, 192, seed=11)
    t = time.perf_counter()
    with emulate.qemu("qemu-uno", elf) as url:
        res = verify.run(sk, floats_for(sk, xq), None, url, "qemu-uno", 115200, None)
        with Device(url, model_id=sk.meta["model_id"], timeout=5) as dev:
            info = dev.info
            assert (info.max_body, info.max_batch, P.infer_fits(info)) == (160, 0, False)
            c, s = dev.infer(xq[0])
            st = dev.stats
    dt = time.perf_counter() - t
    assert res.ok and res.n == 300 == res.bit_exact, res.mismatch
    assert res.link["requests"] == 300 * 3 and res.link["retries"] == res.link["restarts"] == 0   # 2 LOAD + RUN each
    assert np.array_equal(s, S.int_scores(sk, xq[:1])[0]) and st.requests == 4
    assert res.counter == "instructions" and res.cost_min > 1000 and res.cost_max - res.cost_min <= 0.05 * res.cost_median
    assert c == res.cost_min == res.cost_max                 # one code path: the same instruction count every time
    check_sizes(res, elf, "qemu-uno")
    assert res.static_ram < 1024 and 0 < res.stack_peak < 512 and not res.stack_full   # one frame + one input in 2 KB
    print(f"\nqemu-uno, 192 inputs: 300 bit-exact in {res.seconds:.1f} s ({res.samples_per_second} samples/s), "
          f"{res.cost_median:,.0f} instructions, flash {res.flash:,} B, static RAM {res.static_ram:,} B, "
          f"peak stack {res.stack_peak} B; test {dt:.1f} s")


@pytest.mark.slow
@pytest.mark.parametrize("board", BIG_BOARDS)
def test_qemu_1500_inputs_bit_exact(tmp_path_factory, board):
    """1,500 inputs (a machine-vibration window) on Cortex-M4, M0, RV32 and Xtensa: two LOAD frames of 750 bytes, then
    RUN, for 30 random inputs bit-exact; DEBUG of a loaded input (verify's diagnosis) matches the reference's bits and
    buckets."""
    from edgesketch import emulate, verify
    sk = S.random_sketch(**VIBRATION)
    assert sk.n_inputs == 1500
    elf = firmware(tmp_path_factory, board, sk)
    xq = rows(30, 1500, seed=12)
    t = time.perf_counter()
    with emulate.qemu(board, elf) as url:
        res = verify.run(sk, floats_for(sk, xq), None, url, board, 115200, None)
        with Device(url, model_id=sk.meta["model_id"], timeout=5) as dev:
            assert (dev.info.max_batch, P.load_pieces(1500, dev.info.max_body)) == (0, [(0, 750), (750, 750)])
            want = S.int_scores(sk, xq[3:4])[0]
            d = verify.diagnose(dev, sk, xq[3], want, want)
            bits, buckets = dev.debug(xq[4])
            wrong = want.copy()
            wrong[0] += 1
            d2 = verify.diagnose(dev, sk, xq[3], want, wrong)
    dt = time.perf_counter() - t
    assert res.ok and res.n == 30 == res.bit_exact, res.mismatch
    assert res.link["requests"] == 30 * 3 and res.link["retries"] == 0
    assert res.counter == "instructions" and res.cost_min > 10_000
    check_sizes(res, elf, board)
    assert res.static_ram > 1500                                  # the input buffer is there
    ref_bits, ref_buckets = S.int_hash_bits(sk, xq[4:5])[0], S.int_buckets(sk, xq[4:5])[0]
    assert 0 < len(bits) <= len(ref_bits) and 0 < len(buckets) <= len(ref_buckets)
    assert np.array_equal(bits, ref_bits[:len(bits)]) and np.array_equal(buckets, ref_buckets[:len(buckets)])
    assert d["stage"].startswith("lookup and sum") and d2["stage"].startswith("lookup and sum")
    print(f"\n{board}, 1500 inputs: 30 bit-exact in {res.seconds:.1f} s, {res.cost_median:,.0f} instructions, flash "
          f"{res.flash:,} B, static RAM {res.static_ram:,} B; DEBUG of a loaded input: {len(bits)} bits, "
          f"{len(buckets)} buckets agree; test {dt:.1f} s")


@pytest.mark.slow
def test_qemu_uno_multiframe_through_fault_proxy(tmp_path_factory):
    """The Uno's LOAD + RUN through the fault proxy (flips, drops, immediate and late duplicates, resets mid-transfer):
    every score bit-exact and answered once."""
    from edgesketch import emulate
    sk = S.random_sketch(**ACCEL)
    elf = firmware(tmp_path_factory, "qemu-uno", sk)
    xq = rows(120, 192, seed=13)
    faults = dict(flip=0.0003, drop=0.0003, dup=0.03, dup_delayed=0.03, reset_at=(20, 95, 200))
    with emulate.qemu("qemu-uno", elf) as url, FaultProxy(("127.0.0.1", url.port), seed=3, **faults) as px, \
            Device(px.url, model_id=sk.meta["model_id"], timeout=0.5, retries=20) as dev:
        scores, costs = dev.run(xq)
        st, c = dev.stats, dict(px.counts)
    np.testing.assert_array_equal(scores, S.int_scores(sk, xq))
    assert len(set(costs.tolist())) == 1                          # every answer is a real run of the model
    assert c["resets_injected"] == 3 and st.restarts >= 1 and c["duplicated"] + c["duplicated_late"] > 0
    print(f"\nqemu-uno through the proxy: 120 bit-exact; injected { {k: c[k] for k in ('flipped', 'dropped', 'duplicated', 'duplicated_late', 'resets_injected')} }; "
          f"retries {st.retries}, restarts {st.restarts}, timeouts {st.timeouts}, stale {st.stale}, boots {st.boots}")
