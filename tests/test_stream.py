"""Streaming (issue 35): a window hopping over a live stream of samples, at the cost of the new read-outs only.

- the numpy reference (sketch.stream_scores, Model.predict_stream/_int): every hop equals int_scores / predict of the
  window ending there, bit for bit, on windowed sketches of every kind that streams (valid and same padding, pooling,
  dilation, a flat branch, 4-bit, int16 and shared-row counts, thresholds and integer weights) and hops from one
  stride x pool to more than a window; what does not stream is refused in one line;
- the generated C ({p}_stream_init/_push_q/_push over firmware/model/es_sketch_stream.h) on the host, both layouts and
  both state kinds (keep, recompute), plain and under ASan/UBSan, against the reference; the null-pointer contract;
  predict's code unchanged when no hop is given;
- the protocol's STREAM (protocol.StreamState, the Python twin) case by case, the harness against the fake device,
  directly and through the fault proxy, and a host build of es_app.c against the twin, byte for byte;
- (slow) cross compilers, the Cortex-M cores under QEMU (instructions per hop against a full inference) and the
  firmware on emulated boards through the harness.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from edgesketch import codegen
from edgesketch import protocol as P
from edgesketch import sketch as S
from edgesketch.errors import ConfigError, DataError, UserError
from edgesketch.harness import Device
from tests.fakedevice import DeviceModel, FakeDevice, fake_hop_costs
from tests.faultproxy import FaultProxy, frame_pieces

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "firmware" / "core"

W40 = S.Window.over((40, 1), 9, 2, padding="valid")
CASES = {   # name -> random_sketch arguments: every kind of branch that streams
    "valid": dict(L=0, windows=[(W40, 15, 6, 32, 6)], seed=1),
    "same": dict(L=0, windows=[(S.Window.over((40, 1), 9, 2), 15, 6, 32, 6)], seed=2),
    "same-flat-branch-C2": dict(L=12, K=6, P=48, taps=8, windows=[(S.Window.over((40, 2), 9, 2), 16, 6, 16, 6)], seed=3),
    "pool-dilation-pad5-C3": dict(L=0, C=3, windows=[(S.Window.over((41, 2), 5, 3, dilation=2, padding=(5,), pool=2),
                                                      8, 5, 20, 5)], seed=4),
    "int4-C3in": dict(L=0, count_bits=4, windows=[(S.Window.over((32, 3), 7, 3, padding=(2,)), 10, 6, 24, 9)], seed=5),
    "wide-padding": dict(L=0, windows=[(S.Window.over((20, 1), 3, 1, padding=(9,)), 8, 4, 16, 3)], seed=6),
    "int16": dict(L=0, count_dtype=np.int16, windows=[(S.Window.over((40, 1), 9, 2), 16, 6, 40, 6)], seed=7),
    "codebook-thresholds-weights": dict(L=12, K=6, P=48, taps=8, thresholds=2, weights=7, codebook=120,
                                        windows=[(S.Window.over((40, 1), 9, 2), 16, 6, 16, 6)], seed=8),
    "window-selectors-int4-valid": dict(L=0, selectors="window", weights=3, count_bits=4, thresholds=2,
                                        windows=[(S.Window.over((48, 3), 5, 2, padding="valid"), 12, 5, 32, 9)], seed=9),
    "gestures-shape-valid": dict(L=0, C=6, windows=[(S.Window.over((64, 3), 9, 2, padding="valid"), 8, 5, 16, 9)], seed=10),
}


def make(name: str) -> S.Sketch:
    return S.random_sketch(**CASES[name])


def unit(sk: S.Sketch) -> int:
    """The smallest hop: the lcm of stride x pool over the windowed branches."""
    import math
    u = 1
    for b in sk.branches:
        if not b.window.is_flat:
            e = b.window.stride[0] * b.window.pool[0]
            u = u * e // math.gcd(u, e)
    assert S.stream_plan(sk, u).unit == u
    return u


def hops(sk: S.Sketch) -> list[int]:
    """One stride x pool, three of them, and more than a window (no read-out shared between windows)."""
    u, T = unit(sk), S.stream_plan_shape(sk)[0]
    return sorted({u, 3 * u, (T // u + 2) * u})


def samples(sk: S.Sketch, n: int, seed: int = 0) -> np.ndarray:
    """Random int8 samples, with runs of extremes and of small values (sums near the thresholds)."""
    rng = np.random.default_rng(seed)
    C = S.stream_plan_shape(sk)[1]
    x = rng.integers(-128, 128, (n, C))
    x[n // 3:n // 3 + 40] = rng.integers(-4, 5, (min(40, n - n // 3), C))
    x[n // 2:n // 2 + 10] = 127
    x[n // 2 + 10:n // 2 + 20] = -128
    return x.astype(np.int8)


# ---------------------------------------------------------------- the numpy reference
@pytest.mark.parametrize("name", list(CASES))
def test_stream_scores_equal_every_window(name):
    sk = make(name)
    T = S.stream_plan_shape(sk)[0]
    for hop in hops(sk):
        x = samples(sk, T + 57 * hop + hop - 1, seed=hop)      # a partial hop at the end: no scores
        got = S.stream_scores(sk, x, hop)
        want = S.int_scores(sk, S.stream_windows(x, T, hop))
        assert got.shape == (58, sk.n_outputs) and got.dtype == np.int32
        np.testing.assert_array_equal(got, want)


def test_stream_plan_geometry():
    """Which read-outs stream: valid windows every one; same padding ceil(pad / (stride x pool)) at each end is
    recomputed (fewer at the right end when the grid stops short of the padding); flat branches are one read-out."""
    plan = S.stream_plan(make("valid"), 2)
    (b,) = plan.branches
    assert (plan.length, plan.channels, plan.hop, b.first, b.count, b.right_at, b.n_readouts, b.shift, b.span) == \
        (40, 1, 2, 0, 16, 16, 16, 1, 9)
    assert b.recomputed == 0 and b.new_per_hop == 1
    flat, win = S.stream_plan(make("same-flat-branch-C2"), 4).branches
    assert (flat.kind, flat.recomputed, win.first, win.count, win.right_at, win.n_readouts, win.shift) == \
        ("flat", 1, 2, 16, 18, 20, 2)
    (b,) = S.stream_plan(make("pool-dilation-pad5-C3"), 12).branches
    assert (b.every, b.span, b.first, b.count, b.right_at, b.n_readouts, b.shift) == (6, 12, 1, 5, 6, 7, 2)
    # a hop longer than the interior: every window's read-outs are its own
    (b,) = S.stream_plan(make("valid"), 40).branches
    assert b.shift == 20 > b.count and b.new_per_hop == 16
    ops = S.stream_plan(make("valid"), 2).readouts_per_hop(make("valid"))
    assert ops["recomputed"] == 0 and ops["full"] == 16 * ops["new"]


def test_model_predict_stream_float_and_int():
    from edgesketch.api import Model
    sk = make("same-flat-branch-C2")
    m = Model(sk)
    rng = np.random.default_rng(3)
    xf = (rng.normal(0, 3, (300, 2))).astype(np.float32)
    out = m.predict_stream(xf, 4)
    wins = S.stream_windows(np.ascontiguousarray(xf), 40, 4)
    np.testing.assert_array_equal(out, m.predict(wins))                        # dequantised outputs, bit for bit
    xq = S.quantize_int8(xf, sk.in_scale, sk.in_zero)
    np.testing.assert_array_equal(m.predict_stream_int(xq, 4), m.predict_int(S.stream_windows(xq, 40, 4)))
    assert m.predict_stream_int(xq[:39], 4).shape == (0, sk.n_outputs)          # the window never filled
    assert m.predict_stream(xf.reshape(-1), 4).shape == out.shape               # N * C values, one sample a row


def test_what_does_not_stream_is_refused_in_one_line():
    from edgesketch.api import Model
    cases = [
        (make("valid"), 3, "hop", "not a multiple of stride x pool (2)"),
        (make("pool-dilation-pad5-C3"), 9, "hop", "multiple of stride x pool (6)"),
        (make("valid"), 0, "hop", "whole number"),
        (make("valid"), 2.0, "hop", "whole number"),
        (S.random_sketch(L=0, windows=[(S.Window.over((8, 8, 1), 3, 2), 8, 4, 8, 6)], seed=1), 2, "sketch", "2-D window"),
        (S.random_sketch(L=0, C=3, windows=[(S.Window.over((40, 2), 5, 1, pool=2, regions=3), 8, 5, 20, 5)], seed=2), 2,
         "sketch", "--regions 1"),
        (S.random_sketch(D=64, C=4, L=8, K=4, seed=3), 1, "sketch", "no single time axis"),
    ]
    for sk, hop, arg, text in cases:
        with pytest.raises(ConfigError) as e:
            Model(sk).predict_stream_int(np.zeros((100, 1), np.int8), hop)
        assert e.value.argument == arg and text in str(e.value) and "\n" not in str(e.value), str(e.value)
        if arg == "sketch":
            assert "what streams: 1-D windows" in str(e.value)
    flat = S.random_sketch(D=64, C=4, L=8, K=4, seed=3)
    flat.meta["input_shape"] = [16, 4]                                          # per-feature scales: cannot stream
    with pytest.raises(ConfigError, match="one scale per channel"):
        S.stream_plan(flat, 1)
    with pytest.raises(DataError, match=r"shape \(N, 1\)"):
        Model(make("valid")).predict_stream_int(np.zeros((10, 2), np.int8), 2)
    with pytest.raises(DataError, match="int8"):
        Model(make("valid")).predict_stream_int(np.full((50, 1), 300), 2)
    with pytest.raises(DataError, match="NaN"):
        Model(make("valid")).predict_stream(np.full((50, 1), np.nan), 2)


# ---------------------------------------------------------------- the generated C on the host
STREAM_DRIVER = r"""
#include <stdio.h>
#include <string.h>
#include "es_model.h"
/* q: int8 samples on stdin -> the scores of every ready push; f: float samples -> float outputs; n: null pointers */
int main(int argc, char **argv)
{
    static es_stream_t s;
    char mode = argc > 1 ? argv[1][0] : 'q';
    int32_t sc[ES_N_OUTPUTS];
    if (mode == 'n') {
        int8_t x[ES_STREAM_CHANNELS] = {0};
        float xf[ES_STREAM_CHANNELS] = {0}, out[ES_N_OUTPUTS];
        int32_t rc[8];
        rc[0] = es_stream_init(NULL);
        rc[1] = es_stream_init(&s);
        rc[2] = es_stream_push_q(NULL, x, sc);
        rc[3] = es_stream_push_q(&s, NULL, sc);
        rc[4] = es_stream_push_q(&s, x, NULL);
        rc[5] = es_stream_push(NULL, xf, out);
        rc[6] = es_stream_push(&s, NULL, out);
        rc[7] = es_stream_push(&s, xf, NULL);
        fwrite(rc, 1, sizeof rc, stdout);
        return 0;
    }
    if (es_stream_init(&s) != ES_OK) return 2;
    if (mode == 'f') {
        float x[ES_STREAM_CHANNELS], out[ES_N_OUTPUTS];
        while (fread(x, 1, sizeof x, stdin) == sizeof x) {
            int rc = es_stream_push(&s, x, out);
            if (rc < 0) return 3;
            if (rc == ES_STREAM_READY) fwrite(out, 1, sizeof out, stdout);
        }
        return 0;
    }
    {
        int8_t x[ES_STREAM_CHANNELS];
        while (fread(x, 1, sizeof x, stdin) == sizeof x) {
            int rc;
            memset(sc, 0x55, sizeof sc);
            rc = es_stream_push_q(&s, x, sc);
            if (rc < 0) return 3;
            if (rc == ES_STREAM_READY) fwrite(sc, 1, sizeof sc, stdout);
        }
    }
    return 0;
}
"""
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g"]


def build_stream(sk, hop, layout, state, workdir: Path, sanitize=False, extra=()) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    codegen.write(sk, workdir, layout, hop=hop, stream_state=state)
    (workdir / "drv.c").write_text(STREAM_DRIVER)
    exe = workdir / "drv"
    r = subprocess.run(["gcc", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-O1", *extra,
                        *(SANITIZE if sanitize else []), "-I", str(workdir), str(workdir / "drv.c"),
                        str(workdir / "es_model.c"),
                        *[str(workdir / n) for n in codegen.RUNTIME if n.endswith(".c")], "-o", str(exe)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
    return exe


def run_stream(exe: Path, sk, x: np.ndarray) -> np.ndarray:
    r = subprocess.run([str(exe), "q"], input=np.ascontiguousarray(x, np.int8).tobytes(), capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    return np.frombuffer(r.stdout, "<i4").reshape(-1, sk.n_outputs)


def check_stream(sk, exe, hop, seed=0):
    T = S.stream_plan_shape(sk)[0]
    x = samples(sk, T + 61 * hop + hop // 2 + 1, seed)
    got, want = run_stream(exe, sk, x), S.stream_scores(sk, x, hop)
    assert got.shape == want.shape, (got.shape, want.shape)
    bad = np.flatnonzero((got != want).any(1))
    assert not len(bad), f"{len(bad)} hops differ, first {bad[0]}: C {got[bad[0]].tolist()} != ref {want[bad[0]].tolist()}"


# the fast tier builds four (each kind of state and layout once, sanitised); the full suite every case
FAST = {("same-flat-branch-C2", "unrolled", "keep"), ("pool-dilation-pad5-C3", "compact", "recompute"),
        ("int4-C3in", "unrolled", "recompute"), ("codebook-thresholds-weights", "compact", "keep")}


@pytest.mark.parametrize("name,layout,state", [
    (n, lay, st) if (n, lay, st) in FAST else pytest.param(n, lay, st, marks=pytest.mark.slow)
    for n in CASES for lay in codegen.LAYOUTS for st in codegen.STREAM_STATES])
def test_c_stream_matches_reference_sanitized(name, layout, state, tmp_path, request):
    """Every hop of the C stream equals sketch.stream_scores, under ASan and UBSan: for three hops (the fast tier: one,
    the smallest or, for one case, more than a window)."""
    sk = make(name)
    fast = request.node.get_closest_marker("slow") is None
    for hop in (hops(sk)[-1:] if name == "int4-C3in" else hops(sk)[:1]) if fast else hops(sk):
        exe = build_stream(sk, hop, layout, state, tmp_path / f"h{hop}", sanitize=True)
        check_stream(sk, exe, hop, seed=hop)


@pytest.mark.slow
@pytest.mark.parametrize("name,state", [("same-flat-branch-C2", "keep"), ("int16", "recompute"),
                                        ("codebook-thresholds-weights", "keep")])
def test_c_stream_gathered_rows(name, state, tmp_path):
    """The unrolled lookups' Thumb-1 path (rows kept, then added class by class: ES_SK_GATHER) forced on the host: the
    stream's one-read-out step (es_sketch_one) and the window's read-outs equal sketch.stream_scores. Without the
    sanitizers: with them gcc took 70-150 s per build of these straight lines (5 s without); the path itself runs under
    ASan/UBSan in test_runtime_c (thumb1-gather-path)."""
    sk = make(name)
    hop = hops(sk)[0]
    exe = build_stream(sk, hop, "unrolled", state, tmp_path, extra=["-DES_SK_GATHER=16"])
    check_stream(sk, exe, hop, seed=hop)


def test_c_stream_float_push_and_null_pointers(tmp_path):
    sk = make("same-flat-branch-C2")
    exe = build_stream(sk, 4, "compact", "keep", tmp_path, sanitize=True)
    rc = np.frombuffer(subprocess.run([str(exe), "n"], capture_output=True, check=True).stdout, "<i4")
    np.testing.assert_array_equal(rc, [-1, 0, -1, -1, -1, -1, -1, -1])
    xf = np.random.default_rng(4).normal(0, 3, (200, 2)).astype(np.float32)
    out = subprocess.run([str(exe), "f"], input=xf.tobytes(), capture_output=True, check=True).stdout
    got = np.frombuffer(out, "<f4").reshape(-1, sk.n_outputs)
    want = S.stream_outputs(sk, xf, 4).astype(np.float32)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_no_hop_leaves_the_files_alone_and_the_header_states_the_ram():
    """Without a hop the generated files are those of a model without a stream (predict's code and instruction
    counts unchanged); with one, the header states the state's RAM, which the .c asserts."""
    sk = make("same-flat-branch-C2")
    plain = codegen.generate(sk)
    with_hop = codegen.generate(sk, hop=4, stream_state="recompute")
    assert "stream" not in plain["es_model.h"] and "stream" not in plain["es_model.c"]
    assert with_hop["es_model.c"].startswith(plain["es_model.c"])         # the stream's code is appended after predict's
    ram = codegen.stream_ram(sk, 4, "recompute")
    h = with_hop["es_model.h"]
    assert f"#define ES_STREAM_RAM      {ram['total']}" in h and "#define ES_STREAM_HOP      4" in h
    assert 2 * 40 * 2 <= ram["ring"] < 2 * 40 * 2 + 16 and ram["keep"] == 0      # a window of samples, each twice
    keep = codegen.stream_ram(make("valid"), 2, "keep")                 # valid, no flat branch: a read-out's samples
    assert keep["keep"] == 16 * 10 * 2 and 2 * 9 <= keep["ring"] < 2 * 9 + 16
    with pytest.raises(ConfigError, match="multiple of stride x pool"):
        codegen.generate(sk, hop=3)
    with pytest.raises(UserError, match="keep or recompute"):
        codegen.generate(sk, hop=4, stream_state="fast")


# ---------------------------------------------------------------- the protocol: STREAM
def test_stream_bodies_and_hello_v4():
    assert (P.ES_CMD_STREAM, P.ES_PROTO_VERSION) == (0x09, 4) and P.cmd_name(0x89) == "STREAM reply"
    assert P.pack_stream(5, 0x01020304, b"\x01\xff") == b"\x05\x04\x03\x02\x01\x01\xff"
    assert P.unpack_stream(P.pack_stream(200, 2**32 - 1, np.array([-1, 2], np.int8)), 2) == (200, 2**32 - 1, b"\xff\x02")
    rep = P.unpack_stream_reply(P.pack_stream_reply(7, 100, 96, 12345, [1, -2, 3]), 3)
    assert (rep.sid, rep.have, rep.at, rep.cost, rep.scores.tolist()) == (7, 100, 96, 12345, [1, -2, 3])
    for bad in (lambda: P.pack_stream(256, 0, b"x"), lambda: P.pack_stream(1, 2**32, b"x"), lambda: P.pack_stream(1, 0, b""),
                lambda: P.unpack_stream(b"\x01\x00\x00\x00\x00\x01", 2), lambda: P.unpack_stream_reply(bytes(13), 1),
                lambda: P.unpack_stream_reply(P.pack_stream_reply(1, 5, 6, 0, [0]), 1)):
        with pytest.raises(P.ProtocolError):
            bad()
    assert P.stream_pieces(0, 64, 3, 160) == [(0, 32), (32, 32)] and P.stream_pieces(62, 64, 3, 160) == [(62, 2)]
    assert P.stream_limit(160, 3) == 51
    info = P.HelloInfo(4, bytes(8), 192, 6, 8, 5, 16, 2, 0, "avr5", 160, 2, 64, 3)
    assert P.unpack_hello(P.pack_hello(info)) == info and info.streams
    v3 = P.HelloInfo(3, bytes(8), 192, 6, 8, 5, 16, 2, 0, "avr5", 160)
    assert P.unpack_hello(P.pack_hello(v3)) == v3 and not v3.streams           # a version 3 body still reads
    assert P.request_error(P.ES_CMD_STREAM, bytes(8), 192, 0, 3) is None
    assert P.request_error(P.ES_CMD_STREAM, bytes(7), 192, 0, 3) == P.ES_NAK_LENGTH
    assert P.request_error(P.ES_CMD_STREAM, bytes(5), 192, 0, 3) == P.ES_NAK_LENGTH
    assert P.request_error(P.ES_CMD_STREAM, bytes(8), 192, 0, 0) == P.ES_NAK_UNKNOWN


def test_stream_state_rules():
    """The rules of docs/protocol.md, case by case (the C firmware is held to the same by the twin test below)."""
    T, h = 4, 2
    st = P.StreamState(T, h, 1, 1, lambda w: [int(np.asarray(w, np.int64).sum())], lambda s: 1)
    push = lambda sid, pos, vals: st.push(P.pack_stream(sid, pos, bytes(v & 255 for v in vals)))
    rep = lambda b: P.unpack_stream_reply(b, 1)
    r = rep(push(0, 0, [1]))                               # stream 0 at position 0 after boot: the next sample
    assert (r.sid, r.have, r.at) == (0, 1, 0)
    assert push(0, 5, [1]) == P.ES_NAK_ORDER               # a gap
    assert push(3, 10, [1, 2, 3, 4, 5]) == P.ES_NAK_TOO_MUCH and st.sid == 0    # would pass the first scores: no change
    r = rep(push(3, 10, [1, 2, 3]))                         # a new stream at position 10
    assert (r.sid, r.have, r.at) == (3, 13, 0)
    assert push(3, 12, [3]) == push(3, 10, [1, 2, 3]) == P.pack_stream_reply(3, 13, 0, 0, [0])   # pushed already
    assert push(3, 12, [3, 4]) == P.ES_NAK_ORDER            # overlapping what was pushed and beyond
    assert push(3, 13, [4, 5]) == P.ES_NAK_TOO_MUCH         # the scores come after one more sample
    r = rep(push(3, 13, [4]))
    assert (r.have, r.at, r.cost, r.scores.tolist()) == (14, 14, 4, [10])       # window 1 2 3 4, four pushes
    assert push(3, 14, [5, 6, 7]) == P.ES_NAK_TOO_MUCH
    r = rep(push(3, 14, [5, 6]))
    assert (r.have, r.at, r.cost, r.scores.tolist()) == (16, 16, 2, [18])       # window 3 4 5 6, a hop of two pushes
    assert rep(push(3, 13, [4])).at == 16                  # a late copy: the latest state, nothing pushed
    assert push(3, 9, [1]) == P.ES_NAK_ORDER and push(3, 17, [1]) == P.ES_NAK_ORDER
    r = rep(push(3, 16, [7]))
    assert (r.have, r.at) == (17, 16)
    st2 = P.StreamState(T, h, 1, 1, lambda w: [0])
    assert st2.push(P.pack_stream(1, 2**32 - 2, b"\x01\x02")) == P.ES_NAK_TOO_MUCH   # position 2^32 - 1 is never passed
    st.reset()
    assert (st.sid, st.have, st.at) == (0, 0, 0)


def _stream_fake(sk, hop, **kw):
    return FakeDevice(sk, hop=hop, **kw)


def test_harness_streams_through_the_fake_device():
    sk = make("same-flat-branch-C2")
    x = samples(sk, 1200, seed=11)
    want = S.stream_scores(sk, x, 4)
    with _stream_fake(sk, 4, max_body=40) as fd, Device(fd.url, timeout=1) as dev:
        assert (dev.info.stream_hop, dev.info.stream_len, dev.info.stream_channels) == (4, 40, 2)
        r = dev.stream(x, progress=lambda i, n: None)
        np.testing.assert_array_equal(r.scores, want)
        np.testing.assert_array_equal(r.costs, fake_hop_costs(x, 40, 4))
        assert r.fills[0] and not r.fills[1:].any() and len(r.scores) == (1200 - 40) // 4 + 1
        st = dev.last_run_stats
        assert st.retries == st.restarts == 0 and st.requests == 1 + 2 + (len(want) - 1)   # the first window in 3 frames
        with pytest.raises(UserError, match=r"samples of 2 values"):
            dev.stream(np.zeros((100, 3), np.int8))
        assert len(dev.stream(x[:39]).scores) == 0
    with FakeDevice(sk) as fd, Device(fd.url, timeout=1) as dev:
        with pytest.raises(UserError, match="has no stream: export the model with a hop"):
            dev.stream(x)


STREAM_FAULTS = {
    "flipped bytes": dict(flip=0.002),
    "dropped bytes": dict(drop=0.002),
    "garbage": dict(garbage=0.002),
    "duplicated frames": dict(dup=0.05),
    "late duplicates": dict(dup_delayed=0.08),
    "resets (BOOT seen)": dict(reset_at=(8, 60, 150, 290)),
    "resets (silent: BOOT swallowed)": dict(reset_at=(20, 120), swallow_boot=True),
    "all at once": dict(flip=0.001, drop=0.001, garbage=0.001, dup=0.03, dup_delayed=0.03, reset_at=(40, 200)),
}


@pytest.mark.parametrize("name", list(STREAM_FAULTS))
def test_streams_through_the_fault_proxy(name):
    """Every hop's scores through flips, drops, garbage, duplicated frames (at once and late) and resets: each window
    answered once, from its own samples, bit-exact; a duplicated frame never pushes its samples twice."""
    faults = STREAM_FAULTS[name]
    sk = make("same-flat-branch-C2")
    x = samples(sk, 1400, seed=12)
    want = S.stream_scores(sk, x, 4)
    with _stream_fake(sk, 4, max_body=40) as fd, FaultProxy(fd.addr, seed=5, **faults) as px, \
            Device(px.url, timeout=0.25, retries=10) as dev:
        t = time.perf_counter()
        r = dev.stream(x)
        dt = time.perf_counter() - t
        st, c = dev.stats, dict(px.counts)
    np.testing.assert_array_equal(r.scores, want)
    costs = fake_hop_costs(x, 40, 4)
    np.testing.assert_array_equal(r.costs[~r.fills], costs[~r.fills])         # a hop's cost counts its own pushes only
    injected = {k: v for k, v in c.items() if k in ("flipped", "dropped", "garbage_bursts", "duplicated",
                                                    "duplicated_late", "resets_injected", "swallowed") and v}
    print(f"[{name}] {len(want)} hops bit-exact in {dt:.2f} s; injected {injected}; harness retries {st.retries}, "
          f"restarts {st.restarts}, timeouts {st.timeouts}, naks {st.naks}, bad frames {st.bad_frames}, stale {st.stale}")
    if "reset_at" in faults:
        assert c["resets_injected"] == len(faults["reset_at"]) and st.restarts >= 1
        assert r.fills.sum() == 1 + st.restarts or r.fills.sum() >= 2
    if faults.get("dup") or faults.get("dup_delayed"):
        assert c["duplicated"] + c["duplicated_late"] > 0 and st.stale > 0
    assert st.retries + st.restarts + st.stale > 0


# ---------------------------------------------------------------- es_app.c against its Python twin
def test_firmware_stream_matches_python_twin(tmp_path):
    """Random STREAM frames (in order, resent, late, gaps, other stream ids, frames passing a ready point, wrong
    lengths, corrupted, RESET) into a host build of es_app.c (ASan, UBSan) and into DeviceModel (protocol.StreamState
    + the integer reference): byte-identical replies."""
    from test_protocol import APP_DRIVER
    sk = make("pool-dilation-pad5-C3")
    hop, T, C = 6, 41, 2
    model = tmp_path / "model"
    codegen.write(sk, model, "compact", hop=hop, stream_state="recompute")
    (tmp_path / "driver.c").write_text(APP_DRIVER)
    exe = tmp_path / "core"
    r = subprocess.run(["gcc", "-std=c99", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-fsanitize=address,undefined",
                        "-fno-sanitize-recover=all", '-DES_CORE_NAME="host"', "-DES_PROTO_MAX_BODY=64", f"-I{CORE}",
                        f"-I{model}", str(tmp_path / "driver.c"), str(CORE / "es_app.c"), str(CORE / "es_proto.c"),
                        *sorted(map(str, model.glob("*.c"))), "-o", str(exe)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    boot = P.decode_stream(b"\x00" + subprocess.run([str(exe)], input=b"", capture_output=True, timeout=60).stdout)
    assert len(boot) == 1 and boot[0].cmd == P.ES_MSG_BOOT
    info = P.unpack_hello(boot[0].body)
    assert (info.version, info.stream_hop, info.stream_len, info.stream_channels) == (4, hop, T, C)
    twin = DeviceModel(sk, info, cost=lambda x: np.zeros(len(x), np.int64), push_cost=lambda s: 0)
    rng = np.random.default_rng(7)
    x = samples(sk, 4000, seed=8)
    sent: list[bytes] = []
    sid, pos, base = 1, 0, 0
    pieces = [b"noise\x00"]
    per = P.stream_limit(64, C)
    for _ in range(2500):
        k = rng.random()
        if k < 0.5:                                                       # the next samples, up to the next scores
            due = T - (pos - base) if pos - base < T else hop - (pos - base - T) % hop
            n = int(rng.integers(1, min(due, per) + 1))
            if pos + n > len(x):
                sid, pos, base = sid % 255 + 1, 0, 0
                continue
            body = P.pack_stream(sid, pos, x[pos:pos + n])
            pos += n
            sent.append(body)
        elif k < 0.6 and sent:                                            # a resent or late copy
            body = sent[-int(rng.integers(1, min(len(sent), 10) + 1))]
        elif k < 0.67:                                                    # a new stream somewhere
            sid = int(rng.integers(256)) if rng.random() < 0.2 else sid % 255 + 1
            pos = base = int(rng.integers(0, 3000))
            body = P.pack_stream(sid, pos, x[pos:pos + 1])
            pos += 1
            sent.append(body)
        elif k < 0.72:                                                    # a gap, or another stream's next samples
            body = P.pack_stream(sid if rng.random() < 0.5 else (sid + 1) % 256, pos + int(rng.integers(1, 9)), x[:2])
        elif k < 0.77:                                                    # too many samples: past the next scores
            body = P.pack_stream(sid, pos, x[pos % 3000:pos % 3000 + min(per, T + 1)])
        elif k < 0.8:                                                     # past position 2^32 - 1
            body = P.pack_stream(sid, 2**32 - 2, x[:3])
        elif k < 0.85:                                                    # wrong lengths
            body = bytes(rng.integers(0, 256, int(rng.choice([0, 3, 5, 6, 8])), dtype=np.uint8))
        elif k < 0.87:
            pieces.append(P.encode_frame(P.ES_CMD_RESET, int(rng.integers(256))))
            continue
        else:
            pieces.append(P.encode_frame(P.ES_CMD_HELLO, int(rng.integers(256))))
            continue
        pieces += frame_pieces(P.ES_CMD_STREAM, body, rng, 0.03)
    want, kinds = [twin.boot()], Counter()
    dec = twin.decoder()
    for piece in pieces:
        for ev in dec.feed(piece):
            out, reset = twin.handle(ev)
            want.append(out)
            got = P.decode_stream(b"\x00" + out)[0]
            if got.cmd == P.ES_CMD_STREAM | P.ES_REPLY:
                rep = P.unpack_stream_reply(got.body, sk.n_outputs)
                kinds["STREAM scores" if rep.at == rep.have and rep.at else "STREAM reply"] += 1
            else:
                kinds[P.nak_name(got.body[0]) if got.cmd == P.ES_MSG_NAK else P.cmd_name(got.cmd)] += 1
            if reset:
                want.append(twin.boot())
                dec = twin.decoder()
    run = subprocess.run([str(exe)], input=b"".join(pieces), capture_output=True, timeout=300)
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    got_frames, want_frames = P.decode_stream(b"\x00" + run.stdout), P.decode_stream(b"\x00" + b"".join(want))
    for i, (g, w) in enumerate(zip(got_frames, want_frames)):
        assert g == w, f"reply {i}: firmware {g} vs twin {w}"
    assert len(got_frames) == len(want_frames)
    print(dict(sorted(kinds.items())))
    for k in ("STREAM scores", "STREAM reply", "NAK 8 (out of order)", "NAK 9 (too much input)", "NAK 2 (wrong body length)",
              "RESET reply", "NAK 1 (bad CRC)"):
        assert kinds[k] >= 5, (k, kinds)
