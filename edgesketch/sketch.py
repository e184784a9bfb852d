"""The sketch: numpy only. Geometry, hashing, building count arrays, float inference and THE integer reference.

A sketch is a sum of branches. A branch slides one window over the input (a Window: 1-D T x C or 2-D H x W x C, with
size, stride, dilation and zero-point padding per spatial axis) and hashes every position with the same P sparse
hyperplanes (CSR over the window's elements: tap_ptr, tap_idx, tap_weight) into P bits. Bits may be OR-pooled over
neighbouring positions; at every read-out position, table l of the position's region reads the K bits table_sel[l, :]
as its bucket. The scores add one cell per table per read-out position, over every branch. Today's flat sketch is the
special case of one window covering the whole input (Window.flat: one position, one region).

  inputs      x (float) -> u = x / in_scale + in_zero            (float sketch, "quantised units")
                        -> xq = clip(rint(u), -128, 127) int8     (integer sketch)
              in_scale / in_zero have Q entries and feature i uses entry i % Q: Q = D is per feature, Q = C (the
              teacher's channels, features stored channels-last) per channel. Padding reads the zero point.
  window      w[n, e] = xq at element e of position n (padding: in_zero of its channel)
  hash bit p  float: sum_t weight * (w - offset)[idx] > threshold_f[p]
              int:   sum_t weight * w[idx]            > threshold[p]     (int32; offsets are folded in)
  pooling     bits of read-out position r = OR of the bits of its pool block of positions
  bucket l    sum_k bit[table_sel[l, k]] << k;  cell = (region(r) * L + l) * 2^K + bucket
  scores      float: sum counts_f[cells] + out_bias;  int: sum counts[cells] (int32); output = scores * out_scale + bias

Tap weights are +-1 (ternary hyperplanes, additions only) unless a branch was distilled with integer weights
(|w| <= 7: one multiply, or shifts and adds, per tap). Tables may be stored as shared rows (distill --codebook R:
a row index per cell, each distinct row once, one book for every branch); the counts array is the same either way (shared_rows).
Learned mode (P shared hyperplanes with s taps) and representer mode (L*K random hyperplanes, table_sel[l] = l*K ..
l*K+K-1) are this one structure, so codegen and the C loop have one shape.
The C code in codegen_templates/ must equal int_scores() bit for bit; tests assert it on whole test sets.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace

import numpy as np

TASKS = ("classification", "regression")
MAX_WEIGHT = 7          # largest |tap weight| validate accepts


# ---------------------------------------------------------------- geometry
@dataclass(frozen=True)
class Window:
    """How a branch reads the input. `shape` is the input as a grid, spatial axes then channels (channels last, as Keras
    stores them): (T, C) for sensor windows, (H, W, C) for images, (1, D) for the flat view. Per spatial axis: window
    `size`, `stride`, `dilation`, `padding` (both sides, read as the channel's zero point) and `pool` (read-out
    positions OR the bits of this many consecutive positions). Read-out positions, in row-major order, are cut into
    `regions` contiguous groups with tables of their own (1: every position reads the same tables)."""
    shape: tuple
    size: tuple
    stride: tuple
    dilation: tuple
    padding: tuple
    pool: tuple
    regions: int = 1

    @staticmethod
    def flat(d: int) -> "Window":
        """One window covering the whole input: every feature is a channel of a single position."""
        return Window((1, int(d)), (1,), (1,), (1,), (0,), (1,), 1)

    @staticmethod
    def over(shape, size, stride=1, dilation=1, padding="same", pool=1, regions=1) -> "Window":
        """A window over `shape` (spatial axes + channels). Scalars apply to every spatial axis; padding "same" pads
        half the dilated span on each side (every position of the input is a window centre), "valid" pads nothing."""
        shape = tuple(int(v) for v in shape)
        n = len(shape) - 1
        tup = lambda v: tuple(int(e) for e in v) if isinstance(v, (tuple, list)) else (int(v),) * n
        size, stride, dilation, pool = tup(size), tup(stride), tup(dilation), tup(pool)
        if padding == "same":
            padding = tuple(((k - 1) * d) // 2 for k, d in zip(size, dilation))
        elif padding == "valid":
            padding = (0,) * n
        return Window(shape, size, stride, dilation, tup(padding), pool, int(regions))

    def to_json(self) -> dict:
        return {k: list(getattr(self, k)) if k != "regions" else self.regions
                for k in ("shape", "size", "stride", "dilation", "padding", "pool", "regions")}

    @staticmethod
    def from_json(d: dict) -> "Window":
        return Window(*(tuple(int(v) for v in d[k]) for k in ("shape", "size", "stride", "dilation", "padding", "pool")),
                      int(d.get("regions", 1)))

    # derived sizes
    @property
    def spatial(self) -> tuple: return self.shape[:-1]
    @property
    def channels(self) -> int: return int(self.shape[-1])
    @property
    def n_inputs(self) -> int: return int(np.prod(self.shape))
    @property
    def n_elements(self) -> int:
        """Values one window reads (E): prod(size) * channels; hyperplane taps index these."""
        return int(np.prod(self.size)) * self.channels
    @property
    def grid(self) -> tuple:
        """Hashed positions per spatial axis (whole pool blocks only)."""
        return tuple(((s + 2 * p - (k - 1) * d - 1) // st + 1) // q * q
                     for s, k, st, d, p, q in zip(self.spatial, self.size, self.stride, self.dilation, self.padding, self.pool))
    @property
    def readout_grid(self) -> tuple: return tuple(g // q for g, q in zip(self.grid, self.pool))
    @property
    def n_positions(self) -> int: return int(np.prod(self.grid))
    @property
    def n_readouts(self) -> int: return int(np.prod(self.readout_grid))
    @property
    def pool_size(self) -> int: return int(np.prod(self.pool))
    @property
    def is_flat(self) -> bool: return self.n_positions == 1 and self.n_elements == self.n_inputs and not any(self.padding)

    def problems(self) -> list[str]:
        n = len(self.spatial)
        if n < 1 or self.channels < 1 or min(self.shape) < 1:
            return [f"window shape {self.shape} needs a spatial axis and channels"]
        if any(len(v) != n for v in (self.size, self.stride, self.dilation, self.padding, self.pool)):
            return [f"window size/stride/dilation/padding/pool need one value per spatial axis ({n})"]
        if min(self.size + self.stride + self.dilation + self.pool) < 1 or min(self.padding) < 0:
            return ["window size, stride, dilation and pool must be >= 1 and padding >= 0"]
        if min(self.grid) < 1:
            return [f"a window of {self.size} (dilation {self.dilation}, padding {self.padding}, pool {self.pool}) "
                    f"does not fit the input {self.spatial}"]
        if not 1 <= self.regions <= self.n_readouts:
            return [f"{self.regions} regions for {self.n_readouts} read-out positions"]
        return []

    @property
    def readout_region(self) -> np.ndarray:
        """Region of each read-out position [n_readouts]."""
        return (np.arange(self.n_readouts) * self.regions) // self.n_readouts

    def element_index(self) -> np.ndarray:
        """[n_positions, E] index of each window element in the input extended by its pads: i < D is feature i,
        D + c is a padding value of channel c. Positions are ordered by read-out position (row-major), then by their
        place in its pool block (row-major); elements row-major over the window, channels last."""
        return _element_index(self)

    def position_base(self) -> np.ndarray:
        """[n_positions] flat offset of each position's first element in the input padded on every side (row-major,
        channels last): what C adds to a base pointer. Element offsets are element_offsets()."""
        return _position_base(self)

    def element_offsets(self) -> np.ndarray:
        """[E] offset of each window element from its position's base, in the padded input."""
        padded = [s + 2 * p for s, p in zip(self.spatial, self.padding)]
        strides = np.cumprod([1] + padded[::-1][:-1])[::-1] * self.channels    # elements per step along each axis
        ks = np.stack(np.meshgrid(*[np.arange(k) * d for k, d in zip(self.size, self.dilation)], indexing="ij"), -1).reshape(-1, len(padded))
        return ((ks @ strides)[:, None] + np.arange(self.channels)[None, :]).reshape(-1).astype(np.int64)

    @property
    def padded_inputs(self) -> int:
        return int(np.prod([s + 2 * p for s, p in zip(self.spatial, self.padding)])) * self.channels


def _positions(w: Window) -> np.ndarray:
    """[n_positions, axes] coordinates (in positions) of every hashed position, in read-out then pool order."""
    r = np.stack(np.meshgrid(*[np.arange(n) for n in w.readout_grid], indexing="ij"), -1).reshape(-1, len(w.grid))
    q = np.stack(np.meshgrid(*[np.arange(n) for n in w.pool], indexing="ij"), -1).reshape(-1, len(w.grid))
    return (r[:, None, :] * np.array(w.pool) + q[None, :, :]).reshape(-1, len(w.grid))


@functools.lru_cache(maxsize=64)
def _element_index(w: Window) -> np.ndarray:
    pos = _positions(w)                                                            # [N, A]
    ks = np.stack(np.meshgrid(*[np.arange(k) * d for k, d in zip(w.size, w.dilation)], indexing="ij"), -1).reshape(-1, len(w.grid))
    coord = pos[:, None, :] * np.array(w.stride) - np.array(w.padding) + ks[None]  # [N, prod(size), A]
    inside = ((coord >= 0) & (coord < np.array(w.spatial))).all(-1)
    strides = np.cumprod([1] + list(w.spatial[::-1][:-1]))[::-1]
    flat = (np.where(inside[..., None], coord, 0) @ strides)                      # [N, prod(size)]
    c = np.arange(w.channels)
    idx = np.where(inside[..., None], flat[..., None] * w.channels + c, w.n_inputs + c)
    out = idx.reshape(len(pos), -1).astype(np.int64)
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=64)
def _position_base(w: Window) -> np.ndarray:
    padded = [s + 2 * p for s, p in zip(w.spatial, w.padding)]
    strides = np.cumprod([1] + padded[::-1][:-1])[::-1] * w.channels
    out = (_positions(w) * np.array(w.stride)) @ strides
    out = out.astype(np.int64)
    out.flags.writeable = False
    return out


# ---------------------------------------------------------------- the model
@dataclass
class Branch:
    """One hashing branch: a window, P hyperplanes over its E elements, and regions x L tables of 2^K cells."""
    window: Window
    offset: np.ndarray         # float32[E], centring of each window element in quantised units
    tap_ptr: np.ndarray        # int32[P+1]
    tap_idx: np.ndarray        # int32[nnz], window elements
    tap_weight: np.ndarray     # int8[nnz], +-1 (or integers up to MAX_WEIGHT in magnitude)
    threshold_f: np.ndarray    # float32[P]
    threshold: np.ndarray      # int32[P]
    table_sel: np.ndarray      # int32[L, K]
    counts_f: np.ndarray       # float32[regions * L, 2^K, C], in output units
    counts: np.ndarray         # int8 or int16 [regions * L, 2^K, C]; 4-bit counts are int8 in [-8, 7]

    @property
    def n_tables(self) -> int: return int(self.table_sel.shape[0])       # L (per region)
    @property
    def n_bits(self) -> int: return int(self.table_sel.shape[1])
    @property
    def n_hyperplanes(self) -> int: return int(self.tap_ptr.shape[0] - 1)
    @property
    def n_taps(self) -> int: return int(self.tap_idx.shape[0])
    @property
    def n_cells(self) -> int: return (self.window.regions * self.n_tables) << self.n_bits
    @property
    def n_reads(self) -> int: return self.window.n_readouts * self.n_tables   # cells one inference reads
    @property
    def ternary(self) -> bool: return bool(np.all(np.abs(self.tap_weight.astype(int)) == 1))

    @property
    def sum_keys(self) -> list[tuple]:
        """Each hyperplane's taps and weights: consecutive hyperplanes with equal keys (distill's thresholds > 1) compare
        one sum with their own thresholds, so the C computes (and stores) that sum once. The one detector of shared
        sums (sum_taps, sum_group, the C generator and `edgesketch info` use it)."""
        ptr = self.tap_ptr.astype(np.int64)
        return [(tuple(int(i) for i in self.tap_idx[ptr[p]:ptr[p + 1]]), tuple(int(v) for v in self.tap_weight[ptr[p]:ptr[p + 1]]))
                for p in range(self.n_hyperplanes)]

    @property
    def sum_taps(self) -> int:
        """Taps of the distinct sums: a hyperplane that shares its predecessor's sum (sum_keys) adds no taps."""
        keys = self.sum_keys
        return sum(len(k[0]) for p, k in enumerate(keys) if not p or k != keys[p - 1])

    def dense_projection(self) -> np.ndarray:
        """The hyperplanes as a dense integer [E, P] matrix (for vectorised numpy hashing)."""
        R = np.zeros((self.window.n_elements, self.n_hyperplanes), np.int8)
        cols = np.repeat(np.arange(self.n_hyperplanes), np.diff(self.tap_ptr))
        R[self.tap_idx, cols] = self.tap_weight
        return R


@dataclass
class Sketch:
    meta: dict                 # task, mode, class_names, input_shape, source, metrics, ...
    in_scale: np.ndarray       # float32[Q]: feature i uses entry i % Q (Q = D per feature, Q = channels per channel)
    in_zero: np.ndarray        # int32[Q]
    branches: list             # [Branch]: scores are the sum over branches
    out_scale: np.ndarray      # float32[C]
    out_bias: np.ndarray       # float32[C]
    extras: dict = field(default_factory=dict)  # optional arrays (representers; cell_rows: see shared_rows)

    # dimensions
    @property
    def n_inputs(self) -> int: return int(self.branches[0].window.n_inputs)
    @property
    def n_outputs(self) -> int: return int(self.branches[0].counts.shape[2])
    @property
    def n_tables(self) -> int: return sum(b.counts.shape[0] for b in self.branches)
    @property
    def n_bits(self) -> int: return max(b.n_bits for b in self.branches)
    @property
    def n_hyperplanes(self) -> int: return sum(b.n_hyperplanes for b in self.branches)
    @property
    def n_taps(self) -> int: return sum(b.n_taps for b in self.branches)
    @property
    def task(self) -> str: return self.meta["task"]
    @property
    def count_bits(self) -> int: return int(self.meta.get("count_bits", 8 * self.branches[0].counts.itemsize))
    @property
    def is_flat(self) -> bool: return len(self.branches) == 1 and self.branches[0].window.is_flat
    @property
    def n_debug_bits(self) -> int:
        """Hash bits es_debug_q reports: every hyperplane at every position of every branch."""
        return sum(b.window.n_positions * b.n_hyperplanes for b in self.branches)
    @property
    def n_debug_buckets(self) -> int:
        """Buckets es_debug_q reports: every table at every read-out position of every branch."""
        return sum(b.n_reads for b in self.branches)

    # costs
    @property
    def table_bytes(self) -> int:
        """Stored size: 4-bit counts pack two to a byte within a cell (ceil(C/2) bytes a cell); shared rows
        (distill --codebook) store a row index per cell and each distinct row once."""
        shared = shared_rows(self)
        if shared is not None:
            rows, book = shared
            return rows.size * (1 if len(book) <= 256 else 2) + int(book.nbytes)
        if self.count_bits == 4:
            return sum(b.n_cells for b in self.branches) * -(-self.n_outputs // 2)
        return sum(int(b.counts.nbytes) for b in self.branches)

    @property
    def projection_bytes(self) -> int:
        """Hashing parameters: per tap of a distinct sum (Branch.sum_taps) an index byte (u16 beyond 256 window
        elements) and a sign bit (4 bits for integer weights), an int32 threshold per hyperplane and L*K selectors (u8
        if P <= 256, else u16)."""
        total = 0
        for b in self.branches:
            idx = 1 if b.window.n_elements <= 256 else 2
            sel = 1 if b.n_hyperplanes <= 256 else 2
            wbits = 1 if b.ternary else 4
            total += b.sum_taps * idx + -(-b.sum_taps * wbits // 8) + 4 * b.n_hyperplanes + sel * b.table_sel.size
        return total

    @property
    def ops_per_inference(self) -> int:
        """Tap additions (a shared sum once) over every hashed position plus lookup-adds over every read-out position."""
        return sum(b.window.n_positions * b.sum_taps + b.n_reads * self.n_outputs for b in self.branches)


def flat_sketch(meta, in_scale, in_zero, offset, tap_ptr, tap_idx, tap_weight, threshold_f, threshold, table_sel,
                counts_f, counts, out_scale, out_bias, extras=None) -> Sketch:
    """A sketch of one flat branch (one window covering the whole input): today's sketch and format version 1."""
    win = Window.flat(int(np.asarray(offset).shape[0]))
    return Sketch(meta, in_scale, in_zero, [Branch(win, offset, tap_ptr, tap_idx, tap_weight, threshold_f, threshold,
                                                   table_sel, counts_f, counts)], out_scale, out_bias, extras or {})


def validate(sk: Sketch) -> list[str]:
    """What is structurally wrong with a sketch (empty when it is well formed): shapes, CSR taps, index ranges."""
    problems = []
    if not sk.branches:
        return ["the sketch has no branch"]
    D, C = sk.branches[0].window.n_inputs, sk.branches[0].counts.shape[-1]
    Q = int(np.asarray(sk.in_scale).shape[0]) if np.ndim(sk.in_scale) == 1 else -1
    if Q < 1 or D % Q or np.asarray(sk.in_zero).shape != (Q,):
        problems.append(f"in_scale/in_zero have {Q} entries: need D = {D} (per feature) or a divisor of it (per channel)")
    bits = sk.count_bits
    for j, b in enumerate(sk.branches):
        tag = f"branch {j}: " if len(sk.branches) > 1 else ""
        w = b.window
        wp = w.problems()
        if wp:
            problems += [tag + p for p in wp]
            continue
        E, P, (L, K) = w.n_elements, b.tap_ptr.shape[0] - 1, b.table_sel.shape
        if w.n_inputs != D:
            problems.append(f"{tag}its window reads {w.n_inputs} inputs, the sketch has {D}")
        if not w.is_flat and Q != w.channels:
            problems.append(f"{tag}windows need per-channel input quantisation ({w.channels} channels), not {Q} entries")
        if E < 1 or L < 1 or K < 1 or C < 1:
            problems.append(f"{tag}empty dimension (E={E}, C={C}, L={L}, K={K})")
        rows = w.regions * L
        if b.counts.shape != (rows, 1 << K, C) or b.counts_f.shape != b.counts.shape:
            problems.append(f"{tag}counts shape {b.counts.shape} != (regions * L, 2^K, C) = {(rows, 1 << K, C)}")
        if P < 0 or b.tap_ptr[0] != 0 or np.any(np.diff(b.tap_ptr) < 0) or b.tap_ptr[-1] != b.tap_idx.size \
                or b.tap_weight.shape != b.tap_idx.shape:
            problems.append(f"{tag}malformed tap_ptr/tap_idx/tap_weight")
        elif b.tap_idx.size and (b.tap_idx.min() < 0 or b.tap_idx.max() >= E):
            problems.append(f"{tag}a tap index lies outside the window")
        wt = np.abs(b.tap_weight.astype(int))
        if wt.size and (wt.min() < 1 or wt.max() > MAX_WEIGHT):
            problems.append(f"{tag}a tap weight is 0 or beyond +-{MAX_WEIGHT}")
        if b.table_sel.size and (b.table_sel.min() < 0 or b.table_sel.max() >= P):
            problems.append(f"{tag}a table selects a hyperplane that does not exist")
        if b.threshold.shape != (P,) or b.threshold_f.shape != (P,):
            problems.append(f"{tag}a threshold array has the wrong length")
        if b.offset.shape != (E,):
            problems.append(f"{tag}offset has the wrong length")
        if bits not in (4, 8, 16) or b.counts.dtype != {4: np.int8, 8: np.int8, 16: np.int16}.get(bits):
            problems.append(f"{tag}counts are {b.counts.dtype} with count_bits {bits}: expected int8 (4 or 8 bits) or int16 (16)")
        elif bits == 4 and b.counts.size and (b.counts.min() < -8 or b.counts.max() > 7):
            problems.append(f"{tag}a 4-bit count lies outside [-8, 7]")
        if b.counts.shape[-1:] != (C,):
            problems.append(f"{tag}{b.counts.shape[-1]} outputs, branch 0 has {C}")
    for name in ("out_scale", "out_bias"):
        if getattr(sk, name).shape != (C,):
            problems.append(f"{name} has the wrong length")
    if sk.meta.get("task") not in TASKS:
        problems.append(f"unknown task {sk.meta.get('task')!r}")
    rows = sk.extras.get("cell_rows")
    if rows is not None and not problems:
        rows = np.asarray(rows)
        n = sum(b.n_cells for b in sk.branches)
        if rows.size != n or not np.issubdtype(rows.dtype, np.integer) or rows.min(initial=0) < 0 \
                or rows.max(initial=0) >= 65536 or len(np.unique(rows)) != int(rows.max(initial=0)) + 1:
            problems.append(f"cell_rows is not an array of {n} row numbers 0 .. R-1 (one per cell of every branch), each used")
        elif bits == 4:
            problems.append("shared rows (cell_rows) with 4-bit counts")
        else:
            r, book = shared_rows(sk)
            if not np.array_equal(book[r], all_counts(sk)):
                problems.append("cells that share a row (cell_rows) hold different counts")
    return problems


def shared_rows(sk: Sketch) -> tuple[np.ndarray, np.ndarray] | None:
    """Cells stored as shared rows (distill --codebook R): (rows int64 [cells], book [R, C] of the counts' dtype) with
    all_counts(sk)[i] == book[rows[i]] over the cells of every branch, one after another (one branch: [L, 2^K] in the
    .esk, as before); None when every cell is stored. The counts stay the integer reference; this is only how they
    are stored (in the .esk as extras["cell_rows"], in C as a row index per cell and one book of rows)."""
    r = sk.extras.get("cell_rows")
    if r is None:
        return None
    counts = all_counts(sk)
    rows = np.asarray(r, np.int64).reshape(-1)
    book = np.zeros((int(rows.max(initial=0)) + 1, counts.shape[-1]), counts.dtype)
    book[rows] = counts
    return rows, book


# ---------------------------------------------------------------- inputs
def _per_feature(a: np.ndarray, d: int) -> np.ndarray:
    a = np.atleast_1d(np.asarray(a))
    return a if a.shape[0] == d else np.tile(a, d // a.shape[0])


def units(x: np.ndarray, scale, zero) -> np.ndarray:
    """Float inputs [N, ...] -> quantised units x / scale + zero [N, D] (not rounded). scale and zero have Q entries
    and feature i uses entry i % Q: per feature (Q = D), per channel (features channels last) or per tensor (Q = 1)."""
    x = np.asarray(x, np.float32).reshape(len(x), -1)
    return x / _per_feature(scale, x.shape[1]) + _per_feature(zero, x.shape[1])


def quantize_int8(x: np.ndarray, scale, zero) -> np.ndarray:
    """THE input quantiser of every int8 model in edgesketch (sketches, the bench's int8 MLPs and CNNs, TFLite's input
    tensors): float inputs [N, ...] -> int8 [N, D] as TFLite quantises: units(x, scale, zero), rounded half to even
    (numpy rint), saturated. The generated C's es_sketch_quantize computes the same."""
    return np.clip(np.rint(units(x, scale, zero)), -128, 127).astype(np.int8)


def dequantize_int8(xq: np.ndarray, scale, zero) -> np.ndarray:
    """int8 inputs [D] or [N, D] -> float values (xq - zero) * scale, float32: what quantize_int8 gives back xq for
    (within half a quantisation step of the values it was quantised from)."""
    q = np.asarray(xq, np.float32)
    flat = q.reshape(-1, q.shape[-1])
    x = (flat - _per_feature(zero, flat.shape[1])) * _per_feature(scale, flat.shape[1])
    return x.astype(np.float32).reshape(q.shape)


def input_ranges(x: np.ndarray, channels: int) -> dict:
    """The training data's min, max and mean per channel (the last axis of a window; one channel for flat inputs):
    {"min": [...], "max": [...], "mean": [...]}, floats, as recorded in a sketch's meta (input_ranges)."""
    a = np.asarray(x, np.float64).reshape(len(x), -1)
    a = a.reshape(-1, channels) if channels > 1 else a.reshape(-1, 1)
    return {k: [float(v) for v in f(a, axis=0)] for k, f in (("min", np.min), ("max", np.max), ("mean", np.mean))}


FAR = 0.5            # a value is far from the training data when it lies beyond min - FAR*span or max + FAR*span
FAR_SHARE = 0.01     # and data are far when more than this share of one channel's values are


def far_from_ranges(ranges: dict | None, x: np.ndarray, units=None) -> str | None:
    """A line saying which channel of x lies far outside the training data's ranges (input_ranges), or None. Far: more
    than FAR_SHARE (1%) of a channel's values beyond its training min or max by more than FAR (half) of its span; the
    usual cause is other units (m/s^2 for g: 9.8x) or channels in another order."""
    if not ranges or not ranges.get("min"):
        return None
    lo, hi = np.asarray(ranges["min"], np.float64), np.asarray(ranges["max"], np.float64)
    a = np.asarray(x, np.float64).reshape(len(x), -1).reshape(-1, len(lo))
    span = np.maximum(hi - lo, 1e-12)
    far = (a < lo - FAR * span) | (a > hi + FAR * span)
    share = far.mean(axis=0)
    worst = int(np.argmax(share))
    if share[worst] <= FAR_SHARE:
        return None
    unit = f" {units[worst]}" if units and worst < len(units) else ""
    return (f"{share[worst]:.0%} of channel {worst}'s values lie far outside the range the model was distilled on "
            f"({lo[worst]:.4g} .. {hi[worst]:.4g}{unit}; these span {a[:, worst].min():.4g} .. {a[:, worst].max():.4g}): "
            f"check the units and the channel order")


def input_units(sk: Sketch, x: np.ndarray) -> np.ndarray:
    """Float inputs [N, ...] -> quantised units u [N, D] (not rounded): what the float sketch hashes."""
    return units(x, sk.in_scale, sk.in_zero)


def quantize_inputs(sk: Sketch, x: np.ndarray) -> np.ndarray:
    """Float inputs -> the sketch's int8 inputs [N, D] (quantize_int8 with its scales and zero points)."""
    return quantize_int8(x, sk.in_scale, sk.in_zero)


def windows(sk: Sketch, b: Branch, v: np.ndarray, dtype=np.float64) -> np.ndarray:
    """Values [N, D] (int8 inputs or float units) -> what each position's window reads [N, n_positions, E]; padding
    reads the zero point of its channel (float 0 in quantised units)."""
    v = np.asarray(v).reshape(len(v), -1)
    pad = np.broadcast_to(_per_feature(sk.in_zero, v.shape[1])[:b.window.channels], (len(v), b.window.channels))
    ext = np.concatenate([v.astype(dtype), pad.astype(dtype)], 1)
    return ext[:, b.window.element_index()]


# ---------------------------------------------------------------- hashing
def _pool(bits: np.ndarray, b: Branch) -> np.ndarray:
    """Position bits [N, n_positions, P] -> read-out bits [N, n_readouts, P] (OR over each pool block)."""
    q = b.window.pool_size
    return bits if q == 1 else bits.reshape(len(bits), b.window.n_readouts, q, -1).any(2)


def _buckets(bits: np.ndarray, b: Branch) -> np.ndarray:
    """Read-out bits [N, R, P] -> buckets int64 [N, R, L]."""
    return (bits[:, :, b.table_sel].astype(np.int64) << np.arange(b.n_bits)).sum(-1)


def branch_projections(sk: Sketch, b: Branch, xq: np.ndarray) -> np.ndarray:
    """Exact int64 projection sums [N, n_positions, P]. float64 matmul is exact (|z| <= 128 * 7 * taps << 2^53)."""
    return (windows(sk, b, xq) @ b.dense_projection().astype(np.float64)).astype(np.int64)


def branch_bits(sk: Sketch, b: Branch, xq: np.ndarray) -> np.ndarray:
    """Integer hash bits of every position [N, n_positions, P]."""
    return branch_projections(sk, b, xq) > b.threshold


def branch_cells(sk: Sketch, b: Branch, xq: np.ndarray) -> np.ndarray:
    """The cell each (read-out position, table) reads, flat into b.counts.reshape(-1, C): [N, n_readouts * L]."""
    bk = _buckets(_pool(branch_bits(sk, b, xq), b), b)
    rows = b.window.readout_region[:, None] * b.n_tables + np.arange(b.n_tables)[None, :]
    return (rows * (1 << b.n_bits) + bk).reshape(len(xq), -1)


def _flat(xq) -> np.ndarray:
    xq = np.asarray(xq)
    return xq.reshape(len(xq), -1)


def int_hash_bits(sk: Sketch, xq: np.ndarray) -> np.ndarray:
    """Every hash bit, as es_debug_q reports them: branch by branch, position by position [N, n_debug_bits]."""
    xq = _flat(xq)
    return np.concatenate([branch_bits(sk, b, xq).reshape(len(xq), -1) for b in sk.branches], 1)


def int_projections(sk: Sketch, xq: np.ndarray) -> np.ndarray:
    """Exact projection sums of every hyperplane at every position, in int_hash_bits order [N, n_debug_bits] (int64)."""
    xq = _flat(xq)
    return np.concatenate([branch_projections(sk, b, xq).reshape(len(xq), -1) for b in sk.branches], 1)


def float_hash_bits(sk: Sketch, u: np.ndarray) -> np.ndarray:
    """The float sketch's hash bits of quantised units u [N, D] (not rounded), in int_hash_bits order."""
    u = _flat(u)
    return np.concatenate([(((windows(sk, b, u) - b.offset) @ b.dense_projection().astype(np.float64)) > b.threshold_f)
                           .reshape(len(u), -1) for b in sk.branches], 1)


def int_buckets(sk: Sketch, xq: np.ndarray) -> np.ndarray:
    """Every bucket, as es_debug_q reports them: branch by branch, read-out position by position [N, n_debug_buckets]."""
    xq = _flat(xq)
    return np.concatenate([_buckets(_pool(branch_bits(sk, b, xq), b), b).reshape(len(xq), -1) for b in sk.branches], 1)


def int_cells(sk: Sketch, xq: np.ndarray) -> np.ndarray:
    """Every cell read, flat into all_counts(sk): [N, sum of n_readouts * L]."""
    xq, base, out = _flat(xq), 0, []
    for b in sk.branches:
        out.append(branch_cells(sk, b, xq) + base)
        base += b.n_cells
    return np.concatenate(out, 1)


def all_counts(sk: Sketch, which: str = "counts") -> np.ndarray:
    """The cells of every branch, one after another: [cells, C]."""
    parts = [getattr(b, which) for b in sk.branches]
    return np.concatenate([a.reshape(-1, a.shape[-1]) for a in parts])


def set_all_counts(sk: Sketch, which: str, cells: np.ndarray) -> None:
    """The inverse of all_counts: cells [cells, C] of every branch, one after another, into each branch's `which`
    (counts or counts_f), shaped as its counts_f."""
    start = 0
    for b in sk.branches:
        setattr(b, which, cells[start:start + b.n_cells].reshape(b.counts_f.shape))
        start += b.n_cells


def stored_rows(branches, rows: np.ndarray) -> np.ndarray:
    """Row numbers [cells] as extras["cell_rows"] holds them: uint8 (uint16 beyond 256 rows); a sketch of one branch
    keeps its [L, 2^K] shape (the form older versions read), several branches one flat array."""
    rows = np.asarray(rows).astype(np.uint8 if int(rows.max(initial=0)) < 256 else np.uint16)
    return rows.reshape(branches[0].counts_f.shape[:2]) if len(branches) == 1 else rows.reshape(-1)


# ---------------------------------------------------------------- inference
def int_scores(sk: Sketch, xq: np.ndarray) -> np.ndarray:
    """THE integer reference: int8 inputs [N, D] -> int32 scores [N, C]. The C code must equal this exactly."""
    xq = _flat(xq)
    s = _sum_cells(all_counts(sk).astype(np.int64), int_cells(sk, xq))
    if np.abs(s).max(initial=0) > score_bound(sk):   # a check that survives python -O
        raise OverflowError("a score exceeds the sketch's worst-case bound (an int32 accumulator could overflow): "
                            "the sketch is inconsistent; distil it again")
    return s.astype(np.int32)


def _sum_cells(table: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """sum over axis 1 of table[cells] [N, C], in chunks (cells can be many per sample)."""
    out = np.empty((len(cells), table.shape[1]), table.dtype)
    for i in range(0, len(cells), 2048):
        out[i:i + 2048] = table[cells[i:i + 2048]].sum(1)
    return out


def float_outputs(sk: Sketch, x: np.ndarray) -> np.ndarray:
    """The float sketch: float hash of unrounded inputs, float tables. Returns outputs [N, C]."""
    u, total = input_units(sk, x), 0.0
    for b in sk.branches:
        z = (windows(sk, b, u) - b.offset) @ b.dense_projection().astype(np.float64)
        bk = _buckets(_pool(z > b.threshold_f, b), b)
        rows = b.window.readout_region[:, None] * b.n_tables + np.arange(b.n_tables)[None, :]
        cells = (rows * (1 << b.n_bits) + bk).reshape(len(u), -1)
        total = total + _sum_cells(b.counts_f.reshape(-1, sk.n_outputs).astype(np.float64), cells)
    return total + sk.out_bias


def int_outputs(sk: Sketch, x: np.ndarray) -> np.ndarray:
    """Float inputs -> quantise -> integer sketch -> dequantised outputs [N, C]."""
    return int_scores(sk, quantize_inputs(sk, x)) * sk.out_scale.astype(np.float64) + sk.out_bias


def predict(outputs: np.ndarray, task: str) -> np.ndarray:
    return outputs.argmax(1) if task == "classification" else outputs


# ---------------------------------------------------------------- worst-case bounds
def weight_sums(b: Branch) -> np.ndarray:
    """sum of |tap weights| of every hyperplane [P] (its tap count when ternary)."""
    P = b.n_hyperplanes
    return np.bincount(np.repeat(np.arange(P), np.diff(b.tap_ptr)), weights=np.abs(b.tap_weight.astype(np.float64)),
                       minlength=P).astype(np.int64)


def projection_bound(sk: Sketch) -> int:
    """max |sum of weight * xq| over all int8 inputs and hyperplanes: 128 * the largest sum of |weights|."""
    return max(128 * int(weight_sums(b).max(initial=0)) for b in sk.branches)


def readout_bounds(b: Branch) -> np.ndarray:
    """Per region and class, the largest |sum over the L tables| one read-out position can add: [regions, C]."""
    m = np.abs(b.counts.astype(np.int64)).max(1)                    # [regions * L, C]
    return m.reshape(b.window.regions, b.n_tables, -1).sum(1)


def score_bound(sk: Sketch) -> int:
    """max |score| over all inputs: per class, the sum over branches and read-out positions of what the tables of the
    position's region can add at most, maxed over classes."""
    tot = 0
    for b in sk.branches:
        per = readout_bounds(b)                                      # [regions, C]
        tot = tot + per[b.window.readout_region].sum(0)
    return int(np.max(tot, initial=0))


# ---------------------------------------------------------------- building blocks
def csr_from_dense(R: np.ndarray):
    """Dense integer [E, P] -> (tap_ptr, tap_idx, tap_weight), taps of each hyperplane sorted by index."""
    ptr, idx, sign = [0], [], []
    for p in range(R.shape[1]):
        nz = np.flatnonzero(R[:, p])
        idx.extend(nz); sign.extend(R[nz, p]); ptr.append(len(idx))
    return np.array(ptr, np.int32), np.array(idx, np.int32), np.array(sign, np.int8)


def random_ternary(D: int, P: int, rng: np.random.Generator, density: float = 1 / 3) -> np.ndarray:
    """Sparse ternary projection [D, P]: +1/0/-1 with probabilities density/2, 1-density, density/2
    (Achlioptas; density 1/3 gives the default 1/6, 2/3, 1/6). Every column gets at least one tap."""
    R = rng.choice(np.array([1, 0, -1], np.int8), size=(D, P), p=[density / 2, 1 - density, density / 2])
    empty = ~R.any(0)
    R[rng.integers(0, D, empty.sum()), np.flatnonzero(empty)] = 1
    return R


def int_thresholds(threshold_f, offset, tap_ptr, tap_idx, tap_weight) -> np.ndarray:
    """Fold centring into integer thresholds: sum w*(u - o) > t  <=>  sum w*u > t + sum w*o, and for an
    integer left side  z > T  <=>  z > floor(T)."""
    P = len(tap_ptr) - 1
    so = np.bincount(np.repeat(np.arange(P), np.diff(tap_ptr)), weights=tap_weight * offset[tap_idx].astype(np.float64), minlength=P)
    return np.floor(np.asarray(threshold_f, np.float64) + so).astype(np.int32)


def random_branch(window: Window, C: int, L: int, K: int, P: int | None, taps: int | None, rng, count_dtype=np.int8,
                  count_bits: int | None = None, selectors: str = "random", signs: str = "free", weights: int = 1,
                  thresholds: int = 1) -> Branch:
    """A well-formed branch with random hyperplanes and counts (see random_sketch); thresholds > 1: every tap set is
    repeated that many times (consecutive hyperplanes sharing a sum, each with its own threshold)."""
    E = window.n_elements
    shared = P is not None
    P = (P if shared else L * K) // thresholds
    if taps is None:
        R = random_ternary(E, P, rng)
    else:
        R = np.zeros((E, P), np.int8)
        for p in range(P):
            n = min(taps, E)
            R[rng.choice(E, n, replace=False), p] = (rng.permutation(np.arange(n) < n // 2) * 2 - 1 if signs == "balanced"
                                                     else rng.choice(np.array([-1, 1], np.int8), n))
    if weights > 1:
        R = (R * rng.integers(1, weights + 1, R.shape)).astype(np.int8)
    R = np.repeat(R, thresholds, axis=1)
    P *= thresholds
    ptr, idx, w = csr_from_dense(R)
    offset = rng.normal(0, 20, E).astype(np.float32)
    thr_f = rng.normal(0, 30 * (weights + 1) / 2, P).astype(np.float32)
    sel = (window_selectors(P, L, K, thresholds) if shared and selectors == "window" else rng.integers(0, P, (L, K)) if shared
           else np.arange(L * K).reshape(L, K)).astype(np.int32)
    lo, hi = (-8, 7) if count_bits == 4 else (np.iinfo(count_dtype).min, np.iinfo(count_dtype).max)
    counts = rng.integers(lo, hi, (window.regions * L, 1 << K, C), endpoint=True).astype(np.int8 if count_bits == 4 else count_dtype)
    return Branch(window, offset, ptr, idx, w, thr_f, int_thresholds(thr_f, offset, ptr, idx, w), sel,
                  (counts * 0.01).astype(np.float32), counts)


def random_sketch(D: int = 64, C: int = 10, L: int = 16, K: int = 6, P: int | None = None, taps: int | None = None,
                  count_dtype=np.int8, seed: int = 0, task: str = "classification", count_bits: int | None = None,
                  selectors: str = "random", signs: str = "free", codebook: int = 0, windows=(), weights: int = 1,
                  thresholds: int = 1) -> Sketch:
    """A well-formed sketch with random hyperplanes and random counts: for tests of codegen and firmware, which
    must be bit-exact on any sketch, trained or not. P=None gives representer layout (L*K private hyperplanes).
    selectors="window" and signs="balanced" give the structure of distill's --selectors window / --signs balanced;
    codebook=R stores the cells as R shared rows (distill --codebook R). windows: (Window, L, K, P, taps) of windowed
    branches; the flat branch is then left out unless L > 0 (its input shape is the windows' and quantisation is per
    channel). weights > 1: integer tap weights up to that magnitude."""
    rng = np.random.default_rng(seed)
    branches = []
    if windows:
        shape = windows[0][0].shape
        D, Q = int(np.prod(shape)), int(shape[-1])
    else:
        Q = D
    if L:
        branches.append(random_branch(Window.flat(D), C, L, K, P, taps, rng, count_dtype, count_bits, selectors, signs, weights))
    for win, wl, wk, wp, wt in windows:
        branches.append(random_branch(win, C, wl, wk, wp, wt, rng, count_dtype, count_bits, selectors, signs, weights,
                                      thresholds))
    extras = {}
    if codebook:   # every row used: the first R cells take rows 0 .. R-1 in some order, the others any row
        n = sum(b.n_cells for b in branches)
        rows = rng.permutation(np.concatenate([rng.permutation(codebook), rng.integers(0, codebook, n - codebook)]))
        book, start = np.concatenate([b.counts.reshape(-1, C) for b in branches])[:codebook], 0
        for b in branches:
            b.counts = book[rows[start:start + b.n_cells]].reshape(b.counts.shape)
            b.counts_f = (b.counts * 0.01).astype(np.float32)
            start += b.n_cells
        extras["cell_rows"] = stored_rows(branches, rows)
    out_scale = np.full(C, 0.01, np.float32)
    return Sketch(meta={"task": task, "mode": "learned" if P is not None or windows else "representer",
                        "class_names": [str(c) for c in range(C)], "input_shape": list(windows[0][0].shape) if windows else [D],
                        "count_bits": count_bits or 8 * np.dtype(count_dtype).itemsize},
                  in_scale=rng.uniform(0.05, 0.2, Q).astype(np.float32), in_zero=rng.integers(-128, 0, Q).astype(np.int32),
                  branches=branches, out_scale=out_scale, out_bias=np.zeros(C, np.float32), extras=extras)


def sum_group(b: Branch) -> int:
    """T when every run of T consecutive hyperplanes (0..T-1, T..2T-1, ...) shares one sum (Branch.sum_keys), each with
    its own threshold (distill's thresholds > 1); the largest such T up to 8, 1 when none."""
    P, keys = b.n_hyperplanes, b.sum_keys
    for T in range(min(P, 8), 1, -1):
        if P % T == 0 and all(keys[p] == keys[p - p % T] for p in range(P)):
            return T
    return 1


def threshold_major(P: int, T: int) -> np.ndarray:
    """hyperplane at each packed bit position when the T thresholds of each of P / T sums are packed threshold-major:
    position t * (P / T) + s holds hyperplane s * T + t. [P]"""
    S = P // T
    return np.array([(i % S) * T + i // S for i in range(P)], np.int64)


def bit_order(b: Branch) -> np.ndarray | None:
    """A packed bit position for every hyperplane under which every table reads K consecutive positions within one
    32-bit word, so that its bucket is one shift and mask (window_selectors): hyperplane order, or threshold-major
    for T thresholds a sum; None if neither. [P]"""
    P, K = b.n_hyperplanes, b.n_bits
    sel = np.asarray(b.table_sel, np.int64)
    for T in (1, 2, 3, 4):
        if P % T:
            continue
        pos = np.empty(P, np.int64)
        pos[threshold_major(P, T)] = np.arange(P)
        if _one_word_windows(pos[sel], K):
            return pos
    return None


def hash_structure(b: Branch) -> dict:
    """What compact C can exploit in a branch: "windows", every table reads K consecutive hyperplanes within one
    32-bit word of packed hash bits (window_selectors); "balanced", every hyperplane has the same numbers of positive
    and negative taps (distill --signs balanced) and ternary weights. Neither changes what the branch computes."""
    ptr, w, K = b.tap_ptr, b.tap_weight, b.n_bits
    kinds = {(int(ptr[p + 1] - ptr[p]), int((w[ptr[p]:ptr[p + 1]] < 0).sum())) for p in range(b.n_hyperplanes)}
    windows_ = _one_word_windows(np.asarray(b.table_sel, np.int64), K)
    return {"windows": windows_, "balanced": len(kinds) == 1 and b.ternary}


def _one_word_windows(q: np.ndarray, K: int) -> bool:
    """Every row of q [L, K] is K consecutive bit positions inside one 32-bit word."""
    return bool(all((row == row[0] + np.arange(K)).all() and row[0] // 32 == (row[0] + K - 1) // 32 for row in q))


def window_selectors(P: int, L: int, K: int, thresholds: int = 1) -> np.ndarray:
    """table_sel where table l reads K consecutive hyperplanes q_l .. q_l + K - 1 lying in one 32-bit word of packed
    hash bits (bit p in word p // 32), so that C reads its bucket with one shift and mask. Tables are shared
    out among the words in proportion to their bits, and spread evenly over each word from its first bit to its
    last; ValueError unless every hyperplane is read. With thresholds T > 1 (hyperplanes s*T .. s*T + T - 1 share
    sum s) the bits are packed threshold-major (bit_order), so that a table's K bits come from K different sums. [L, K]"""
    if thresholds > 1:
        return threshold_major(P, thresholds)[window_selectors(P, L, K)]
    sizes = [min(32, P - j) for j in range(0, P, 32)]
    room = [max(0, n - K + 1) for n in sizes]          # distinct windows in each word
    if sum(room) < L:
        raise ValueError(f"window selectors: only {sum(room)} distinct windows of {K} bits in {P} hyperplanes for "
                         f"{L} tables; use more hyperplanes or random selectors")
    share = np.array([n if r else 0 for n, r in zip(sizes, room)], np.float64)
    want = L * share / share.sum()
    t = np.minimum(np.floor(want).astype(np.int64), room)
    for j in np.argsort(-(want - t), kind="stable"):   # largest remainders first, then wherever there is room
        if t.sum() < L and t[j] < room[j]:
            t[j] += 1
    while t.sum() < L:
        j = int(np.argmax(np.array(room) - t))
        t[j] += 1
    starts = [32 * j + int(q) for j, n in enumerate(t) if n
              for q in np.round(np.linspace(0, sizes[j] - K, n)).astype(np.int64)]
    sel = np.array([[q + k for k in range(K)] for q in starts], np.int64)
    unread = P - len(np.unique(sel))
    if unread:
        raise ValueError(f"window selectors: {L} tables of {K} bits leave {unread} of {P} hyperplanes unread; use "
                         f"fewer hyperplanes or more tables")
    return sel


# ---------------------------------------------------------------- representer mode (the paper's construction)
def srp_kernel(xc: np.ndarray, w: np.ndarray, K: int) -> np.ndarray:
    """k(x, w) = (1 - theta(x, w) / pi)^K: the probability that K signed random projections agree. [N, M]."""
    xn = xc / np.maximum(np.linalg.norm(xc, axis=1, keepdims=True), 1e-12)
    wn = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
    return (1.0 - np.arccos(np.clip(xn @ wn.T, -1.0, 1.0)) / np.pi) ** K


def representer_counts(w_bits: np.ndarray, alpha: np.ndarray, L: int, K: int) -> np.ndarray:
    """RACE build: add alpha_j / L into cell h_l(w_j) of every table. w_bits: bool [M, L*K] (table l reads bits
    l*K .. l*K+K-1), alpha: [M, C]. Querying sums the L cells, which estimates sum_j alpha_j k(x, w_j)."""
    M, C = alpha.shape
    buckets = (w_bits.reshape(M, L, K).astype(np.int64) << np.arange(K)).sum(-1)  # [M, L]
    counts = np.zeros((L, 1 << K, C))
    np.add.at(counts, (np.broadcast_to(np.arange(L), (M, L)), buckets), alpha[:, None, :] / L)
    return counts


# ---------------------------------------------------------------- streaming (a window hopping over a live stream)
# A sketch whose read-out is global (one region) is a sum over read-out positions. Over a stream of samples [N, C] the
# window j holds samples j * hop .. j * hop + T - 1; when hop is a multiple of stride * pool (m = hop / (stride * pool)
# read-outs a hop), read-out r of window j reads the same samples as read-out r - m of window j - 1, unless it reads
# padding (whose place moves with the window). So a read-out that reads no padding is a function of its global index
# g = j * m + r alone: it is hashed and looked up once, when its last sample arrives, and window j's scores are the sum
# of its interior read-outs g = j * m + first .. j * m + first + count - 1 (a sliding sum: add the m new ones, subtract
# the m oldest), plus the read-outs that read padding (the edges, recomputed at every hop) and flat branches (one
# read-out over the whole window, recomputed at every hop). Integer addition is exact and commutative, so the sum is
# int_scores of the window bit for bit: the exactness rule is "one read-out region, every read-out either interior or
# recomputed". padding "valid" has no edges; "same" recomputes ceil(pad / (stride * pool)) read-outs at each end.
STREAMS = ("what streams: 1-D windows over (time, channels) inputs with one read-out region (--regions 1), any stride, "
           "dilation and pool; --padding valid streams every read-out once, same recomputes its edge read-outs at every "
           "hop; flat branches are recomputed at every hop")


@dataclass(frozen=True)
class StreamBranch:
    """How one branch of a sketch streams (stream_plan). kind "window": read-outs first .. first + count - 1 of every
    window read no padding and are computed once each (the stream's read-out g completes when its last sample arrives);
    read-outs 0 .. first - 1 (left padding) and right_at .. n_readouts - 1 (right padding) are recomputed at every hop.
    kind "flat": the whole window is one read-out, recomputed at every hop."""
    kind: str
    n_readouts: int
    first: int = 0          # first interior read-out of a window
    count: int = 0          # interior read-outs of a window
    right_at: int = 1       # first read-out that reads right padding (n_readouts: none)
    shift: int = 0          # read-outs a hop moves the window by: hop / every
    every: int = 1          # samples between two read-outs: stride * pool
    span: int = 1           # samples one read-out reads, its first to its last: (pool - 1) * stride + (size - 1) * dilation + 1
    pad: int = 0            # padding samples before the window's first sample

    @property
    def recomputed(self) -> int:
        """Read-outs recomputed at every hop (edges, or the flat branch's one)."""
        return self.n_readouts - self.count

    @property
    def new_per_hop(self) -> int:
        """Interior read-outs a hop adds (each hashed and looked up once)."""
        return min(self.count, self.shift)


@dataclass(frozen=True)
class StreamPlan:
    length: int             # T: samples a window holds
    channels: int           # C: values a sample holds
    hop: int                # samples between two scores (after the first window)
    branches: tuple         # StreamBranch per branch of the sketch

    @property
    def unit(self) -> int:
        """The smallest hop: every valid hop is a multiple of it (the lcm of stride * pool over windowed branches)."""
        return stream_unit(self.branches)

    def readouts_per_hop(self, sk: "Sketch") -> dict:
        """Read-outs a hop hashes and looks up: new interior ones, recomputed ones (edges and flat branches), and the
        full inference's, weighted by each branch's hashing and lookup operations (Sketch.ops_per_inference's rule)."""
        new = rec = full = 0
        for b, sb in zip(sk.branches, self.branches):
            per = b.window.pool_size * b.sum_taps + b.n_tables * sk.n_outputs
            new += sb.new_per_hop * per
            rec += sb.recomputed * per
            full += b.window.n_readouts * per
        return {"new": new, "recomputed": rec, "full": full}


def stream_unit(branches) -> int:
    import math
    u = 1
    for sb in branches:
        if sb.kind == "window":
            u = u * sb.every // math.gcd(u, sb.every)
    return u


def stream_plan(sk: Sketch, hop: int) -> StreamPlan:
    """How the sketch streams with this hop (ConfigError, argument "hop" or "sketch", if it cannot: 2-D windows,
    several read-out regions, per-feature input quantisation, an input without a time axis, or a hop that is not a
    multiple of stride * pool)."""
    from .errors import ConfigError
    for j, b in enumerate(sk.branches):
        w, tag = b.window, f"branch {j}" if len(sk.branches) > 1 else "the sketch"
        if not w.is_flat and len(w.spatial) != 1:
            raise ConfigError(f"{tag} slides a {len(w.spatial)}-D window over {'x'.join(map(str, w.shape))}: streams "
                              f"are 1-D; " + STREAMS, argument="sketch")
        if not w.is_flat and w.regions != 1:
            raise ConfigError(f"{tag} has {w.regions} read-out regions (tables of their own per part of the window, "
                              f"which move as it hops): distil with --regions 1 to stream; " + STREAMS, argument="sketch")
    shapes = {b.window.shape for b in sk.branches if not b.window.is_flat}
    shape = next(iter(shapes)) if shapes else tuple(int(v) for v in sk.meta.get("input_shape") or (sk.n_inputs,))
    if len(shapes) > 1 or len(shape) != 2 or shape[0] < 2 and not shapes:
        raise ConfigError(f"this sketch's input {'x'.join(map(str, shape))} has no single time axis to stream over; "
                          + STREAMS, argument="sketch")
    T, C = int(shape[0]), int(shape[1])
    if int(np.asarray(sk.in_scale).size) != C:
        raise ConfigError(f"this sketch quantises each of its {sk.n_inputs} inputs on its own scale: a stream needs one "
                          f"scale per channel ({C}); " + STREAMS, argument="sketch")
    out = []
    for b in sk.branches:
        w = b.window
        if w.is_flat:
            out.append(StreamBranch("flat", 1))
            continue
        k, S, d, p, q = w.size[0], w.stride[0], w.dilation[0], w.padding[0], w.pool[0]
        R, every = w.n_readouts, q * S
        span = (q - 1) * S + (k - 1) * d + 1
        first = min(R, -(-p // every))
        lim = T - 1 + p - span + 1              # read-out r reads no right padding when r * every <= lim
        hi = min(R, lim // every + 1) if lim >= 0 else 0
        right_at = max(first, hi)
        out.append(StreamBranch("window", R, first, right_at - first, right_at, 0, every, span, p))
    hop = _check_hop(hop, stream_unit(out))
    out = tuple(replace(sb, shift=hop // sb.every) if sb.kind == "window" else sb for sb in out)
    return StreamPlan(T, C, hop, out)


def _check_hop(hop, unit: int) -> int:
    from .errors import ConfigError
    if isinstance(hop, bool) or not isinstance(hop, (int, np.integer)) or hop < 1 or hop > 65535:
        raise ConfigError(f"hop={hop!r}: give the samples between two scores, a whole number 1..65535 (a multiple "
                          f"of {unit})", argument="hop")
    if hop % unit:
        raise ConfigError(f"hop={hop} is not a multiple of stride x pool ({unit}): the window must move by whole "
                          f"read-outs for the sums to stay exact; use {unit * max(1, hop // unit)} or "
                          f"{unit * (hop // unit + 1)}", argument="hop")
    return int(hop)


def stream_samples(sk: Sketch, samples, name: str = "samples") -> np.ndarray:
    """A stream as the sketch's samples [N, C] (C: its channels): any array of N * C values, one sample a row."""
    from .errors import DataError
    a = np.asarray(samples)
    C = stream_plan_shape(sk)[1]
    if a.ndim == 0 or a.size % C or (a.ndim >= 2 and a.shape[-1] != C) or not np.issubdtype(a.dtype, np.number):
        raise DataError(f"{name} must be samples of {C} value(s) each, shape (N, {C}); got {a.dtype} {a.shape}",
                        argument=name)
    return a.reshape(-1, C)


def stream_plan_shape(sk: Sketch) -> tuple[int, int]:
    """(T, C) of the sketch's stream: samples a window holds, values a sample holds."""
    for b in sk.branches:
        if not b.window.is_flat:
            return int(b.window.shape[0]), int(b.window.shape[-1])
    shape = tuple(int(v) for v in sk.meta.get("input_shape") or (sk.n_inputs,))
    return (int(shape[0]), int(shape[1])) if len(shape) == 2 else (sk.n_inputs, 1)


def stream_windows(xq_samples: np.ndarray, length: int, hop: int) -> np.ndarray:
    """The windows of a stream [N, C]: window j holds samples j * hop .. j * hop + length - 1, flattened channels
    last: [W, length * C] with W = (N - length) // hop + 1 (0 when N < length). A view: no copy."""
    x = np.ascontiguousarray(xq_samples)
    N, C = x.shape
    W = (N - length) // hop + 1 if N >= length else 0
    return np.lib.stride_tricks.as_strided(x, (W, length * C), (hop * C * x.itemsize, x.itemsize), writeable=False)


def _readout_contributions(sk: Sketch, b: Branch, sb: StreamBranch, x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Scores [len(g), C_out] (int64) that the stream's interior read-outs g add: read-out g's positions start at sample
    g * every - pad + i * stride (i < pool), each reading size samples dilation apart, every channel."""
    w = b.window
    k, S, d, q = w.size[0], w.stride[0], w.dilation[0], w.pool[0]
    C = w.channels
    R = b.dense_projection().astype(np.float64)
    table = b.counts.reshape(-1, b.counts.shape[-1]).astype(np.int64)
    rows = np.arange(b.n_tables) << b.n_bits
    out = np.empty((len(g), table.shape[1]), np.int64)
    for i in range(0, len(g), 8192):
        gg = g[i:i + 8192]
        start = gg[:, None] * sb.every - sb.pad + np.arange(q)[None, :] * S               # [n, q]
        el = start[..., None] + np.arange(k) * d                                            # [n, q, k]
        win = x[el].reshape(len(gg), q, k * C).astype(np.float64)                          # [n, q, E]
        bits = (np.rint(win @ R).astype(np.int64) > b.threshold).any(1)                     # OR over the pool block
        bk = (bits[:, b.table_sel].astype(np.int64) << np.arange(b.n_bits)).sum(-1)         # [n, L]
        out[i:i + 8192] = table[rows + bk].sum(1)
    return out


def _window_readouts(sk: Sketch, b: Branch, wins: np.ndarray, readouts) -> np.ndarray:
    """Scores [W, C_out] (int64) that read-outs `readouts` of branch b add to each window (rows of wins, int8 [W, D])."""
    readouts = np.asarray(readouts, np.int64)
    q = b.window.pool_size
    pos = (readouts[:, None] * q + np.arange(q)).reshape(-1)
    idx = b.window.element_index()[pos]                                                    # [n * q, E]
    table = b.counts.reshape(-1, b.counts.shape[-1]).astype(np.int64)
    R = b.dense_projection().astype(np.float64)
    fill = _per_feature(sk.in_zero, b.window.n_inputs)[:b.window.channels]
    out = np.zeros((len(wins), table.shape[1]), np.int64)
    for i in range(0, len(wins), 2048):
        v = np.asarray(wins[i:i + 2048])
        ext = np.concatenate([v.astype(np.float64), np.broadcast_to(fill.astype(np.float64), (len(v), len(fill)))], 1)
        z = np.rint(ext[:, idx] @ R).astype(np.int64)                                       # [n, n * q, P]
        bits = (z > b.threshold).reshape(len(v), len(readouts), q, -1).any(2)
        bk = (bits[:, :, b.table_sel].astype(np.int64) << np.arange(b.n_bits)).sum(-1)      # [n, r, L]
        out[i:i + 2048] = table[(np.arange(b.n_tables) << b.n_bits) + bk].sum((1, 2))
    return out


def stream_scores(sk: Sketch, xq_samples: np.ndarray, hop: int) -> np.ndarray:
    """THE integer reference of a stream: int8 samples [N, C] -> int32 scores [W, C_out] of every window, window j
    holding samples j * hop .. j * hop + T - 1 (W = (N - T) // hop + 1). Computed as the device streams it: each
    interior read-out of the stream once (its contribution), window sums as sliding sums of them, edge read-outs and
    flat branches per window; equal to int_scores of each window bit for bit (tests/test_stream.py)."""
    plan = stream_plan(sk, hop)
    x = np.asarray(xq_samples)
    if x.ndim != 2 or x.shape[1] != plan.channels or x.dtype != np.int8:
        from .errors import DataError
        raise DataError(f"xq_samples must be int8 samples of shape (N, {plan.channels}); got {x.dtype} {x.shape}",
                        argument="xq_samples")
    T = plan.length
    W = (len(x) - T) // plan.hop + 1 if len(x) >= T else 0
    total = np.zeros((W, sk.n_outputs), np.int64)
    if not W:
        return total.astype(np.int32)
    wins = None
    for b, sb in zip(sk.branches, plan.branches):
        if sb.kind == "window" and sb.count:
            j = np.arange(W)
            if sb.count >= sb.shift:     # consecutive windows share read-outs: one contribution each, sliding sums
                g = np.arange(sb.first, (W - 1) * sb.shift + sb.first + sb.count)
                cs = np.concatenate([np.zeros((1, sk.n_outputs), np.int64),
                                     np.cumsum(_readout_contributions(sk, b, sb, x, g), 0)])
                total += cs[j * sb.shift + sb.count] - cs[j * sb.shift]
            else:                        # a hop longer than the interior: no read-out is shared
                g = (j[:, None] * sb.shift + sb.first + np.arange(sb.count)).reshape(-1)
                total += _readout_contributions(sk, b, sb, x, g).reshape(W, sb.count, -1).sum(1)
        edges = [0] if sb.kind == "flat" else list(range(sb.first)) + list(range(sb.right_at, sb.n_readouts))
        if edges:
            if wins is None:
                wins = stream_windows(x, T, plan.hop)
            total += _window_readouts(sk, b, wins, edges)
    assert np.abs(total).max(initial=0) <= score_bound(sk), "score exceeds the recorded worst-case bound"
    return total.astype(np.int32)


def stream_outputs(sk: Sketch, samples: np.ndarray, hop: int) -> np.ndarray:
    """Float samples [N, C] -> quantise each sample per channel -> stream_scores -> dequantised outputs [W, C_out]:
    int_outputs of every window, bit for bit."""
    xq = quantize_int8(np.asarray(samples, np.float32).reshape(-1, stream_plan_shape(sk)[1]), sk.in_scale, sk.in_zero)
    return stream_scores(sk, xq, hop) * sk.out_scale.astype(np.float64) + sk.out_bias
