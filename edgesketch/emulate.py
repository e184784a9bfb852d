"""Start, and always stop, QEMU for an emulated board; the firmware's UART becomes a local TCP socket.

    with emulate.qemu(board, elf) as url:           # board: a name or boards.Board; url == "socket://127.0.0.1:PORT"
        ser = serial.serial_for_url(url, timeout=2)

The guest starts when the first client connects, and pyserial's socket:// open() then calls reset_input_buffer(),
which can discard part or all of the BOOT frame sent at that moment: a host must not wait for BOOT after opening
the port, but send 0x00 + HELLO (edgesketch.harness does).

QEMU runs with `-serial tcp:127.0.0.1:PORT,server=on,wait=on,nodelay=on` (the guest waits for the first connection,
so nothing it sends is lost; nodelay avoids 40 ms Nagle/delayed-ACK stalls), `-display none -monitor none`, and
the board's `-icount shift=N,align=off,sleep=off`, so its counter reports exact instruction counts.

The QEMU started here is killed by its PID (and its process group, which it leads) when the block ends, on an
exception, on Ctrl-C, at interpreter exit (atexit) and, on Linux, when this process dies (PR_SET_PDEATHSIG).
"""
from __future__ import annotations

import atexit
import ctypes
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .boards import Board, load
from .errors import UserError
from .paths import firmware_dir

START_TIMEOUT = 30.0       # seconds for QEMU to listen on its port (it takes well under 1 s idle; a bench run
                           # sharing 2 cores with distils once took over 10 s for qemu-system-riscv32)
STOP_TIMEOUT = 3.0         # seconds between SIGTERM and SIGKILL
PORT_ATTEMPTS = 5          # another process may take the port between our probe and QEMU's bind

_live: dict[int, subprocess.Popen] = {}
_live_lock = threading.Lock()


class EmulatorUrl(str):
    """The pyserial URL of the emulated UART, "socket://127.0.0.1:PORT", with facts about the QEMU behind it."""
    pid: int
    port: int
    argv: list[str]
    board: Board
    elf: Path                      # the firmware QEMU runs
    _proc: subprocess.Popen
    _stderr: deque

    @property
    def alive(self) -> bool:
        """True while the QEMU process runs."""
        return self._proc.poll() is None

    def stderr(self) -> str:
        """What QEMU has written to stderr so far (last 200 lines)."""
        return "\n".join(self._stderr)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def plugin_library(board: Board) -> Path | None:
    """The board's QEMU TCG plugin ([qemu] plugin, a C file under firmware/) built with the host gcc into edgesketch's
    cache (once per source content); None if the board has none."""
    if board.qemu is None or not board.qemu.plugin:
        return None
    src = firmware_dir() / board.qemu.plugin
    if not src.is_file():
        raise UserError(f"QEMU plugin source {board.qemu.plugin} is missing from {firmware_dir()}")
    text = src.read_bytes()
    out_dir = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgesketch" / "qemu-plugins"
    so = out_dir / f"{src.stem}-{hashlib.sha256(text).hexdigest()[:12]}.so"
    if so.is_file():
        return so
    cc = shutil.which("gcc")
    if cc is None:
        raise UserError(f"gcc is not on PATH, and {board.name} needs it to build its QEMU plugin: apt-get install gcc")
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{so.name}.{os.getpid()}.tmp"
    proc = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(tmp), str(src)], capture_output=True, text=True,
                          timeout=120)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        first = next((ln for ln in proc.stderr.splitlines() if "error" in ln), proc.stderr.strip()[:200])
        raise UserError(f"could not build the QEMU plugin {board.qemu.plugin}: {first}")
    tmp.replace(so)
    return so


def qemu_argv(board: Board, elf: str | os.PathLike, port: int, extra_args: tuple[str, ...] | list[str] = ()) -> list[str]:
    """The full QEMU command line for this board, ELF and port (its plugin built first, if it has one)."""
    if board.qemu is None:
        raise UserError(f"board {board.name} is a real board, not an emulated one: upload it with `pio run -t upload`")
    return board.qemu.argv(elf, plugin_library(board)) + [
        "-serial", f"tcp:127.0.0.1:{port},server=on,wait=on,nodelay=on", "-display", "none", "-monitor", "none",
        *extra_args]


try:                                            # resolved here, not in the forked child (no dlopen after fork)
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):               # not Linux
    _prctl = None


def die_with_parent() -> None:
    """Ask Linux to SIGKILL the calling process when its parent dies (PR_SET_PDEATHSIG; nothing elsewhere). Run in a
    QEMU child between fork and exec, and in the bench's worker processes, so none outlives what started it."""
    if _prctl is not None:
        _prctl(1, int(signal.SIGKILL))


def _kill(proc: subprocess.Popen) -> None:
    """Stop one QEMU we started: SIGTERM, then SIGKILL, to its PID and its own process group."""
    if proc.poll() is None:
        for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, STOP_TIMEOUT)):
            try:
                os.killpg(proc.pid, sig)        # the group QEMU leads (start_new_session): QEMU and nothing else
            except (ProcessLookupError, PermissionError):
                try:
                    proc.send_signal(sig)
                except ProcessLookupError:
                    pass
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
    with _live_lock:
        _live.pop(proc.pid, None)


@atexit.register
def _kill_all() -> None:
    with _live_lock:
        procs = list(_live.values())
    for p in procs:
        _kill(p)


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the block and deliver them after it (main thread only: elsewhere Python runs no
    signal handler anyway). Popen returns only after QEMU's exec, so a Ctrl-C inside it, or before the new process
    is in `_live`, would leave a QEMU no clean-up knows of (PR_SET_PDEATHSIG kills it at exit, but late)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    old = {s: h for s, h in old.items() if h is not None}       # None: set outside Python, cannot be put back
    for s in old:
        signal.signal(s, lambda n, _f: held.append(n))
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        for n in held[:1]:
            signal.raise_signal(n)


def _reader(stream, lines: deque, ready: threading.Event) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").rstrip()
        lines.append(line)
        if "waiting for connection" in line:
            ready.set()
    stream.close()
    ready.set()                                 # EOF: QEMU exited


def _start(board: Board, elf: Path, extra_args, timeout: float) -> EmulatorUrl:
    for _ in range(PORT_ATTEMPTS):
        port = free_port()
        argv = qemu_argv(board, elf, port, extra_args)
        proc, lines, ready = None, deque(maxlen=200), threading.Event()
        try:
            with _signals_held():               # a Ctrl-C between fork and `_live` would lose the QEMU
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, start_new_session=True, preexec_fn=die_with_parent)
                with _live_lock:
                    _live[proc.pid] = proc
            threading.Thread(target=_reader, args=(proc.stderr, lines, ready), daemon=True,
                             name=f"qemu-{proc.pid}-stderr").start()
            ok = ready.wait(timeout)
        except BaseException:                   # Ctrl-C (held ones arrive here) while QEMU starts
            if proc is not None:
                _kill(proc)
            raise
        if ok and proc.poll() is None and any("waiting for connection" in ln for ln in lines):
            url = EmulatorUrl(f"socket://127.0.0.1:{port}")
            url.pid, url.port, url.argv, url.board, url._proc, url._stderr = proc.pid, port, argv, board, proc, lines
            url.elf = elf
            return url
        _kill(proc)
        text = "\n".join(lines)
        if "Address already in use" in text or "Failed to bind" in text:
            continue
        if not ok:
            raise UserError(f"{board.qemu.binary} did not open its serial port within {timeout:.0f} s")
        errs = [ln for ln in lines if ln.strip() and "waiting for connection" not in ln]
        raise UserError(f"{board.qemu.binary} failed to start: {errs[0] if errs else f'exit code {proc.returncode}'}")
    raise UserError(f"no free TCP port for {board.qemu.binary} after {PORT_ATTEMPTS} attempts")


@contextmanager
def qemu(board: Board | str, elf: str | os.PathLike, *, extra_args: tuple[str, ...] | list[str] = (),
         timeout: float = START_TIMEOUT) -> Iterator[EmulatorUrl]:
    """Run `elf` on the emulated `board`; yield the UART's "socket://127.0.0.1:PORT" URL; always stop QEMU.

    The guest starts when the first client connects (its BOOT frame is the first thing it sends). Startup problems
    (binary missing: the apt package to install; QEMU errors: its first stderr line) raise UserError."""
    board = load(board) if isinstance(board, str) else board
    if board.qemu is None:
        raise UserError(f"board {board.name} is a real board, not an emulated one: upload it with `pio run -t upload`")
    elf = Path(elf)
    if not elf.is_file():
        raise UserError(f"firmware {elf} does not exist: build it first (pio run)")
    if not shutil.which(board.qemu.binary):
        raise UserError(f"{board.qemu.binary} is not installed: apt-get install {board.qemu.apt}")
    url = _start(board, elf, tuple(extra_args), timeout)
    try:
        yield url
    finally:
        _kill(url._proc)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc), e.g. to check that an idle QEMU sleeps."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_closed(pid: int, timeout: float = 5.0) -> bool:
    """True once no process has this PID (for tests of the clean-up)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.02)
    return False
