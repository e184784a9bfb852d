"""The sketch: numpy only. Hashing, building count arrays, float inference and THE integer reference.

A sketch has P sparse ternary hyperplanes (CSR: tap_ptr, tap_idx, tap_sign) and L count tables of 2^K cells.
Table l reads the K hash bits table_sel[l, :]; bit k of its bucket is hyperplane table_sel[l, k].

  inputs      x (float) -> u = x / in_scale + in_zero            (float sketch, "quantised units")
                        -> xq = clip(rint(u), -128, 127) int8     (integer sketch)
  hash bit p  float: sum_t sign * (u - offset)[idx] > threshold_f[p]
              int:   sum_t sign * xq[idx]          > threshold[p]     (int32; offsets are folded in)
  bucket l    sum_k bit[table_sel[l, k]] << k
  scores      float: sum_l counts_f[l, bucket_l] + out_bias
              int:   sum_l counts[l, bucket_l] (int32);  output = scores * out_scale + out_bias

Tables may be stored as shared rows (distill --codebook R: a row index per cell, each distinct row once); the counts
array is the same either way (shared_rows).

Both learned mode (P shared hyperplanes with s taps) and representer mode (L*K random hyperplanes,
table_sel[l] = l*K .. l*K+K-1) are this one structure, so codegen and the C loop have one shape.
The C code in codegen_templates/ must equal int_scores() bit for bit; tests assert it on whole test sets.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TASKS = ("classification", "regression")


@dataclass
class Sketch:
    meta: dict                 # task, mode, class_names, input_shape, source, metrics, ...
    in_scale: np.ndarray       # float32[D]
    in_zero: np.ndarray        # int32[D]
    offset: np.ndarray         # float32[D], centring in quantised units
    tap_ptr: np.ndarray        # int32[P+1]
    tap_idx: np.ndarray        # int32[nnz]
    tap_sign: np.ndarray       # int8[nnz], +1/-1
    threshold_f: np.ndarray    # float32[P]
    threshold: np.ndarray      # int32[P]
    table_sel: np.ndarray      # int32[L, K]
    counts_f: np.ndarray       # float32[L, 2^K, C], in output units
    counts: np.ndarray         # int8 or int16 [L, 2^K, C]; 4-bit counts are int8 in [-8, 7] (meta count_bits = 4)
    out_scale: np.ndarray      # float32[C]
    out_bias: np.ndarray       # float32[C]
    extras: dict = field(default_factory=dict)  # optional arrays (representers; cell_rows: see shared_rows), name -> ndarray

    # dimensions
    @property
    def n_inputs(self) -> int: return int(self.in_scale.shape[0])
    @property
    def n_outputs(self) -> int: return int(self.counts.shape[2])
    @property
    def n_tables(self) -> int: return int(self.table_sel.shape[0])
    @property
    def n_bits(self) -> int: return int(self.table_sel.shape[1])
    @property
    def n_hyperplanes(self) -> int: return int(self.tap_ptr.shape[0] - 1)
    @property
    def n_taps(self) -> int: return int(self.tap_idx.shape[0])
    @property
    def task(self) -> str: return self.meta["task"]
    @property
    def count_bits(self) -> int: return int(self.meta.get("count_bits", 8 * self.counts.itemsize))

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
            return self.n_tables * (1 << self.n_bits) * -(-self.n_outputs // 2)
        return int(self.counts.nbytes)
    @property
    def projection_bytes(self) -> int:
        """Sparse storage: an index per tap (u8 if D <= 256, else u16), a sign bit per tap, an int32 threshold per
        hyperplane and L*K bit selectors (u8 if P <= 256, else u16)."""
        idx = 1 if self.n_inputs <= 256 else 2
        sel = 1 if self.n_hyperplanes <= 256 else 2
        return self.n_taps * idx + -(-self.n_taps // 8) + 4 * self.n_hyperplanes + sel * self.table_sel.size
    @property
    def ops_per_inference(self) -> int: return self.n_taps + self.n_tables * self.n_outputs

    def dense_projection(self) -> np.ndarray:
        """The ternary projection as a dense int8 [D, P] matrix (for vectorised numpy hashing)."""
        R = np.zeros((self.n_inputs, self.n_hyperplanes), np.int8)
        cols = np.repeat(np.arange(self.n_hyperplanes), np.diff(self.tap_ptr))
        R[self.tap_idx, cols] = self.tap_sign
        return R


def validate(sk: Sketch) -> list[str]:
    """What is structurally wrong with a sketch (empty when it is well formed): shapes, CSR taps, index ranges."""
    D, C, P, (L, K) = sk.n_inputs, sk.counts.shape[-1], sk.tap_ptr.shape[0] - 1, sk.table_sel.shape
    problems = []
    if D < 1 or C < 1 or L < 1 or K < 1:
        problems.append(f"empty dimension (D={D}, C={C}, L={L}, K={K})")
    if sk.counts.shape != (L, 1 << K, C) or sk.counts_f.shape != sk.counts.shape:
        problems.append(f"counts shape {sk.counts.shape} != (L, 2^K, C) = {(L, 1 << K, C)}")
    if P < 0 or sk.tap_ptr[0] != 0 or np.any(np.diff(sk.tap_ptr) < 0) or sk.tap_ptr[-1] != sk.tap_idx.size \
            or sk.tap_sign.shape != sk.tap_idx.shape:
        problems.append("malformed tap_ptr/tap_idx/tap_sign")
    elif sk.tap_idx.size and (sk.tap_idx.min() < 0 or sk.tap_idx.max() >= D):
        problems.append("a tap index lies outside the input")
    if sk.tap_sign.size and not np.all(np.abs(sk.tap_sign.astype(int)) == 1):
        problems.append("a tap sign is not +1/-1")
    if sk.table_sel.size and (sk.table_sel.min() < 0 or sk.table_sel.max() >= P):
        problems.append("a table selects a hyperplane that does not exist")
    if sk.threshold.shape != (P,) or sk.threshold_f.shape != (P,):
        problems.append("a threshold array has the wrong length")
    for name in ("in_zero", "offset"):
        if getattr(sk, name).shape != (D,):
            problems.append(f"{name} has the wrong length")
    for name in ("out_scale", "out_bias"):
        if getattr(sk, name).shape != (C,):
            problems.append(f"{name} has the wrong length")
    bits = sk.count_bits
    if bits not in (4, 8, 16) or sk.counts.dtype != {4: np.int8, 8: np.int8, 16: np.int16}.get(bits):
        problems.append(f"counts are {sk.counts.dtype} with count_bits {bits}: expected int8 (4 or 8 bits) or int16 (16)")
    elif bits == 4 and sk.counts.size and (sk.counts.min() < -8 or sk.counts.max() > 7):
        problems.append("a 4-bit count lies outside [-8, 7]")
    if sk.meta.get("task") not in TASKS:
        problems.append(f"unknown task {sk.meta.get('task')!r}")
    rows = sk.extras.get("cell_rows")
    if rows is not None and not problems:
        rows = np.asarray(rows)
        if rows.shape != (L, 1 << K) or not np.issubdtype(rows.dtype, np.integer) or rows.min(initial=0) < 0 \
                or rows.max(initial=0) >= 65536 or len(np.unique(rows)) != int(rows.max(initial=0)) + 1:
            problems.append("cell_rows is not an [L, 2^K] array of row numbers 0 .. R-1, each used")
        elif bits == 4:
            problems.append("shared rows (cell_rows) with 4-bit counts")
        else:
            book = shared_rows(sk)[1]
            if not np.array_equal(book[rows.reshape(-1)], sk.counts.reshape(-1, C)):
                problems.append("cells that share a row (cell_rows) hold different counts")
    return problems


def shared_rows(sk: Sketch) -> tuple[np.ndarray, np.ndarray] | None:
    """Cells stored as shared rows (distill --codebook R): (rows int64 [L * 2^K], book [R, C] of sk.counts' dtype) with
    counts[l, b] == book[rows[l * 2^K + b]]; None when every cell is stored. The counts stay the integer reference;
    this is only how they are stored (in the .esk as extras["cell_rows"], in C as a row index per cell)."""
    r = sk.extras.get("cell_rows")
    if r is None:
        return None
    rows = np.asarray(r, np.int64).reshape(-1)
    book = np.zeros((int(rows.max(initial=0)) + 1, sk.counts.shape[-1]), sk.counts.dtype)
    book[rows] = sk.counts.reshape(len(rows), -1)
    return rows, book


# ---------------------------------------------------------------- inputs
def input_units(sk: Sketch, x: np.ndarray) -> np.ndarray:
    """Float inputs [N, ...] -> quantised units u [N, D] (not rounded): what the float sketch hashes."""
    x = np.asarray(x, np.float32).reshape(len(x), -1)
    return x / sk.in_scale + sk.in_zero


def quantize_inputs(sk: Sketch, x: np.ndarray) -> np.ndarray:
    """Float inputs -> int8 [N, D], as TFLite quantises: rint (half to even), add zero point, saturate."""
    return np.clip(np.rint(input_units(sk, x)), -128, 127).astype(np.int8)


# ---------------------------------------------------------------- hashing
def buckets_from_bits(sk: Sketch, bits: np.ndarray) -> np.ndarray:
    """bits bool [N, P] -> buckets int64 [N, L]."""
    return (bits[:, sk.table_sel].astype(np.int64) << np.arange(sk.n_bits)).sum(-1)


def float_hash_bits(sk: Sketch, u: np.ndarray) -> np.ndarray:
    z = (np.asarray(u, np.float64) - sk.offset) @ sk.dense_projection().astype(np.float64)
    return z > sk.threshold_f


def int_projections(sk: Sketch, xq: np.ndarray) -> np.ndarray:
    """Exact int64 projection sums [N, P]. float64 matmul is exact here (|z| <= 128 * taps << 2^53)."""
    z = np.asarray(xq, np.float64) @ sk.dense_projection().astype(np.float64)
    return z.astype(np.int64)


def int_hash_bits(sk: Sketch, xq: np.ndarray) -> np.ndarray:
    return int_projections(sk, xq) > sk.threshold


def int_buckets(sk: Sketch, xq: np.ndarray) -> np.ndarray:
    return buckets_from_bits(sk, int_hash_bits(sk, xq))


def int_cells(sk: Sketch, xq: np.ndarray) -> np.ndarray:
    """The cell each table reads, as a flat index l * 2^K + bucket into counts.reshape(-1, C) [N, L]."""
    return int_buckets(sk, xq) + np.arange(sk.n_tables) * (1 << sk.n_bits)


# ---------------------------------------------------------------- inference
def lookup(tables: np.ndarray, buckets: np.ndarray) -> np.ndarray:
    """Sum over l of tables[l, buckets[:, l]] -> [N, C] (int64 for integer tables)."""
    acc = np.int64 if np.issubdtype(tables.dtype, np.integer) else np.float64
    return tables[np.arange(tables.shape[0]), buckets].astype(acc).sum(1)


def float_outputs(sk: Sketch, x: np.ndarray) -> np.ndarray:
    """The float sketch: float hash of unrounded inputs, float tables. Returns outputs [N, C]."""
    return lookup(sk.counts_f, buckets_from_bits(sk, float_hash_bits(sk, input_units(sk, x)))) + sk.out_bias


def int_scores(sk: Sketch, xq: np.ndarray) -> np.ndarray:
    """THE integer reference: int8 inputs [N, D] -> int32 scores [N, C]. The C code must equal this exactly."""
    s = lookup(sk.counts, int_buckets(sk, np.asarray(xq).reshape(len(xq), -1)))
    assert np.abs(s).max(initial=0) <= score_bound(sk), "score exceeds the recorded worst-case bound"
    return s.astype(np.int32)


def int_outputs(sk: Sketch, x: np.ndarray) -> np.ndarray:
    """Float inputs -> quantise -> integer sketch -> dequantised outputs [N, C]."""
    return int_scores(sk, quantize_inputs(sk, x)) * sk.out_scale.astype(np.float64) + sk.out_bias


def predict(outputs: np.ndarray, task: str) -> np.ndarray:
    return outputs.argmax(1) if task == "classification" else outputs


# ---------------------------------------------------------------- worst-case bounds
def projection_bound(sk: Sketch) -> int:
    """max |sum of taps * xq| over all int8 inputs: 128 * the largest tap count."""
    return 128 * int(np.diff(sk.tap_ptr).max(initial=0))


def score_bound(sk: Sketch) -> int:
    """max |score| over all buckets: sum over tables of the largest |count| in that table, per class, maxed."""
    return int(np.abs(sk.counts.astype(np.int64)).max(1).sum(0).max(initial=0))


# ---------------------------------------------------------------- building blocks
def csr_from_dense(R: np.ndarray):
    """Dense ternary [D, P] -> (tap_ptr, tap_idx, tap_sign), taps of each hyperplane sorted by index (tap_sign keeps
    the weight: the numpy functions here also take integer weights beyond +-1, which validate and the C do not)."""
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


def int_thresholds(threshold_f, offset, tap_ptr, tap_idx, tap_sign) -> np.ndarray:
    """Fold centring into integer thresholds: sum sign*(u - o) > t  <=>  sum sign*u > t + sum sign*o, and for an
    integer left side  z > T  <=>  z > floor(T)."""
    P = len(tap_ptr) - 1
    so = np.bincount(np.repeat(np.arange(P), np.diff(tap_ptr)), weights=tap_sign * offset[tap_idx].astype(np.float64), minlength=P)
    return np.floor(np.asarray(threshold_f, np.float64) + so).astype(np.int32)


def random_sketch(D: int = 64, C: int = 10, L: int = 16, K: int = 6, P: int | None = None, taps: int | None = None,
                  count_dtype=np.int8, seed: int = 0, task: str = "classification", count_bits: int | None = None,
                  selectors: str = "random", signs: str = "free", codebook: int = 0) -> Sketch:
    """A well-formed sketch with random hyperplanes and random counts: for tests of codegen and firmware, which
    must be bit-exact on any sketch, trained or not. P=None gives representer layout (L*K private hyperplanes).
    selectors="window" and signs="balanced" give the structure of distill's --selectors window / --signs balanced;
    codebook=R stores the cells as R shared rows (distill --codebook R)."""
    rng = np.random.default_rng(seed)
    shared = P is not None
    P = P if shared else L * K
    if taps is None:
        R = random_ternary(D, P, rng)
    else:
        R = np.zeros((D, P), np.int8)
        for p in range(P):
            n = min(taps, D)
            R[rng.choice(D, n, replace=False), p] = (rng.permutation(np.arange(n) < n // 2) * 2 - 1 if signs == "balanced"
                                                     else rng.choice(np.array([-1, 1], np.int8), n))
    ptr, idx, sign = csr_from_dense(R)
    offset = rng.normal(0, 20, D).astype(np.float32)
    thr_f = rng.normal(0, 30, P).astype(np.float32)
    sel = (window_selectors(P, L, K) if shared and selectors == "window" else rng.integers(0, P, (L, K)) if shared
           else np.arange(L * K).reshape(L, K)).astype(np.int32)
    lo, hi = (-8, 7) if count_bits == 4 else (np.iinfo(count_dtype).min, np.iinfo(count_dtype).max)
    counts = rng.integers(lo, hi, (L, 1 << K, C), endpoint=True).astype(np.int8 if count_bits == 4 else count_dtype)
    extras = {}
    if codebook:   # every row used: the first R cells take rows 0 .. R-1 in some order, the others any row
        rows = np.concatenate([rng.permutation(codebook), rng.integers(0, codebook, L * (1 << K) - codebook)])
        extras["cell_rows"] = rng.permutation(rows).reshape(L, 1 << K).astype(np.uint8 if codebook <= 256 else np.uint16)
        counts = counts.reshape(-1, C)[:codebook][extras["cell_rows"]]
    out_scale = np.full(C, 0.01, np.float32)
    return Sketch(meta={"task": task, "mode": "learned" if shared else "representer", "class_names": [str(c) for c in range(C)],
                        "input_shape": [D], "count_bits": count_bits or 8 * np.dtype(count_dtype).itemsize},
                  in_scale=rng.uniform(0.05, 0.2, D).astype(np.float32), in_zero=rng.integers(-128, 0, D).astype(np.int32),
                  offset=offset, tap_ptr=ptr, tap_idx=idx, tap_sign=sign, threshold_f=thr_f,
                  threshold=int_thresholds(thr_f, offset, ptr, idx, sign), table_sel=sel,
                  counts_f=counts * out_scale, counts=counts, out_scale=out_scale, out_bias=np.zeros(C, np.float32),
                  extras=extras)


def hash_structure(sk: Sketch) -> dict:
    """What compact C can exploit: "windows", every table reads K consecutive hyperplanes within one 32-bit word of
    packed hash bits (window_selectors); "balanced", every hyperplane has the same numbers of positive and negative
    taps (distill --signs balanced). Any sketch may have either; neither changes what it computes."""
    ptr, sign, K = sk.tap_ptr, sk.tap_sign, sk.n_bits
    kinds = {(int(ptr[p + 1] - ptr[p]), int((sign[ptr[p]:ptr[p + 1]] < 0).sum())) for p in range(sk.n_hyperplanes)}
    sel = np.asarray(sk.table_sel, np.int64)
    windows = all((row == row[0] + np.arange(K)).all() and row[0] // 32 == (row[0] + K - 1) // 32 for row in sel)
    return {"windows": bool(windows), "balanced": len(kinds) == 1}


def window_selectors(P: int, L: int, K: int) -> np.ndarray:
    """table_sel where table l reads K consecutive hyperplanes q_l .. q_l + K - 1 lying in one 32-bit word of packed
    hash bits (bit p in word p // 32), so that compact C reads its bucket with one shift and mask. Tables are shared
    out among the words in proportion to their bits, and spread evenly over each word from its first bit to its
    last; ValueError unless every hyperplane is read. [L, K]"""
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
