"""The C framing (firmware/core/es_proto.c, built for the host with gcc and loaded with ctypes) against its Python
twin (edgesketch/protocol.py): same bytes out of both encoders, same frames and NAK reasons out of both receivers
for the same random streams, plus the edge cases of docs/protocol.md and a short fuzz run."""
from __future__ import annotations

import ctypes
import os
import shutil
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from edgesketch import protocol as p

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "firmware" / "core"

DRIVER = r"""
#include <string.h>
#include "es_proto.h"
const long drv_consts[] = {ES_PROTO_VERSION, ES_PROTO_MAX_BODY, ES_PROTO_MAX_RAW, ES_PROTO_MAX_WIRE,
    ES_CMD_HELLO, ES_CMD_INFER, ES_CMD_BATCH, ES_CMD_DEBUG, ES_CMD_RESET, ES_CMD_STACK, ES_CMD_LOAD, ES_CMD_RUN,
    ES_REPLY, ES_MSG_BOOT, ES_MSG_NAK,
    ES_NAK_CRC, ES_NAK_LENGTH, ES_NAK_UNKNOWN, ES_NAK_TOO_LONG, ES_NAK_COBS, ES_NAK_BATCH, ES_NAK_SHORT,
    ES_NAK_ORDER, ES_NAK_TOO_MUCH, ES_NAK_INCOMPLETE};
size_t drv_rx_size(void) { return sizeof(es_rx_t); }
/* Feed n bytes. Events go to ev as (kind 1 frame / 2 error, cmd or reason, seq, len); frame bodies to bodies. */
long drv_feed(es_rx_t *rx, const uint8_t *data, size_t n, int *ev, size_t ev_cap, uint8_t *bodies, size_t cap)
{
    size_t i, ne = 0, nb = 0;
    for (i = 0; i < n; i++) {
        es_frame_t f;
        uint8_t reason = 0;
        int r = es_rx_push(rx, data[i], &f, &reason);
        if (r == ES_RX_NONE) continue;
        if (ne >= ev_cap) return -1;
        if (r == ES_RX_FRAME) {
            if (nb + f.len > cap) return -2;
            memcpy(bodies + nb, f.body, f.len);
            nb += f.len;
            ev[4 * ne] = 1; ev[4 * ne + 1] = f.cmd; ev[4 * ne + 2] = f.seq; ev[4 * ne + 3] = f.len;
        } else if (r == ES_RX_ERROR) {
            ev[4 * ne] = 2; ev[4 * ne + 1] = reason; ev[4 * ne + 2] = f.seq; ev[4 * ne + 3] = 0;
        } else {
            return -3;
        }
        ne++;
    }
    return (long)ne;
}
"""
CONST_NAMES = ["ES_PROTO_VERSION", "ES_PROTO_MAX_BODY", "ES_PROTO_MAX_RAW", "ES_PROTO_MAX_WIRE", "ES_CMD_HELLO",
               "ES_CMD_INFER", "ES_CMD_BATCH", "ES_CMD_DEBUG", "ES_CMD_RESET", "ES_CMD_STACK", "ES_CMD_LOAD",
               "ES_CMD_RUN", "ES_REPLY", "ES_MSG_BOOT", "ES_MSG_NAK",
               "ES_NAK_CRC", "ES_NAK_LENGTH", "ES_NAK_UNKNOWN", "ES_NAK_TOO_LONG", "ES_NAK_COBS", "ES_NAK_BATCH",
               "ES_NAK_SHORT", "ES_NAK_ORDER", "ES_NAK_TOO_MUCH", "ES_NAK_INCOMPLETE"]
GUARD = 64


class CProto:
    """ctypes view of a host build of es_proto.c."""

    def __init__(self, so: Path):
        lib = self.lib = ctypes.CDLL(str(so))
        lib.es_crc16.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        lib.es_crc16.restype = ctypes.c_uint16
        lib.es_tx_encode.argtypes = [ctypes.c_uint8, ctypes.c_uint8, ctypes.c_char_p, ctypes.c_uint16,
                                     ctypes.c_void_p, ctypes.c_size_t]
        lib.es_tx_encode.restype = ctypes.c_size_t
        lib.es_rx_init.argtypes = [ctypes.c_void_p]
        lib.drv_rx_size.restype = ctypes.c_size_t
        lib.drv_feed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t,
                                 ctypes.c_void_p, ctypes.c_size_t]
        lib.drv_feed.restype = ctypes.c_long
        self.rx_size = lib.drv_rx_size()
        self.consts = list((ctypes.c_long * len(CONST_NAMES)).in_dll(lib, "drv_consts"))

    def crc16(self, data: bytes) -> int:
        return self.lib.es_crc16(data, len(data))

    def encode(self, cmd: int, seq: int, body: bytes, cap: int = p.ES_PROTO_MAX_WIRE) -> bytes | None:
        buf = (ctypes.c_uint8 * (cap + GUARD))(*([0xCC] * (cap + GUARD)))
        n = self.lib.es_tx_encode(cmd, seq, body or None, len(body), ctypes.addressof(buf), cap)
        assert bytes(buf[cap:]) == b"\xcc" * GUARD, "es_tx_encode wrote past cap"
        return bytes(buf[:n]) if n else None

    def receiver(self) -> "CReceiver":
        return CReceiver(self)


class CReceiver:
    def __init__(self, c: CProto):
        self.c = c
        self.mem = (ctypes.c_uint8 * (c.rx_size + 2 * GUARD))(*([0xCC] * (c.rx_size + 2 * GUARD)))
        self.rx = ctypes.addressof(self.mem) + GUARD
        c.lib.es_rx_init(self.rx)

    def feed(self, data: bytes) -> list:
        data = bytes(data)
        cap = len(data) + 1
        ev = (ctypes.c_int * (4 * cap))()
        bodies = (ctypes.c_uint8 * (len(data) + p.ES_PROTO_MAX_RAW))()
        ne = self.c.lib.drv_feed(self.rx, data, len(data), ev, cap, bodies, len(bodies))
        assert ne >= 0
        m = bytes(self.mem)
        assert m[:GUARD] == b"\xcc" * GUARD and m[-GUARD:] == b"\xcc" * GUARD, "receiver wrote outside es_rx_t"
        out, off, bb = [], 0, bytes(bodies)
        for i in range(ne):
            kind, a, seq, n = ev[4 * i:4 * i + 4]
            if kind == 1:
                out.append(p.Frame(a, seq, bb[off:off + n]))
                off += n
            else:
                out.append(p.FrameError(a, seq))
        return out


def _build_cproto(d: Path, *defines: str) -> CProto:
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed for the host build of es_proto.c: run bash .ci/setup")
    (d / "driver.c").write_text(DRIVER)
    so = d / "libes_proto.so"
    cmd = ["gcc", "-shared", "-fPIC", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-std=c99", "-pedantic", *defines,
           f"-I{CORE}", str(CORE / "es_proto.c"), str(d / "driver.c"), "-o", str(so)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return CProto(so)


@pytest.fixture(scope="module")
def c(tmp_path_factory) -> CProto:
    return _build_cproto(tmp_path_factory.mktemp("es_proto"))


SMALL_BODY = 160       # qemu-uno's and uno's ES_PROTO_MAX_BODY (2 KB of RAM)


@pytest.fixture(scope="module")
def c_small(tmp_path_factory) -> CProto:
    """es_proto.c built as for a board with little RAM (-DES_PROTO_MAX_BODY=160)."""
    return _build_cproto(tmp_path_factory.mktemp("es_proto_small"), f"-DES_PROTO_MAX_BODY={SMALL_BODY}")


# ---------------------------------------------------------------- random frames and streams
def rand_body(rng: np.random.Generator, max_len: int = p.ES_PROTO_MAX_BODY) -> bytes:
    n = int(rng.integers(0, max_len + 1)) if rng.random() < 0.3 else int(rng.integers(0, min(max_len, 300) + 1))
    b = rng.integers(0, 256, n, dtype=np.uint8)
    zero_p = rng.choice([0.0, 0.004, 0.05, 0.5, 1.0])
    b[rng.random(n) < zero_p] = 0
    return b.tobytes()


def rand_stream(rng: np.random.Generator, max_body: int = p.ES_PROTO_MAX_BODY) -> bytes:
    """Valid frames, mutated frames, noise, overlong runs, frames decoding past ES_PROTO_MAX_RAW and delimiters (of a
    receiver built with this ES_PROTO_MAX_BODY)."""
    out = bytearray(rng.integers(0, 256, int(rng.integers(0, 8)), dtype=np.uint8).tobytes())  # noise first
    for _ in range(int(rng.integers(1, 12))):
        k = rng.random()
        if k < 0.45:
            f = bytearray(p.encode_frame(int(rng.integers(256)), int(rng.integers(256)), rand_body(rng, 400)))
            if rng.random() < 0.5:                                  # corrupt it
                for _ in range(int(rng.integers(1, 4))):
                    at = int(rng.integers(len(f)))
                    op = rng.integers(4)
                    if op == 0:
                        f[at] ^= 1 << int(rng.integers(8))
                    elif op == 1:
                        del f[at]
                    elif op == 2:
                        f.insert(at, int(rng.integers(256)))
                    else:
                        del f[at:]
                    if not f:
                        break
            out += f
        elif k < 0.6:
            out += rng.integers(0, 256, int(rng.integers(0, 30)), dtype=np.uint8).tobytes()
        elif k < 0.65:
            n = p.max_wire(max_body) + int(rng.integers(-3, 6))
            out += rng.integers(1, 256, n, dtype=np.uint8).tobytes()
        elif k < 0.7:
            raw = rng.integers(1, 256, p.max_raw(max_body) + int(rng.integers(-2, 5)), dtype=np.uint8).tobytes()
            out += p.cobs_encode(raw) + b"\x00"
        elif k < 0.8:
            raw = rng.integers(0, 256, int(rng.integers(0, 6)), dtype=np.uint8).tobytes()
            out += p.cobs_encode(raw) + b"\x00"                     # short frames, maybe valid COBS
        else:
            out += b"\x00" * int(rng.integers(1, 3))
    return bytes(out)


# ---------------------------------------------------------------- tests
def test_constants_match_header(c):
    assert c.consts == [getattr(p, n) for n in CONST_NAMES]


def test_crc_check_value(c):
    assert p.crc16(b"123456789") == 0x29B1
    assert c.crc16(b"123456789") == 0x29B1
    assert p.crc16(b"") == c.crc16(b"") == 0xFFFF
    rng = np.random.default_rng(1)
    for _ in range(2000):
        d = rng.integers(0, 256, int(rng.integers(0, 1100)), dtype=np.uint8).tobytes()
        assert c.crc16(d) == p.crc16(d)


def test_c_encode_equals_python_encode_and_decodes(c):
    """Encode in C, decode in Python (and compare bytes with the Python encoder)."""
    rng = np.random.default_rng(2)
    n = 0
    for cmd, seq, body in [(0, 0, b""), (255, 255, b"\x00" * 1024), (1, 1, b"\x01" * 1024), (2, 0, b"\x01" * 250),
                           (2, 0, b"\x01" * 251), (2, 0, b"\x01" * 252), (3, 7, b"\x01" * 500 + b"\x00")]:
        assert c.encode(cmd, seq, body) == p.encode_frame(cmd, seq, body)
    for _ in range(5000):
        cmd, seq, body = int(rng.integers(256)), int(rng.integers(256)), rand_body(rng)
        wire = c.encode(cmd, seq, body)
        assert wire == p.encode_frame(cmd, seq, body)
        assert 0 not in wire[:-1] and wire[-1] == 0 and len(wire) <= p.ES_PROTO_MAX_WIRE
        assert p.decode_stream(b"\x00" + wire) == [p.Frame(cmd, seq, body)]
        n += 1
    print(f"C->Python: {n} random frames byte-identical and decoded")


def test_python_encode_c_decode(c):
    """Encode in Python, decode in C: one long stream of 5000 frames through one receiver."""
    rng = np.random.default_rng(3)
    frames = [p.Frame(int(rng.integers(256)), int(rng.integers(256)), rand_body(rng)) for _ in range(5000)]
    stream = b"noise\xff" + b"\x00" + b"".join(p.encode_frame(f.cmd, f.seq, f.body) for f in frames)
    rx = c.receiver()
    got = []
    for i in range(0, len(stream), 4096):                      # receiver state carries across chunks
        got += rx.feed(stream[i:i + 4096])
    assert got == frames
    print(f"Python->C: {len(frames)} random frames decoded")


def test_random_streams_same_events(c):
    """The two receivers agree event for event on random streams of good, corrupted and hostile bytes."""
    rng = np.random.default_rng(4)
    kinds = Counter()
    n_streams = 3000
    for _ in range(n_streams):
        s = rand_stream(rng)
        synced = bool(rng.random() < 0.5)
        rx = c.receiver()
        if synced:
            rx.feed(b"\x00")
        cut = int(rng.integers(0, len(s) + 1))                   # and split the stream at a random point
        got_c = rx.feed(s[:cut]) + rx.feed(s[cut:])
        dec = p.FrameDecoder(synced=synced)
        got_py = dec.feed(s[:cut]) + dec.feed(s[cut:])
        assert got_c == got_py
        kinds.update("frame" if isinstance(e, p.Frame) else p.NAK_NAMES[e.reason] for e in got_py)
    print(f"random streams: {n_streams}, events compared: {sum(kinds.values())}, {dict(kinds)}")
    for k in ("frame", "bad CRC", "frame too long", "bad COBS encoding", "frame too short"):
        assert kinds[k] > 20, k


def test_small_body_receiver_same_events(c_small):
    """A receiver built with ES_PROTO_MAX_BODY 160 (the Uno) and FrameDecoder(max_body=160) agree on random streams,
    at and around its limits."""
    assert c_small.consts[1:4] == [SMALL_BODY, p.max_raw(SMALL_BODY), p.max_wire(SMALL_BODY)]
    rng = np.random.default_rng(14)
    kinds = Counter()
    for _ in range(2000):
        s = rand_stream(rng, SMALL_BODY)
        rx = c_small.receiver()
        rx.feed(b"\x00")
        got_py = p.FrameDecoder(synced=True, max_body=SMALL_BODY).feed(s)
        assert rx.feed(s) == got_py
        kinds.update("frame" if isinstance(e, p.Frame) else p.NAK_NAMES[e.reason] for e in got_py)
    for body, want in ((bytes(SMALL_BODY), p.Frame(1, 2, bytes(SMALL_BODY))),
                       (b"\x07" * (SMALL_BODY + 2), p.Frame(1, 2, b"\x07" * (SMALL_BODY + 2))),   # 2 spare bytes
                       (b"\x07" * (SMALL_BODY + 3), p.FrameError(p.ES_NAK_TOO_LONG, 0))):
        wire = p.cobs_encode(bytes([1, 2]) + body + p.crc16(bytes([1, 2]) + body).to_bytes(2, "little")) + b"\x00"
        rx = c_small.receiver()
        rx.feed(b"\x00")
        assert rx.feed(wire) == p.FrameDecoder(True, SMALL_BODY).feed(wire) == [want]
    assert c_small.encode(1, 2, bytes(SMALL_BODY + 1)) is None and c_small.encode(1, 2, bytes(SMALL_BODY)) is not None
    print(f"small-body receivers: {dict(kinds)}")
    for k in ("frame", "bad CRC", "frame too long", "bad COBS encoding"):
        assert kinds[k] > 20, k


def both(c, data: bytes, synced: bool = True) -> list:
    rx = c.receiver()
    if synced:
        rx.feed(b"\x00")
    got = rx.feed(data)
    assert got == p.FrameDecoder(synced).feed(data)
    return got


def test_noise_before_first_delimiter_is_dropped(c):
    f = p.encode_frame(p.ES_CMD_HELLO, 5)
    assert both(c, f, synced=False) == []                        # no 0x00 before it: the whole frame is noise
    assert both(c, b"\x12\x34" + f + f, synced=False) == [p.Frame(1, 5, b"")]
    assert both(c, b"\x00" * 5 + f + b"\x00\x00" + f, synced=False) == [p.Frame(1, 5, b"")] * 2


def test_every_receiver_nak_reason(c):
    good = p.encode_frame(p.ES_CMD_INFER, 9, bytes(range(1, 65)))
    # 1 bad CRC, seq still readable
    bad = bytearray(good)
    bad[5] ^= 0x01
    assert both(c, bytes(bad) + good) == [p.FrameError(p.ES_NAK_CRC, 9), p.Frame(2, 9, bytes(range(1, 65)))]
    # 4 too long: an encoding longer than the wire buffer, then the receiver reads the next frame
    assert both(c, b"\x01" * (p.ES_PROTO_MAX_WIRE + 1) + b"\x00" + good)[0] == p.FrameError(p.ES_NAK_TOO_LONG, 0)
    assert both(c, b"\x05" * 5000 + b"\x00" + good)[1] == p.Frame(2, 9, bytes(range(1, 65)))
    # 4 too long: valid COBS that decodes to ES_PROTO_MAX_RAW + 1 bytes (fits the wire buffer)
    raw = bytes([1, 3]) + b"\x07" * (p.ES_PROTO_MAX_RAW - 1)
    assert both(c, p.cobs_encode(raw) + b"\x00") == [p.FrameError(p.ES_NAK_TOO_LONG, 0)]
    # exactly ES_PROTO_MAX_RAW raw bytes (body 1026) is still a frame for the receiver
    raw = bytes([1, 3]) + b"\x07" * (p.ES_PROTO_MAX_RAW - 4)
    raw += struct.pack("<H", p.crc16(raw))
    assert both(c, p.cobs_encode(raw) + b"\x00") == [p.Frame(1, 3, b"\x07" * (p.ES_PROTO_MAX_RAW - 4))]
    # 5 bad COBS: a code byte pointing past the end
    assert both(c, b"\x09\x01\x02\x00" + good) == [p.FrameError(p.ES_NAK_COBS, 0), p.Frame(2, 9, bytes(range(1, 65)))]
    # 7 too short: under 4 raw bytes; seq echoed when there is one
    assert both(c, p.cobs_encode(b"\x01") + b"\x00") == [p.FrameError(p.ES_NAK_SHORT, 0)]
    assert both(c, p.cobs_encode(b"\x01\x2a\x00") + b"\x00") == [p.FrameError(p.ES_NAK_SHORT, 0x2A)]
    # truncated frame: the delimiter comes early
    assert both(c, good[:3] + b"\x00")[0].reason in (p.ES_NAK_SHORT, p.ES_NAK_COBS)
    assert both(c, good[:-5] + b"\x00") == [p.FrameError(p.ES_NAK_COBS, 0)]
    # empty frames are idle filler, not errors
    assert both(c, b"\x00" * 10) == []


def test_dispatch_nak_reasons():
    """ES_NAK_LENGTH, ES_NAK_UNKNOWN and ES_NAK_BATCH come from the dispatcher: the host twin of its rules."""
    D, MB = 64, 8
    assert p.request_error(p.ES_CMD_HELLO, b"", D, MB) is None
    assert p.request_error(p.ES_CMD_HELLO, b"x", D, MB) == p.ES_NAK_LENGTH
    assert p.request_error(p.ES_CMD_RESET, b"", D, MB) is None
    assert p.request_error(p.ES_CMD_STACK, b"", D, MB) is None
    assert p.request_error(p.ES_CMD_STACK, b"\x00", D, MB) == p.ES_NAK_LENGTH
    assert p.request_error(p.ES_CMD_INFER, bytes(D), D, MB) is None
    assert p.request_error(p.ES_CMD_INFER, bytes(D - 1), D, MB) == p.ES_NAK_LENGTH
    assert p.request_error(p.ES_CMD_DEBUG, bytes(D + 1), D, MB) == p.ES_NAK_LENGTH
    assert p.request_error(p.ES_CMD_BATCH, bytes([2]) + bytes(2 * D), D, MB) is None
    assert p.request_error(p.ES_CMD_BATCH, bytes([2]) + bytes(D), D, MB) == p.ES_NAK_LENGTH
    assert p.request_error(p.ES_CMD_BATCH, b"", D, MB) == p.ES_NAK_LENGTH
    assert p.request_error(p.ES_CMD_BATCH, bytes([0]), D, MB) == p.ES_NAK_BATCH
    assert p.request_error(p.ES_CMD_BATCH, bytes([MB + 1]) + bytes((MB + 1) * D), D, MB) == p.ES_NAK_BATCH
    assert p.request_error(0x42, b"", D, MB) == p.ES_NAK_UNKNOWN
    assert p.request_error(p.ES_CMD_HELLO | p.ES_REPLY, b"", D, MB) == p.ES_NAK_UNKNOWN
    for r in range(1, 8):
        assert p.unpack_nak(p.pack_nak(r)) == r and r in p.NAK_NAMES
        f = p.decode_stream(b"\x00" + p.encode_frame(p.ES_MSG_NAK, 3, p.pack_nak(r)))
        assert f == [p.Frame(p.ES_MSG_NAK, 3, bytes([r]))]


def test_encoder_limits(c):
    body = bytes(range(1, 256)) * 4 + bytes(4)                   # 1024 bytes
    wire = p.encode_frame(p.ES_CMD_INFER, 1, body)
    assert c.encode(p.ES_CMD_INFER, 1, body, cap=len(wire)) == wire
    for cap in (0, 1, 6, len(wire) // 2, len(wire) - 1):
        assert c.encode(p.ES_CMD_INFER, 1, body, cap=cap) is None
    assert c.encode(p.ES_CMD_INFER, 1, body + b"\x01") is None   # len > ES_PROTO_MAX_BODY
    with pytest.raises(p.ProtocolError):
        p.encode_frame(p.ES_CMD_INFER, 1, body + b"\x01")
    # the largest frames fit ES_PROTO_MAX_WIRE whatever their content
    for b in (b"\x01" * 1024, b"\x00" * 1024, bytes(range(256)) * 4):
        assert len(p.encode_frame(0xFF, 0xFF, b)) <= p.ES_PROTO_MAX_WIRE


def test_cobs_edge_cases():
    for n in list(range(0, 520)) + [1030]:
        for fill in (b"\x01", b"\x00"):
            d = fill * n
            assert p.cobs_decode(p.cobs_encode(d)) == d
            assert p.cobs_decoded_len(p.cobs_encode(d)) == n
    assert p.cobs_encode(b"") == b"\x01"
    assert p.cobs_encode(b"\x00") == b"\x01\x01"
    assert p.cobs_encode(b"\x01" * 254) == b"\xff" + b"\x01" * 254
    assert p.cobs_decode(b"\xff" + b"\x01" * 254 + b"\x01") == b"\x01" * 254   # the long form is accepted too
    for bad in (b"\x03\x01", b"\x00", b"\x02\x00"):
        with pytest.raises(p.ProtocolError):
            p.cobs_decode(bad)


# ---------------------------------------------------------------- bodies
INFO = p.HelloInfo(version=1, model_id=bytes.fromhex("0123456789abcdef"), n_inputs=64, n_outputs=10, n_tables=16,
                   n_bits=6, n_hashbits=96, counter_kind=p.ES_COUNTER_INSTRUCTIONS, max_batch=8, core="cortex-m4")


def test_hello_body():
    b = p.pack_hello(INFO)
    assert len(b) == 1 + 8 + 2 + 2 + 2 + 1 + 2 + 1 + 2 + 1 + 9 + 2 and b[-2:] == b"\x00\x04"   # max_body last
    assert b[:9] == b"\x01\x01\x23\x45\x67\x89\xab\xcd\xef"
    assert p.unpack_hello(b) == INFO and INFO.max_body == p.ES_PROTO_MAX_BODY
    # firmware from before max_body was reported: no trailing field, read as 1024
    assert p.unpack_hello(p.pack_hello(INFO, with_max_body=False)) == INFO
    small = p.HelloInfo(**{**INFO.__dict__, "max_body": 160, "max_batch": 2})
    assert p.unpack_hello(p.pack_hello(small)).max_body == 160 and p.batch_limit(small) == 2
    for bad in (b[:-2] + b"\x00\x00", b[:-2] + b"\x01\x04"):                  # max_body 0 or above 1024
        with pytest.raises(p.ProtocolError):
            p.unpack_hello(bad)
    assert INFO.model_id_hex == "0123456789abcdef"
    for bad in (b[:-1], b + b"x", b"", b[:21]):
        with pytest.raises(p.ProtocolError):
            p.unpack_hello(bad)
    assert p.model_id_bytes("0123456789abcdef0011") == INFO.model_id
    with pytest.raises(p.ProtocolError):
        p.model_id_bytes("0123")


def test_infer_batch_debug_bodies():
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, 64).astype(np.int8)
    assert np.array_equal(p.unpack_infer(p.pack_infer(x), 64), x)
    scores = rng.integers(-2**31, 2**31, 10).astype(np.int32)
    cost, s = p.unpack_infer_reply(p.pack_infer_reply(123456, scores), 10)
    assert cost == 123456 and s.dtype == np.int32 and np.array_equal(s, scores)
    assert p.pack_infer_reply(1, [1, -1])[4:] == b"\x01\x00\x00\x00\xff\xff\xff\xff"
    rows = rng.integers(-128, 128, (5, 64)).astype(np.int8)
    assert np.array_equal(p.unpack_batch(p.pack_batch(rows), 64), rows)
    costs = rng.integers(0, 2**32, 5, dtype=np.uint64)
    sc = rng.integers(-2**31, 2**31, (5, 10)).astype(np.int32)
    c2, s2 = p.unpack_batch_reply(p.pack_batch_reply(costs, sc), 10, n=5)
    assert np.array_equal(c2, costs) and np.array_equal(s2, sc)
    with pytest.raises(p.ProtocolError):
        p.unpack_batch_reply(p.pack_batch_reply(costs, sc), 10, n=4)
    with pytest.raises(p.ProtocolError):
        p.unpack_batch_reply(p.pack_batch_reply(costs, sc)[:-1], 10)
    bits = rng.random(96) < 0.5
    buckets = rng.integers(0, 64, 16).astype(np.uint16)
    body = p.pack_debug_reply(bits, buckets)
    assert len(body) == 2 + 12 + 2 + 32
    b2, k2 = p.unpack_debug_reply(body)
    assert np.array_equal(b2, bits) and np.array_equal(k2, buckets)
    assert p.pack_debug_reply([1, 0, 0, 0, 0, 0, 0, 0, 0, 1], [])[2:4] == b"\x01\x02"   # LSB first
    with pytest.raises(p.ProtocolError):
        p.unpack_debug_reply(body[:-1])
    with pytest.raises(p.ProtocolError):
        p.pack_infer(np.array([300]))
    with pytest.raises(p.ProtocolError):
        p.unpack_infer(bytes(63), 64)


def test_stack_body():
    info = p.StackInfo(peak=244, window=1024, full=False)
    b = p.pack_stack_reply(info)
    assert b == b"\xf4\x00\x00\x04\x00" and p.unpack_stack_reply(b) == info and info.measured
    assert p.unpack_stack_reply(b"\x00\x04\x00\x04\x01") == p.StackInfo(1024, 1024, True)
    assert not p.unpack_stack_reply(bytes(5)).measured
    for bad in (b[:-1], b + b"\x00", b"\x00\x00\x00\x04\x02"):
        with pytest.raises(p.ProtocolError):
            p.unpack_stack_reply(bad)


def test_batch_limit():
    assert p.batch_limit(INFO) == 8
    big = p.HelloInfo(**{**INFO.__dict__, "max_batch": 1000})
    assert p.batch_limit(big) == min(1023 // 64, 1023 // 44)
    assert p.batch_limit(p.HelloInfo(**{**big.__dict__, "max_body": 160})) == min(159 // 64, 159 // 44)   # the Uno
    for n in range(1, p.batch_limit(big) + 1):
        assert len(p.pack_batch(np.zeros((n, 64), np.int8))) <= p.ES_PROTO_MAX_BODY
        assert len(p.pack_batch_reply(np.zeros(n), np.zeros((n, 10)))) <= p.ES_PROTO_MAX_BODY


# ---------------------------------------------------------------- fuzzing (short run for CI)
@pytest.mark.parametrize("max_body,seconds", [(None, 3), (SMALL_BODY, 2)])
def test_fuzz_short_run(tmp_path, max_body, seconds):
    """firmware/fuzz/run.sh for a few seconds per target (receiver alone, then the firmware core with a generated
    model), with the default ES_PROTO_MAX_BODY and with the Uno's 160."""
    if shutil.which("gcc") is None and shutil.which("clang") is None and shutil.which("clang-14") is None:
        pytest.fail("no C compiler: run bash .ci/setup")
    env = {**os.environ, "ES_FUZZ_OUT": str(tmp_path), "PYTHON": sys.executable}
    if max_body is not None:
        env["ES_FUZZ_MAX_BODY"] = str(max_body)
    r = subprocess.run([str(ROOT / "firmware" / "fuzz" / "run.sh"), str(seconds)], env=env, capture_output=True,
                       text=True, timeout=300)
    lines = [l for l in r.stdout.splitlines() if l.startswith("fuzz:")]
    assert r.returncode == 0 and lines, r.stdout + r.stderr
    print("\n".join(lines))
    assert not [l for l in lines if "skipped" in l], lines  # both targets must really run
    for line in lines:
        fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        assert fields["crashes"] == "0" and int(fields["executions"]) > 1000, line
    assert any("target=rx" in l for l in lines) and any("target=app" in l for l in lines)


# ---------------------------------------------------------------- the firmware core on the host vs the Python twin
APP_DRIVER = r"""
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include "es_app.h"
#include "es_bsp.h"
/* A stub board: the UART reads stdin and writes stdout; a RESET restarts the core and keeps reading. */
static unsigned char *in;
static size_t in_n, in_pos;
static jmp_buf reset_jmp;
void es_bsp_init(void) {}
void es_bsp_tx_flush(void) { fflush(stdout); }
void es_bsp_idle(void) {}
void es_bsp_counter_start(void) {}
uint32_t es_bsp_counter_read(void) { return 0; }
int es_bsp_counter_stop(void) { return 0; }
void es_bsp_reset(void) { longjmp(reset_jmp, 1); }
int es_bsp_rx(uint8_t *b) { if (in_pos >= in_n) return 0; *b = in[in_pos++]; return 1; }
void es_bsp_tx(const uint8_t *p, size_t n) { fwrite(p, 1, n, stdout); }
int main(void)
{
    size_t cap = 1 << 16;
    in = malloc(cap);
    while (in != NULL) {
        size_t got = fread(in + in_n, 1, cap - in_n, stdin);
        in_n += got;
        if (got == 0) break;
        if (in_n == cap) in = realloc(in, cap *= 2);
    }
    if (in == NULL) return 2;
    setjmp(reset_jmp);
    es_app_start();
    es_app_poll();
    fflush(stdout);
    return 0;
}
"""


def test_firmware_core_dispatch_matches_python_twin(tmp_path):
    """es_app.c + es_proto.c + a generated model, built for the host with a stub board, given a random stream of
    valid, invalid and corrupted requests: its output equals, byte for byte, what protocol.py + sketch.py predict
    (frames, every NAK reason 1..7, scores, hash bits, buckets, RESET -> BOOT with the receiver unsynced again).
    STACK replies carry the host's real painted stack: the twin checks them (0 before the first inference of a boot,
    then one constant peak under the window) and takes the peak from the device."""
    import re

    from edgesketch import codegen
    from edgesketch import sketch as S
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed: run bash .ci/setup")
    sk = S.random_sketch(D=24, C=3, L=6, K=5, seed=21)
    files = codegen.generate(sk)
    model = tmp_path / "model"
    codegen.write(sk, model)                                      # the model and whatever sources it needs
    (tmp_path / "driver.c").write_text(APP_DRIVER)
    exe = tmp_path / "core"
    subprocess.run(["gcc", "-std=c99", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-fsanitize=address,undefined",
                    "-fno-sanitize-recover=all", '-DES_CORE_NAME="host"', f"-I{CORE}", f"-I{model}",
                    str(tmp_path / "driver.c"), str(CORE / "es_app.c"), str(CORE / "es_proto.c"),
                    *sorted(map(str, model.glob("*.c"))), "-o", str(exe)], check=True, capture_output=True, text=True)
    ids = re.search(r"ES_MODEL_ID_BYTES\s+\{([^}]*)\}", files["es_model.h"]).group(1)
    D, C = sk.n_inputs, sk.n_outputs
    boot = p.decode_stream(b"\x00" + subprocess.run([str(exe)], input=b"", capture_output=True, timeout=60).stdout)
    assert len(boot) == 1 and boot[0].cmd == p.ES_MSG_BOOT and boot[0].seq == 0
    info = p.unpack_hello(boot[0].body)                           # max_batch is the firmware's choice; the rest is fixed
    assert info == p.HelloInfo(version=p.ES_PROTO_VERSION, model_id=bytes(int(v, 16) for v in ids.split(",")),
                               n_inputs=D, n_outputs=C, n_tables=sk.n_tables, n_bits=sk.n_bits, n_hashbits=sk.n_hyperplanes,
                               counter_kind=p.ES_COUNTER_NONE, max_batch=info.max_batch, core="host")
    assert 1 <= info.max_batch == p.batch_limit(info)             # the largest batch whose request and reply fit
    rng = np.random.default_rng(22)

    def rows(n):
        return rng.integers(-128, 128, (n, D)).astype(np.int8)

    # the request stream, as pieces that each end with one 0x00 (so a RESET's position is known)
    pieces = [b"noise before sync\xff\x00"]
    for i in range(4000):
        seq, k = int(rng.integers(256)), rng.random()
        if k < 0.25:
            cmd, body = p.ES_CMD_INFER, rows(1).tobytes()
        elif k < 0.45:
            n = int(rng.choice([0, info.max_batch + 1, 255])) if rng.random() < 0.1 else int(rng.integers(1, info.max_batch + 1))
            cmd, body = p.ES_CMD_BATCH, (bytes([n]) + rows(max(n, 1)).tobytes()[:n * D])[:p.ES_PROTO_MAX_BODY]
            if rng.random() < 0.05:
                body = body[:-1]
        elif k < 0.55:
            cmd, body = p.ES_CMD_DEBUG, rows(1).tobytes()
        elif k < 0.6:
            cmd, body = p.ES_CMD_HELLO, b""
        elif k < 0.62:
            cmd, body = p.ES_CMD_RESET, b""
        elif k < 0.65:
            cmd, body = p.ES_CMD_STACK, b""
        elif k < 0.7:                                             # wrong lengths, empty BATCH, unknown commands
            cmd = int(rng.choice([p.ES_CMD_HELLO, p.ES_CMD_INFER, p.ES_CMD_DEBUG, p.ES_CMD_RESET, p.ES_CMD_STACK,
                                  p.ES_CMD_BATCH, p.ES_CMD_LOAD, p.ES_CMD_RUN, 0x00, 0x09, 0x81, 0xFF]))
            body = rows(1).tobytes()[:int(rng.integers(0, D + 2))] if cmd != p.ES_CMD_BATCH else b""
        else:
            cmd, body = p.ES_CMD_INFER, rows(1).tobytes()
        frame = bytearray(p.encode_frame(cmd, seq, body))
        if k >= 0.9:                                              # corrupt: flip, truncate, garbage, too short
            j = rng.integers(4)
            if j == 0:
                frame[int(rng.integers(len(frame) - 1))] ^= 1 << int(rng.integers(8))
            elif j == 1:
                frame = frame[:int(rng.integers(1, len(frame)))] + b"\x00"
            elif j == 2:
                frame = bytearray(rng.integers(1, 256, int(rng.choice([3, 40, 1200])), dtype=np.uint8).tobytes()) + b"\x00"
            else:
                frame = p.cobs_encode(bytes(frame[1:int(rng.integers(2, 5))])) + b"\x00"
        frame = bytes(frame)
        while 0 in frame[:-1]:                                    # a flipped bit may have made a 0x00: split there
            z = frame.index(0)
            pieces.append(frame[:z + 1])
            frame = frame[z + 1:]
        pieces.append(frame)

    # what the Python twin says the device sends
    want = [p.encode_frame(p.ES_MSG_BOOT, 0, p.pack_hello(info))]
    dec = p.FrameDecoder()
    inferred = False                                              # since the last boot
    loaded = p.InputBuffer(D)                                     # LOAD / RUN / DEBUG of the loaded input (no LOAD
    reasons = Counter()                                           # here: tests/test_multiframe.py covers them)
    for piece in pieces:
        for ev in dec.feed(piece):
            if isinstance(ev, p.FrameError):
                want.append(p.encode_frame(p.ES_MSG_NAK, ev.seq, p.pack_nak(ev.reason)))
                reasons[ev.reason] += 1
                continue
            err = p.request_error(ev.cmd, ev.body, D, info.max_batch)
            r = ev.cmd | p.ES_REPLY
            if err is None and ev.cmd == p.ES_CMD_LOAD:
                err = loaded.load(ev.body)
                err = None if isinstance(err, bytes) else err
                assert err is not None, "no valid LOAD in this stream"
            elif err is None and (ev.cmd == p.ES_CMD_RUN or ev.cmd == p.ES_CMD_DEBUG and not ev.body):
                got = loaded.run(ev.body) if ev.cmd == p.ES_CMD_RUN else loaded.loaded()
                assert isinstance(got, int), "no complete input in this stream"
                err = got
            if err is not None:
                want.append(p.encode_frame(p.ES_MSG_NAK, ev.seq, p.pack_nak(err)))
                reasons[err] += 1
            elif ev.cmd == p.ES_CMD_HELLO:
                want.append(p.encode_frame(r, ev.seq, p.pack_hello(info)))
            elif ev.cmd == p.ES_CMD_INFER:
                x = p.unpack_infer(ev.body, D)[None]
                want.append(p.encode_frame(r, ev.seq, p.pack_infer_reply(0, S.int_scores(sk, x)[0])))
                inferred = True
            elif ev.cmd == p.ES_CMD_BATCH:
                x = p.unpack_batch(ev.body, D)
                want.append(p.encode_frame(r, ev.seq, p.pack_batch_reply(np.zeros(len(x)), S.int_scores(sk, x))))
                inferred = True
            elif ev.cmd == p.ES_CMD_STACK:
                want.append((ev.seq, inferred))                   # the peak comes from the device, checked below
            elif ev.cmd == p.ES_CMD_DEBUG:
                x = p.unpack_debug(ev.body, D)[None]
                want.append(p.encode_frame(r, ev.seq, p.pack_debug_reply(S.int_hash_bits(sk, x)[0],
                                                                         S.int_buckets(sk, x)[0])))
            elif ev.cmd == p.ES_CMD_RESET:
                want.append(p.encode_frame(r, ev.seq, b""))
                want.append(p.encode_frame(p.ES_MSG_BOOT, 0, p.pack_hello(info)))
                dec = p.FrameDecoder()                            # after boot: noise until the next 0x00
                inferred = False
                loaded.reset()
    stream = b"".join(pieces)
    got = subprocess.run([str(exe)], input=stream, capture_output=True, timeout=120)
    assert got.returncode == 0, got.stderr.decode()[-2000:]
    got_frames = p.decode_stream(b"\x00" + got.stdout)
    assert len(got_frames) == len(want)
    peaks = Counter()
    for i, (g, w) in enumerate(zip(got_frames, want)):
        if isinstance(w, tuple):                                  # STACK: 0 until a boot's first inference, then > 0
            seq, inferred = w
            assert isinstance(g, p.Frame) and (g.cmd, g.seq) == (p.ES_CMD_STACK | p.ES_REPLY, seq), f"reply {i}: {g}"
            st = p.unpack_stack_reply(g.body)
            assert st.window == 1024 and not st.full and (st.peak > 0) == inferred, f"reply {i}: {st}"
            peaks[st.peak] += 1
            want[i] = p.encode_frame(g.cmd, seq, p.pack_stack_reply(st))
    assert peaks[0] > 0 and len(peaks) == 2, peaks                    # one model, one code path: one peak
    want_frames = p.decode_stream(b"\x00" + b"".join(want))
    assert len(got_frames) == len(want_frames)
    for i, (g, w) in enumerate(zip(got_frames, want_frames)):
        assert g == w, f"reply {i}: firmware {g} vs twin {w}"
    assert got.stdout == b"".join(want)
    print(f"firmware core vs twin: {len(stream)} bytes in, {len(want_frames)} replies byte-identical; NAKs by reason "
          f"{dict(sorted(reasons.items()))}; STACK replies {dict(peaks)} (peak bytes: count)")
    assert set(reasons) >= set(range(1, 8)) | {p.ES_NAK_INCOMPLETE}
