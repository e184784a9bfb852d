"""Talk to a device over a serial line (pyserial): handshake, stream inputs, retry and resync, compare arrays.

The same code opens a real board (`/dev/ttyUSB0`, `COM3`) and an emulated one (`socket://127.0.0.1:PORT`). It
knows frames and ports (edgesketch.protocol), not how a sketch was trained: `run` returns the device's int32
scores and costs, and `verify_report` compares them with expected arrays.

Robustness (one request in flight at a time, each with a seq in 1..255):
  - every read has a deadline (`timeout` seconds per attempt); a request is sent again, with the same seq, after a
    timeout, a NAK for it (or a NAK with seq 0, "could not read"), a bad frame or a malformed reply, up to
    `retries` times; then `UserError` with a one-line message;
  - garbage on the line costs at most one bad frame: the COBS receiver resyncs at the next 0x00; every frame the
    host sends is preceded by 0x00, which ends any partial frame the device holds;
  - replies with another seq or command (late answers to an earlier attempt) are discarded;
  - a BOOT frame means the device reset: its model id is checked and the pending request is sent again; a timeout
    triggers a HELLO probe, so a device that reset silently is re-handshaken too. `run` stores each answer at its
    own index only once, so samples are never lost or duplicated, whatever happens on the line;
  - an input larger than a frame (protocol.infer_fits) goes in LOAD pieces with a transfer id (xfer, 1..255, a new
    one per input and per restart), then RUN xfer. A resent or duplicated LOAD piece is acknowledged again without
    change, so resending is safe; a NAK "out of order" or "input incomplete", a BOOT or a timeout during a transfer
    means the device may not hold the input any more, and the input starts again from offset 0 with a new xfer
    (`LinkStats.restarts`). A LOAD reply must confirm exactly the bytes sent so far, and RUN runs only the transfer
    it names, so a stale or repeated frame never mixes two inputs.
"""
from __future__ import annotations

import copy
import logging
import time
from collections import deque
from dataclasses import dataclass, fields
from typing import Callable

import numpy as np
import serial

from . import protocol as P
from .errors import UserError

log = logging.getLogger(__name__)

DEFAULT_BAUDRATE = 115200


@dataclass
class LinkStats:
    """What happened on the line; `Device.stats` accumulates, `Device.last_run_stats` covers the last run()."""
    requests: int = 0       # distinct requests (not counting resends)
    frames_sent: int = 0    # frames written, resends and HELLO probes included
    retries: int = 0        # resends of a request
    timeouts: int = 0       # attempts that got no usable answer in time
    naks: int = 0           # NAKs for our requests (or with seq 0)
    bad_frames: int = 0     # frames that failed COBS/CRC/length checks, and malformed replies
    stale: int = 0          # well-formed frames for another seq or command, discarded
    boots: int = 0          # BOOT frames seen (device resets)
    probes: int = 0         # HELLO probes after a timeout
    restarts: int = 0       # inputs sent again from offset 0 in LOAD frames (the device lost or mixed the transfer),
                            # and streams started again a window before the scores due (STREAM)
    bytes_out: int = 0
    bytes_in: int = 0

    def since(self, before: "LinkStats") -> "LinkStats":
        return LinkStats(**{f.name: getattr(self, f.name) - getattr(before, f.name) for f in fields(self)})

    def summary(self) -> str:
        return ", ".join(f"{f.name} {getattr(self, f.name)}" for f in fields(self))


@dataclass
class StreamRun:
    """What Device.stream returns: for every window j (samples j * hop .. j * hop + length - 1 of the stream) the
    device's scores, the counter over its hop's pushes and whether those pushes filled a whole window (the stream's
    first window, or the first after a restart) rather than one hop."""
    scores: np.ndarray      # int32 [W, n_outputs]
    costs: np.ndarray       # int64 [W]
    fills: np.ndarray       # bool [W]
    length: int
    hop: int
    samples: int            # samples of the stream (N)


class _Restart(Exception):
    """Internal: the input transfer under way must start again from offset 0 with a new xfer."""


# the NAK reasons a device gives an intact request for the request itself: the same one twice is a disagreement
# between host and firmware, not line noise
_VERDICTS = (P.ES_NAK_LENGTH, P.ES_NAK_UNKNOWN, P.ES_NAK_BATCH, P.ES_NAK_TOO_MUCH)
# NAKs that mean the device does not hold the transfer the request belongs to
_LOST_TRANSFER = (P.ES_NAK_ORDER, P.ES_NAK_INCOMPLETE)


class Device:
    """A board running edgesketch firmware, behind a serial port or a pyserial URL.

        with Device("socket://127.0.0.1:4321", model_id=sketch_id) as dev:
            scores, costs = dev.run(xq_test, progress=lambda done, total: ...)
    """

    def __init__(self, port: str, *, model_id: bytes | str | None = None, baudrate: int = DEFAULT_BAUDRATE,
                 timeout: float = 1.0, retries: int = 5, open_timeout: float = 5.0, poll: float = 0.02):
        """port: a device path or pyserial URL. model_id: the expected id (8 bytes, or hex of at least 16 digits;
        None accepts any). timeout: seconds to wait for each reply. retries: resends before giving up.
        open_timeout: how long a refused socket:// connection is retried (an emulator that is still starting)."""
        if timeout <= 0 or retries < 0:
            raise UserError(f"timeout must be > 0 and retries >= 0 (got {timeout}, {retries})")
        self.port = port
        self.baudrate = baudrate
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.open_timeout = float(open_timeout)
        try:
            self.expected_id = None if model_id is None else P.model_id_bytes(model_id)
        except P.ProtocolError as e:
            raise UserError(f"bad expected model id: {e}") from None
        self.info: P.HelloInfo | None = None
        self.stats = LinkStats()
        self.last_run_stats = LinkStats()
        self._poll = min(float(poll), self.timeout)
        self._ser = None
        self._socket_like = False
        self._decoder = P.FrameDecoder()
        self._events: deque = deque()
        self._seq = 0
        self._xfer = 0
        self._sid = 0

    # ------------------------------------------------------------ port
    def open(self) -> "Device":
        """Open the port (no handshake; `hello` or any request does that)."""
        if self._ser is not None:
            return self
        deadline = time.monotonic() + self.open_timeout
        while True:
            try:
                self._ser = serial.serial_for_url(self.port, baudrate=self.baudrate, timeout=self._poll,
                                                  write_timeout=max(self.timeout, 1.0))
                break
            except (serial.SerialException, ValueError, OSError) as e:
                refused = "refused" in str(e).lower() and self.port.startswith("socket://")
                if not refused or time.monotonic() > deadline:
                    raise UserError(f"cannot open {self.port}: {e}") from None
                time.sleep(0.05)
        self._socket_like = type(self._ser).__module__.endswith("protocol_socket")
        # The host's receiver starts synced: a device frame already under way when the port opened then costs one
        # bad frame (and an immediate resend), where an unsynced receiver would drop the first whole reply.
        self._decoder.reset(synced=True)
        self._events.clear()
        return self

    def close(self) -> None:
        if self._ser is not None:
            try:
                self._ser.close()
            finally:
                self._ser = None

    def __enter__(self) -> "Device":
        self.open()
        try:
            self.hello()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _write(self, data: bytes) -> None:
        try:
            self._ser.write(data)
        except serial.SerialTimeoutException:
            raise UserError(f"writing to {self.port} timed out: the device stopped reading (is it hung?)") from None
        except (serial.SerialException, OSError) as e:
            raise UserError(f"lost the connection to {self.port}: {e}") from None
        self.stats.frames_sent += 1
        self.stats.bytes_out += len(data)

    def _read_some(self) -> bytes:
        """Whatever has arrived, waiting at most one poll interval for the first byte."""
        ser = self._ser
        try:
            data = ser.read(1)
            if data and ser.in_waiting:
                if self._socket_like:             # in_waiting is only 0/1 for socket://: drain without blocking
                    ser.timeout = 0
                    try:
                        data += ser.read(1 << 16)
                    finally:
                        ser.timeout = self._poll
                else:
                    data += ser.read(ser.in_waiting)
        except (serial.SerialException, OSError) as e:
            raise UserError(f"lost the connection to {self.port}: {e}") from None
        self.stats.bytes_in += len(data)
        return data

    # ------------------------------------------------------------ one request
    def _next_seq(self) -> int:
        self._seq = self._seq % 255 + 1           # 1..255: seq 0 is BOOT and "unreadable" NAKs
        return self._seq

    def _check_info(self, info: P.HelloInfo, where: str) -> None:
        if info.version != P.ES_PROTO_VERSION:
            raise UserError(f"device on {self.port} speaks protocol version {info.version}, this host speaks "
                            f"{P.ES_PROTO_VERSION}: rebuild and flash the firmware with this edgesketch")
        if self.expected_id is not None and info.model_id != self.expected_id:
            raise UserError(f"device on {self.port} runs model {info.model_id.hex()} but model "
                            f"{self.expected_id.hex()} was expected ({where}): build and flash the firmware for "
                            f"this sketch")
        if self.info is not None and (info.n_inputs, info.n_outputs) != (self.info.n_inputs, self.info.n_outputs):
            raise UserError(f"device on {self.port} changed shape after a reset ({self.info.n_inputs}->"
                            f"{self.info.n_outputs} became {info.n_inputs}->{info.n_outputs})")
        self.info = info

    def _await(self, seq: int, reply_cmd: int, parse: Callable[[bytes], object], timeout: float):
        """Wait for the reply to `seq`. Returns ("ok", value), ("nak", (reason, seq)) or (outcome, description) with
        outcome "timeout", "bad" or "boot". While waiting for HELLO a BOOT frame is an answer too (same body)."""
        deadline = time.monotonic() + timeout
        while True:
            while self._events:
                ev = self._events.popleft()
                if isinstance(ev, P.FrameError):
                    self.stats.bad_frames += 1
                    log.debug("%s: bad frame from device: %s", self.port, ev)
                    return "bad", f"bad frame from the device ({ev})"
                if ev.cmd == P.ES_MSG_BOOT:
                    self.stats.boots += 1
                    try:
                        info = P.unpack_hello(ev.body)
                    except P.ProtocolError as e:
                        self.stats.bad_frames += 1
                        return "bad", f"malformed BOOT frame ({e})"
                    self._check_info(info, "after a reset")
                    log.info("%s: device reset (BOOT frame)", self.port)
                    if reply_cmd == P.ES_CMD_HELLO | P.ES_REPLY:
                        return "ok", info
                    return "boot", "the device reset"
                if ev.cmd == P.ES_MSG_NAK and ev.seq in (seq, 0):
                    self.stats.naks += 1
                    return "nak", (ev.body[0] if len(ev.body) == 1 else 0, ev.seq)
                if ev.cmd == reply_cmd and ev.seq == seq:
                    try:
                        return "ok", parse(ev.body)
                    except P.ProtocolError as e:
                        self.stats.bad_frames += 1
                        return "bad", f"malformed {P.cmd_name(reply_cmd)} ({e})"
                self.stats.stale += 1
                log.debug("%s: discarded %s seq %d while waiting for seq %d", self.port, P.cmd_name(ev.cmd), ev.seq, seq)
            if time.monotonic() >= deadline:
                self.stats.timeouts += 1
                return "timeout", f"no reply within {timeout:g} s"
            data = self._read_some()
            if data:
                self._events.extend(self._decoder.feed(data))

    def _transact(self, cmd: int, body: bytes, parse: Callable[[bytes], object], probe: bool = True,
                  transfer: bool = False, lost: tuple = _LOST_TRANSFER):
        """Send one request until a valid reply comes (resending it as the module docstring says). transfer=True: a
        request of an input transfer (LOAD, RUN xfer, DEBUG of the loaded input, STREAM), which raises _Restart instead
        of resending after a BOOT, a timeout (after the HELLO probe) or a NAK in `lost` ("out of order" / "input
        incomplete"; a stream also "too much input": the device holds another stream, whose scores fall elsewhere)."""
        if self._ser is None:
            self.open()
        seq = self._next_seq()
        frame = b"\x00" + P.encode_frame(cmd, seq, body)
        self.stats.requests += 1
        name = P.cmd_name(cmd)
        verdicts: dict[int, int] = {}             # deterministic NAK reason -> how often, for this seq
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
                log.info("%s: resending %s seq %d (%s)", self.port, name, seq, last)
            self._write(frame)
            outcome, value = self._await(seq, cmd | P.ES_REPLY, parse, self.timeout)
            if outcome == "ok":
                return value
            if outcome == "nak":
                reason, nak_seq = value
                last = P.nak_name(reason)
                if transfer and nak_seq == seq and reason in lost:
                    raise _Restart(f"{name}: {last}")
                if nak_seq == seq and reason in _VERDICTS:
                    verdicts[reason] = verdicts.get(reason, 0) + 1
                    if verdicts[reason] >= 2:      # the same verdict twice on an intact frame: not line noise
                        raise UserError(f"device on {self.port} rejects {name} with {last}: the host and the firmware "
                                        f"disagree about the model or the protocol (rebuild and flash)")
            else:
                last = value
            if outcome == "timeout" and probe:
                self._probe()
            if transfer and outcome in ("timeout", "boot"):
                raise _Restart(f"{name}: {last}")
        raise UserError(f"no valid reply to {name} from {self.port} after {self.retries + 1} attempts (last: {last}); "
                        f"check the port, the baud rate and that the board runs edgesketch firmware")

    def _probe(self) -> None:
        """After a timeout: is the device there (maybe after a silent reset)? A HELLO reply re-handshakes."""
        self.stats.probes += 1
        seq = self._next_seq()
        self._write(b"\x00" + P.encode_frame(P.ES_CMD_HELLO, seq, b""))
        outcome, value = self._await(seq, P.ES_CMD_HELLO | P.ES_REPLY, P.unpack_hello, self.timeout)
        if outcome == "ok":
            self._check_info(value, "after a timeout")
            log.info("%s: device answers HELLO again", self.port)

    # ------------------------------------------------------------ commands
    def hello(self) -> P.HelloInfo:
        """Handshake: HELLO, check protocol version and model id. Returns (and stores in .info) the device facts."""
        info = self._transact(P.ES_CMD_HELLO, b"", P.unpack_hello, probe=False)
        self._check_info(info, "at HELLO")
        return info

    def _need_info(self) -> P.HelloInfo:
        return self.info if self.info is not None else self.hello()

    def _rows(self, xq, info: P.HelloInfo) -> np.ndarray:
        a = np.asarray(xq)
        if a.dtype != np.int8:
            if not np.issubdtype(a.dtype, np.integer) or (a.size and (a.min() < -128 or a.max() > 127)):
                raise UserError(f"inputs must be int8 (quantised), got {a.dtype}")
            a = a.astype(np.int8)
        a = a.reshape(len(a), -1) if a.ndim > 1 else a.reshape(1, -1)
        if a.shape[1] != info.n_inputs:
            raise UserError(f"inputs have {a.shape[1]} values per sample but the device's model takes {info.n_inputs}")
        return a

    def _next_xfer(self) -> int:
        self._xfer = self._xfer % 255 + 1         # 1..255: a device starts with transfer 0, holding nothing
        return self._xfer

    def _load_then(self, row: np.ndarray, cmd: int, body: Callable[[int], bytes], parse: Callable[[bytes], object]):
        """Send one input in LOAD pieces, then `cmd` with body(xfer); restart the whole input (new xfer) whenever the
        device may have lost it. Returns the parsed reply to `cmd`."""
        info = self.info
        pieces = P.load_pieces(info.n_inputs, info.max_body)
        data = row.tobytes()
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.restarts += 1
                log.info("%s: restarting the input transfer (%s)", self.port, last)
            xfer = self._next_xfer()
            try:
                for off, n in pieces:
                    got = self._transact(P.ES_CMD_LOAD, P.pack_load(xfer, off, data[off:off + n]), P.unpack_load_reply,
                                         transfer=True)
                    if got != (xfer, off + n):     # the device holds some other state: not our transfer
                        raise _Restart(f"LOAD reply says transfer {got[0]} holds {got[1]} bytes, expected {xfer} "
                                       f"holding {off + n}")
                return self._transact(cmd, body(xfer), parse, transfer=True)
            except _Restart as e:
                last = str(e)
        raise UserError(f"could not transfer one input to {self.port} in {self.retries + 1} attempts (last: {last}); "
                        f"check the link and that the board runs edgesketch firmware")

    def infer(self, xq, load: bool | None = None) -> tuple[int, np.ndarray]:
        """One int8 input [n_inputs] -> (cost, int32 scores [n_outputs]). By INFER when the input fits a frame, else
        (or with load=True) in LOAD frames and RUN."""
        info = self._need_info()
        row = self._rows(xq, info)
        if len(row) != 1:
            raise UserError(f"infer takes one input, got {len(row)} (use batch or run)")
        parse = lambda b: P.unpack_infer_reply(b, self.info.n_outputs)
        if load or (load is None and not P.infer_fits(info)):
            return self._load_then(row[0], P.ES_CMD_RUN, P.pack_run, parse)
        if not P.infer_fits(info):
            raise UserError(f"an input of {info.n_inputs} values does not fit one frame on this device "
                            f"(max_body {info.max_body}): leave load unset")
        return self._transact(P.ES_CMD_INFER, P.pack_infer(row[0]), parse)

    def batch(self, xq_rows) -> tuple[np.ndarray, np.ndarray]:
        """int8 inputs [n, n_inputs], 1 <= n <= batch_limit -> (uint32 costs [n], int32 scores [n, n_outputs])."""
        info = self._need_info()
        rows = self._rows(xq_rows, info)
        limit = P.batch_limit(info)
        if not 1 <= len(rows) <= limit:
            raise UserError(f"a batch carries 1..{limit} inputs on this device, got {len(rows)}")
        n = len(rows)
        return self._transact(P.ES_CMD_BATCH, P.pack_batch(rows),
                              lambda b: P.unpack_batch_reply(b, self.info.n_outputs, n))

    def debug(self, xq) -> tuple[np.ndarray, np.ndarray]:
        """One int8 input -> (bool hash bits, uint16 buckets): the model's first hash bits and buckets, as many as the
        device's reply holds (every one of a flat sketch; a prefix of a windowed one's, in es_debug_q's order). An input
        larger than a frame is loaded first (LOAD), then DEBUG with an empty body debugs it."""
        info = self._need_info()
        row = self._rows(xq, info)
        if len(row) != 1:
            raise UserError(f"debug takes one input, got {len(row)}")
        if not P.infer_fits(info):
            return self._load_then(row[0], P.ES_CMD_DEBUG, lambda xfer: b"", P.unpack_debug_reply)
        return self._transact(P.ES_CMD_DEBUG, P.pack_debug(row[0]), P.unpack_debug_reply)

    def stack(self) -> P.StackInfo:
        """Peak stack of es_predict_q over every call since start-up (or RESET), measured by painting on the device."""
        self._need_info()
        return self._transact(P.ES_CMD_STACK, b"", P.unpack_stack_reply)

    def stream(self, xq_samples, progress: Callable[[int, int], None] | None = None) -> StreamRun:
        """Stream int8 samples [N, C] through the device's stream (firmware of a model exported with a hop): the scores
        of every window j, samples j * hop .. j * hop + T - 1 (T, hop and C from HELLO), W = (N - T) // hop + 1 of them,
        and the counter over each hop's pushes. The samples go in STREAM frames that end where scores become ready
        (protocol.stream_pieces), each with the stream position of its first sample, under a stream id (sid, 1..255).
        A resent or duplicated frame is acknowledged without pushing anything twice; when the device may have lost the
        stream (a BOOT, a timeout, a NAK "out of order" or "too much input", or a reply that does not confirm exactly
        the samples sent and, at a window's end, its scores) the stream starts again under a new sid one window before
        the scores due, so every window's scores come from its own samples, once. progress(done, total) after every
        window."""
        info = self._need_info()
        if not info.streams:
            raise UserError(f"the firmware on {self.port} has no stream: export the model with a hop (hop=H), then flash "
                            f"it")
        T, h, C = info.stream_len, info.stream_hop, info.stream_channels
        a = np.asarray(xq_samples)
        if a.dtype != np.int8:
            if not np.issubdtype(a.dtype, np.integer) or (a.size and (a.min() < -128 or a.max() > 127)):
                raise UserError(f"stream samples must be int8 (quantised), got {a.dtype}")
            a = a.astype(np.int8)
        if a.ndim != 2 or a.shape[1] != C:
            raise UserError(f"stream samples have shape {a.shape}: the device's stream takes samples of {C} values, (N, {C})")
        if len(a) >= 2**32 - 1:
            raise UserError(f"a stream of {len(a):,} samples is beyond the protocol's 32-bit positions")
        W = (len(a) - T) // h + 1 if len(a) >= T else 0
        scores = np.zeros((W, info.n_outputs), np.int32)
        costs = np.zeros(W, np.int64)
        fills = np.zeros(W, bool)
        parse = lambda b: P.unpack_stream_reply(b, self.info.n_outputs)
        before = copy.copy(self.stats)
        sid, base, pos = None, 0, 0                 # the stream the device should hold: its id, first and next sample
        try:
            for j in range(W):
                end = T + j * h
                last = ""
                for attempt in range(self.retries + 1):
                    if sid is None or attempt:
                        if attempt:
                            self.stats.restarts += 1
                            log.info("%s: restarting the stream at window %d (%s)", self.port, j, last)
                        self._sid = self._sid % 255 + 1   # 1..255: a device starts holding stream 0
                        sid, base = self._sid, end - T
                        pos = base
                    try:
                        got = None
                        for p0, k in P.stream_pieces(pos, end, C, info.max_body):
                            got = self._transact(P.ES_CMD_STREAM, P.pack_stream(sid, p0, a[p0:p0 + k]), parse,
                                                 transfer=True, lost=(P.ES_NAK_ORDER, P.ES_NAK_TOO_MUCH, P.ES_NAK_INCOMPLETE))
                            if (got.sid, got.have) != (sid, p0 + k):
                                raise _Restart(f"STREAM reply says stream {got.sid} at {got.have}, expected {sid} at {p0 + k}")
                            pos = p0 + k
                        if got.at != end:
                            raise _Restart(f"STREAM reply has scores at {got.at}, expected them at {end}")
                        scores[j], costs[j], fills[j] = got.scores, got.cost, base == end - T
                        break
                    except _Restart as e:
                        last = str(e)
                else:
                    raise UserError(f"could not stream window {j} to {self.port} in {self.retries + 1} attempts (last: "
                                    f"{last}); check the link and that the board runs edgesketch firmware")
                if progress is not None:
                    progress(j + 1, W)
        finally:
            self.last_run_stats = self.stats.since(before)
        return StreamRun(scores, costs, fills, T, h, len(a))

    def reset(self, boot_timeout: float | None = None) -> P.HelloInfo:
        """RESET the device, wait for its BOOT frame (or for HELLO to work again) and re-handshake."""
        self._transact(P.ES_CMD_RESET, b"", lambda b: None, probe=False)
        deadline = time.monotonic() + (boot_timeout if boot_timeout is not None else max(self.timeout, 2.0))
        while time.monotonic() < deadline:
            while self._events:
                ev = self._events.popleft()
                if isinstance(ev, P.Frame) and ev.cmd == P.ES_MSG_BOOT:
                    self.stats.boots += 1
                    try:
                        self._check_info(P.unpack_hello(ev.body), "after RESET")
                    except P.ProtocolError:
                        pass
                    return self.hello()
            data = self._read_some()
            if data:
                self._events.extend(self._decoder.feed(data))
        return self.hello()

    def run(self, xq_all, batch: int | None = None,
            progress: Callable[[int, int], None] | None = None, load: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Stream a whole int8 test set [N, ...] through the device, `batch` inputs per BATCH request (default:
        the most the device allows; 1 uses INFER). Inputs larger than a frame (batch_limit 0), or every input with
        load=True, go one at a time in LOAD frames and RUN. Returns (int32 scores [N, n_outputs], int64 cost per
        sample [N]). progress(done, total) is called after every answered request. Resends, resets and resyncs are
        handled per request (and per input transfer), so every sample is answered exactly once."""
        info = self._need_info()
        rows = self._rows(xq_all, info) if len(np.asarray(xq_all)) else np.zeros((0, info.n_inputs), np.int8)
        limit = P.batch_limit(info)
        per = max(limit, 1) if batch is None else int(batch)
        if per < 1:
            raise UserError(f"batch must be at least 1, got {batch}")
        per = min(per, max(limit, 1))
        use_infer = per == 1 or limit < 1 or bool(load)
        n = len(rows)
        scores = np.zeros((n, info.n_outputs), np.int32)
        costs = np.zeros(n, np.int64)
        before = copy.copy(self.stats)
        i = 0
        try:
            while i < n:
                if use_infer:
                    c, s = self.infer(rows[i], load=load)
                    scores[i], costs[i] = s, c
                    i += 1
                else:
                    j = min(n, i + per)
                    c, s = self.batch(rows[i:j])
                    scores[i:j], costs[i:j] = s, c
                    i = j
                if progress is not None:
                    progress(i, n)
        finally:
            self.last_run_stats = self.stats.since(before)
        return scores, costs


# ---------------------------------------------------------------- comparing arrays (pure)
@dataclass
class VerifyReport:
    n: int
    n_outputs: int
    n_mismatch: int                 # samples whose scores differ anywhere
    mismatch_idx: list[int]         # the first few of them
    max_abs_diff: int
    argmax_agreement: float         # share of samples whose argmax agrees (1.0 when bit-exact)
    accuracy: float | None          # device argmax vs integer labels, if labels were given
    expected_accuracy: float | None
    cost_min: int | None
    cost_median: float | None
    cost_mean: float | None
    cost_max: int | None

    @property
    def bit_exact(self) -> bool:
        return self.n_mismatch == 0

    def summary(self) -> str:
        s = (f"{self.n} samples: " + ("bit-exact" if self.bit_exact else
             f"{self.n_mismatch} differ (first at {self.mismatch_idx}, max |diff| {self.max_abs_diff})"))
        if self.accuracy is not None:
            s += f", device accuracy {self.accuracy:.4f} (expected {self.expected_accuracy:.4f})"
        if self.cost_mean is not None:
            s += f", cost min {self.cost_min} median {self.cost_median:g} max {self.cost_max}"
        return s


def verify_report(expected_scores, device_scores, costs=None, labels=None, max_examples: int = 5) -> VerifyReport:
    """Compare the device's integer scores with the expected ones (the integer reference), sample by sample."""
    e = np.asarray(expected_scores, np.int64)
    d = np.asarray(device_scores, np.int64)
    if e.ndim == 1:
        e = e[:, None]
    if d.ndim == 1:
        d = d[:, None]
    if e.shape != d.shape:
        raise UserError(f"expected scores have shape {e.shape} but the device returned {d.shape}")
    diff = np.abs(e - d)
    bad = np.flatnonzero(diff.max(1, initial=0) > 0)
    agree = float((e.argmax(1) == d.argmax(1)).mean()) if len(e) and e.shape[1] else 1.0
    acc = exp_acc = None
    if labels is not None:
        lab = np.asarray(labels).reshape(-1)
        if len(lab) != len(d):
            raise UserError(f"{len(lab)} labels for {len(d)} samples")
        if np.issubdtype(lab.dtype, np.integer) and e.shape[1] > 1:
            acc = float((d.argmax(1) == lab).mean()) if len(lab) else 0.0
            exp_acc = float((e.argmax(1) == lab).mean()) if len(lab) else 0.0
    cmin = cmed = cmean = cmax = None
    if costs is not None and len(np.asarray(costs)):
        c = np.asarray(costs, np.int64)
        cmin, cmed, cmean, cmax = int(c.min()), float(np.median(c)), float(c.mean()), int(c.max())
    return VerifyReport(n=len(e), n_outputs=e.shape[1], n_mismatch=len(bad), mismatch_idx=bad[:max_examples].tolist(),
                        max_abs_diff=int(diff.max(initial=0)), argmax_agreement=agree, accuracy=acc,
                        expected_accuracy=exp_acc, cost_min=cmin, cost_median=cmed, cost_mean=cmean, cost_max=cmax)
