"""What a sketch costs on a device, estimated from its structure alone (no build, no training): Cortex-M0 instructions
per inference of the generated C (unrolled layout), a linear function of counts the structure fixes.

    from edgesketch import cost
    cost.m0_instructions(cost.structure(cfg, input_shape, n_outputs))   # a distill.Config before training
    cost.m0_instructions(cost.structure_of(sketch))                     # a distilled (or random) sketch

A structure is a list of per-branch dicts (positions, read-outs, taps, hyperplanes, tables, bits, ...) plus the outputs,
count bits and shared rows; `features` turns it into the counts below and `estimate` is their dot product with
coefficients fitted by least squares (non-negative) to exact QEMU instruction counts of random sketches on qemu-m0:
`python examples/studies/cost_fit.py` measures them and rewrites cost_m0.json, so the fit follows the generated C
when it changes. Instruction counts of the generated C do not depend on the values of a sketch (no data-dependent
branches), which is why random sketches serve.

  const        1                                   (call, scores cleared, loops set up)
  inputs       values copied into a padded input   (windowed branches with padding)
  positions    hashed positions                    (per position: base pointer, call of the hash)
  preload      positions x window values, for windows of at most PRELOAD_MAX values (read into locals once)
  taps         positions x taps of distinct sums   (an add each)
  taps_mem     the same, for windows of more values (each tap a load too)
  far          loads of window values more than 31 bytes from the window's start (Thumb-1 loads reach 31: the
               offset takes a register), positions x (preloaded values, or taps in proportion to such values)
  farther      the same beyond 255 bytes (the offset comes from a literal pool)
  weighted     the same, when tap weights exceed 1 (a multiply more)
  hyperplanes  positions x hyperplanes             (threshold subtract, sign, bit)
  bit_writes   positions x bits written into bucket words (L x K for random selectors: every bit written wherever a
               table reads it; one a hyperplane for window selectors)
  reads        read-out positions x tables         (a bucket: mask, address)
  lookups      read-out positions x tables x C     (a load and an add: int8/int16 counts)
  lookups4     read-out positions x tables x ceil(C / 2) (4-bit counts: nibble planes)
  row_reads    read-out positions x tables, shared rows (a row number's load)
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

FEATURES = ("const", "inputs", "positions", "preload", "taps", "taps_mem", "far", "farther", "weighted", "hyperplanes",
            "bit_writes", "reads", "lookups", "lookups4", "row_reads")
PRELOAD_MAX = 16     # the generated C reads windows of at most this many values into locals once per position
COEF_FILE = Path(__file__).with_name("cost_m0.json")


def structure(cfg, input_shape, n_outputs: int) -> dict:
    """The structure a distill.Config gives for a teacher input shape, before training (taps per hyperplane as
    configured, at most the window's elements)."""
    from .distillation import branch_sizes, windows_of
    wins = windows_of(cfg, input_shape)
    thresholds = [cfg.thresholds] + [1] * (len(wins) - 1)
    branches = []
    for w, (L, K, P, s), T in zip(wins, branch_sizes(cfg), thresholds):
        if cfg.mode == "representer":      # L * K private hyperplanes of random density (about a third of the inputs)
            P, s, T = L * K, max(1, round(cfg.density * w.n_elements)), 1
        branches.append(_branch(w, L, K, P, (P // T) * min(s, w.n_elements), cfg.weights > 1 and cfg.mode == "learned",
                                cfg.selectors == "window"))
    return {"branches": branches, "outputs": int(n_outputs), "count_bits": int(cfg.count_bits),
            "codebook": int(cfg.codebook)}


def structure_of(sk) -> dict:
    """The structure of a sketch (distilled or random)."""
    from .sketch import hash_structure, shared_rows
    branches = [_branch(b.window, b.n_tables, b.n_bits, b.n_hyperplanes, b.sum_taps, not b.ternary,
                        hash_structure(b)["windows"]) for b in sk.branches]
    shared = shared_rows(sk)
    return {"branches": branches, "outputs": int(sk.n_outputs), "count_bits": int(sk.count_bits),
            "codebook": 0 if shared is None else len(shared[1])}


def _branch(w, L, K, P, sum_taps, weighted, window_selectors) -> dict:
    off = w.element_offsets() if not w.is_flat else np.zeros(1)
    return {"positions": w.n_positions, "readouts": w.n_readouts, "regions": w.regions, "elements": w.n_elements,
            "far": float(np.mean(off > 31)), "farther": float(np.mean(off > 255)),
            "padded": w.padded_inputs if any(w.padding) else 0, "tables": int(L), "bits": int(K), "hyperplanes": int(P),
            "sum_taps": int(sum_taps), "weighted": bool(weighted), "window_selectors": bool(window_selectors)}


def table_bytes(st: dict) -> int:
    """Bytes of the count tables of a structure: cells x outputs x count bits / 8 (4-bit: ceil(C / 2) bytes a cell); with
    R shared rows a row number per cell (a byte up to 256 rows) and the R rows (sketch.Sketch.table_bytes)."""
    cells = sum(b["regions"] * b["tables"] << b["bits"] for b in st["branches"])
    C, R = st["outputs"], int(st["codebook"])
    if R:
        return cells * (1 if R <= 256 else 2) + R * C * st["count_bits"] // 8
    return cells * (-(-C // 2) if st["count_bits"] == 4 else C * st["count_bits"] // 8)


def features(st: dict) -> np.ndarray:
    """The counts of FEATURES for a structure: float64 [len(FEATURES)]."""
    C, f = st["outputs"], dict.fromkeys(FEATURES, 0.0)
    f["const"] = 1.0
    for b in st["branches"]:
        n, r, L = b["positions"], b["readouts"], b["tables"]
        f["inputs"] += b["padded"]
        f["positions"] += n
        f["taps"] += n * b["sum_taps"]
        small = b["elements"] <= PRELOAD_MAX
        f["preload"] += n * b["elements"] * small
        f["taps_mem"] += n * b["sum_taps"] * (not small)
        loads = n * (b["elements"] if small else b["sum_taps"])
        f["far"] += loads * b.get("far", 0.0)
        f["farther"] += loads * b.get("farther", 0.0)
        f["weighted"] += n * b["sum_taps"] * b["weighted"]
        f["hyperplanes"] += n * b["hyperplanes"]
        f["bit_writes"] += n * (b["hyperplanes"] if b["window_selectors"] else L * b["bits"])
        f["reads"] += r * L
        f["lookups" if st["count_bits"] != 4 else "lookups4"] += r * L * (C if st["count_bits"] != 4 else -(-C // 2))
        f["row_reads"] += r * L * bool(st["codebook"])
    return np.array([f[k] for k in FEATURES], np.float64)


@lru_cache(maxsize=1)
def coefficients() -> np.ndarray:
    """The fitted coefficients (cost_m0.json, written by examples/studies/cost_fit.py), in FEATURES order."""
    d = json.loads(COEF_FILE.read_text())
    return np.array([float(d["coefficients"].get(k, 0.0)) for k in FEATURES], np.float64)


def estimate(F: np.ndarray, coef: np.ndarray | None = None) -> np.ndarray:
    """Instructions per inference for feature rows F [..., len(FEATURES)]: F @ coef (default: the fitted M0 ones)."""
    return np.asarray(F, np.float64) @ (coefficients() if coef is None else np.asarray(coef, np.float64))


def m0_instructions(st: dict) -> int:
    """Estimated Cortex-M0 instructions per inference of a structure (structure or structure_of)."""
    return int(round(float(estimate(features(st)))))
