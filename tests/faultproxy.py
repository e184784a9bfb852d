"""A fault-injecting TCP proxy for harness tests: pyserial (socket://) <-> proxy <-> device (fake device or QEMU).

It forwards traffic one frame at a time (up to and including each 0x00) and, with a seeded random generator per
direction, flips bits, drops bytes, injects bursts of garbage (zeros included) and duplicates frames: sent twice in a
row (`dup`) or sent again after 1..4 later frames of the same direction (`dup_delayed`: a late copy, as a
retransmitting link or a glitching buffer gives); each copy meets the per-byte faults on its own. It can also reset
the device mid-run: in the middle of the host's k-th frame (k in `reset_at`) it sends the device a RESET frame of its
own, so the device NAKs the first half, resets, and misses the rest (its receiver waits for a 0x00 after boot): that
request is lost. With `swallow_boot` everything the device sends from then up to and including its BOOT frame is
hidden, so the host sees replies stop instead of a BOOT. `counts` records every fault injected.
"""
from __future__ import annotations

import socket
import threading
import time

import numpy as np

from edgesketch import protocol as P

PROXY_SEQ = 0xE5        # the seq of the proxy's own RESET frames


class FaultProxy:
    def __init__(self, target: tuple[str, int], *, seed: int = 0, flip: float = 0.0, drop: float = 0.0,
                 garbage: float = 0.0, to_device: bool = True, to_host: bool = True, reset_at=(),
                 swallow_boot: bool = False, garbage_len: tuple[int, int] = (1, 24), cut_after: int | None = None,
                 dup: float = 0.0, dup_delayed: float = 0.0, dup_delay: tuple[int, int] = (1, 4)):
        """flip, drop, garbage: per-byte probabilities (garbage: of a burst inserted after the byte), applied in the
        directions enabled by to_device / to_host. dup, dup_delayed: per-frame probabilities of an immediate copy
        and of a late copy (sent after dup_delay[0]..dup_delay[1] later frames), same directions. reset_at: host frame
        numbers (1-based, HELLO included) before which the device gets a RESET. cut_after: after that many host frames
        nothing reaches the host any more (a device that died)."""
        self.target = target
        self.flip, self.drop, self.garbage = flip, drop, garbage
        self.to_device, self.to_host = to_device, to_host
        self.reset_at = set(reset_at)
        self.swallow_boot = swallow_boot
        self.garbage_len = garbage_len
        self.cut_after = cut_after
        self.dup, self.dup_delayed, self.dup_delay = dup, dup_delayed, dup_delay
        self._rng = {"d": np.random.default_rng([seed, 1]), "h": np.random.default_rng([seed, 2])}
        self._dup_rng = {"d": np.random.default_rng([seed, 3]), "h": np.random.default_rng([seed, 4])}
        self._late: dict[str, list[list]] = {"d": [], "h": []}    # [frames still to pass, the frame] per direction
        self.counts = {"flipped": 0, "dropped": 0, "garbage_bursts": 0, "garbage_bytes": 0, "resets_injected": 0,
                       "swallowed": 0, "duplicated": 0, "duplicated_late": 0, "host_frames": 0, "device_frames": 0,
                       "bytes_to_device": 0, "bytes_to_host": 0}
        self._lock = threading.Lock()
        self._swallow = 0
        self._srv = socket.create_server(("127.0.0.1", 0))
        self._srv.settimeout(0.05)
        self.port = self._srv.getsockname()[1]
        self.url = f"socket://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name="faultproxy-accept", daemon=True)

    def __enter__(self) -> "FaultProxy":
        self._acceptor.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for s in self._socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self._acceptor.join(5)
        for t in self._threads:
            t.join(5)
        self._srv.close()

    # ------------------------------------------------------------ plumbing
    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                host, _ = self._srv.accept()
            except (socket.timeout, OSError):
                continue
            dev = None
            deadline = time.monotonic() + 10
            while dev is None and time.monotonic() < deadline and not self._stop.is_set():
                try:
                    dev = socket.create_connection(self.target, timeout=1)
                except OSError:
                    time.sleep(0.05)
            if dev is None:
                host.close()
                continue
            for s in (host, dev):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.settimeout(0.05)
                self._socks.append(s)
            for name, src, dst in (("d", host, dev), ("h", dev, host)):
                t = threading.Thread(target=self._pump, args=(name, src, dst), name=f"faultproxy-{name}", daemon=True)
                self._threads.append(t)
                t.start()

    def _pump(self, direction: str, src: socket.socket, dst: socket.socket) -> None:
        buf = bytearray()
        while not self._stop.is_set():
            try:
                data = src.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            buf += data
            out = bytearray()
            while True:
                i = buf.find(0)
                if i < 0:
                    break
                chunk = bytes(buf[:i + 1])
                del buf[:i + 1]
                out += self._frame(direction, chunk, dst)
            try:
                if out:
                    dst.sendall(out)
            except OSError:
                break
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # ------------------------------------------------------------ faults
    def _frame(self, direction: str, chunk: bytes, dst: socket.socket) -> bytes:
        """One frame with its 0x00 (or a lone 0x00) -> the bytes to forward."""
        with self._lock:
            if direction == "d":
                if len(chunk) > 1:
                    self.counts["host_frames"] += 1
                    if self.counts["host_frames"] in self.reset_at:
                        self.counts["resets_injected"] += 1
                        if self.swallow_boot:
                            self._swallow += 1
                        half = len(chunk) // 2
                        dst.sendall(chunk[:half] + b"\x00" + P.encode_frame(P.ES_CMD_RESET, PROXY_SEQ))
                        chunk = chunk[half:]
                if not self.to_device:
                    self.counts["bytes_to_device"] += len(chunk)
                    return chunk
            else:
                if self.cut_after is not None and self.counts["host_frames"] >= self.cut_after:
                    return b""
                if len(chunk) > 1:
                    self.counts["device_frames"] += 1
                    if self._swallow:               # hide everything up to and including the BOOT frame
                        ev = P.decode_stream(b"\x00" + chunk)
                        self.counts["swallowed"] += 1
                        if ev and isinstance(ev[0], P.Frame) and ev[0].cmd == P.ES_MSG_BOOT:
                            self._swallow -= 1
                        return b""
                if not self.to_host:
                    self.counts["bytes_to_host"] += len(chunk)
                    return chunk
            out = self._mangle(direction, chunk)
            if len(chunk) > 1:
                out += self._duplicate(direction, chunk)
            self.counts["bytes_to_device" if direction == "d" else "bytes_to_host"] += len(out)
            return out

    def _duplicate(self, direction: str, chunk: bytes) -> bytes:
        """After one whole frame: its immediate copy (maybe), the late copies now due, and maybe a late copy queued."""
        if not (self.dup or self.dup_delayed or self._late[direction]):
            return b""
        rng, late, out = self._dup_rng[direction], self._late[direction], bytearray()
        if self.dup and rng.random() < self.dup:
            out += self._mangle(direction, chunk)
            self.counts["duplicated"] += 1
        for item in late:
            item[0] -= 1
        for item in [i for i in late if i[0] <= 0]:
            late.remove(item)
            out += self._mangle(direction, item[1])
            self.counts["duplicated_late"] += 1
        if self.dup_delayed and rng.random() < self.dup_delayed:
            late.append([int(rng.integers(self.dup_delay[0], self.dup_delay[1] + 1)), chunk])
        return bytes(out)

    def _mangle(self, direction: str, chunk: bytes) -> bytes:
        if not (self.flip or self.drop or self.garbage):
            return chunk
        rng = self._rng[direction]
        r = rng.random(len(chunk))
        g = rng.random(len(chunk))
        out = bytearray()
        for k, b in enumerate(chunk):
            if r[k] < self.drop:
                self.counts["dropped"] += 1
            elif r[k] < self.drop + self.flip:
                out.append(b ^ (1 << int(rng.integers(8))))
                self.counts["flipped"] += 1
            else:
                out.append(b)
            if g[k] < self.garbage:
                n = int(rng.integers(self.garbage_len[0], self.garbage_len[1] + 1))
                junk = rng.integers(0, 256, n, dtype=np.uint8)
                junk[rng.random(n) < 0.3] = rng.integers(1, 256)      # runs of one value, like a glitching line
                out += junk.tobytes()
                self.counts["garbage_bursts"] += 1
                self.counts["garbage_bytes"] += n
        return bytes(out)


def frame_pieces(cmd: int, body: bytes, rng, flip: float) -> list[bytes]:
    """One frame with a random sequence number (one bit flipped with probability `flip`: a damaged frame), cut after
    every 0x00 as a device's receiver may be fed it: each piece ends with its one 0x00."""
    frame = bytearray(P.encode_frame(cmd, int(rng.integers(256)), body))
    if rng.random() < flip:
        frame[int(rng.integers(len(frame) - 1))] ^= 1 << int(rng.integers(8))
    frame, pieces = bytes(frame), []
    while 0 in frame[:-1]:
        z = frame.index(0)
        pieces.append(frame[:z + 1])
        frame = frame[z + 1:]
    return pieces + [frame]
