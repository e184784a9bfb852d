"""The numpy sketch: the representer estimate is unbiased with variance ~ 1/L, and the integer path is consistent."""
import numpy as np
import pytest

from edgesketch import quantize
from edgesketch.sketch import (float_hash_bits, input_units, int_hash_bits, int_projections, int_scores, int_thresholds,
                               quantize_inputs, random_sketch, representer_counts, score_bound, srp_kernel, validate)


def _estimates(x, w, alpha, L, K, trials, rng, gaussian=True):
    """Sketch estimates of sum_j alpha_j k(x, w_j) for `trials` independent sketches: [trials, N, C]."""
    D = x.shape[1]
    out = []
    for _ in range(trials):
        R = rng.normal(size=(D, L * K)) if gaussian else rng.choice([1, 0, -1], size=(D, L * K), p=[1 / 6, 2 / 3, 1 / 6])
        counts = representer_counts(w @ R > 0, alpha, L, K)
        xb = ((x @ R > 0).reshape(len(x), L, K).astype(np.int64) << np.arange(K)).sum(-1)
        out.append(counts[np.arange(L), xb].sum(1))
    return np.array(out)


def test_representer_estimate_is_unbiased_and_variance_falls_like_one_over_L():
    rng = np.random.default_rng(0)
    D, M, C, K = 12, 6, 3, 3
    x, w, alpha = rng.normal(size=(5, D)), rng.normal(size=(M, D)), rng.normal(size=(M, C))
    exact = srp_kernel(x, w, K) @ alpha
    trials = 3000
    e1 = _estimates(x, w, alpha, 1, K, trials, rng)
    # unbiased: the mean of independent L=1 sketches is within 4 standard errors of the exact kernel sum
    se = e1.std(0) / np.sqrt(trials)
    assert np.all(np.abs(e1.mean(0) - exact) < 4 * se + 1e-9), (e1.mean(0), exact)
    # variance falls like 1/L: the L=16 estimate's variance is var(L=1)/16 up to sampling noise
    e16 = _estimates(x, w, alpha, 16, K, 1000, rng)
    ratio = e16.var(0).mean() / e1.var(0).mean()
    assert 0.75 / 16 < ratio < 1.33 / 16, ratio
    # and the error against the exact sum keeps shrinking as L grows
    errs = [np.sqrt(((_estimates(x, w, alpha, L, K, 200, rng) - exact) ** 2).mean()) for L in (1, 4, 16, 64)]
    assert all(a > b for a, b in zip(errs, errs[1:])), errs
    assert errs[-1] < errs[0] / 5


def test_sparse_ternary_projections_estimate_the_kernel_closely():
    """The ternary (+1/0/-1 with 1/6, 2/3, 1/6) hashes used on device approximate the SRP kernel."""
    rng = np.random.default_rng(1)
    D, M, C, K = 64, 6, 2, 3
    x, w, alpha = rng.normal(size=(4, D)), rng.normal(size=(M, D)), rng.normal(size=(M, C))
    exact = srp_kernel(x, w, K) @ alpha
    est = _estimates(x, w, alpha, 64, K, 300, rng, gaussian=False).mean(0)
    assert np.abs(est - exact).max() < 0.05 * np.abs(alpha).sum(0).max()


@pytest.mark.parametrize("P,taps", [(None, None), (48, 8), (20, 3)])
def test_integer_hash_equals_float_hash_on_integer_inputs(P, taps):
    """Folding the centring into integer thresholds changes nothing when the inputs are exactly integers."""
    sk = random_sketch(P=P, taps=taps, seed=3)
    xq = np.random.default_rng(4).integers(-128, 128, (2000, sk.n_inputs)).astype(np.int8)
    u = xq.astype(np.float64)  # u = xq: an input already on the integer grid
    assert np.array_equal(float_hash_bits(sk, u), int_hash_bits(sk, xq))


def test_int_thresholds_floor_fractional_sums():
    ptr, idx, sign = np.array([0, 2]), np.array([0, 1]), np.array([1, -1], np.int8)
    # sum sign*(u-o) > 0.5 with o = (0.25, 0)  <=>  u0 - u1 > 0.75  <=>  z > 0 for integer z
    assert int_thresholds(np.array([0.5]), np.array([0.25, 0.0]), ptr, idx, sign).tolist() == [0]
    assert int_thresholds(np.array([-0.5]), np.array([0.0, 0.0]), ptr, idx, sign).tolist() == [-1]
    # hyperplanes without taps, including the last ones, keep their own threshold
    ptr2 = np.array([0, 2, 2, 2])
    assert int_thresholds(np.array([0.5, 1.5, -2.5]), np.array([0.25, 0.0]), ptr2, idx, sign).tolist() == [0, 1, -3]


def test_quantize_inputs_rounds_half_to_even_and_saturates():
    sk = random_sketch(D=4, seed=0)
    sk.in_scale[:] = 1.0; sk.in_zero[:] = 0
    x = np.array([[0.5, 1.5, -300.0, 300.0], [-0.5, 2.5, 126.6, -128.4]])
    assert quantize_inputs(sk, x).tolist() == [[0, 2, -128, 127], [0, 2, 127, -128]]


def test_scores_stay_inside_recorded_bounds_and_int16_counts_work():
    sk = random_sketch(count_dtype=np.int16, seed=5)
    xq = np.random.default_rng(6).integers(-128, 128, (500, sk.n_inputs)).astype(np.int8)
    s = int_scores(sk, xq)
    assert s.dtype == np.int32 and np.abs(s).max() <= score_bound(sk) < 2**31
    assert np.abs(int_projections(sk, xq)).max() <= 128 * np.diff(sk.branches[0].tap_ptr).max()


def test_calibration_maps_range_onto_int8():
    x = np.array([[0.0, -1.0, 5.0], [16.0, 1.0, 5.0]])
    scale, zero = quantize.calibrate_inputs(x)
    sk = random_sketch(D=3, seed=0)
    sk.in_scale, sk.in_zero = scale, zero
    q = quantize_inputs(sk, x)
    assert q[:, 0].tolist() == [-128, 127]  # range starting at 0 maps exactly
    assert abs(int(q[0, 1]) + 128) <= 1 and q[1, 1] == 127  # an integer zero point nudges a range crossing 0 by at most 1
    assert np.allclose(input_units(sk, x)[:, 0], [-128, 127])


def test_4bit_counts_centre_cells_clip_by_error_and_pack_two_a_byte(tmp_path):
    """4-bit tables: a common part added to every class of a cell changes nothing (it is centred away), the clipping
    level beats plain peak scaling on squared error, values stay in [-7, 7], and .esk keeps count_bits (packed size)."""
    from edgesketch import esk
    rng = np.random.default_rng(0)
    cf = rng.standard_t(3, (16, 64, 10))                   # heavy tails: a few large cells
    q, scale = quantize.quantize_counts(cf, "classification", 4)
    q2, scale2 = quantize.quantize_counts(cf + rng.normal(0, 50, (16, 64, 1)), "classification", 4)
    assert np.array_equal(q, q2) and np.allclose(scale, scale2)
    assert q.dtype == np.int8 and q.min() >= -7 and q.max() <= 7
    c = cf - cf.mean(2, keepdims=True)
    peak = np.abs(c).max() / 7
    err = lambda s: ((np.clip(np.rint(c / s), -7, 7) * s - c) ** 2).sum()
    assert err(scale[0]) < 0.8 * err(peak)
    q3, _ = quantize.quantize_counts(cf, "classification", 4, scale=scale)      # a given scale is used as is
    assert np.array_equal(q3, q)
    sk = random_sketch(L=8, K=4, C=10, P=16, taps=4, count_bits=4)
    assert sk.count_bits == 4 and sk.table_bytes == 8 * 16 * 5 and not validate(sk)
    esk.save(sk, tmp_path / "a.esk")
    back = esk.load(tmp_path / "a.esk")
    assert back.count_bits == 4 and back.table_bytes == sk.table_bytes and np.array_equal(back.branches[0].counts, sk.branches[0].counts)
    sk.branches[0].counts[0, 0, 0] = 9
    assert any("4-bit" in p for p in validate(sk))


def test_windowed_int8_tables_clip_where_rounding_adds_up_over_positions():
    """finalize: a windowed branch adds a cell at every read-out position, so its rounding errors add up over them;
    the shared int8 scale of a windowed sketch therefore clips a flat branch's few large cells (read_weighted_scale),
    which lowers the expected squared error of a score. A flat sketch keeps its peak at 127."""
    from edgesketch.sketch import Window, all_counts
    rng = np.random.default_rng(0)
    sk = random_sketch(L=8, K=4, P=16, taps=4, windows=[(Window.over((8, 8, 1), (3, 3)), 8, 4, 16, 4)])
    flat, win = sk.branches
    assert win.window.n_readouts == 64 and flat.window.n_readouts == 1
    flat.counts_f = (rng.standard_t(3, flat.counts_f.shape) * 20).astype(np.float32)   # a few large cells
    win.counts_f = rng.normal(0, 1, win.counts_f.shape).astype(np.float32)             # many small ones, read 64 times
    quantize.finalize(sk)
    cf = all_counts(sk, "counts_f").astype(np.float64)
    peak = np.abs(cf).max() / 127
    assert sk.out_scale[0] < 0.9 * peak and np.abs(all_counts(sk)).max() == 127
    reads = [8, 64 * 8]
    def score_err(scale):
        return sum(r * ((np.clip(np.rint(b.counts_f / scale), -127, 127) * scale - b.counts_f) ** 2).mean()
                   for b, r in zip(sk.branches, reads))
    assert score_err(sk.out_scale[0]) < 0.9 * score_err(peak)
    assert np.array_equal(all_counts(sk), np.clip(np.rint(cf / sk.out_scale[0]), -127, 127))
    f = random_sketch(L=8, K=4, P=16, taps=4)
    f.branches[0].counts_f = (rng.standard_t(3, f.branches[0].counts_f.shape) * 20).astype(np.float32)
    quantize.finalize(f)
    assert np.isclose(f.out_scale[0], np.abs(f.branches[0].counts_f).max() / 127)


def test_shared_rows_cover_every_branch_and_validate_checks_them():
    """cell_rows of a sketch of several branches: one row number per cell of every branch, in all_counts order; the
    book holds each row once and rebuilds every branch's counts; validate refuses a wrong length, an unused row and
    cells of one row that differ."""
    from edgesketch.sketch import Window, all_counts, shared_rows
    w = Window.over((40, 1), 9, 2)
    sk = random_sketch(L=4, K=5, P=24, taps=6, codebook=60, windows=[(w, 8, 6, 16, 6)], seed=3)
    rows, book = shared_rows(sk)
    assert rows.shape == (4 * 32 + 8 * 64,) and book.shape == (60, 10) and not validate(sk)
    np.testing.assert_array_equal(book[rows], all_counts(sk))
    assert sk.table_bytes == rows.size + 60 * 10
    good = sk.extras["cell_rows"]
    sk.extras["cell_rows"] = good[:-1]
    assert any("one per cell of every branch" in p for p in validate(sk))
    sk.extras["cell_rows"] = np.where(good == 7, 8, good).astype(good.dtype)   # row 7 unused
    assert any("each used" in p for p in validate(sk))
    sk.extras["cell_rows"] = good
    sk.branches[1].counts = sk.branches[1].counts.copy()
    sk.branches[1].counts[0, 0, 0] ^= 1
    assert any("hold different counts" in p for p in validate(sk))
