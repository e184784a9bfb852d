"""The sketch file and the CLI's handling of bad input: one line, non-zero exit, no traceback, nothing half-written."""
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from edgesketch import esk
from edgesketch.errors import UserError
from edgesketch.sketch import int_scores, random_sketch


def run_cli(*args, cwd=None):
    p = subprocess.run([sys.executable, "-m", "edgesketch", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)
    return p.returncode, p.stdout, p.stderr


def assert_user_error(code, err, *needles):
    assert code == 2, err
    assert "Traceback" not in err
    lines = [l for l in err.strip().splitlines() if l.startswith("edgesketch: error:")]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], lines[0]


def test_roundtrip_preserves_everything_and_id(tmp_path):
    sk = random_sketch(P=48, taps=8, seed=2)
    sk.extras = {"representers": np.ones((3, 4), np.float32)}
    mid = esk.save(sk, tmp_path / "a.esk")
    back = esk.load(tmp_path / "a.esk")
    assert back.meta["model_id"] == mid and len(mid) == 32
    for (name, a), (name2, b) in zip(esk.arrays(sk), esk.arrays(back)):
        assert name == name2 and a.dtype == b.dtype and np.array_equal(a, b), name
    assert np.array_equal(back.extras["representers"], sk.extras["representers"])
    xq = np.random.default_rng(0).integers(-128, 128, (100, 64)).astype(np.int8)
    assert np.array_equal(int_scores(sk, xq), int_scores(back, xq))


def test_id_changes_with_contents(tmp_path):
    a, b = random_sketch(seed=1), random_sketch(seed=1)
    b.branches[0].counts = b.branches[0].counts.copy(); b.branches[0].counts[0, 0, 0] ^= 1
    assert esk.model_id(a) != esk.model_id(b)


def test_refuses_to_overwrite_without_force(tmp_path):
    esk.save(random_sketch(), tmp_path / "a.esk")
    with pytest.raises(UserError, match="force=True") as e:         # the API speaks in arguments, the CLI in flags
        esk.save(random_sketch(seed=3), tmp_path / "a.esk")
    assert e.value.argument == "force"
    from edgesketch.cli import _flag_message
    assert "use --force to replace it" in _flag_message(e.value)
    esk.save(random_sketch(seed=3), tmp_path / "a.esk", force=True)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "not_zip", "future", "tamper", "no_meta"])
def test_bad_files_give_clear_errors(tmp_path, damage):
    p = tmp_path / "m.esk"
    esk.save(random_sketch(), p)
    raw = p.read_bytes()
    if damage == "truncate":
        p.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        p.write_bytes(raw[:200] + bytes(range(256)) * 4 + raw[1224:])
    elif damage == "not_zip":
        p.write_text("hello, I am a CSV\n1,2,3\n")
    elif damage in ("future", "tamper", "no_meta"):
        with zipfile.ZipFile(p) as z:
            files = {n: z.read(n) for n in z.namelist()}
        meta = json.loads(files["meta.json"])
        if damage == "future":
            meta["format_version"] = 99
        if damage == "tamper":
            meta["task"] = "regression"
        files["meta.json"] = json.dumps(meta).encode()
        if damage == "no_meta":
            del files["meta.json"]
        with zipfile.ZipFile(p, "w") as z:
            for n, b in files.items():
                z.writestr(n, b)
    with pytest.raises(UserError) as e:
        esk.load(p)
    msg = str(e.value)
    assert "\n" not in msg and str(p) in msg
    if damage == "future":
        assert "upgrade edgesketch" in msg


def test_cli_info_and_eval_json(digits_esk):
    code, out, err = run_cli("info", digits_esk)
    assert code == 0, err
    assert "model id" in out and "16 x 64 x 10" in out
    code, out, err = run_cli("eval", digits_esk, "--json")
    assert code == 0, err
    m = json.loads(out)
    for k in ("teacher_accuracy", "float_accuracy", "int_accuracy", "teacher_agreement", "table_bytes", "projection_bytes", "ops_per_inference"):
        assert k in m
    assert m["table_bytes"] == 16 * 64 * 10 and 0.5 < m["int_accuracy"] <= 1.0 and m["teacher_accuracy"] > 0.9


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_cli_bad_inputs(tmp_path, digits_teacher, digits_esk):
    rng = np.random.default_rng(0)
    out = tmp_path / "o.esk"
    cases = [
        (["distill", tmp_path / "nope.keras", "--data", "sklearn:digits", "-o", out], ["not found"]),
        (["distill", _write(tmp_path / "bad.keras", b"PK\x03\x04 not really a zip"), "--data", "sklearn:digits", "-o", out], ["cannot load teacher"]),
        (["distill", digits_teacher, "--data", _npz(tmp_path / "shape.npz", x_train=rng.normal(size=(10, 30)), x_test=rng.normal(size=(5, 30))), "-o", out], ["30 values", "expects 64"]),
        (["distill", digits_teacher, "--data", _npz(tmp_path / "nan.npz", x_train=np.full((10, 64), np.nan), x_test=np.zeros((5, 64))), "-o", out], ["NaN"]),
        (["distill", digits_teacher, "--data", _npz(tmp_path / "inf.npz", x_train=np.zeros((10, 64)), x_test=np.full((5, 64), np.inf)), "-o", out], ["Inf"]),
        (["distill", digits_teacher, "--data", "sklearn:nosuch", "-o", out], ["sklearn:digits"]),
        (["distill", digits_teacher, "--data", "sklearn:digits", "-o", digits_esk], ["already exists", "--force"]),
        (["distill", digits_teacher, "--data", "sklearn:digits", "-o", out, "--bits", "20"], ["--bits"]),
        (["distill", _multi_input_teacher(tmp_path), "--data", "sklearn:digits", "-o", out], ["2 inputs"]),
        (["distill", digits_teacher, "--data", "sklearn:digits", "-o", out, "--selectors", "window", "-P", "8"], ["--selectors window", "3 distinct windows", "more hyperplanes"]),
        (["distill", digits_teacher, "--data", "sklearn:digits", "-o", out, "--codebook", "1024"], ["--codebook 1024", "2 to 1023"]),
        (["distill", digits_teacher, "--data", "sklearn:digits", "-o", out, "--codebook", "64", "--count-bits", "4"], ["--count-bits 8"]),
        (["distill", digits_teacher, "--data", "sklearn:digits", "-o", out, "--transfer", tmp_path / "nope.npz"], ["not found", "array x"]),
        (["distill", digits_teacher, "--data", "sklearn:digits", "-o", out, "--transfer", _npz(tmp_path / "tx.npz", inputs=np.zeros((5, 64)))], ["no array x", "inputs", "numpy.savez"]),
        (["distill", digits_teacher, "--data", "sklearn:digits", "-o", out, "--transfer", _npz(tmp_path / "tf.npz", x=np.zeros((5, 30)))], ["30 values", "has 64"]),
        (["distill", digits_teacher, "--data", "sklearn:digits", "-o", out, "--transfer", _npz(tmp_path / "tn.npz", x=np.full((5, 64), np.nan))], ["NaN"]),
        (["eval", _bare_sketch(tmp_path), "--data", _npz(tmp_path / "nolabels.npz", x_train=np.zeros((10, 64)), x_test=np.zeros((5, 64)))], ["no labels", "--teacher"]),
        (["eval", _bare_sketch(tmp_path)], ["records no data source", "--data"]),
        (["info", _write(tmp_path / "x.esk", b"this is not a sketch")], ["not a valid edgesketch sketch"]),
        (["info", tmp_path / "missing.esk"], ["not found"]),
    ]
    for args, needles in cases:
        code, _, err = run_cli(*args)
        assert_user_error(code, err, *needles)
    assert not out.exists()


def test_no_teacher_and_no_labels_message(tmp_path, digits_esk):
    from edgesketch import esk as E
    from edgesketch.evaluate import evaluate
    sk = E.load(digits_esk)
    with pytest.raises(UserError, match="no labels"):
        evaluate(sk, np.zeros((3, 64), np.float32), None, None)


def _bare_sketch(tmp_path):
    p = tmp_path / "bare.esk"
    if not p.exists():
        esk.save(random_sketch(), p)  # no teacher and no data source recorded
    return p


def _write(p, b):
    p.write_bytes(b)
    return p


def _multi_input_teacher(tmp_path):
    import keras
    a, b = keras.Input((64,)), keras.Input((3,))
    m = keras.Model([a, b], keras.layers.Dense(10, activation="softmax")(keras.layers.Concatenate()([a, b])))
    p = tmp_path / "two.keras"
    m.save(p)
    return p


FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("name,mid", [("v1_flat.esk", "41c88a70889f163b17f033fef030724c"),
                                      ("v1_flat_int4.esk", "5ba5d268e530803d700a3ce97f3c224a")])
def test_version1_files_still_load_with_their_ids(tmp_path, name, mid):
    """Files written by edgesketch 0.1.0 (format 1: one flat sketch, arrays at the top level) load as one flat branch,
    keep their model id, and re-save as format 2 under the same id."""
    sk = esk.load(FIXTURES / name)
    assert sk.meta["format_version"] == 1 and sk.meta["model_id"] == mid and esk.model_id(sk) == mid
    assert len(sk.branches) == 1 and sk.branches[0].window.is_flat and sk.is_flat
    xq = np.random.default_rng(0).integers(-128, 128, (200, sk.n_inputs)).astype(np.int8)
    before = int_scores(sk, xq)
    assert esk.save(sk, tmp_path / "v2.esk") == mid
    back = esk.load(tmp_path / "v2.esk")
    assert back.meta["format_version"] == esk.VERSION == 2 and back.meta["model_id"] == mid
    assert np.array_equal(int_scores(back, xq), before)


def test_windowed_sketch_roundtrip(tmp_path):
    from edgesketch.sketch import Window
    sk = random_sketch(L=8, K=5, P=24, taps=6, seed=4, windows=[(Window.over((40, 2), 7, 2, pool=2, regions=2), 8, 4, 12, 5)])
    mid = esk.save(sk, tmp_path / "w.esk")
    back = esk.load(tmp_path / "w.esk")
    assert back.meta["model_id"] == mid and [b.window for b in back.branches] == [b.window for b in sk.branches]
    for (n, a), (n2, b) in zip(esk.arrays(sk), esk.arrays(back)):
        assert n == n2 and a.dtype == b.dtype and np.array_equal(a, b), n
    xq = np.random.default_rng(1).integers(-128, 128, (100, 80)).astype(np.int8)
    assert np.array_equal(int_scores(sk, xq), int_scores(back, xq))
    other = random_sketch(L=8, K=5, P=24, taps=6, seed=4, windows=[(Window.over((40, 2), 7, 2, pool=1, regions=2), 8, 4, 12, 5)])
    assert esk.model_id(other) != mid            # the geometry is part of the id


def _rewrite(p, edit):
    with zipfile.ZipFile(p) as z:
        files = {n: z.read(n) for n in z.namelist()}
    edit(files)
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
        for n, b in files.items():
            z.writestr(n, b)


@pytest.mark.parametrize("attack,needle", [
    ("bomb", "claims"),                  # a member that decompresses to far more than its array header says
    ("huge_header", "claims"),           # an array header claiming 4 GB
    ("path", "unexpected member"),       # a path-like member name
    ("shape", "wrong"),                  # an array whose shape disagrees with the others / meta.json
    ("object", "not numbers"),           # a pickled object array
    ("branches", "missing or malformed"),  # meta.json's branch list mangled
])
def test_hostile_files_get_one_line_errors(tmp_path, attack, needle):
    import io
    p = tmp_path / "h.esk"
    esk.save(random_sketch(), p)

    def edit(files):
        if attack == "bomb":
            files["extra.pad.npy"] = files["in_scale.npy"][:128] + b"\0" * (64 << 20)
        elif attack == "huge_header":
            hdr = b"{'descr': '<f4', 'fortran_order': False, 'shape': (1073741824,), }"
            hdr += b" " * (118 - len(hdr)) + b"\n"
            files["in_scale.npy"] = b"\x93NUMPY\x01\x00" + len(hdr).to_bytes(2, "little") + hdr + b"\0" * 64
        elif attack == "path":
            files["../../etc/evil.npy"] = files["in_scale.npy"]
        elif attack == "shape":
            b = io.BytesIO(); np.save(b, np.zeros((3, 3), np.int32)); files["b0.threshold.npy"] = b.getvalue()
        elif attack == "object":
            b = io.BytesIO(); np.save(b, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
            files["in_scale.npy"] = b.getvalue()
        elif attack == "branches":
            meta = json.loads(files["meta.json"]); meta["branches"] = [{"window": {"shape": "x"}}]
            files["meta.json"] = json.dumps(meta).encode()
    _rewrite(p, edit)
    with pytest.raises(UserError) as e:
        esk.load(p)
    msg = str(e.value)
    assert "\n" not in msg and needle in msg, msg


@pytest.mark.parametrize("attack,needle", [("bomb", "claims"), ("huge_header", "claims"), ("path", "unexpected member"),
                                           ("object", "not numbers or text"), ("not_zip", "corrupt")])
def test_hostile_data_files_get_one_line_errors(tmp_path, attack, needle):
    """Data .npz files (--data, --transfer) are read with the same bounded checks as sketch files."""
    import io
    from edgesketch import data
    p = tmp_path / "d.npz"
    np.savez(p, x_train=np.zeros((4, 3), np.float32), x_test=np.zeros((2, 3), np.float32))
    if attack == "not_zip":
        p.write_text("a,b\n1,2\n")
    else:
        def edit(files):
            if attack == "bomb":
                files["x_test.npy"] = files["x_test.npy"] + b"\0" * (32 << 20)
            elif attack == "huge_header":
                hdr = b"{'descr': '<f4', 'fortran_order': False, 'shape': (1073741824, 4), }"
                hdr += b" " * (118 - len(hdr)) + b"\n"
                files["x_train.npy"] = b"\x93NUMPY\x01\x00" + len(hdr).to_bytes(2, "little") + hdr
            elif attack == "path":
                files["../x.npy"] = files["x_test.npy"]
            elif attack == "object":
                b = io.BytesIO(); np.save(b, np.array([{"a": 1}], dtype=object), allow_pickle=True)
                files["x_train.npy"] = b.getvalue()
        _rewrite(p, edit)
    for load in (lambda: data.load(str(p)), lambda: data.load_transfer(str(p), 3)):
        with pytest.raises(UserError) as e:
            load()
        assert "\n" not in str(e.value) and needle in str(e.value) and "numpy.savez" in str(e.value), str(e.value)
    code, out, err = run_cli("eval", FIXTURES / "v1_flat.esk", "--data", p)
    assert_user_error(code, err, needle)
