"""The serial protocol (docs/protocol.md): pure functions, no I/O. The host twin of firmware/core/es_proto.c.

Framing: raw = cmd, seq, body, CRC-16/CCITT-FALSE (little-endian) -> COBS -> 0x00. `encode_frame` gives the exact
bytes `es_tx_stream` / `es_tx_encode` give, and `FrameDecoder` gives the same frames and NAK reasons as `es_rx_push`
for any byte stream (tests/test_protocol.py runs both on the same random streams). Bodies are packed and unpacked here
with numpy; a malformed body raises `ProtocolError`. `InputBuffer` is the twin of the device's input transfer (LOAD,
RUN, DEBUG of the loaded input in es_app.c; tests/test_multiframe.py drives both with the same frames), and
`load_pieces` plans how a host splits one input into LOAD frames.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

# ---------------------------------------------------------------- constants, named as in es_proto.h
ES_PROTO_VERSION = 4
ES_PROTO_MAX_BODY = 1024
ES_PROTO_MAX_RAW = ES_PROTO_MAX_BODY + 6                          # cmd, seq, body, crc16, 2 spare
ES_PROTO_MAX_WIRE = ES_PROTO_MAX_RAW + ES_PROTO_MAX_RAW // 254 + 2  # COBS overhead + delimiter


def max_raw(max_body: int = ES_PROTO_MAX_BODY) -> int:
    """ES_PROTO_MAX_RAW of a receiver built with this ES_PROTO_MAX_BODY (boards with little RAM set a smaller one)."""
    return max_body + 6


def max_wire(max_body: int = ES_PROTO_MAX_BODY) -> int:
    """ES_PROTO_MAX_WIRE of a receiver built with this ES_PROTO_MAX_BODY."""
    return max_raw(max_body) + max_raw(max_body) // 254 + 2

ES_CMD_HELLO = 0x01
ES_CMD_INFER = 0x02
ES_CMD_BATCH = 0x03
ES_CMD_DEBUG = 0x04
ES_CMD_RESET = 0x05
ES_CMD_STACK = 0x06
ES_CMD_LOAD = 0x07
ES_CMD_RUN = 0x08
ES_CMD_STREAM = 0x09
ES_REPLY = 0x80
ES_MSG_BOOT = 0xB0
ES_MSG_NAK = 0x7F

ES_NAK_CRC = 1
ES_NAK_LENGTH = 2
ES_NAK_UNKNOWN = 3
ES_NAK_TOO_LONG = 4
ES_NAK_COBS = 5
ES_NAK_BATCH = 6
ES_NAK_SHORT = 7
ES_NAK_ORDER = 8          # LOAD: neither a piece already held, nor offset 0, nor the current transfer's next piece;
                          # STREAM: neither samples already pushed, nor a new stream, nor the next samples
ES_NAK_TOO_MUCH = 9       # LOAD: the piece would pass n_inputs; STREAM: the frame would pass the next scores
ES_NAK_INCOMPLETE = 10    # RUN (or DEBUG of the loaded input): no complete input of that transfer is loaded

# counter kinds in the HELLO body
ES_COUNTER_NONE = 0
ES_COUNTER_CYCLES = 1
ES_COUNTER_INSTRUCTIONS = 2

CMD_NAMES = {ES_CMD_HELLO: "HELLO", ES_CMD_INFER: "INFER", ES_CMD_BATCH: "BATCH", ES_CMD_DEBUG: "DEBUG",
             ES_CMD_RESET: "RESET", ES_CMD_STACK: "STACK", ES_CMD_LOAD: "LOAD", ES_CMD_RUN: "RUN", ES_CMD_STREAM: "STREAM",
             ES_MSG_BOOT: "BOOT",
             ES_MSG_NAK: "NAK"}
CMD_NAMES.update({c | ES_REPLY: n + " reply" for c, n in list(CMD_NAMES.items()) if c < ES_REPLY})
NAK_NAMES = {ES_NAK_CRC: "bad CRC", ES_NAK_LENGTH: "wrong body length", ES_NAK_UNKNOWN: "unknown command",
             ES_NAK_TOO_LONG: "frame too long", ES_NAK_COBS: "bad COBS encoding", ES_NAK_BATCH: "batch count out of range",
             ES_NAK_SHORT: "frame too short", ES_NAK_ORDER: "out of order", ES_NAK_TOO_MUCH: "too much input",
             ES_NAK_INCOMPLETE: "input incomplete"}
COUNTER_NAMES = {ES_COUNTER_NONE: "none", ES_COUNTER_CYCLES: "cycles", ES_COUNTER_INSTRUCTIONS: "instructions"}

MODEL_ID_BYTES = 8


class ProtocolError(ValueError):
    """A body or frame that does not follow docs/protocol.md."""


def cmd_name(cmd: int) -> str:
    return CMD_NAMES.get(cmd, f"0x{cmd:02x}")


def nak_name(reason: int) -> str:
    return f"NAK {reason} ({NAK_NAMES.get(reason, 'unknown reason')})"


# ---------------------------------------------------------------- CRC and COBS
def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no xorout. crc16(b"123456789") == 0x29B1."""
    t = _CRC_TABLE
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ t[(crc >> 8) ^ b]
    return crc


def cobs_encode(data: bytes) -> bytes:
    """COBS without the delimiter. A final block of 254 bytes gets no empty block after it (as es_tx_encode)."""
    out = bytearray()
    groups = bytes(data).split(b"\x00")
    for j, g in enumerate(groups):
        k = 0
        while len(g) - k >= 254:
            out.append(0xFF)
            out += g[k:k + 254]
            k += 254
        if k < len(g) or j < len(groups) - 1 or not g:
            out.append(len(g) - k + 1)
            out += g[k:]
    return bytes(out)


def cobs_decoded_len(wire: bytes) -> int | None:
    """Length that a zero-free COBS frame decodes to, or None if a code byte points past its end."""
    i, n, length = 0, len(wire), 0
    while i < n:
        code = wire[i]
        if code == 0 or code > n - i:
            return None
        length += code - 1
        i += code
        if code != 0xFF and i < n:
            length += 1
    return length


def cobs_decode(wire: bytes) -> bytes:
    """Decode one COBS frame (no delimiter). Raises ProtocolError on a zero byte or a code past the end."""
    wire = bytes(wire)
    if 0 in wire or cobs_decoded_len(wire) is None:
        raise ProtocolError("bad COBS encoding")
    out = bytearray()
    i, n = 0, len(wire)
    while i < n:
        code = wire[i]
        out += wire[i + 1:i + code]
        i += code
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


def encode_frame(cmd: int, seq: int, body: bytes = b"") -> bytes:
    """cmd, seq, body -> COBS(raw + CRC) + 0x00: the exact bytes es_tx_encode writes."""
    body = bytes(body)
    if not (0 <= cmd <= 255 and 0 <= seq <= 255):
        raise ProtocolError(f"cmd {cmd} and seq {seq} must be bytes")
    if len(body) > ES_PROTO_MAX_BODY:
        raise ProtocolError(f"body of {len(body)} bytes exceeds the {ES_PROTO_MAX_BODY}-byte limit")
    raw = bytes((cmd, seq)) + body
    return cobs_encode(raw + struct.pack("<H", crc16(raw))) + b"\x00"


# ---------------------------------------------------------------- the receiver
@dataclass(frozen=True)
class Frame:
    cmd: int
    seq: int
    body: bytes


@dataclass(frozen=True)
class FrameError:
    reason: int   # ES_NAK_CRC, ES_NAK_TOO_LONG, ES_NAK_COBS or ES_NAK_SHORT
    seq: int      # the bad frame's seq, 0 if it could not be read

    def __str__(self) -> str:
        return f"{nak_name(self.reason)}, seq {self.seq}"


class FrameDecoder:
    """Incremental receiver, the twin of es_rx_push: feed(bytes) -> [Frame | FrameError, ...].

    Bytes before the first 0x00 are noise; empty frames are idle filler; a frame whose encoding outgrows
    ES_PROTO_MAX_WIRE bytes is ES_NAK_TOO_LONG; then bad COBS, decoded length > ES_PROTO_MAX_RAW (TOO_LONG),
    under 4 bytes (SHORT), bad CRC. One error per malformed frame, then the next frame is read normally."""

    def __init__(self, synced: bool = False, max_body: int = ES_PROTO_MAX_BODY):
        """max_body: the receiver's ES_PROTO_MAX_BODY (a device built with a smaller one, for the twin tests)."""
        self.synced = synced
        self.max_raw, self.max_wire = max_raw(max_body), max_wire(max_body)
        self._wire = bytearray()
        self._overflow = False

    def reset(self, synced: bool = False) -> None:
        self.synced = synced
        self._wire.clear()
        self._overflow = False

    def _append(self, chunk: bytes) -> None:
        room = self.max_wire - len(self._wire)
        if len(chunk) > room:
            self._wire += chunk[:room]
            self._overflow = True
        else:
            self._wire += chunk

    def _finish(self) -> Frame | FrameError | None:
        wire, overflow = bytes(self._wire), self._overflow
        self._wire.clear()
        self._overflow = False
        if overflow:
            return FrameError(ES_NAK_TOO_LONG, 0)
        if not wire:
            return None
        n = cobs_decoded_len(wire)
        if n is None:
            return FrameError(ES_NAK_COBS, 0)
        if n > self.max_raw:
            return FrameError(ES_NAK_TOO_LONG, 0)
        raw = cobs_decode(wire)
        seq = raw[1] if len(raw) >= 2 else 0
        if len(raw) < 4:
            return FrameError(ES_NAK_SHORT, seq)
        if crc16(raw[:-2]) != raw[-2] | raw[-1] << 8:
            return FrameError(ES_NAK_CRC, seq)
        return Frame(raw[0], seq, raw[2:-2])

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        events: list[Frame | FrameError] = []
        data = bytes(data)
        start, n = 0, len(data)
        while start <= n:
            end = data.find(0, start)
            stop = n if end < 0 else end
            if self.synced and stop > start:
                self._append(data[start:stop])
            if end < 0:
                break
            if not self.synced:
                self.synced = True
                self._wire.clear()
                self._overflow = False
            else:
                ev = self._finish()
                if ev is not None:
                    events.append(ev)
            start = end + 1
        return events


def decode_stream(data: bytes, synced: bool = False) -> list[Frame | FrameError]:
    """All frames and errors in one byte string (a fresh FrameDecoder)."""
    return FrameDecoder(synced).feed(data)


# ---------------------------------------------------------------- HELLO / BOOT
_HELLO_FIXED = struct.Struct("<B8sHHHBHBH")


@dataclass(frozen=True)
class HelloInfo:
    """The HELLO reply body (also the BOOT body)."""
    version: int
    model_id: bytes         # 8 bytes
    n_inputs: int
    n_outputs: int
    n_tables: int
    n_bits: int
    n_hashbits: int
    counter_kind: int       # ES_COUNTER_NONE / CYCLES / INSTRUCTIONS
    max_batch: int
    core: str               # e.g. "cortex-m4"
    max_body: int = 1024    # the most body bytes a frame may carry (ES_PROTO_MAX_BODY); firmware before it was
                            # reported sends no such field and has 1024
    stream_hop: int = 0     # version 4: samples between two scores of the firmware's stream (0: no STREAM)
    stream_len: int = 0     # ... samples its window holds
    stream_channels: int = 0  # ... values a sample holds

    @property
    def streams(self) -> bool:
        return self.stream_hop > 0

    @property
    def model_id_hex(self) -> str:
        return self.model_id.hex()

    @property
    def counter_name(self) -> str:
        return COUNTER_NAMES.get(self.counter_kind, f"unknown ({self.counter_kind})")


def model_id_bytes(model_id: bytes | str) -> bytes:
    """The 8 bytes a device reports, from raw bytes or a hex id (the sketch id: only its first 8 bytes count)."""
    if isinstance(model_id, str):
        try:
            model_id = bytes.fromhex(model_id)
        except ValueError:
            raise ProtocolError(f"model id {model_id!r} is not hex") from None
    model_id = bytes(model_id)
    if len(model_id) < MODEL_ID_BYTES:
        raise ProtocolError(f"model id {model_id.hex()} is shorter than {MODEL_ID_BYTES} bytes")
    return model_id[:MODEL_ID_BYTES]


_HELLO_STREAM = struct.Struct("<HHH")     # version 4: stream hop, window length, channels


def pack_hello(info: HelloInfo, with_max_body: bool = True, with_stream: bool | None = None) -> bytes:
    """The HELLO body; with_max_body=False gives the body of firmware from before max_body was reported;
    with_stream (default: version >= 4) appends the stream fields of version 4."""
    core = info.core.encode("ascii")
    if len(core) > 255:
        raise ProtocolError("core name longer than 255 bytes")
    if not 1 <= info.max_body <= ES_PROTO_MAX_BODY:
        raise ProtocolError(f"max_body {info.max_body} is outside 1..{ES_PROTO_MAX_BODY}")
    stream = info.version >= 4 if with_stream is None else with_stream
    if stream and not with_max_body:
        raise ProtocolError("the stream fields follow max_body")
    return _HELLO_FIXED.pack(info.version, model_id_bytes(info.model_id), info.n_inputs, info.n_outputs,
                             info.n_tables, info.n_bits, info.n_hashbits, info.counter_kind, info.max_batch) \
        + bytes((len(core),)) + core + (struct.pack("<H", info.max_body) if with_max_body else b"") \
        + (_HELLO_STREAM.pack(info.stream_hop, info.stream_len, info.stream_channels) if stream else b"")


def unpack_hello(body: bytes) -> HelloInfo:
    """The HELLO (or BOOT) body: with or without the trailing max_body (docs/protocol.md), and with the stream fields
    of version 4 (hop, window length, channels)."""
    body = bytes(body)
    k = _HELLO_FIXED.size
    if len(body) < k + 1 or len(body) not in (k + 1 + body[k], k + 3 + body[k], k + 3 + _HELLO_STREAM.size + body[k]):
        raise ProtocolError(f"HELLO body of {len(body)} bytes does not match its layout")
    f = _HELLO_FIXED.unpack_from(body)
    end = k + 1 + body[k]
    try:
        core = body[k + 1:end].decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError("HELLO core name is not ASCII") from None
    max_body = struct.unpack_from("<H", body, end)[0] if len(body) > end else ES_PROTO_MAX_BODY
    if not 1 <= max_body <= ES_PROTO_MAX_BODY:
        raise ProtocolError(f"HELLO max_body {max_body} is outside 1..{ES_PROTO_MAX_BODY}")
    hop, length, channels = _HELLO_STREAM.unpack_from(body, end + 2) if len(body) > end + 2 else (0, 0, 0)
    if hop and not (length and channels):
        raise ProtocolError(f"HELLO stream of hop {hop} has a window of {length} samples of {channels} values")
    return HelloInfo(f[0], f[1], *f[2:], core=core, max_body=max_body, stream_hop=hop, stream_len=length,
                     stream_channels=channels)


def batch_limit(info: HelloInfo) -> int:
    """Most inputs one BATCH may carry: max_batch, and both the request and its reply must fit the device's max_body.
    0 when one input does not fit a BATCH body: inputs then go in LOAD frames (load_pieces)."""
    by_req = (info.max_body - 1) // max(info.n_inputs, 1)
    by_reply = (info.max_body - 1) // (4 + 4 * info.n_outputs)
    return max(0, min(info.max_batch, by_req, by_reply, 255))


# ---------------------------------------------------------------- INFER / DEBUG requests
def _int8_row(xq, n_inputs: int | None = None) -> np.ndarray:
    a = np.asarray(xq)
    if a.dtype != np.int8:
        if not np.issubdtype(a.dtype, np.integer) or a.size and (a.min() < -128 or a.max() > 127):
            raise ProtocolError(f"inputs must be int8, got {a.dtype}")
        a = a.astype(np.int8)
    a = a.reshape(-1)
    if n_inputs is not None and a.size != n_inputs:
        raise ProtocolError(f"input has {a.size} values, the model takes {n_inputs}")
    return a


def pack_infer(xq) -> bytes:
    """int8[n_inputs] -> INFER (or DEBUG) request body."""
    return _int8_row(xq).tobytes()


pack_debug = pack_infer


def unpack_infer(body: bytes, n_inputs: int) -> np.ndarray:
    if len(body) != n_inputs:
        raise ProtocolError(f"INFER body of {len(body)} bytes, expected {n_inputs}")
    return np.frombuffer(bytes(body), np.int8).copy()


unpack_debug = unpack_infer


def pack_infer_reply(cost: int, scores) -> bytes:
    return struct.pack("<I", int(cost) & 0xFFFFFFFF) + np.asarray(scores, "<i4").reshape(-1).tobytes()


def unpack_infer_reply(body: bytes, n_outputs: int) -> tuple[int, np.ndarray]:
    """-> (cost, int32[n_outputs] scores)."""
    if len(body) != 4 + 4 * n_outputs:
        raise ProtocolError(f"INFER reply of {len(body)} bytes, expected {4 + 4 * n_outputs}")
    return struct.unpack_from("<I", body)[0], np.frombuffer(bytes(body), "<i4", n_outputs, 4).astype(np.int32)


# ---------------------------------------------------------------- BATCH
def pack_batch(xq_rows) -> bytes:
    """int8[n, n_inputs] -> BATCH request body (u8 n, then the rows)."""
    a = np.asarray(xq_rows)
    if a.ndim != 2 or not 1 <= a.shape[0] <= 255:
        raise ProtocolError(f"a batch is 1..255 rows of inputs, got shape {a.shape}")
    return bytes((a.shape[0],)) + _int8_row(a).tobytes()


def unpack_batch(body: bytes, n_inputs: int) -> np.ndarray:
    if len(body) < 1 or len(body) != 1 + body[0] * n_inputs:
        raise ProtocolError(f"BATCH body of {len(body)} bytes does not match its count")
    return np.frombuffer(bytes(body), np.int8, body[0] * n_inputs, 1).reshape(body[0], n_inputs).copy()


def pack_batch_reply(costs, scores) -> bytes:
    costs = np.asarray(costs).reshape(-1)
    scores = np.asarray(scores).reshape(len(costs), -1)
    rec = np.zeros(len(costs), np.dtype([("cost", "<u4"), ("scores", "<i4", (scores.shape[1],))]))
    rec["cost"] = costs.astype(np.int64) & 0xFFFFFFFF
    rec["scores"] = scores
    return bytes((len(costs),)) + rec.tobytes()


def unpack_batch_reply(body: bytes, n_outputs: int, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """-> (uint32[n] costs, int32[n, n_outputs] scores). If n is given the reply must carry exactly n results."""
    rec = 4 + 4 * n_outputs
    if len(body) < 1 or len(body) != 1 + body[0] * rec or (n is not None and body[0] != n):
        raise ProtocolError(f"BATCH reply of {len(body)} bytes does not match its count"
                            + (f" (expected {n} results)" if n is not None else ""))
    a = np.frombuffer(bytes(body), np.dtype([("cost", "<u4"), ("scores", "<i4", (n_outputs,))]), body[0], 1)
    return a["cost"].astype(np.uint32), a["scores"].astype(np.int32).reshape(body[0], n_outputs)


# ---------------------------------------------------------------- DEBUG reply
def pack_debug_reply(bits, buckets) -> bytes:
    bits = np.asarray(bits).reshape(-1).astype(bool)
    buckets = np.asarray(buckets).reshape(-1)
    return struct.pack("<H", bits.size) + np.packbits(bits, bitorder="little").tobytes() \
        + struct.pack("<H", buckets.size) + buckets.astype("<u2").tobytes()


def unpack_debug_reply(body: bytes) -> tuple[np.ndarray, np.ndarray]:
    """-> (bool[n_hashbits] hash bits, uint16[n_tables] buckets)."""
    body = bytes(body)
    if len(body) < 2:
        raise ProtocolError("DEBUG reply too short")
    p = struct.unpack_from("<H", body)[0]
    nb = math.ceil(p / 8)
    if len(body) < 4 + nb:
        raise ProtocolError("DEBUG reply too short for its hash bits")
    lt = struct.unpack_from("<H", body, 2 + nb)[0]
    if len(body) != 4 + nb + 2 * lt:
        raise ProtocolError(f"DEBUG reply of {len(body)} bytes does not match its counts")
    bits = np.unpackbits(np.frombuffer(body, np.uint8, nb, 2), bitorder="little")[:p].astype(bool)
    return bits, np.frombuffer(body, "<u2", lt, 4 + nb).astype(np.uint16)


# ---------------------------------------------------------------- STACK reply
_STACK = struct.Struct("<HHB")


@dataclass(frozen=True)
class StackInfo:
    """The STACK reply: the peak stack of es_predict_q, measured by painting (docs/protocol.md)."""
    peak: int       # bytes below sp at the call to the deepest word any call since start-up overwrote
    window: int     # bytes painted below sp before each call; 0: this firmware does not paint
    full: bool      # some call overwrote its whole window: peak is a lower bound

    @property
    def measured(self) -> bool:
        return self.window > 0


def pack_stack_reply(info: StackInfo) -> bytes:
    return _STACK.pack(info.peak, info.window, int(info.full))


def unpack_stack_reply(body: bytes) -> StackInfo:
    if len(body) != _STACK.size:
        raise ProtocolError(f"STACK reply of {len(body)} bytes, expected {_STACK.size}")
    peak, window, full = _STACK.unpack(bytes(body))
    if full > 1:
        raise ProtocolError(f"STACK reply flag {full}, expected 0 or 1")
    return StackInfo(peak, window, bool(full))


# ---------------------------------------------------------------- NAK
def pack_nak(reason: int) -> bytes:
    return bytes((reason,))


def unpack_nak(body: bytes) -> int:
    if len(body) != 1:
        raise ProtocolError(f"NAK body of {len(body)} bytes, expected 1")
    return body[0]


# ---------------------------------------------------------------- LOAD / RUN (inputs larger than a frame)
LOAD_HEADER = 3           # u8 xfer, u16 offset


def pack_load(xfer: int, offset: int, data) -> bytes:
    """LOAD request body: u8 xfer, u16 offset, then the piece (1 or more int8 input bytes)."""
    data = _int8_row(data).tobytes() if not isinstance(data, (bytes, bytearray)) else bytes(data)
    if not 0 <= xfer <= 255 or not 0 <= offset <= 0xFFFF or not data:
        raise ProtocolError(f"LOAD needs xfer 0..255, offset 0..65535 and at least one byte (got {xfer}, {offset}, "
                            f"{len(data)} bytes)")
    return struct.pack("<BH", xfer, offset) + data


def unpack_load(body: bytes) -> tuple[int, int, bytes]:
    """-> (xfer, offset, data)."""
    body = bytes(body)
    if len(body) < LOAD_HEADER + 1:
        raise ProtocolError(f"LOAD body of {len(body)} bytes, expected at least {LOAD_HEADER + 1}")
    xfer, offset = struct.unpack_from("<BH", body)
    return xfer, offset, body[LOAD_HEADER:]


def pack_load_reply(xfer: int, have: int) -> bytes:
    return struct.pack("<BH", xfer, have)


def unpack_load_reply(body: bytes) -> tuple[int, int]:
    """-> (xfer, have): the device's transfer and how many of its bytes it holds, in order."""
    if len(body) != 3:
        raise ProtocolError(f"LOAD reply of {len(body)} bytes, expected 3")
    return struct.unpack("<BH", bytes(body))


def pack_run(xfer: int) -> bytes:
    """RUN request body: u8 xfer. The reply (RUN | ES_REPLY) is laid out as INFER's: unpack_infer_reply."""
    if not 0 <= xfer <= 255:
        raise ProtocolError(f"xfer {xfer} is not a byte")
    return bytes((xfer,))


def load_limit(max_body: int) -> int:
    """The most input bytes one LOAD frame carries on a device with this max_body."""
    return max_body - LOAD_HEADER


def infer_fits(info: HelloInfo) -> bool:
    """One input fits an INFER body (else it goes in LOAD pieces, then RUN)."""
    return info.n_inputs <= info.max_body


def load_pieces(n_inputs: int, max_body: int) -> list[tuple[int, int]]:
    """(offset, size) of the LOAD frames one input of n_inputs bytes takes: as few frames as fit max_body, of nearly
    equal sizes (the same split for every input, so a resent piece always matches the one held)."""
    per = load_limit(max_body)
    if per < 1 or n_inputs < 1 or n_inputs > 0xFFFF:
        raise ProtocolError(f"cannot split {n_inputs} inputs into LOAD frames of {max_body} body bytes")
    return _even(0, n_inputs, per)


def _even(start: int, n: int, per: int) -> list[tuple[int, int]]:
    """(start, size) of the fewest pieces of at most `per` that cover start .. start + n - 1, of nearly equal sizes."""
    k = -(-n // per)
    base, extra = divmod(n, k)
    out, pos = [], start
    for i in range(k):
        m = base + (i < extra)
        out.append((pos, m))
        pos += m
    return out


class InputBuffer:
    """The device's input buffer and transfer state (es_app.c: es_input, es_xfer, es_have): the rules of LOAD, RUN and
    DEBUG with an empty body, after their lengths have passed `request_error`. Pure: a device model (tests/fakedevice.py)
    sends what it returns.

        load(body) -> LOAD reply body (bytes) or a NAK reason (int)
        run(body)  -> the complete int8 input to run (np.ndarray) or a NAK reason (int)
        loaded()   -> the complete input (DEBUG with an empty body) or ES_NAK_INCOMPLETE
        reset()    -> the state after a (re)boot: transfer 0, nothing held
    """

    def __init__(self, n_inputs: int):
        if not 1 <= n_inputs <= 0xFFFF:
            raise ProtocolError(f"n_inputs {n_inputs} is outside 1..65535")
        self.n_inputs = n_inputs
        self.buf = bytearray(n_inputs)
        self.reset()

    def reset(self) -> None:
        self.xfer = 0
        self.have = 0

    @property
    def complete(self) -> bool:
        return self.have == self.n_inputs

    def load(self, body: bytes) -> bytes | int:
        xfer, off, data = unpack_load(body)
        n = len(data)
        if not (xfer == self.xfer and off + n <= self.have):      # not a piece already held: start or append
            if off != 0 and not (xfer == self.xfer and off == self.have):
                return ES_NAK_ORDER
            if off + n > self.n_inputs:
                return ES_NAK_TOO_MUCH
            self.buf[off:off + n] = data
            self.xfer, self.have = xfer, off + n
        return pack_load_reply(self.xfer, self.have)

    def run(self, body: bytes) -> np.ndarray | int:
        if len(body) != 1:
            raise ProtocolError(f"RUN body of {len(body)} bytes, expected 1")
        if body[0] != self.xfer or not self.complete:
            return ES_NAK_INCOMPLETE
        return np.frombuffer(bytes(self.buf), np.int8).copy()

    def loaded(self) -> np.ndarray | int:
        return np.frombuffer(bytes(self.buf), np.int8).copy() if self.complete else ES_NAK_INCOMPLETE


# ---------------------------------------------------------------- STREAM (a window hopping over a stream of samples)
STREAM_HEADER = 5         # u8 sid, u32 pos
_STREAM_REPLY = struct.Struct("<BIII")     # sid, have, at, cost; then i32[n_outputs] scores


def pack_stream(sid: int, pos: int, samples) -> bytes:
    """STREAM request body: u8 sid, u32 pos (the stream position of the first sample), then the samples (int8, channels
    values each, at least one sample)."""
    data = _int8_row(samples).tobytes() if not isinstance(samples, (bytes, bytearray)) else bytes(samples)
    if not 0 <= sid <= 255 or not 0 <= pos <= 0xFFFFFFFF or not data:
        raise ProtocolError(f"STREAM needs sid 0..255, pos 0..2^32-1 and at least one sample (got {sid}, {pos}, "
                            f"{len(data)} bytes)")
    return struct.pack("<BI", sid, pos) + data


def unpack_stream(body: bytes, channels: int) -> tuple[int, int, bytes]:
    """-> (sid, pos, samples as bytes: channels per sample)."""
    body = bytes(body)
    if len(body) < STREAM_HEADER + channels or (len(body) - STREAM_HEADER) % channels:
        raise ProtocolError(f"STREAM body of {len(body)} bytes: expected 5 + a multiple of {channels} (at least one sample)")
    sid, pos = struct.unpack_from("<BI", body)
    return sid, pos, body[STREAM_HEADER:]


@dataclass(frozen=True)
class StreamReply:
    """The STREAM reply: the device's stream and its latest scores."""
    sid: int                # the stream the device holds
    have: int               # the stream position after its last sample: samples pushed since position 0
    at: int                 # the stream position at which `scores` became ready (0: none since the stream started)
    cost: int               # the counter over the pushes of that hop (the first window: every push that filled it)
    scores: np.ndarray      # int32 [n_outputs]: the scores of the window ending at sample at - 1


def pack_stream_reply(sid: int, have: int, at: int, cost: int, scores) -> bytes:
    return _STREAM_REPLY.pack(sid, have, at, int(cost) & 0xFFFFFFFF) + np.asarray(scores, "<i4").reshape(-1).tobytes()


def unpack_stream_reply(body: bytes, n_outputs: int) -> StreamReply:
    body = bytes(body)
    if len(body) != _STREAM_REPLY.size + 4 * n_outputs:
        raise ProtocolError(f"STREAM reply of {len(body)} bytes, expected {_STREAM_REPLY.size + 4 * n_outputs}")
    sid, have, at, cost = _STREAM_REPLY.unpack_from(body)
    if at > have:
        raise ProtocolError(f"STREAM reply: scores at {at} past the stream's end {have}")
    return StreamReply(sid, have, at, cost, np.frombuffer(body, "<i4", n_outputs, _STREAM_REPLY.size).astype(np.int32))


def stream_limit(max_body: int, channels: int) -> int:
    """The most samples one STREAM frame carries on a device with this max_body."""
    return (max_body - STREAM_HEADER) // channels


def stream_pieces(start: int, end: int, channels: int, max_body: int) -> list[tuple[int, int]]:
    """(pos, samples) of the STREAM frames that carry samples start .. end - 1: as few as fit max_body, of nearly
    equal sizes. A host ends a frame at every position where scores become ready (a frame never passes one)."""
    per = stream_limit(max_body, channels)
    if per < 1 or end <= start:
        raise ProtocolError(f"cannot split samples {start}..{end} of {channels} values into STREAM frames of {max_body} "
                            f"body bytes")
    return _even(start, end - start, per)


class StreamState:
    """The device's stream (es_app.c: es_stream, es_sid, es_sbase, es_shave, ...): the rules of STREAM after its length
    passed `request_error`, as a pure twin. `score(window)` gives the int32 scores of one window (int8 [length *
    channels], oldest sample first: sketch.int_scores of it); `cost(sample)` what the device counts for one push.

        push(body) -> STREAM reply body (bytes) or a NAK reason (int)
        reset()    -> the state after a (re)boot: stream 0 at position 0, nothing pushed

    Rules (docs/protocol.md), in order, no NAK changing anything: (1) sid is the stream held and every sample was
    pushed already (base <= pos, pos + k <= have): nothing changes; (2) another sid starts that stream at pos; (3) the
    stream held at pos == have takes the next samples; (4) anything else: NAK 8. Before (2) and (3) push anything: a
    frame that would pass the next scores (k > samples until them) or position 2^32 - 1: NAK 9. Every reply is the
    state: sid, have, at (where the latest scores became ready), their hop's cost and the scores."""

    def __init__(self, length: int, hop: int, channels: int, n_outputs: int, score, cost=lambda sample: 0):
        if length < 1 or hop < 1 or channels < 1:
            raise ProtocolError(f"a stream needs a window, a hop and channels (got {length}, {hop}, {channels})")
        self.length, self.hop, self.channels, self.n_outputs = length, hop, channels, n_outputs
        self.score, self.cost = score, cost
        self.reset()

    def reset(self) -> None:
        self.sid, self.base, self.have, self.at = 0, 0, 0, 0
        self.until, self.hop_cost, self.last_cost = self.length, 0, 0
        self.scores = np.zeros(self.n_outputs, np.int32)
        self.window = bytearray()

    def reply(self) -> bytes:
        return pack_stream_reply(self.sid, self.have, self.at, self.last_cost, self.scores)

    def push(self, body: bytes) -> bytes | int:
        sid, pos, data = unpack_stream(body, self.channels)
        k = len(data) // self.channels
        if sid == self.sid and self.base <= pos <= self.have and k <= self.have - pos:
            return self.reply()                                      # pushed already: a resent or duplicated frame
        fresh = sid != self.sid
        if not fresh and pos != self.have:
            return ES_NAK_ORDER
        if k > (self.length if fresh else self.until) or k > 0xFFFFFFFF - pos:
            return ES_NAK_TOO_MUCH
        if fresh:
            self.reset()
            self.sid, self.base, self.have = sid, pos, pos
        C, T = self.channels, self.length
        for i in range(k):
            sample = data[i * C:(i + 1) * C]
            self.window = (self.window + sample)[-T * C:]
            self.hop_cost += int(self.cost(np.frombuffer(sample, np.int8)))
            self.have += 1
            self.until -= 1
            if self.until == 0:
                self.until = self.hop
                self.at, self.last_cost, self.hop_cost = self.have, self.hop_cost & 0xFFFFFFFF, 0
                self.scores = np.asarray(self.score(np.frombuffer(bytes(self.window), np.int8)), np.int32).reshape(-1)
        return self.reply()


# ---------------------------------------------------------------- dispatch checks (device side)
def request_error(cmd: int, body: bytes, n_inputs: int, max_batch: int, stream_channels: int = 0) -> int | None:
    """The NAK reason a device gives a well-framed request for its length alone, or None if the dispatcher goes on
    (docs/protocol.md): unknown command -> ES_NAK_UNKNOWN (STREAM too on firmware without a stream: stream_channels
    0); BATCH count outside 1..max_batch -> ES_NAK_BATCH; any other size -> ES_NAK_LENGTH. LOAD, RUN and DEBUG with an
    empty body then follow `InputBuffer`, STREAM `StreamState`."""
    n = len(body)
    if cmd == ES_CMD_STREAM:
        if not stream_channels:
            return ES_NAK_UNKNOWN
        return None if n >= STREAM_HEADER + stream_channels and (n - STREAM_HEADER) % stream_channels == 0 \
            else ES_NAK_LENGTH
    if cmd in (ES_CMD_HELLO, ES_CMD_RESET, ES_CMD_STACK):
        return None if n == 0 else ES_NAK_LENGTH
    if cmd == ES_CMD_INFER:
        return None if n == n_inputs else ES_NAK_LENGTH
    if cmd == ES_CMD_DEBUG:
        return None if n in (0, n_inputs) else ES_NAK_LENGTH
    if cmd == ES_CMD_LOAD:
        return None if n >= LOAD_HEADER + 1 else ES_NAK_LENGTH
    if cmd == ES_CMD_RUN:
        return None if n == 1 else ES_NAK_LENGTH
    if cmd == ES_CMD_BATCH:
        if n < 1:
            return ES_NAK_LENGTH
        if not 1 <= body[0] <= max_batch:
            return ES_NAK_BATCH
        return None if n == 1 + body[0] * n_inputs else ES_NAK_LENGTH
    return ES_NAK_UNKNOWN
