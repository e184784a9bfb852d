"""edgesketch export: a complete project for every board, and clear errors for bad input."""
import re

import pytest

from edgesketch import boards, esk
from edgesketch.sketch import random_sketch
from test_esk_cli import assert_user_error, run_cli


def test_export_writes_a_project_with_the_model(digits_esk, tmp_path):
    out = tmp_path / "fw"
    code, stdout, err = run_cli("export", digits_esk, "--board", "qemu-m4", "-o", out)
    assert code == 0, err
    mid = esk.load(digits_esk).meta["model_id"]
    h = (out / "lib" / "es_model" / "es_model.h").read_text()
    assert mid in h and re.search(r"#define ES_N_INPUTS\s+64\b", h)
    assert (out / "platformio.ini").is_file() and (out / "README.md").is_file()
    assert "edgesketch verify" in stdout
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folder left behind"


@pytest.mark.parametrize("board", [b.name for b in boards.all_boards()])
def test_every_board_exports(digits_esk, tmp_path, board):
    code, _, err = run_cli("export", digits_esk, "--board", board, "-o", tmp_path / board, "--layout", "compact")
    assert code == 0, err
    ini = (tmp_path / board / "platformio.ini").read_text()
    b = boards.load(board)
    if not b.emulated:  # idiomatic for real boards: the standard platform, board, framework and monitor speed
        assert f"platform = {b.platformio.platform}" in ini and f"board = {b.platformio.board}" in ini
        assert "framework = arduino" in ini and "monitor_speed" in ini


def test_export_bad_inputs(digits_esk, tmp_path):
    big = tmp_path / "big.esk"
    esk.save(random_sketch(L=64, K=10, C=10, seed=1), big)  # 655 KB of tables
    existing = tmp_path / "exists"
    existing.mkdir()
    (existing / "mine.txt").write_text("user data")
    uno_flash = tmp_path / "uno-flash.esk"              # fits qemu-m0, not the Uno's 32 KB unrolled (tables in flash)
    esk.save(random_sketch(D=64, C=10, L=32, K=6, P=96, taps=16, seed=2), uno_flash)
    uno_ram = tmp_path / "uno-ram.esk"                  # 700 inputs: the stack the model needs outgrows 2 KB of RAM
    esk.save(random_sketch(D=700, C=4, L=4, K=3, P=8, taps=4, seed=3), uno_ram)
    corrupt = tmp_path / "c.esk"
    corrupt.write_bytes(digits_esk.read_bytes()[:300])
    for args, needles in [
        (["export", digits_esk, "--board", "arduino-uno", "-o", tmp_path / "u"], ["unknown board", "qemu-m4", "esp32"]),
        (["export", big, "--board", "qemu-m0", "-o", tmp_path / "b"],
         ["bytes of flash", "qemu-m0 has 262,144", "fewer tables or bits (now 64 tables of 2^10 cells)"]),
        (["export", uno_flash, "--board", "qemu-uno", "-o", tmp_path / "b"],
         ["bytes of flash", f"{boards.load('qemu-uno').footprint.firmware_flash:,} for the firmware", "qemu-uno has 32,768",
          "--layout compact"]),
        (["export", uno_ram, "--board", "uno", "-o", tmp_path / "b", "--layout", "compact"],
         ["bytes of RAM", "374 for the firmware", "700 for the input", "uno has 2,048", "--layout unrolled"]),
        (["export", digits_esk, "--board", "qemu-m4", "-o", existing], ["already exists", "--force"]),
        (["export", corrupt, "--board", "qemu-m4", "-o", tmp_path / "c"], ["corrupt or truncated"]),
    ]:
        code, _, err = run_cli(*args)
        assert_user_error(code, err, *needles)
    assert (existing / "mine.txt").read_text() == "user data"
    assert not (tmp_path / "b").exists() and not (tmp_path / "u").exists()
    # with --force the folder is replaced whole
    code, _, err = run_cli("export", digits_esk, "--board", "qemu-m4", "-o", existing, "--force")
    assert code == 0, err
    assert not (existing / "mine.txt").exists() and (existing / "platformio.ini").exists()
