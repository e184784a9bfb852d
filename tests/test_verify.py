"""edgesketch verify on every emulated board: export, `pio run` offline, QEMU, serial; the whole digits and mnist1d
test sets agree bit for bit with the integer reference, and on-device accuracy equals the host's."""
import json

import numpy as np
import pytest

from edgesketch import boards, esk
from test_esk_cli import assert_user_error, run_cli

pytestmark = pytest.mark.slow   # trains, builds firmware or runs QEMU: the full suite's tier (tests/conftest.py)

EMULATED = [b.name for b in boards.all_boards() if b.emulated]


@pytest.fixture(scope="session")
def mnist1d_esk(workdir, quick_sketches):
    sk, _ = quick_sketches[("mnist1d", "learned", 16, 6)]
    path = workdir / "mnist1d-quick.esk"
    esk.save(sk, path, force=True)
    return path


def test_all_emulated_boards_are_covered():
    assert set(EMULATED) == {"qemu-m4", "qemu-m3", "qemu-m7", "qemu-m55", "qemu-m0", "qemu-rv32", "qemu-lx106", "qemu-uno"}


@pytest.mark.parametrize("board", EMULATED)
@pytest.mark.parametrize("which", ["digits", "mnist1d", "mnist1d-windowed", "mnist1d-windowed-codebook"])
def test_verify_whole_test_set_bit_exact(board, which, request, tmp_path):
    path = request.getfixturevalue({"digits": "digits_esk", "mnist1d": "mnist1d_esk", "mnist1d-windowed": "windowed_esk",
                                    "mnist1d-windowed-codebook": "windowed_codebook_esk"}[which])
    report = tmp_path / "verify.json"
    code, out, err = run_cli("verify", path, "--board", board, "--json", report)
    assert code == 0, out + err
    r = json.loads(report.read_text())
    n = 360 if which == "digits" else 1000
    assert r["n"] == n and r["bit_exact"] == n
    assert r["device_accuracy"] == r["host_int_accuracy"] and r["device_accuracy"] > 0.2  # quick sketches: well above chance (0.1)
    assert r["counter"] == "instructions" and r["cost_min"] > 100
    assert r["cost_max"] - r["cost_min"] <= 0.05 * r["cost_median"]  # straight-line code and fixed loops: nearly constant
    assert "bit-exact agreements" in out and f"{n} / {n}" in out
    window = int(boards.load(board).build_defines().get("ES_STACK_PAINT", "1024u").rstrip("u"))
    assert 0 < r["stack_peak"] < window and not r["stack_full"]  # painted, inside the window (1024 bytes by default)
    assert "peak stack of es_predict_q" in out and f"{r['stack_peak']:,} bytes (painted)" in out
    assert_sizes(r, out, board)


def assert_sizes(r: dict, out: str, board: str) -> None:
    """verify reports the ELF's flash and static RAM, and they fit the board."""
    b = boards.load(board)
    assert 1000 < r["flash"] <= b.flash_bytes and 100 < r["static_ram"] < b.ram_bytes, (r["flash"], r["static_ram"])
    assert f"{r['flash']:,} bytes (ELF text + data)" in out and f"{r['static_ram']:,} bytes (ELF data + bss)" in out


@pytest.mark.parametrize("board,source,shape,stride,classes", [("qemu-uno", "synthetic:gestures", (64, 3), 2, 6),
                                                               ("qemu-m4", "synthetic:vibration", (1500, 1), 8, 5)])
def test_verify_inputs_larger_than_a_frame(tmp_path, board, source, shape, stride, classes):
    """`edgesketch verify` of a windowed sketch whose input does not fit one frame: 192 accelerometer values on the Uno
    (160-byte frames), 1,500 vibration values on the M4 (1,024-byte frames; export's RAM estimate refuses this sketch on
    qemu-m0, whose firmware tests/test_multiframe.py builds without it). The harness sends each input in LOAD frames and
    RUN; every sample bit-exact, and the table shows the ELF's flash and static RAM."""
    from edgesketch import sketch as S
    sk = S.random_sketch(L=0, C=classes, seed=50, windows=[(S.Window.over(shape, 9, stride), 8, 5, 16, 9)])
    sk.meta.update(source=source, class_names=[str(c) for c in range(classes)])
    path = tmp_path / "big.esk"
    esk.save(sk, path)
    report = tmp_path / "verify.json"
    n = 60 if board == "qemu-uno" else 25
    code, out, err = run_cli("verify", path, "--board", board, "--limit", n, "--json", report)
    assert code == 0, out + err
    r = json.loads(report.read_text())
    assert r["n"] == n and r["bit_exact"] == n and r["device_accuracy"] == r["host_int_accuracy"]
    assert r["link"]["requests"] == 3 * n and r["link"]["retries"] == 0            # two LOAD frames and RUN each
    assert f"{n} / {n}" in out and "bit-exact agreements" in out
    assert_sizes(r, out, board)
    assert r["static_ram"] > sk.n_inputs                                          # the input buffer is on the device


def test_verify_detects_a_different_model(digits_esk, tmp_path):
    """A device running another model is a clear error, not wrong numbers."""
    other = tmp_path / "other.esk"
    sk = esk.load(digits_esk)
    sk.branches[0].counts = sk.branches[0].counts.copy(); sk.branches[0].counts[0, 0, 0] ^= 1
    esk.save(sk, other)
    fw = tmp_path / "fw"
    code, _, err = run_cli("export", digits_esk, "--board", "qemu-m4", "-o", fw)
    assert code == 0, err
    code, out, err = run_cli("verify", other, "--board", "qemu-m4", "--project", fw)
    assert_user_error(code, err, "runs model", "was expected", "flash the firmware for this sketch")


def test_verify_reports_a_mismatch_and_its_stage(digits_esk, tmp_path):
    """Firmware built from a sketch whose table differs, but which claims the same id: verify exits 1 and names the
    lookup stage (hash bits and buckets agree)."""
    from edgesketch import build, codegen
    sk = esk.load(digits_esk)
    wrong = esk.load(digits_esk)
    wrong.branches[0].counts = wrong.branches[0].counts.copy()
    wrong.branches[0].counts[:, :, 0] = np.clip(wrong.branches[0].counts[:, :, 0].astype(int) + 1, -127, 127)
    fw = build.write_project("qemu-m4", codegen.generate(wrong), tmp_path / "fw", model_id=sk.meta["model_id"])
    code, out, err = run_cli("verify", digits_esk, "--board", "qemu-m4", "--project", fw, "--limit", "20")
    assert code == 1, out + err
    assert "MISMATCH" in out and "lookup and sum" in out


def test_verify_bad_inputs(digits_esk, tmp_path):
    for args, needles in [
        (["verify", digits_esk, "--board", "esp32"], ["real board", "--port"]),
        (["verify", digits_esk, "--board", "nosuch"], ["unknown board", "qemu-m4"]),
        (["verify", digits_esk, "--port", "socket://127.0.0.1:1"], ["cannot open"]),
        (["verify", digits_esk, "--port", "/dev/ttyNOPE0"], ["cannot open"]),
    ]:
        code, _, err = run_cli(*args)
        assert_user_error(code, err, *needles)


def _qemu_pids(parent=None):
    """PIDs of running QEMUs; with `parent`, only the ones that process started (QEMUs of other programs on this
    machine, a bench or a study running beside the suite, are not this test's)."""
    import subprocess
    out = subprocess.run(["pgrep", "-f", "qemu-system", *(["-P", str(parent)] if parent else [])],
                         capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def _as_in_a_terminal():
    """Run in the child before exec: Ctrl-C's default disposition. A test run started in the background of a
    non-interactive shell (`cmd &`) inherits SIGINT ignored, and so would the CLI it starts: Python then installs no
    KeyboardInterrupt handler, and the Ctrl-C below would do nothing."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


CTRL_C_BOARDS = ["qemu-m4", "qemu-lx106", "qemu-uno"]   # Cortex-M and Xtensa bare metal, the Arduino entry on AVR


@pytest.mark.parametrize("board", CTRL_C_BOARDS)
def test_flash_emulated_then_verify_by_port_then_ctrl_c_leaves_no_qemu(digits_esk, tmp_path, board):
    """`edgesketch flash --board qemu-m4 DIR` builds, starts QEMU and prints the socket:// URL; `verify --port URL`
    works against it exactly as against /dev/ttyUSB0; Ctrl-C on flash stops QEMU."""
    import re
    import signal
    import subprocess
    import sys
    import time
    fw = tmp_path / "fw"
    assert run_cli("export", digits_esk, "--board", board, "-o", fw)[0] == 0
    proc = subprocess.Popen([sys.executable, "-m", "edgesketch", "flash", "--board", board, str(fw)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=_as_in_a_terminal)
    try:
        url, deadline = None, time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            m = re.search(r"socket://127\.0\.0\.1:\d+", line)
            url = m.group(0) if m else None
        assert url, "flash printed no socket:// URL"
        code, out, err = run_cli("verify", digits_esk, "--port", url)
        assert code == 0, out + err
        assert "360 / 360" in out
        assert out.count("not measured (--port)") == 2                          # flash and static RAM: no ELF here
        started = _qemu_pids(parent=proc.pid)
        assert started, "no QEMU process was running"
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(f"flash still running 60 s after Ctrl-C; its output: {proc.stdout.read()[-2000:]}")
        assert rc == 130, proc.stdout.read()[-2000:]
    finally:
        proc.kill()
    time.sleep(0.5)
    assert not (started & _qemu_pids()), "QEMU left behind after Ctrl-C"


@pytest.mark.parametrize("board", CTRL_C_BOARDS)
def test_ctrl_c_during_verify_leaves_no_qemu(digits_esk, tmp_path, board):
    import signal
    import subprocess
    import sys
    import time
    proc = subprocess.Popen([sys.executable, "-m", "edgesketch", "verify", str(digits_esk), "--board", board],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=_as_in_a_terminal)
    deadline = time.monotonic() + 120
    while not _qemu_pids(parent=proc.pid) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    started = _qemu_pids(parent=proc.pid)
    assert started, "QEMU never started"
    assert proc.poll() is None, f"verify ended ({proc.returncode}) before it could be interrupted: {proc.stderr.read()[-2000:]}"
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(timeout=60)
    assert rc == 130, f"verify exited {rc} after Ctrl-C (QEMU {started}); stderr: {proc.stderr.read()[-2000:]}"
    assert "Traceback" not in proc.stderr.read()
    time.sleep(0.5)
    assert not (started & _qemu_pids()), "QEMU left behind after Ctrl-C"
