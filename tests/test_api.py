"""The library API (edgesketch.api): a Keras model in memory to a verified device in a few lines, the same result as
the command line, typed errors that name arguments, and the caller's global state left as it was."""
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgesketch as es
from edgesketch import data
from edgesketch.errors import ConfigError, DataError, UserError
from test_esk_cli import run_cli

QUICK = dict(epochs=2, refit_epochs=1, aug_size=3000, tables=8, bits=5, hyperplanes=16, taps=6)


@pytest.fixture(scope="module")
def mnist1d():
    return data.load("mnist1d")


@pytest.fixture(scope="module")
def cnn_model(mnist1d_cnn_teacher):
    import keras
    return keras.models.load_model(str(mnist1d_cnn_teacher), compile=False)


def test_import_does_not_import_tensorflow():
    code = "import sys, edgesketch as es; assert callable(es.distill); print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_notebook_path_matches_the_command_line(cnn_model, mnist1d_cnn_teacher, mnist1d, tmp_path):
    """From a model object to a verified device in a few lines; the CLI distils the same sketch (same model id) from
    the saved teacher, and verifies the saved file with the same report."""
    ds = mnist1d
    sk = es.distill(cnn_model, ds.x_train, ds.y_train, x_test=ds.x_test, y_test=ds.y_test, progress=False, **QUICK)
    assert not sk.sketch.is_flat                                    # a (40, 1) input: windows by default
    m = sk.evaluate()
    assert m.int_accuracy == m["int_accuracy"] > 0.2 and m.n_test == 1000
    report = sk.verify(board="qemu-m4", progress=False)           # unsaved: the model id is set at distil time
    assert report.ok and report.n == 1000 and report.device_accuracy == m.int_accuracy
    path = sk.save(tmp_path / "api.esk")
    code, out, err = run_cli("distill", mnist1d_cnn_teacher, "--data", "mnist1d", "-o", tmp_path / "cli.esk",
                             "--epochs", "2", "-L", "8", "-K", "5", "-P", "16", "-s", "6")
    assert code == 0, err
    cli = es.load(tmp_path / "cli.esk")
    code, out, err = run_cli("verify", path, "--board", "qemu-m4", "--data", "mnist1d", "--json", tmp_path / "v.json")
    assert code == 0, err
    v = json.loads((tmp_path / "v.json").read_text())
    assert (v["n"], v["bit_exact"], v["device_accuracy"], v["cost_median"]) == \
        (report.n, report.bit_exact, report.device_accuracy, report.cost_median)
    same = es.distill(str(mnist1d_cnn_teacher), ds.x_train, ds.y_train, x_test=ds.x_test, y_test=ds.y_test,
                      progress=False, epochs=2, tables=8, bits=5, hyperplanes=16, taps=6)
    assert same.model_id == cli.model_id


def test_host_predictions_and_files(cnn_model, mnist1d, tmp_path):
    ds = mnist1d
    sk = es.distill(cnn_model, ds.x_train[:500], progress=False, **QUICK)
    xq = sk.quantize(ds.x_test[:50])
    assert xq.dtype == np.int8 and xq.shape == (50, 40)
    scores = sk.predict_int(xq)
    out = sk.predict(ds.x_test[:50])
    np.testing.assert_allclose(out, scores * sk.sketch.out_scale + sk.sketch.out_bias, rtol=1e-6)
    assert sk.predict_float(ds.x_test[:50]).shape == (50, 10)
    files = sk.generate_c(tmp_path / "c")
    assert sorted(p.name for p in files) == ["es_model.c", "es_model.h"]
    with pytest.raises(UserError) as e:
        sk.generate_c(tmp_path / "c")
    assert e.value.argument == "force"
    sk.generate_c(tmp_path / "c", force=True)
    proj = sk.export(tmp_path / "fw", board="qemu-m0")
    assert (proj / "platformio.ini").is_file()


def test_errors_name_their_argument(cnn_model, mnist1d, tmp_path):
    ds = mnist1d
    cases = [
        (lambda: es.distill(cnn_model, ds.x_train[:, :30], progress=False), DataError, "x_train"),
        (lambda: es.distill(cnn_model, ds.x_train, progress=False, tables=0), ConfigError, "tables"),
        (lambda: es.distill(cnn_model, ds.x_train, progress=False, tabels=8), ConfigError, "tabels"),
        (lambda: es.distill(cnn_model, ds.x_train, progress=False, padding="valid", dilation=(6,)), ConfigError, "window"),
        (lambda: es.distill(cnn_model, ds.x_train, progress=False, codebook=5000), ConfigError, "codebook"),
        (lambda: es.distill("nope.keras", ds.x_train, progress=False), UserError, "teacher"),
        (lambda: es.distill(object(), ds.x_train, progress=False), UserError, "teacher"),
    ]
    for call, kind, arg in cases:
        with pytest.raises(kind) as e:
            call()
        assert e.value.argument == arg and "\n" not in str(e.value) and "--" not in str(e.value), str(e.value)
    sk = es.load(__import__("pathlib").Path(__file__).parent / "fixtures" / "v1_flat.esk")
    with pytest.raises(ConfigError) as e:
        sk.verify(board="qemu-m4", port="socket://127.0.0.1:1", x=np.zeros((1, 20)))
    assert e.value.argument == "board"
    with pytest.raises(DataError) as e:
        sk.predict(np.zeros((3, 7)))
    assert e.value.argument == "x"
    with pytest.raises(DataError) as e:
        sk.evaluate()
    assert e.value.argument == "x"


def test_distill_leaves_global_state_as_it_found_it(cnn_model, mnist1d):
    from tensorflow.python.framework import config as tfconfig
    random.seed(123); np.random.seed(456)
    py, npst, det = random.getstate(), np.random.get_state(), tfconfig.is_op_determinism_enabled()
    es.distill(cnn_model, mnist1d.x_train[:300], progress=False, **QUICK)
    assert random.getstate() == py
    after = np.random.get_state()
    assert after[0] == npst[0] and np.array_equal(after[1], npst[1]) and after[2:] == npst[2:]
    assert tfconfig.is_op_determinism_enabled() == det


def test_one_version_single_sourced():
    """pyproject.toml takes its version from edgesketch.__version__ (stamped into every .esk and generated file): the
    installed distribution reports the same one, and pyproject states none of its own."""
    import importlib.metadata

    import edgesketch
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in text and "\nversion =" not in text
    assert importlib.metadata.version("edgesketch") == edgesketch.__version__
