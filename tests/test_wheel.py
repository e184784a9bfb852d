"""The lean install: the wheel built from this checkout, in a FRESH venv with the core dependencies only (no extras).

Offline and quick: the wheel is built with `pip wheel --no-deps --no-build-isolation` (hatchling comes with [test]) and
installed with `pip install --no-deps --no-index`. The core dependencies are not downloaded: the fresh venv (without
system site-packages) gets a .pth file naming a folder of symlinks to exactly the distributions the wheel's
Requires-Dist (no extras) needs, and theirs, taken from the venv running the tests. So TensorFlow, scikit-learn,
matplotlib and the rest are not importable there, as after `pip install edgesketch`.
"""
from __future__ import annotations

import importlib.metadata as md
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from edgesketch import esk
from edgesketch.sketch import random_sketch

pytestmark = pytest.mark.slow   # trains, builds firmware or runs QEMU: the full suite's tier (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[1]
ALREADY_IN_A_VENV = {"pip", "setuptools"}


def _run(cmd, env=None, cwd=None, timeout=600):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def _ok(r) -> str:
    assert r.returncode == 0, " ".join(map(str, r.args)) + "\n" + r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


def core_distributions(wheel: Path) -> dict[str, md.Distribution]:
    """The installed distributions the wheel's core requirements need, transitively (markers evaluated, no extras)."""
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    todo = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    found: dict[str, md.Distribution] = {}
    while todo:
        req = Requirement(todo.pop())
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(req.name)
        if name in found or name in ALREADY_IN_A_VENV:
            continue
        found[name] = dist = md.distribution(req.name)
        assert dist.files, f"{req.name} has no RECORD: cannot tell its files"
        todo += dist.requires or []
    return found


def link_distributions(dists: dict[str, md.Distribution], folder: Path) -> None:
    """Symlink every top-level module, package and .dist-info folder of `dists` into folder."""
    folder.mkdir()
    for dist in dists.values():
        for top in {Path(f).parts[0] for f in dist.files if not str(f).startswith("..")}:
            src = Path(dist.locate_file(top))
            if src.exists() and not (folder / top).exists() and not top.endswith(".pth") and top != "__pycache__":
                (folder / top).symlink_to(src)


@pytest.fixture(scope="module")
def lean(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    _ok(_run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w",
              tmp / "dist", ROOT], timeout=300))
    wheel = next((tmp / "dist").glob("edgesketch-*.whl"))
    venv = tmp / "venv"
    _ok(_run([sys.executable, "-m", "venv", venv]))
    py = venv / "bin" / "python"
    _ok(_run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--disable-pip-version-check", wheel]))
    dists = core_distributions(wheel)
    link_distributions(dists, tmp / "core-deps")
    site = Path(_ok(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])).strip())
    (site / "edgesketch-core-deps.pth").write_text(str(tmp / "core-deps") + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}:{env['PATH']}", XDG_CACHE_HOME=str(tmp / "cache"), COLUMNS="400")
    sk = random_sketch(D=64, C=10, L=16, K=6, P=48, taps=8, seed=5)
    sk.meta["source"] = "sklearn:digits"          # not loadable without the [train] extra
    esk.save(sk, tmp / "r.esk")
    return dict(tmp=tmp, py=py, exe=venv / "bin" / "edgesketch", env=env, wheel=wheel, deps=sorted(dists))


def test_wheel_holds_the_package_data(lean):
    with zipfile.ZipFile(lean["wheel"]) as z:
        names = set(z.namelist())
    for f in ("edgesketch/_data/boards/qemu-m4.toml", "edgesketch/_data/firmware/arduino/main.cpp",
              "edgesketch/_data/codegen_templates/formats/example.ino.j2", "edgesketch/bench/teachers.py",
              "edgesketch/_data/firmware/platformio/builder/main.py"):
        assert f in names, f
    assert not any(n.startswith(("tests/", "examples/")) for n in names)
    # the core only: no extra's package among what the lean venv sees
    assert set(lean["deps"]) >= {"numpy", "jinja2", "pyserial", "rich", "platformio", "scons"}
    assert not set(lean["deps"]) & {"tensorflow-cpu", "keras", "scikit-learn", "matplotlib", "ai-edge-litert", "emlearn",
                                   "optuna", "ray"}


def test_lean_install_runs_help_export_info_and_bench_help(lean):
    env, exe, tmp = lean["env"], lean["exe"], lean["tmp"]
    r = _run([lean["py"], "-c", "import importlib.util as u; print([m for m in ('tensorflow', 'keras', 'sklearn', "
                                "'matplotlib', 'ai_edge_litert', 'emlearn', 'mnist1d') if u.find_spec(m)])"], env=env)
    assert _ok(r).strip() == "[]", "an extra's module is importable in the lean venv"
    code = ("import sys, edgesketch, edgesketch.cli, edgesketch.export, edgesketch.formats, edgesketch.verify, "
            "edgesketch.bench.run; heavy = [m for m in ('tensorflow', 'keras', 'sklearn', 'matplotlib') if m in "
            "sys.modules]; assert not heavy, heavy; print(edgesketch.__file__)")
    assert "/venv/lib/" in _ok(_run([lean["py"], "-c", code], env=env, cwd=tmp))   # the installed copy, not the checkout
    assert "export" in _ok(_run([exe, "--help"], env=env, cwd=tmp))
    assert "--quick" in _ok(_run([exe, "bench", "--help"], env=env, cwd=tmp))
    assert "model id" in _ok(_run([exe, "info", "r.esk"], env=env, cwd=tmp))
    _ok(_run([exe, "export", "r.esk", "--format", "c", "-o", "c-out"], env=env, cwd=tmp))
    from edgesketch.codegen import RUNTIME
    assert sorted(p.name for p in (tmp / "c-out").iterdir()) == sorted(["README.md", "es_model.c", "es_model.h", *RUNTIME])
    # the Arduino example falls back to zeros when the sketch's data needs an extra to load
    out = _ok(_run([exe, "export", "r.esk", "--format", "arduino", "-o", "lib", "--zip"], env=env, cwd=tmp))
    assert "zeros" in out and "edgesketch[train]" in out and (tmp / "lib.zip").is_file()
    _ok(_run([exe, "export", "r.esk", "--board", "qemu-m4", "-o", "fw"], env=env, cwd=tmp))


def test_lean_install_names_the_extra_a_command_needs(lean):
    env, exe, tmp = lean["env"], lean["exe"], lean["tmp"]
    for args, extra in [(["distill", "t.keras", "--data", "sklearn:digits", "-o", "d.esk"], "train"),
                        (["eval", "r.esk"], "train"),
                        (["bench", "--quick"], "bench"),
                        (["tune", "t.keras", "--data", "sklearn:digits", "--board", "uno", "-o", "t.esk"], "tune")]:
        r = _run([exe, *args], env=env, cwd=tmp)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
        assert lines[0].startswith("edgesketch: error:") and f"pip install 'edgesketch[{extra}]'" in lines[0], lines


def test_lean_install_verifies_on_qemu_m4(lean):
    """verify from the lean install: export, PlatformIO build (offline, its own core dir) and QEMU, .npz data."""
    env, exe, tmp = lean["env"], lean["exe"], lean["tmp"]
    x = np.random.default_rng(0).normal(0, 8, (20, 64)).astype(np.float32)
    np.savez(tmp / "d.npz", x_train=x, x_test=x)
    r = _run([exe, "verify", "r.esk", "--board", "qemu-m4", "--data", "d.npz"], env=env, cwd=tmp, timeout=900)
    out = _ok(r)
    assert re.search(r"bit-exact agreements\s*\S\s*20 / 20", out), out
