"""A fake edgesketch device for harness tests: the device side of docs/protocol.md on a TCP socket, in a thread.

`DeviceModel` is the device as pure functions (no I/O): it frames with edgesketch.protocol (the twin of es_proto.c),
applies the dispatch rules of protocol.request_error, the input transfer of protocol.InputBuffer (LOAD, RUN, DEBUG
of the loaded input) and the stream of protocol.StreamState (STREAM): the twin of es_app.c, and answers with the integer reference of a sketch
(edgesketch.sketch.int_scores) and a cost function. tests/test_multiframe.py compares it byte for byte with a host
build of es_app.c. `FakeDevice` serves a DeviceModel (with a made-up deterministic cost) and behaves like firmware
under QEMU with `-serial tcp:...,server=on,wait=on`: it sends BOOT when a client connects, RESET drops everything it
has received (the loaded input too), waits `boot_delay` and sends BOOT again.
"""
from __future__ import annotations

import socket
import threading
import time

import numpy as np

from edgesketch import protocol as P
from edgesketch import sketch as S


def fake_cost(xq: np.ndarray) -> np.ndarray:
    """Deterministic stand-in for a cycle count: 1000 + sum |x| per sample."""
    xq = np.asarray(xq, np.int64).reshape(-1, np.asarray(xq).shape[-1])
    return 1000 + np.abs(xq).sum(1)


def fake_push_cost(sample: np.ndarray) -> int:
    """Deterministic stand-in for the count of one stream push: 10 + sum |x| of the sample."""
    return 10 + int(np.abs(np.asarray(sample, np.int64)).sum())


def fake_hop_costs(xq_samples: np.ndarray, length: int, hop: int) -> np.ndarray:
    """What a fake device reports for every hop of a stream pushed from position 0 in one go: the pushes since the
    previous scores (the first window: its length)."""
    c = np.array([fake_push_cost(s) for s in np.asarray(xq_samples)], np.int64)
    W = (len(c) - length) // hop + 1 if len(c) >= length else 0
    cs = np.concatenate([[0], np.cumsum(c)])
    ends = length + hop * np.arange(W)
    return cs[ends] - cs[np.maximum(ends - np.where(np.arange(W) == 0, length, hop), 0)]


class DeviceModel:
    """What a device sends back for each frame it receives (docs/protocol.md), as pure functions.

    cost(xq [n, D]) -> costs [n]; real_max_batch: NAK batches above it although HELLO reports more (firmware that
    disagrees with itself); has_debug=False: DEBUG is an unknown command (a board with too little RAM for it)."""

    def __init__(self, sk: S.Sketch, info: P.HelloInfo, cost=fake_cost, real_max_batch: int | None = None,
                 has_debug: bool = True, counts: dict | None = None, push_cost=fake_push_cost):
        self.sk, self.info, self.cost = sk, info, cost
        self.real_max_batch = info.max_batch if real_max_batch is None else real_max_batch
        self.has_debug = has_debug
        self.inputs = P.InputBuffer(info.n_inputs)
        self.stream = (P.StreamState(info.stream_len, info.stream_hop, info.stream_channels, info.n_outputs,
                                     lambda w: S.int_scores(sk, w[None])[0], push_cost) if info.streams else None)
        self.stack = P.StackInfo(peak=100, window=1024, full=False)   # what STACK answers
        self.counts = counts if counts is not None else {}
        for k in ("requests", "naks", "samples", "loads", "runs", "streams"):
            self.counts.setdefault(k, 0)

    def boot(self) -> bytes:
        """Start-up: the input transfer and the stream are forgotten; the BOOT frame."""
        self.inputs.reset()
        if self.stream is not None:
            self.stream.reset()
        return P.encode_frame(P.ES_MSG_BOOT, 0, P.pack_hello(self.info))

    def decoder(self) -> P.FrameDecoder:
        """The receiver after boot: unsynced, with the device's ES_PROTO_MAX_BODY."""
        return P.FrameDecoder(max_body=self.info.max_body)

    def handle(self, ev) -> tuple[bytes, bool]:
        """One receiver event -> (bytes to send, reset afterwards)."""
        if isinstance(ev, P.Frame) and ev.cmd == P.ES_CMD_RESET and not ev.body:
            self.counts["requests"] += 1               # the reply leaves the UART before the reset
            return P.encode_frame(P.ES_CMD_RESET | P.ES_REPLY, ev.seq, b""), True
        return self.reply(ev), False

    def _nak(self, reason: int, seq: int) -> bytes:
        self.counts["naks"] += 1
        return P.encode_frame(P.ES_MSG_NAK, seq, P.pack_nak(reason))

    def _result(self, cmd: int, seq: int, x: np.ndarray) -> bytes:
        self.counts["samples"] += 1
        return P.encode_frame(cmd | P.ES_REPLY, seq, P.pack_infer_reply(int(self.cost(x)[0]), S.int_scores(self.sk, x)[0]))

    def reply(self, ev) -> bytes:
        if isinstance(ev, P.FrameError):
            return self._nak(ev.reason, ev.seq)
        self.counts["requests"] += 1
        info = self.info
        if ev.cmd == P.ES_CMD_DEBUG and not self.has_debug:
            return self._nak(P.ES_NAK_UNKNOWN, ev.seq)
        err = P.request_error(ev.cmd, ev.body, info.n_inputs, self.real_max_batch, info.stream_channels)
        if err is not None:
            return self._nak(err, ev.seq)
        reply = ev.cmd | P.ES_REPLY
        if ev.cmd == P.ES_CMD_HELLO:
            return P.encode_frame(reply, ev.seq, P.pack_hello(info))
        if ev.cmd == P.ES_CMD_INFER:
            return self._result(ev.cmd, ev.seq, P.unpack_infer(ev.body, info.n_inputs)[None])
        if ev.cmd == P.ES_CMD_BATCH:
            x = P.unpack_batch(ev.body, info.n_inputs)
            if 1 + len(x) * (4 + 4 * info.n_outputs) > info.max_body:
                return self._nak(P.ES_NAK_BATCH, ev.seq)
            self.counts["samples"] += len(x)
            return P.encode_frame(reply, ev.seq, P.pack_batch_reply(self.cost(x), S.int_scores(self.sk, x)))
        if ev.cmd == P.ES_CMD_LOAD:
            got = self.inputs.load(ev.body)
            if isinstance(got, int):
                return self._nak(got, ev.seq)
            self.counts["loads"] += 1
            return P.encode_frame(reply, ev.seq, got)
        if ev.cmd == P.ES_CMD_RUN:
            got = self.inputs.run(ev.body)
            if isinstance(got, int):
                return self._nak(got, ev.seq)
            self.counts["runs"] += 1
            return self._result(ev.cmd, ev.seq, got[None])
        if ev.cmd == P.ES_CMD_STACK:
            return P.encode_frame(reply, ev.seq, P.pack_stack_reply(self.stack))
        if ev.cmd == P.ES_CMD_STREAM:
            got = self.stream.push(ev.body)
            if isinstance(got, int):
                return self._nak(got, ev.seq)
            self.counts["streams"] += 1
            return P.encode_frame(reply, ev.seq, got)
        if ev.cmd == P.ES_CMD_DEBUG:
            x = self.inputs.loaded() if not ev.body else P.unpack_debug(ev.body, info.n_inputs)
            if isinstance(x, int):
                return self._nak(x, ev.seq)
            x = x[None]
            return P.encode_frame(reply, ev.seq, P.pack_debug_reply(S.int_hash_bits(self.sk, x)[0],
                                                                    S.int_buckets(self.sk, x)[0]))
        return self._nak(P.ES_NAK_UNKNOWN, ev.seq)


class FakeDevice:
    def __init__(self, sk: S.Sketch | None = None, *, model_id: bytes = bytes.fromhex("5ca1ab1e00c0ffee"),
                 max_batch: int | None = 8, core: str = "fake-m4", boot_delay: float = 0.05, reply_delay: float = 0.0,
                 send_boot: bool = True, echo_twice: bool = False, real_max_batch: int | None = None,
                 max_body: int = P.ES_PROTO_MAX_BODY, has_debug: bool = True, hop: int | None = None):
        """echo_twice: send every reply twice (stale duplicates). real_max_batch: NAK batches above this although
        HELLO reports max_batch (firmware that disagrees with itself). max_body: the device's ES_PROTO_MAX_BODY (inputs
        larger than a frame need LOAD); max_batch None: what firmware with that max_body reports (0 when an input does
        not fit a BATCH). hop: the device streams (STREAM) with this hop (sketch.stream_plan)."""
        self.sk = sk if sk is not None else S.random_sketch(D=16, C=4, L=8, K=4, seed=1)
        plan = S.stream_plan(self.sk, hop) if hop else None
        if max_batch is None:
            rec = 4 + 4 * self.sk.n_outputs
            max_batch = min(255, (max_body - 1) // self.sk.n_inputs, (max_body - 1) // rec)
        self.info = P.HelloInfo(version=P.ES_PROTO_VERSION, model_id=model_id, n_inputs=self.sk.n_inputs,
                                n_outputs=self.sk.n_outputs, n_tables=self.sk.n_tables, n_bits=self.sk.n_bits,
                                n_hashbits=self.sk.n_hyperplanes, counter_kind=P.ES_COUNTER_CYCLES,
                                max_batch=max_batch, core=core, max_body=max_body,
                                stream_hop=plan.hop if plan else 0, stream_len=plan.length if plan else 0,
                                stream_channels=plan.channels if plan else 0)
        self.boot_delay = boot_delay
        self.reply_delay = reply_delay
        self.send_boot = send_boot
        self.echo_twice = echo_twice
        self.counts = {"requests": 0, "naks": 0, "boots": 0, "resets": 0, "connections": 0, "samples": 0}
        self.model = DeviceModel(self.sk, self.info, fake_cost, real_max_batch, has_debug, self.counts)
        self.stack = self.model.stack
        self._srv = socket.create_server(("127.0.0.1", 0))
        self._srv.settimeout(0.05)
        self.port = self._srv.getsockname()[1]
        self.url = f"socket://127.0.0.1:{self.port}"
        self.addr = ("127.0.0.1", self.port)
        self._stop = threading.Event()
        self._reset_now = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fake-device", daemon=True)

    # ------------------------------------------------------------ life cycle
    def __enter__(self) -> "FakeDevice":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._srv.close()

    def trigger_reset(self) -> None:
        """Reset now, as if the reset button were pressed: pending input is lost, then BOOT."""
        self._reset_now.set()

    # ------------------------------------------------------------ device side
    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._srv.accept()
            except (socket.timeout, OSError):
                continue
            self.counts["connections"] += 1
            with conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.settimeout(0.02)
                try:
                    self._session(conn)
                except OSError:
                    pass

    def _boot(self, conn: socket.socket) -> P.FrameDecoder:
        """Start-up: input received meanwhile is lost, the receiver waits for its first 0x00, BOOT goes out."""
        end = time.monotonic() + self.boot_delay
        while time.monotonic() < end:
            try:
                if not conn.recv(4096):
                    raise OSError("closed")
            except socket.timeout:
                pass
        self.counts["boots"] += 1
        boot = self.model.boot()
        if self.send_boot:
            conn.sendall(boot)
        return self.model.decoder()

    def _session(self, conn: socket.socket) -> None:
        dec = self.model.decoder()
        boot = self.model.boot()
        if self.send_boot:
            self.counts["boots"] += 1
            conn.sendall(boot)
        while not self._stop.is_set():
            if self._reset_now.is_set():
                self._reset_now.clear()
                self.counts["resets"] += 1
                dec = self._boot(conn)
            try:
                data = conn.recv(4096)
            except socket.timeout:
                continue
            if not data:
                return
            for ev in dec.feed(data):
                if self._reset_now.is_set():
                    break                          # a reset loses whatever was still queued
                out, reset = self.model.handle(ev)
                if self.reply_delay:
                    time.sleep(self.reply_delay)
                conn.sendall(out * 2 if self.echo_twice and not reset else out)
                if reset:                          # RESET: the reply has gone out, now reboot
                    self.counts["resets"] += 1
                    dec = self._boot(conn)
                    break
