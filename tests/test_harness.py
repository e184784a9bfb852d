"""The harness against a fake device (tests/fakedevice.py) directly and through a fault-injecting proxy
(tests/faultproxy.py): it must return exactly the expected scores for every sample, or fail with a clear
one-line UserError. Every test runs under a hard timeout (SIGALRM), so nothing can hang."""
from __future__ import annotations

import signal
import time

import numpy as np
import pytest

from edgesketch import protocol as P
from edgesketch import sketch as S
from edgesketch.errors import UserError
from edgesketch.harness import Device, LinkStats, verify_report
from tests.fakedevice import FakeDevice, fake_cost
from tests.faultproxy import FaultProxy

HARD_TIMEOUT = 90           # seconds per test; tests under QEMU get QEMU_HARD_TIMEOUT (the first one builds firmware)
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


def data(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-128, 128, (n, d)).astype(np.int8)


def check_exact(dev_model: FakeDevice, xq, scores, costs) -> None:
    assert scores.dtype == np.int32 and scores.shape == (len(xq), dev_model.sk.n_outputs)
    np.testing.assert_array_equal(scores, S.int_scores(dev_model.sk, xq))
    np.testing.assert_array_equal(costs, fake_cost(xq))


# ---------------------------------------------------------------- straight to the fake device
def test_hello_infer_batch_debug():
    with FakeDevice() as fd, Device(fd.url, model_id=fd.info.model_id.hex() + "99", timeout=1) as dev:
        assert dev.info == fd.info
        assert dev.hello().core == "fake-m4"
        x = data(9)
        cost, s = dev.infer(x[0])
        assert cost == fake_cost(x[:1])[0] and np.array_equal(s, S.int_scores(fd.sk, x[:1])[0])
        c, s = dev.batch(x[:8])
        check_exact(fd, x[:8], s, c)
        bits, buckets = dev.debug(x[3])
        assert np.array_equal(bits, S.int_hash_bits(fd.sk, x[3:4])[0])
        assert np.array_equal(buckets, S.int_buckets(fd.sk, x[3:4])[0])
        with pytest.raises(UserError, match="1..8 inputs"):
            dev.batch(x[:9])
        with pytest.raises(UserError, match="takes 16"):
            dev.infer(np.zeros(15, np.int8))
        with pytest.raises(UserError, match="int8"):
            dev.infer(np.full(16, 300))
        assert dev.stack() == fd.stack == P.StackInfo(100, 1024, False)
        assert dev.stats.retries == 0 and dev.stats.bad_frames == 0


def test_run_round_trip_rate():
    n = 4000
    x = data(n, seed=1)
    done = []
    with FakeDevice() as fd, Device(fd.url, timeout=1) as dev:
        t = time.perf_counter()
        scores, costs = dev.run(x, progress=lambda i, total: done.append((i, total)))
        dt = time.perf_counter() - t
        check_exact(fd, x, scores, costs)
        assert done[-1] == (n, n) and all(a[0] < b[0] for a, b in zip(done, done[1:]))
        st = dev.last_run_stats
        assert st.requests == n // 8 and st.retries == 0 and st.timeouts == 0
        t = time.perf_counter()
        s1, c1 = dev.run(x[:500], batch=1)                       # INFER, one round trip per sample
        dt1 = time.perf_counter() - t
        check_exact(fd, x[:500], s1, c1)
        assert fd.counts["samples"] == n + 500
    print(f"fake device: {n} samples by BATCH of 8 in {dt:.2f} s ({n / dt:.0f} samples/s, {n / 8 / dt:.0f} round trips/s);"
          f" 500 by INFER in {dt1:.2f} s ({500 / dt1:.0f} round trips/s); all bit-exact")


def test_model_id_mismatch_names_both_ids():
    with FakeDevice() as fd:
        with pytest.raises(UserError) as e:
            with Device(fd.url, model_id="0011223344556677", timeout=0.5):
                pass
        msg = str(e.value)
        assert "5ca1ab1e00c0ffee" in msg and "0011223344556677" in msg and "\n" not in msg


def test_stale_duplicate_replies_are_discarded():
    x = data(300, seed=2)
    with FakeDevice(echo_twice=True) as fd, Device(fd.url, timeout=1) as dev:
        scores, costs = dev.run(x, batch=5)
        check_exact(fd, x, scores, costs)
        assert dev.last_run_stats.stale >= 50 and dev.last_run_stats.retries == 0


def test_reset_command_rehandshakes():
    with FakeDevice() as fd, Device(fd.url, timeout=1) as dev:
        info = dev.reset()
        assert info == fd.info and fd.counts["resets"] == 1 and dev.stats.boots >= 1
        x = data(20, seed=3)
        check_exact(fd, x, *dev.run(x))


def test_unreachable_port_is_a_user_error():
    t = time.monotonic()
    with pytest.raises(UserError, match="cannot open socket://127.0.0.1:1"):
        Device("socket://127.0.0.1:1", open_timeout=0.3).open()
    assert time.monotonic() - t < 5


def test_firmware_that_rejects_its_own_batch_size():
    x = data(40, seed=4)
    with FakeDevice(max_batch=8, real_max_batch=4) as fd, Device(fd.url, timeout=0.5) as dev:
        with pytest.raises(UserError, match="rejects BATCH with NAK 6"):
            dev.run(x)


# ---------------------------------------------------------------- through the fault proxy
SCENARIOS = {
    "flipped bytes": dict(flip=0.001),
    "dropped bytes": dict(drop=0.001),
    "garbage": dict(garbage=0.001),
    "reset mid-run (BOOT seen)": dict(reset_at=(6, 21, 40, 77)),
    "reset mid-run (silent: BOOT swallowed)": dict(reset_at=(9, 33), swallow_boot=True),
    "all at once": dict(flip=0.0005, drop=0.0005, garbage=0.0005, reset_at=(15, 50)),
}


def assert_reset_recovery(faults, counts, st):
    """Every injected reset happened, and the harness noticed each one: by a BOOT frame, or (BOOT swallowed) by a
    timeout and a HELLO probe before it resumed, or by a NAK: on a loaded machine the host's next bytes can reach the
    device while it is still booting, which drops some of them (as a real UART does during a reset), and the device
    NAKs what is left of that frame."""
    if "reset_at" not in faults:
        return
    n = len(faults["reset_at"])
    assert counts["resets_injected"] == n
    if faults.get("swallow_boot"):
        assert st.timeouts + st.naks >= n and st.retries >= n, st
    elif len(faults) == 1:
        assert st.boots >= n


@pytest.mark.parametrize("name", list(SCENARIOS))
@pytest.mark.parametrize("batch", [None, 1])
def test_fault_proxy_scenario(name, batch):
    faults = SCENARIOS[name]
    n = 800 if batch is None else 150
    x = data(n, seed=5)
    with FakeDevice() as fd, FaultProxy(fd.addr, seed=7, **faults) as px, \
            Device(px.url, model_id=fd.info.model_id, timeout=0.25, retries=10) as dev:
        t = time.perf_counter()
        scores, costs = dev.run(x, batch=batch)
        dt = time.perf_counter() - t
        check_exact(fd, x, scores, costs)
        st, c = dev.stats, px.counts
    injected = {k: v for k, v in c.items() if k in ("flipped", "dropped", "garbage_bursts", "resets_injected",
                                                    "swallowed") and v}
    print(f"[{name}, batch={batch or 8}] {n} samples bit-exact in {dt:.2f} s; injected {injected}; harness "
          f"retries {st.retries}, timeouts {st.timeouts}, naks {st.naks}, bad frames {st.bad_frames}, "
          f"stale {st.stale}, boots {st.boots}, probes {st.probes}")
    for key in ("flip", "drop", "garbage"):
        if faults.get(key):
            assert c[{"flip": "flipped", "drop": "dropped", "garbage": "garbage_bursts"}[key]] > 0
    assert_reset_recovery(faults, c, st)
    assert st.retries > 0 or st.boots > 0 or st.stale > 0         # something did happen and was recovered from


def test_dead_device_fails_clearly_and_fast():
    with FakeDevice() as fd, FaultProxy(fd.addr, cut_after=12) as px:
        dev = Device(px.url, timeout=0.2, retries=3)
        dev.open()
        dev.hello()
        t = time.monotonic()
        with pytest.raises(UserError) as e:
            dev.run(data(400, seed=6), batch=4)
        dt = time.monotonic() - t
        dev.close()
    msg = str(e.value)
    assert "no valid reply to BATCH" in msg and "after 4 attempts" in msg and "\n" not in msg
    assert dt < 4 * 2 * 0.2 + 2


def test_silent_device_at_hello():
    with FakeDevice() as fd, FaultProxy(fd.addr, to_device=False, drop=1.0) as px:
        with pytest.raises(UserError, match="no valid reply to HELLO"):
            with Device(px.url, timeout=0.2, retries=2):
                pass


# ---------------------------------------------------------------- verify_report (pure)
def test_verify_report():
    e = np.arange(12, dtype=np.int32).reshape(4, 3)
    r = verify_report(e, e.copy(), costs=[10, 20, 30, 40], labels=np.array([2, 2, 0, 2]))
    assert r.bit_exact and r.n == 4 and r.accuracy == 0.75 == r.expected_accuracy and r.cost_median == 25
    assert "bit-exact" in r.summary()
    d = e.copy()
    d[1, 0] += 5
    d[3, 2] -= 1
    r = verify_report(e, d)
    assert not r.bit_exact and r.n_mismatch == 2 and r.mismatch_idx == [1, 3] and r.max_abs_diff == 5
    assert r.cost_mean is None and "2 differ" in r.summary()
    with pytest.raises(UserError):
        verify_report(e, d[:3])


def test_link_stats_since():
    a = LinkStats(retries=3, boots=1)
    b = LinkStats(retries=5, boots=1, stale=2)
    assert b.since(a) == LinkStats(retries=2, stale=2)


# ---------------------------------------------------------------- the same through QEMU (real firmware)
# qemu-m4 (Cortex-M bare metal), qemu-lx106 (Xtensa bare metal) and qemu-uno (the Arduino entry on Arduino's AVR core,
# 160-byte frames: batches of 4 here)
QEMU_BOARDS = ("qemu-m4", "qemu-lx106", "qemu-uno")


@pytest.fixture(scope="module", params=QEMU_BOARDS)
def qemu_firmware(request, tmp_path_factory):
    """Firmware for the board with a generated model of a random sketch, built offline with PlatformIO once."""
    import re
    import shutil

    from edgesketch import boards, build, codegen
    board = boards.load(request.param)
    for tool in (board.qemu.binary, "arm-none-eabi-gcc"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run bash .ci/setup")
    sk = S.random_sketch(D=32, C=5, L=8, K=4, seed=11)
    files = codegen.generate(sk)
    ids = re.search(r"ES_MODEL_ID_BYTES\s+\{([^}]*)\}", files["es_model.h"]).group(1)
    model_id = bytes(int(v, 16) for v in ids.split(","))
    d = tmp_path_factory.mktemp("qemu-fw")
    elf = build.run_pio(build.write_project(board, files, d / "proj"), d / "pio-core")
    return board, sk, elf, model_id


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_qemu_fault_proxy_scenario(qemu_firmware, name):
    from edgesketch import emulate
    board, sk, elf, model_id = qemu_firmware
    # frames are about twice as long as with the fake device (32 inputs, 5 outputs): half the per-byte rates keep
    # the share of damaged exchanges (and the odds of 11 failures in a row) about the same
    faults = {k: v / 2 if k in ("flip", "drop", "garbage") else v for k, v in SCENARIOS[name].items()}
    x = np.random.default_rng(8).integers(-128, 128, (600, sk.n_inputs)).astype(np.int8)
    with emulate.qemu(board, elf) as url, FaultProxy(("127.0.0.1", url.port), seed=9, **faults) as px, \
            Device(px.url, model_id=model_id, timeout=0.5, retries=10) as dev:
        assert dev.info.core == board.core and dev.info.counter_kind == P.ES_COUNTER_INSTRUCTIONS
        t = time.perf_counter()
        scores, costs = dev.run(x, batch=8)
        s1, c1 = dev.run(x[:100], batch=1)
        dt = time.perf_counter() - t
        st, c = dev.stats, px.counts
    ref = S.int_scores(sk, x)
    np.testing.assert_array_equal(scores, ref)
    np.testing.assert_array_equal(s1, ref[:100])
    np.testing.assert_array_equal(c1, costs[:100])                # instruction counts are exact and repeatable
    assert costs.min() > 0
    injected = {k: v for k, v in c.items() if k in ("flipped", "dropped", "garbage_bursts", "resets_injected",
                                                    "swallowed") and v}
    print(f"[QEMU {board.name}: {name}] 600 by BATCH of {min(P.batch_limit(dev.info), 8)} + 100 "
          f"by INFER bit-exact in {dt:.2f} s; injected "
          f"{injected}; harness retries {st.retries}, timeouts {st.timeouts}, naks {st.naks}, bad frames "
          f"{st.bad_frames}, stale {st.stale}, boots {st.boots}, probes {st.probes}")
    assert_reset_recovery(faults, c, st)
    assert st.retries > 0 or st.boots > 0


@pytest.mark.slow
def test_qemu_clean_run_and_model_mismatch(qemu_firmware):
    from edgesketch import emulate
    board, sk, elf, model_id = qemu_firmware
    x = np.random.default_rng(10).integers(-128, 128, (2000, sk.n_inputs)).astype(np.int8)
    with emulate.qemu(board, elf) as url:
        with pytest.raises(UserError) as e:
            with Device(url, model_id="ffeeddccbbaa9988", timeout=1):
                pass
        assert model_id.hex() in str(e.value) and "ffeeddccbbaa9988" in str(e.value)
        # a clean link never needs a retry; 5 s leaves room for a loaded machine (1 s timed out once with two
        # TensorFlow trainings beside the suite on 2 cores)
        with Device(url, model_id=model_id, timeout=5) as dev:
            t = time.perf_counter()
            scores, costs = dev.run(x)
            dt = time.perf_counter() - t
            t = time.perf_counter()
            s1, _ = dev.run(x[:300], batch=1)
            dt1 = time.perf_counter() - t
            st = dev.stats
            bits, buckets = dev.debug(x[0])
            stack = dev.stack()
    r = verify_report(S.int_scores(sk, x), scores, costs)
    assert r.bit_exact and np.array_equal(s1, scores[:300]), r.summary()
    assert np.array_equal(bits, S.int_hash_bits(sk, x[:1])[0]) and np.array_equal(buckets, S.int_buckets(sk, x[:1])[0])
    assert st.retries == 0 and st.timeouts == 0 and st.bad_frames == 0
    window = int(board.build_defines().get("ES_STACK_PAINT", "1024u").rstrip("u"))
    assert stack.window == window and 0 < stack.peak < window and not stack.full, stack
    print(f"[QEMU {board.name}] {r.summary()}; {len(x)} by BATCH of {P.batch_limit(dev.info)} in {dt:.2f} s "
          f"({len(x) / dt:.0f} samples/s), 300 by INFER in {dt1:.2f} s ({300 / dt1:.0f} round trips/s)")
