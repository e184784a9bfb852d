"""Bad data and small mistakes get one line naming the problem and the fix, from the CLI and from Python alike (issue
34): labels outside 0..C-1, string and non-integer labels, swapped axes, an empty teacher file, board names; data far
outside the ranges the model was distilled on warn once; streams from the command line (issue 35)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from edgesketch import api, boards, esk
from edgesketch.errors import DataError, UserError
from edgesketch.sketch import Window, far_from_ranges, input_ranges, random_sketch
from edgesketch.teacher import Teacher
from test_esk_cli import assert_user_error, run_cli


def teacher(shape=(64, 3), C=6, task="classification") -> Teacher:
    return Teacher(path="gestures.keras", model=None, input_shape=shape, n_outputs=C, task=task, softmax_output=True)


@pytest.mark.parametrize("y, needles", [
    (np.arange(1, 7).repeat(5), ["labels 1..6", "needs 0..5", "subtract 1"]),
    (np.array(["walk", "run"] * 15), ["strings", "'walk'", "integers 0..5", "class names"]),
    (np.array([0.0, 1.5, 2.0] * 10), ["non-integer labels", "1.5"]),
    (np.arange(30) % 9, ["labels 0..8", "needs 0..5", "the teacher has 6 outputs"]),
    (np.zeros((30, 2, 3)), ["shape (30, 2, 3)", "one integer label a sample"]),
])
def test_bad_labels_are_one_line_naming_the_argument(y, needles):
    with pytest.raises(DataError) as e:
        teacher().check_labels(y, "y_train", "y_train")
    assert e.value.argument == "y_train" and "\n" not in str(e.value)
    for n in needles:
        assert n in str(e.value), str(e.value)


def test_good_labels_pass():
    t = teacher()
    t.check_labels(np.arange(30) % 6, "y", "y")
    t.check_labels(np.eye(6)[np.arange(30) % 6], "y", "y")            # one-hot rows
    t.check_labels(np.arange(30.0) % 6, "y", "y")                      # integral floats
    teacher(task="regression", C=1).check_labels(np.linspace(-3, 3, 30), "y", "y")


def test_swapped_axes_are_refused_with_the_transpose():
    t = teacher()
    with pytest.raises(DataError) as e:
        t.check_data(np.zeros((10, 3, 64), np.float32), "x_train", "x_train")
    assert "axes look swapped" in str(e.value) and "x.transpose(0, 2, 1)" in str(e.value) and e.value.argument == "x_train"
    t.check_data(np.zeros((10, 64, 3), np.float32), "x_train", "x_train")
    t.check_data(np.zeros((10, 192), np.float32), "x_train", "x_train")      # flat rows: the teacher's order
    with pytest.raises(DataError, match="has 100 values per sample"):
        t.check_data(np.zeros((10, 100)), "x_train", "x_train")


def test_string_labels_from_python_are_refused_before_the_teacher_loads():
    with pytest.raises(DataError) as e:
        api.distill("no-such-teacher.keras", np.zeros((4, 8)), np.array(["a", "b", "a", "b"]))
    assert e.value.argument == "y_train" and "class_names=" in str(e.value) and "--" not in str(e.value)


def test_empty_teacher_file_says_so(tmp_path):
    empty = tmp_path / "model.keras"
    empty.write_bytes(b"")
    code, _, err = run_cli("distill", empty, "--data", "sklearn:digits", "-o", tmp_path / "x.esk")
    assert_user_error(code, err, "is an empty file (0 bytes)", "model.save('model.keras')")


def test_board_names_ignore_case_and_suggest():
    assert boards.load("QEMU-M4").name == "qemu-m4" and boards.load("Uno").name == "uno"
    with pytest.raises(UserError) as e:
        boards.load("esp23")
    assert "did you mean esp32?" in str(e.value) and e.value.argument == "board"
    with pytest.raises(UserError, match="did you mean nucleo_f401re"):
        boards.load("nucleo-f401re")


def test_model_export_names_an_unknown_keyword(tmp_path):
    m = api.Model(random_sketch(D=16, C=3, L=4, K=4, seed=1))
    with pytest.raises(TypeError, match="prefx"):
        m.export(tmp_path / "x", format="c", prefx="walk")


def test_far_from_the_training_ranges_warns_once():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.3, (200, 64, 3)).astype(np.float32)                  # in g
    ranges = input_ranges(x, 3)
    assert far_from_ranges(ranges, x) is None
    msg = far_from_ranges(ranges, x * 9.81, ["g", "g", "g"])                  # in m/s^2
    assert msg and "far outside the range the model was distilled on" in msg and " g;" in msg
    sk = random_sketch(D=192, C=3, L=4, K=4, seed=2)
    sk.meta.update(input_ranges=ranges, input_units=["g"] * 3)
    m = api.Model(sk)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m.predict(x.reshape(200, -1))
        m.predict(x.reshape(200, -1) * 9.81)
        m.predict(x.reshape(200, -1) * 9.81)
    assert [issubclass(w.category, api.RangeWarning) for w in caught] == [True]


@pytest.mark.slow
def test_stream_verify_from_the_command_line(tmp_path):
    """export --hop writes the stream; verify --board --hop --stream FILE.npz checks every hop on qemu-m4 and reports
    the cost per hop beside a whole window's."""
    sk = random_sketch(L=0, windows=[(Window.over((40, 1), 9, 2, padding="valid"), 15, 6, 32, 6)], seed=1)
    path = tmp_path / "w.esk"
    esk.save(sk, path)
    samples = np.random.default_rng(1).normal(size=(200, 1)).astype(np.float32)
    np.savez(tmp_path / "rec.npz", stream=samples)
    code, out, err = run_cli("export", path, "--format", "c", "--hop", "2", "-o", tmp_path / "c")
    assert code == 0, err
    assert "es_stream_push" in (tmp_path / "c" / "es_model.h").read_text() and "every 2" in out
    code, out, err = run_cli("verify", path, "--board", "qemu-m4", "--hop", "2", "--stream", tmp_path / "rec.npz",
                             "--json", tmp_path / "r.json")
    assert code == 0, err + out
    import json
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["stream"]["hops"] == r["n"] == r["bit_exact"] == (200 - 40) // 2 + 1
    assert 0 < r["cost_median"] < r["stream"]["window_cost"] / 4          # a hop costs its new read-outs only
    code, _, err = run_cli("export", path, "--format", "c", "--hop", "3", "-o", tmp_path / "c3")
    assert code == 2 and "--hop" in err and "Traceback" not in err


def test_export_class_names_override(tmp_path):
    """export --class-names replaces the names the .esk records in the C (the model id stays: names are not what the
    device computes); a wrong count is one line naming the flag."""
    sk = random_sketch(D=16, C=3, L=4, K=4, seed=3)
    path = tmp_path / "m.esk"
    mid = esk.save(sk, path)
    code, _, err = run_cli("export", path, "--format", "c", "-o", tmp_path / "c", "--class-names", "idle,walk,run")
    assert code == 0, err
    h = (tmp_path / "c" / "es_model.h").read_text()
    assert '"idle", "walk", "run"' in h and mid in h
    code, _, err = run_cli("export", path, "--format", "c", "-o", tmp_path / "d", "--class-names", "a,b")
    assert_user_error(code, err, "--class-names: 2 names for a model of 3 outputs")


@pytest.mark.slow
def test_evaluate_scores_the_teacher_the_file_records(digits_teacher, tmp_path):
    """es.load(...).evaluate() reports the teacher's accuracy when the .esk records a teacher that is here."""
    from edgesketch import data
    ds = data.load("sklearn:digits")
    sk = random_sketch(D=64, C=10, L=4, K=4, seed=4)
    sk.meta.update(teacher=str(digits_teacher), source="sklearn:digits")
    esk.save(sk, tmp_path / "d.esk")
    m = api.load(tmp_path / "d.esk").evaluate(ds.x_test, ds.y_test)
    assert m.teacher_accuracy is not None and m.teacher_accuracy > 0.8


@pytest.mark.slow
def test_labels_outside_the_classes_from_the_command_line(digits_teacher, tmp_path):
    """distill refuses labels 1..10 for a 10-output teacher in one line, before any training."""
    from edgesketch import data
    ds = data.load("sklearn:digits")
    np.savez(tmp_path / "d.npz", x_train=ds.x_train, y_train=ds.y_train + 1, x_test=ds.x_test, y_test=ds.y_test)
    code, _, err = run_cli("distill", digits_teacher, "--data", tmp_path / "d.npz", "-o", tmp_path / "x.esk")
    assert_user_error(code, err, "labels 1..10", "needs 0..9", "subtract 1")
