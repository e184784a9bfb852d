"""Shared fixtures: small Keras teachers and distilled sketches, built once per test session (nothing cached on disk
between runs). Quick sketches are for bit-exactness and plumbing, where accuracy does not matter; the full digits
example (test_distill.py) checks accuracy.

Two tiers. `pytest -m fast` is the edit-test loop: no teacher training or distillation, no PlatformIO build, no QEMU
(host gcc builds of small C programs are allowed). Every test that does any of those carries @pytest.mark.slow (or
its module a `pytestmark`); the others are marked `fast` here at collection. The rule is enforced: while a fast test
(its fixtures included) runs, distil, PlatformIO, QEMU and Keras training raise, so a misfiled test fails instead of
slowing the loop. `pytest` alone (what .ci/run calls) runs both tiers."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

# fixtures that train a teacher or distil a sketch: a test that uses one is slow
SLOW_FIXTURES = {"digits_teacher", "mnist1d_teacher", "mnist1d_cnn_teacher", "windowed_esk", "windowed_codebook_esk",
                 "quick_sketches", "digits_esk"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("slow") is None and SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.fast)


class _SlowWork(RuntimeError):
    pass


def _refuse(what):
    def f(*a, **k):
        raise _SlowWork(f"a fast test may not {what}: mark it @pytest.mark.slow (tests/conftest.py)")
    return f


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    """While a fast test sets up and runs, the slow work it must not do raises (torn down in pytest_runtest_teardown)."""
    if item.get_closest_marker("fast") is not None:
        mp = pytest.MonkeyPatch()
        from edgesketch import build, distill, emulate
        mp.setattr(distill, "distill", _refuse("distil a sketch"))
        mp.setattr(build, "run_pio", _refuse("build firmware with PlatformIO"))
        mp.setattr(emulate, "_start", _refuse("start QEMU"))
        if "keras" in sys.modules:
            mp.setattr(sys.modules["keras"].Model, "fit", _refuse("train a Keras model"))
        import subprocess
        init = subprocess.Popen.__init__

        def popen(self, args, *a, **k):   # QEMU and PlatformIO started directly, not through edgesketch
            prog = os.path.basename(str(args[0] if isinstance(args, (list, tuple)) else str(args).split()[0]))
            if prog.startswith(("qemu-system", "pio", "platformio")) or "platformio" in " ".join(map(str, args))[:200]:
                raise _SlowWork(f"a fast test may not run {prog}: mark it @pytest.mark.slow (tests/conftest.py)")
            init(self, args, *a, **k)
        mp.setattr(subprocess.Popen, "__init__", popen)
        item._es_guard = mp
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield
    mp = getattr(item, "_es_guard", None)
    if mp is not None:
        mp.undo()


def train_small_teacher(source: str, out: Path, epochs: int = 30, cnn: bool = False) -> Path:
    import keras
    from keras import layers

    from edgesketch import data
    keras.utils.set_random_seed(0)
    ds = data.load(source)
    d, c = ds.x_train.shape[1], int(ds.y_train.max()) + 1
    if cnn:
        model = keras.Sequential([keras.Input((d, 1)), layers.Conv1D(8, 5, activation="relu"), layers.Flatten(),
                                  layers.Dense(c, activation="softmax")])
    else:
        model = keras.Sequential([keras.Input((d,)), layers.Rescaling(1 / float(np.abs(ds.x_train).max())),
                                  layers.Dense(32, activation="relu"), layers.Dense(c, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(ds.x_train.reshape((len(ds.x_train),) + tuple(model.inputs[0].shape[1:])), ds.y_train,
              epochs=epochs, batch_size=64, verbose=0)
    model.save(out)
    return out


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("es")


@pytest.fixture(scope="session")
def digits_teacher(workdir) -> Path:
    return train_small_teacher("sklearn:digits", workdir / "digits-small.keras")


@pytest.fixture(scope="session")
def mnist1d_teacher(workdir) -> Path:
    return train_small_teacher("mnist1d", workdir / "mnist1d-small.keras", epochs=15)


def quick_distill(teacher_path, source, mode="learned", **kw):
    """A sketch trained briefly: well-formed and real, not accurate. For bit-exactness tests."""
    from edgesketch import data, teacher
    from edgesketch.distill import Config, distill
    ds = data.load(source)
    t = teacher.load(str(teacher_path))
    cfg = Config(mode=mode, epochs=kw.pop("epochs", 3), refit_epochs=2, aug_size=kw.pop("aug_size", 3000), **kw)
    sk = distill(t, ds.x_train, cfg, {"source": source, "class_names": [str(i) for i in range(t.n_outputs)],
                                      "input_shape": list(t.input_shape)})
    return sk, ds


@pytest.fixture(scope="session")
def mnist1d_cnn_teacher(workdir) -> Path:
    """A small Conv1D teacher of mnist1d (input 40 x 1): what the windowed sketch is for."""
    return train_small_teacher("mnist1d", workdir / "mnist1d-cnn.keras", epochs=15, cnn=True)


@pytest.fixture(scope="session")
def windowed_esk(workdir, mnist1d_cnn_teacher) -> Path:
    """A quick windowed sketch of the Conv1D teacher (window 9, stride 2, padding same: 20 positions) saved as a file,
    with the default family's structure: integer tap weights up to 7, two thresholds per sum."""
    from edgesketch import esk
    sk, _ = quick_distill(mnist1d_cnn_teacher, "mnist1d", window=(9,), stride=(2,), hyperplanes=16, thresholds=2, taps=9,
                          weights=7, tables=8, bits=5, epochs=3, aug_size=4000)
    assert not sk.branches[0].ternary and sk.branches[0].sum_taps < sk.branches[0].n_taps
    sk.meta["teacher"] = str(mnist1d_cnn_teacher)
    path = workdir / "mnist1d-windowed-quick.esk"
    esk.save(sk, path, force=True)
    return path


@pytest.fixture(scope="session")
def windowed_codebook_esk(workdir, mnist1d_cnn_teacher) -> Path:
    """The quick windowed sketch with a flat branch beside it and its cells stored as 100 shared rows (--codebook):
    one book of rows for both branches, a row number per cell."""
    from edgesketch import esk
    sk, _ = quick_distill(mnist1d_cnn_teacher, "mnist1d", window=(9,), stride=(2,), hyperplanes=16, thresholds=2, taps=9,
                          weights=7, tables=8, bits=5, flat_branch=(4, 5, 24, 6), codebook=100, epochs=3, aug_size=4000)
    assert len(sk.branches) == 2 and sk.extras["cell_rows"].shape == (8 * 32 + 4 * 32,)
    sk.meta["teacher"] = str(mnist1d_cnn_teacher)
    path = workdir / "mnist1d-windowed-codebook-quick.esk"
    esk.save(sk, path, force=True)
    return path


@pytest.fixture(scope="session")
def quick_sketches(digits_teacher, mnist1d_teacher):
    """{(source, mode, L, K): (sketch, dataset)} for both data sets, both modes and three (L, K) sizes."""
    out = {}
    for source, tpath in (("sklearn:digits", digits_teacher), ("mnist1d", mnist1d_teacher)):
        for mode in ("learned", "representer"):
            for L, K in ((4, 3), (16, 6), (32, 8)):
                kw = dict(tables=L, bits=K, hyperplanes=max(2 * K, 24))
                if mode == "representer":
                    kw["representers"] = 32
                out[(source, mode, L, K)] = quick_distill(tpath, source, mode, **kw)
        # 4-bit counts, trained through the 4-bit grid; L=32 > 17 tables makes the C flush its byte lanes mid-way
        out[(source, "learned-int4", 32, 6)] = quick_distill(tpath, source, "learned", tables=32, bits=6, hyperplanes=24,
                                                             count_bits=4)
    return out


@pytest.fixture(scope="session")
def digits_esk(workdir, digits_teacher) -> Path:
    """A quick digits sketch saved as a file (for CLI, export and verify tests)."""
    from edgesketch import esk
    sk, _ = quick_distill(digits_teacher, "sklearn:digits", epochs=4)
    sk.meta["teacher"] = str(digits_teacher)
    path = workdir / "digits-quick.esk"
    esk.save(sk, path, force=True)
    return path
