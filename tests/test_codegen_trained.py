"""Trained sketches through the generated C: identical to the numpy integer reference on every sample of the whole
test set, for digits and mnist1d, both modes, both layouts and three (L, K) sizes, and 4-bit counts."""
import numpy as np
import pytest

from ctest_util import assert_c_matches_reference
from edgesketch.sketch import quantize_inputs

pytestmark = pytest.mark.slow   # trains, builds firmware or runs QEMU: the full suite's tier (tests/conftest.py)

CASES = [(s, m, L, K) for s in ("sklearn:digits", "mnist1d") for m in ("learned", "representer") for L, K in ((4, 3), (16, 6), (32, 8))]
CASES += [(s, "learned-int4", 32, 6) for s in ("sklearn:digits", "mnist1d")]


@pytest.mark.parametrize("layout", ["unrolled", "compact"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0].split(':')[-1]}-{c[1]}-L{c[2]}K{c[3]}")
def test_generated_c_equals_reference_on_whole_test_set(quick_sketches, case, layout, tmp_path):
    sk, ds = quick_sketches[case]
    xq = quantize_inputs(sk, ds.x_test)
    assert len(xq) == len(ds.x_test) > 300
    assert_c_matches_reference(sk, xq, layout, workdir=tmp_path)


def test_sanitized_build_on_a_trained_sketch(quick_sketches, tmp_path):
    sk, ds = quick_sketches[("mnist1d", "learned", 16, 6)]
    xq = np.concatenate([quantize_inputs(sk, ds.x_test), quantize_inputs(sk, ds.x_train[:500])])
    assert_c_matches_reference(sk, xq, "unrolled", sanitize=True, workdir=tmp_path)
