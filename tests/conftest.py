"""Shared fixtures: small Keras teachers and distilled sketches, built once per test session (nothing cached on disk
between runs). Quick sketches are for bit-exactness and plumbing, where accuracy does not matter; the full digits
example (test_distill.py) checks accuracy.

Two tiers. `pytest -m fast` is the edit-test loop: no teacher training or distillation, no PlatformIO build, no QEMU
(host gcc builds of small C programs are allowed). Every test that does any of those carries @pytest.mark.slow (or
its module a `pytestmark`); the others are marked `fast` here at collection. The rule is enforced: while a fast test
(its fixtures included) runs, distil, PlatformIO, QEMU and Keras training raise, so a misfiled test fails instead of
slowing the loop. `pytest` alone (what .ci/run calls) runs both tiers."""
from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "examples"), str(ROOT / "examples" / "studies")]   # the gesture example, study scripts

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
        from edgesketch import build, distillation, emulate
        mp.setattr(distillation, "distill", _refuse("distil a sketch"))
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


def shared_file(tmp_path_factory, name: str, make) -> Path:
    """A file made once per test run, however many pytest-xdist workers ask for it: make(path) writes it (into a
    temporary name, renamed when done), under a lock, in a folder every worker of this run shares. `name` holds every
    input of its recipe, so different recipes never share a file. Nothing outlives the run (pytest's basetemp)."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared"
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    with open(root / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            tmp = root / f".tmp-{os.getpid()}-{name}"
            make(tmp)
            tmp.rename(path)
    return path


@pytest.fixture(scope="session")
def digits_teacher(tmp_path_factory) -> Path:
    return shared_file(tmp_path_factory, "digits-small-e30.keras", lambda p: train_small_teacher("sklearn:digits", p))


@pytest.fixture(scope="session")
def mnist1d_teacher(tmp_path_factory) -> Path:
    return shared_file(tmp_path_factory, "mnist1d-small-e15.keras", lambda p: train_small_teacher("mnist1d", p, epochs=15))


def quick_distill(teacher_path, source, mode="learned", **kw):
    """A sketch trained briefly: well-formed and real, not accurate. For bit-exactness tests."""
    from edgesketch import data, teacher
    from edgesketch.distillation import Config, distill
    ds = data.load(source)
    t = teacher.load(str(teacher_path))
    cfg = Config(mode=mode, epochs=kw.pop("epochs", 3), refit_epochs=2, aug_size=kw.pop("aug_size", 3000), **kw)
    sk = distill(t, ds.x_train, cfg, {"source": source, "class_names": [str(i) for i in range(t.n_outputs)],
                                      "input_shape": list(t.input_shape)})
    return sk, ds


def shared_sketch(tmp_path_factory, name: str, teacher_path, source, mode="learned", **kw) -> Path:
    """quick_distill's sketch saved as a .esk (the teacher's path in its meta), once per run (shared_file)."""
    def make(path):
        from edgesketch import esk
        sk, _ = quick_distill(teacher_path, source, mode, **dict(kw))
        sk.meta["teacher"] = str(teacher_path)
        esk.save(sk, path, force=True)
    key = "-".join(f"{k}{v}" for k, v in sorted(kw.items())).replace(" ", "").replace("(", "").replace(")", "").replace(",", "_")
    return shared_file(tmp_path_factory, f"{name}-{mode}-{key}.esk", make)


@pytest.fixture(scope="session")
def mnist1d_cnn_teacher(tmp_path_factory) -> Path:
    """A small Conv1D teacher of mnist1d (input 40 x 1): what the windowed sketch is for."""
    return shared_file(tmp_path_factory, "mnist1d-cnn-e15.keras",
                       lambda p: train_small_teacher("mnist1d", p, epochs=15, cnn=True))


@pytest.fixture(scope="session")
def windowed_esk(tmp_path_factory, mnist1d_cnn_teacher) -> Path:
    """A quick windowed sketch of the Conv1D teacher (window 9, stride 2, padding same: 20 positions) saved as a file,
    with the default family's structure: integer tap weights up to 7, two thresholds per sum."""
    from edgesketch import esk
    path = shared_sketch(tmp_path_factory, "mnist1d-windowed", mnist1d_cnn_teacher, "mnist1d", window=(9,), stride=(2,),
                         hyperplanes=16, thresholds=2, taps=9, weights=7, tables=8, bits=5, epochs=3, aug_size=4000)
    sk = esk.load(path)
    assert not sk.branches[0].ternary and sk.branches[0].sum_taps < sk.branches[0].n_taps
    return path


@pytest.fixture(scope="session")
def windowed_codebook_esk(tmp_path_factory, mnist1d_cnn_teacher) -> Path:
    """The quick windowed sketch with a flat branch beside it and its cells stored as 100 shared rows (--codebook):
    one book of rows for both branches, a row number per cell."""
    from edgesketch import esk
    path = shared_sketch(tmp_path_factory, "mnist1d-windowed", mnist1d_cnn_teacher, "mnist1d", window=(9,), stride=(2,),
                         hyperplanes=16, thresholds=2, taps=9, weights=7, tables=8, bits=5, flat_branch=(4, 5, 24, 6),
                         codebook=100, epochs=3, aug_size=4000)
    sk = esk.load(path)
    assert len(sk.branches) == 2 and sk.extras["cell_rows"].shape == (8 * 32 + 4 * 32,)
    return path


class _LazySketches(dict):
    """{(source, mode, L, K): (sketch, dataset)}, each distilled the first time a test asks for it (shared_sketch)."""

    def __init__(self, tmp_path_factory, teachers):
        super().__init__()
        self.factory, self.teachers = tmp_path_factory, teachers

    def __missing__(self, key):
        from edgesketch import data, esk
        source, mode, L, K = key
        if mode == "learned-int4":   # 4-bit counts, trained through the 4-bit grid; L=32 > 17 tables flushes mid-way
            kw, mode = dict(tables=L, bits=K, hyperplanes=24, count_bits=4), "learned"
        else:
            kw = dict(tables=L, bits=K, hyperplanes=max(2 * K, 24), **({"representers": 32} if mode == "representer" else {}))
        path = shared_sketch(self.factory, source.replace(":", "-"), self.teachers[source](), source, mode, **kw)
        self[key] = (esk.load(path), data.load(source))
        return self[key]


@pytest.fixture(scope="session")
def quick_sketches(tmp_path_factory, request):
    """{(source, mode, L, K): (sketch, dataset)} for both data sets, both modes and three (L, K) sizes, and 4-bit counts:
    each made when a test first asks for it (its teacher too), once per run."""
    return _LazySketches(tmp_path_factory, {"sklearn:digits": lambda: request.getfixturevalue("digits_teacher"),
                                            "mnist1d": lambda: request.getfixturevalue("mnist1d_teacher")})


@pytest.fixture(scope="session")
def digits_esk(tmp_path_factory, digits_teacher) -> Path:
    """A quick digits sketch saved as a file (for CLI, export and verify tests)."""
    return shared_sketch(tmp_path_factory, "digits", digits_teacher, "sklearn:digits", epochs=4)
