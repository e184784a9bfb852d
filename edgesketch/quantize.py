"""Quantise: calibrate int8 inputs, scale count tables to int4/int8/int16, fold centring into integer thresholds,
cluster count cells into shared rows, and record worst-case accumulator bounds. numpy (and scikit-learn's k-means)."""
from __future__ import annotations

import numpy as np

from .sketch import int_thresholds, projection_bound, score_bound, set_all_counts


def calibrate_inputs(x: np.ndarray, channels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Asymmetric int8 quantisation from calibration data, as TFLite computes a tensor's: the range is widened to
    include 0, scale = (hi - lo) / 255, zero point maps lo to -128. Per feature (channels None: every feature on
    the same int8 scale for flat hyperplanes), or per channel of channels-last features (channels C: one scale per
    channel over every position, so that hyperplanes shared by the positions of a window read the same units)."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    if channels:
        x = x.reshape(-1, channels)
    lo, hi = np.minimum(x.min(0), 0.0), np.maximum(x.max(0), 0.0)
    scale = (hi - lo) / 255.0
    scale = np.where(scale > 0, scale, 1.0)
    zero = np.clip(np.round(-128 - lo / scale), -128, 127)
    return scale.astype(np.float32), zero.astype(np.int32)


CLIPS = np.linspace(1.0, 0.3, 15)  # 4-bit scale search: fractions of the peak tried as the clipping level


def _sq_error(cf: np.ndarray, scale, qmax: int) -> np.ndarray:
    """Squared error of each value of cf rounded to the grid scale * [-qmax, qmax] (clipped at its ends)."""
    return (np.clip(np.rint(cf / scale), -qmax, qmax) * scale - cf) ** 2


def quantize_counts(counts_f: np.ndarray, task: str, bits: int = 8, scale=None) -> tuple[np.ndarray, np.ndarray]:
    """Float tables [L, M, C] -> integer tables and per-output scales. Classification shares one scale across
    outputs so that the argmax of the integer scores is the argmax of the dequantised outputs.

    4 bits (15 levels, int8 storage in [-7, 7]): classification first centres each cell across classes (a cell's
    common part adds the same to every class, so no argmax changes), then clips at the level in CLIPS * peak with the
    least squared error, since a few large cells would otherwise leave most cells with two or three levels.
    scale: use these per-output scales instead (the ones a quantisation-aware refit trained with)."""
    qmax = (1 << (bits - 1)) - 1
    cf = np.asarray(counts_f, np.float64)
    if bits == 4 and task == "classification":
        cf = cf - cf.mean(2, keepdims=True)
    if scale is not None:
        scale = np.broadcast_to(np.asarray(scale, np.float32), cf.shape[-1:]).copy()
        return np.clip(np.rint(cf / scale), -qmax, qmax).astype(np.int16 if bits == 16 else np.int8), scale
    peak = np.abs(cf).max(axis=(0, 1))
    if task == "classification":
        peak = np.full_like(peak, peak.max())
    peak = np.where(peak > 0, peak, qmax)
    best = np.ones_like(peak)
    if bits == 4:   # 8 and 16 bits keep the peak: their rounding error is already small
        err = [_sq_error(cf, c * peak / qmax, qmax).sum((0, 1)) for c in CLIPS]
        best = CLIPS[np.argmin(err, 0)] if task != "classification" else np.full_like(best, CLIPS[np.argmin(np.sum(err, 1))])
    scale = (best * peak / qmax).astype(np.float32)
    q = np.clip(np.rint(cf / scale), -qmax, qmax).astype(np.int16 if bits == 16 else np.int8)
    return q, scale


def read_weighted_scale(cells: list, reads: list, bits: int = 8, clips=np.linspace(1.0, 0.25, 31)) -> float:
    """One shared scale for the cells of several branches [N_b, C] (classification): the clipping level in clips * peak
    with the least expected squared error of a score, each branch's mean squared cell error weighted by the cells one
    inference reads from it (reads[b]: read-out positions x tables). A windowed branch adds a cell at every position,
    so its rounding errors add up over them, while clipping the few large cells of a flat branch costs once."""
    qmax = (1 << (bits - 1)) - 1
    cf = [np.asarray(c, np.float64) for c in cells]
    peak = max(np.abs(c).max(initial=0) for c in cf) or float(qmax)
    err = [sum(r * _sq_error(c, k * peak / qmax, qmax).mean() for c, r in zip(cf, reads)) for k in clips]
    return float(clips[int(np.argmin(err))] * peak / qmax)


def cluster_rows(cells: np.ndarray, R: int, weight: np.ndarray, task: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Shared rows (distill --codebook R): k-means of the float cells [N, C] into at most R rows, each cell weighted
    (by how often training lands in it). Classification centres each cell across classes first (a cell's common part
    changes no argmax). Returns (rows int64 [N], numbered 0 .. R'-1 and all used; the rows' centres [R', C])."""
    from sklearn.cluster import KMeans
    x = np.asarray(cells, np.float64)
    if task == "classification":
        x = x - x.mean(1, keepdims=True)
    R = min(int(R), len(np.unique(x, axis=0)))
    km = KMeans(R, n_init=1, random_state=seed).fit(x, sample_weight=np.asarray(weight, np.float64))
    used, rows = np.unique(km.labels_, return_inverse=True)
    return rows.astype(np.int64), km.cluster_centers_[used]


def fold_thresholds(sk):
    """Integer thresholds from the float ones, with the centring folded in (in place, every branch)."""
    for b in sk.branches:
        b.threshold = int_thresholds(b.threshold_f, b.offset, b.tap_ptr, b.tap_idx, b.tap_weight)


def finalize(sk, count_bits: int = 8):
    """Fill the integer half of a sketch from its float half (in place) and record the bounds; returns sk. The
    tables of every branch share their quantisation (one scale per output): their cells add up. Windowed sketches'
    int8 tables (classification) clip at read_weighted_scale's level (docs/algorithm-notes.md: chosen on validation);
    flat ones keep the peak at 127."""
    fold_thresholds(sk)
    cells = [b.counts_f.reshape(-1, b.counts_f.shape[-1]) for b in sk.branches]
    scale = sk.meta.get("count_scale") if count_bits == 4 else None
    if count_bits == 8 and sk.task == "classification" and not sk.is_flat:   # see read_weighted_scale
        scale = read_weighted_scale(cells, [b.n_reads for b in sk.branches])
    q, sk.out_scale = quantize_counts(np.concatenate(cells)[None], sk.task, count_bits, scale)
    set_all_counts(sk, "counts", q[0])
    sk.meta["count_bits"] = count_bits
    sk.meta["bounds"] = {"projection": projection_bound(sk), "score": score_bound(sk), "int32_max": 2**31 - 1}
    return sk
