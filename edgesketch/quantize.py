"""Quantise: calibrate int8 inputs, scale count tables to int8/int16, fold centring into integer thresholds,
and record worst-case accumulator bounds. numpy only."""
from __future__ import annotations

import numpy as np

from .sketch import int_thresholds, projection_bound, score_bound


def calibrate_inputs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature asymmetric int8 quantisation from calibration data, as TFLite computes a tensor's:
    the range is widened to include 0, scale = (hi - lo) / 255, zero point maps lo to -128.
    Per feature rather than per tensor, so that ternary taps see every feature on the same int8 scale."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    lo, hi = np.minimum(x.min(0), 0.0), np.maximum(x.max(0), 0.0)
    scale = (hi - lo) / 255.0
    scale = np.where(scale > 0, scale, 1.0)
    zero = np.clip(np.round(-128 - lo / scale), -128, 127)
    return scale.astype(np.float32), zero.astype(np.int32)


def quantize_counts(counts_f: np.ndarray, task: str, bits: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Float tables [L, M, C] -> integer tables and per-output scales. Classification shares one scale across
    outputs so that the argmax of the integer scores is the argmax of the dequantised outputs."""
    qmax = (1 << (bits - 1)) - 1
    peak = np.abs(counts_f).max(axis=(0, 1))
    if task == "classification":
        peak = np.full_like(peak, peak.max())
    scale = np.where(peak > 0, peak / qmax, 1.0).astype(np.float32)
    q = np.clip(np.rint(counts_f / scale), -qmax, qmax).astype(np.int8 if bits == 8 else np.int16)
    return q, scale


def fold_thresholds(sk):
    """Integer thresholds from the float ones, with the centring folded in (in place)."""
    sk.threshold = int_thresholds(sk.threshold_f, sk.offset, sk.tap_ptr, sk.tap_idx, sk.tap_sign)


def finalize(sk, count_bits: int = 8):
    """Fill the integer half of a sketch from its float half (in place) and record the bounds; returns sk."""
    fold_thresholds(sk)
    sk.counts, sk.out_scale = quantize_counts(sk.counts_f, sk.task, count_bits)
    sk.meta["count_bits"] = count_bits
    sk.meta["bounds"] = {"projection": projection_bound(sk), "score": score_bound(sk), "int32_max": 2**31 - 1}
    return sk
