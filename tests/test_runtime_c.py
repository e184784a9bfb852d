"""The hand-written C runtime (firmware/model/) tested directly on hand-built descriptors (tests/c/test_runtime.c), with
no code generation: on the host with gcc, plain and under ASan/UBSan, warnings as errors."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import ctest_util as cu
from edgesketch import codegen
from edgesketch.paths import firmware_dir

TEST = Path(__file__).parent / "c" / "test_runtime.c"


@pytest.mark.parametrize("flags", [["-O2"], ["-O1", "-g", *cu.SANITIZE], ["-O1", "-g", "-DES_SK_GATHER=16", *cu.SANITIZE]],
                         ids=["O2", "sanitizers", "thumb1-gather-path"])
def test_runtime_on_hand_built_descriptors(flags, tmp_path):
    model = firmware_dir() / "model"
    exe = tmp_path / "test_runtime"
    sources = [str(model / n) for n in codegen.RUNTIME if n.endswith(".c")]
    subprocess.run(["gcc", *cu.WARN, *flags, "-I", str(model), str(TEST), *sources, "-o", str(exe)], check=True)
    r = subprocess.run([str(exe)], capture_output=True, text=True, env=cu._san_env())
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and lines[-1] == "all passed", r.stdout + r.stderr
    assert sum(line.startswith("ok ") for line in lines) >= 19, r.stdout   # every check ran
