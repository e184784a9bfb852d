"""Codegen: Jinja2 only. Render codegen_templates/ with values chosen in Python; templates hold loops and ifs.

generate(sketch) -> {"es_model.h": ..., "es_model.c": ...}: the C99 model API of docs/model-api.md. Every number,
type name and array literal is chosen here; the templates only loop over what they are given.

Two layouts of one computation (both equal sketch.int_scores bit for bit):
  unrolled  each hyperplane is straight-line code (one load at a constant offset and one add/sub per tap, the
            threshold a constant); its hash bit goes straight to its place(s) in packed bucket words, so a table's
            bucket is one shift and mask. Fastest; about 6 bytes of code per tap.
  compact   loops over const tap lists (one index byte per tap) into a word-aligned stack copy of x and ~x, the hash
            bits a byte each, and a bucket gathered from K of them. Two structures make it faster (sketch.hash_structure,
            distill --signs balanced / --selectors window): when every hyperplane has the same numbers of positive and
            negative taps it reads x itself (no copy); when every table reads K consecutive hyperplanes within a
            32-bit word, hash bits are packed into words and a bucket is one shift and mask.
Count tables are one flat const array (row = table * 2^K + bucket, C counts a row). On cores with the DSP extension
and unaligned loads (Cortex-M4/M7/M33...) int8 counts are added four at a time with SXTAB16 into 16-bit lanes, behind
`#if`, next to the plain loop; it is used only when score_bound(sketch) fits a 16-bit lane.
4-bit counts (count_bits 4) are stored biased by +8 as nibbles in "planes" of uint32/uint16/uint8 words (8, 4 or 2
classes a word, ceil(C/2) bytes a cell) and added SIMD-within-a-register on every core: word & 0x0F0F0F0F and
(word >> 4) & 0x0F0F0F0F put 4 classes each into byte lanes, which hold the sum of 17 tables (17 * 15 = 255) before
they are spread into int32 scores; the bias (8 per table) is subtracted at the end.
Shared rows (distill --codebook R) store the distinct rows once and a row number per cell: a lookup reads the cell's
row number, then that row (one load more per table).
"""
from __future__ import annotations

import re

import jinja2
import numpy as np

from . import __version__
from .errors import UserError
from .paths import templates_dir
from .sketch import (Branch, Sketch, bit_order, hash_structure, projection_bound, readout_bounds, score_bound, shared_rows, validate,
                     weight_sums)

_env = None

LAYOUTS = ("unrolled", "compact")
INT32_MAX = 2**31 - 1
# the read macro of each const array type (P_RD_<suffix>_: pgm_read_* on AVR, a plain dereference elsewhere)
_RD = {"int8_t": "I8", "uint8_t": "U8", "int16_t": "I16", "uint16_t": "U16", "int32_t": "I32", "uint32_t": "U32",
       "float": "F32"}


def environment() -> jinja2.Environment:
    global _env
    if _env is None:
        _env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir())), undefined=jinja2.StrictUndefined,
                                  keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    return _env


def render(template: str, **ctx) -> str:
    """Render one template (a path under codegen_templates/) with the edgesketch version in scope."""
    return environment().get_template(template).render(version=__version__, **ctx)


# ---------------------------------------------------------------- small helpers
def _c_float(v) -> str:
    """A float32 as a C float literal that reads back to the same float32."""
    f = np.float32(v)
    if not np.isfinite(f):
        raise UserError(f"the sketch holds a non-finite quantisation parameter ({f}): re-run distill")
    s = f"{float(f):.9g}"
    if not any(ch in s for ch in ".en"):
        s += ".0"
    return s + "f"


def _c_int(v: int) -> str:
    """An integer literal that is an int on 16-bit-int targets too (INT32_MIN needs the expression form)."""
    v = int(v)
    if v == -2**31:
        return "(-2147483647L - 1)"
    return f"{v}L" if not -32768 <= v <= 32767 else str(v)


def _fast_type(bound: int) -> tuple[str, str]:
    """Smallest sufficient 'fast' signed type for values in [-bound, bound], and the macro of its maximum."""
    if bound <= 32767:
        return "int_fast16_t", "INT_FAST16_MAX"
    if bound <= INT32_MAX:
        return "int32_t", "INT32_MAX"
    raise UserError(f"an accumulator of this sketch could reach {bound}, beyond int32: use fewer taps or smaller counts")


def _uint_type(maxval: int) -> str:
    return "uint8_t" if maxval <= 0xFF else "uint16_t" if maxval <= 0xFFFF else "uint32_t"


def _int_type(lo: int, hi: int) -> str:
    return ("int8_t" if -128 <= lo and hi <= 127 else "int16_t" if -32768 <= lo and hi <= 32767 else "int32_t")


def _rows(values, per_line: int = 16) -> list[str]:
    """Array literal body split into lines of per_line values (strings, each line ending with a comma)."""
    vals = [str(v) for v in values]
    return [", ".join(vals[i:i + per_line]) + "," for i in range(0, len(vals), per_line)]


COUNT_PAD = 4   # zeros after const count data: a word read at the start of the last row may run 3 bytes past it (DSP)


def _count_rows(counts, C: int) -> list[str]:
    """Const count data [cells * C] as C rows: whole cells a line, then COUNT_PAD zeros."""
    return _rows(list(counts) + [0] * COUNT_PAD, C * max(1, 16 // C))


def _model_id(sk: Sketch) -> tuple[str, list[str]]:
    mid = sk.meta.get("model_id")
    if not mid:
        return "unsaved", ["0x00"] * 8
    mid = str(mid).lower()
    if not re.fullmatch(r"[0-9a-f]{16,}", mid) or len(mid) % 2:
        raise UserError(f"model_id {mid!r} is not an even-length hex string of at least 16 digits: re-save the .esk")
    return mid, [f"0x{mid[i:i + 2]}" for i in range(0, 16, 2)]


def _flat_code(sk: Sketch) -> bool:
    """Flat ternary sketches get the specialised flat code (codegen_templates/flat.c.j2); every other sketch the
    general loop over branches and positions (branches.c.j2), which computes the same for a flat one and computes a
    sum shared by several thresholds once."""
    b = sk.branches[0]
    shared = any(b.tap_ptr[p + 1] > b.tap_ptr[p] and np.array_equal(b.tap_idx[b.tap_ptr[p]:b.tap_ptr[p + 1]],
                 b.tap_idx[b.tap_ptr[p + 1]:b.tap_ptr[p + 2]]) and np.array_equal(
                 b.tap_weight[b.tap_ptr[p]:b.tap_ptr[p + 1]], b.tap_weight[b.tap_ptr[p + 1]:b.tap_ptr[p + 2]])
                 for p in range(b.n_hyperplanes - 1))
    return sk.is_flat and b.ternary and not shared


def _check(sk: Sketch) -> None:
    P, L, K = sk.n_hyperplanes, sk.n_tables, sk.n_bits
    problems = validate(sk)
    if problems:
        raise UserError("cannot generate C for this sketch: " + "; ".join(problems))
    if K > 16:
        problems.append(f"K={K} > 16 (buckets are uint16_t in the C API)")
    if np.abs(sk.in_zero.astype(np.int64)).max(initial=0) > 65536:
        problems.append("an input zero point is beyond +-65536")
    if P > 65535 or L > 65535:
        problems.append(f"P={P} or L={L} beyond 65535")
    for b in sk.branches:
        w = b.window
        if w.padded_inputs > 65535 or w.n_positions > 65535 or w.n_elements > 65535:
            problems.append(f"a window of {w.n_positions} positions over {w.padded_inputs} padded inputs (at most 65535)")
        if np.diff(b.tap_ptr).max(initial=0) > 255 and not sk.is_flat:
            problems.append("a hyperplane of a windowed branch has more than 255 taps")
    if problems:
        raise UserError("cannot generate C for this sketch: " + "; ".join(problems))


def _clamped_thresholds(b: Branch) -> list[int]:
    """Integer thresholds clamped to the reachable range of each sum (the same bits, small literals)."""
    ptr, w, thr = b.tap_ptr.astype(np.int64), b.tap_weight.astype(np.int64), []
    for p in range(b.n_hyperplanes):
        s = w[ptr[p]:ptr[p + 1]]
        pos, neg = int(s[s > 0].sum()), int(-s[s < 0].sum())
        zmax, zmin = 127 * pos + 128 * neg, -128 * pos - 127 * neg
        thr.append(int(min(max(int(b.threshold[p]), zmin - 1), zmax)))
    return thr


def _common(sk: Sketch, layout: str, prefix: str, flat: bool) -> dict:
    """Template values every layout and both code paths print: names, sizes, quantisation, count type."""
    D, C = sk.n_inputs, sk.n_outputs
    mid, id_bytes = _model_id(sk)
    nibble = sk.count_bits == 4
    shared = shared_rows(sk)
    count_t = "int4 (packed)" if nibble else "int8_t" if sk.branches[0].counts.dtype == np.int8 else "int16_t"
    geometry = [f"branch {j}: {_describe(b)}" for j, b in enumerate(sk.branches)] if not flat else []
    return dict(
        p=prefix, P_=prefix.upper(), layout=layout, flat=flat, rd=_RD,
        model_id=mid, model_id_bytes=id_bytes,
        meta_lines=[f"mode {sk.meta.get('mode', '?')}, task {sk.task}, {D} inputs, {C} outputs",
                    f"P={sk.n_hyperplanes} hyperplanes, {sk.n_taps} taps (max {max(int(np.diff(b.tap_ptr).max(initial=0)) for b in sk.branches)} per hyperplane), "
                    + (f"L={sk.n_tables} tables of 2^K={1 << sk.n_bits} cells, K={sk.n_bits}" if flat else
                     f"{sk.n_tables} tables in {len(sk.branches)} branch(es)"),
                    f"counts {count_t} ({sk.table_bytes} bytes{'' if shared is None else f': {len(shared[1])} shared rows'}), "
                    f"layout {layout}"] + geometry,
        D=D, C=C, L=sk.n_tables, K=sk.n_bits, NP=sk.n_hyperplanes, R=1 << sk.n_bits,
        n_q=int(len(sk.in_scale)), n_debug_bits=sk.n_debug_bits, n_debug_buckets=sk.n_debug_buckets,
        task_cls=1 if sk.task == "classification" else 0,
        in_scale=_rows([_c_float(v) for v in sk.in_scale], 8),
        in_zero=_rows([_c_int(v) for v in sk.in_zero]),
        out_scale=_rows([_c_float(v) for v in sk.out_scale], 8),
        out_bias=_rows([_c_float(v) for v in sk.out_bias], 8),
        count_t=count_t, count_rd="I8" if count_t == "int8_t" else "I16",
        nibble=nibble, classes=list(range(C)), n_lanew=-(-C // 4), codebook=shared is not None,
    )


def _describe(b: Branch) -> str:
    w = b.window
    if w.is_flat:
        return f"flat, P={b.n_hyperplanes}, L={b.n_tables}, K={b.n_bits}"
    return (f"window {'x'.join(map(str, w.size))} over {'x'.join(map(str, w.shape))}, stride {'x'.join(map(str, w.stride))}, "
            f"dilation {'x'.join(map(str, w.dilation))}, padding {'x'.join(map(str, w.padding))}, pool {'x'.join(map(str, w.pool))}: "
            f"{w.n_positions} positions, {w.n_readouts} read-outs, {w.regions} region(s); P={b.n_hyperplanes}, L={b.n_tables}, K={b.n_bits}")


# ---------------------------------------------------------------- the plan: every value the templates print
def _plan(sk: Sketch, layout: str, prefix: str) -> dict:
    """The flat sketch (one branch, one window over the whole input): today's specialised code."""
    b = sk.branches[0]
    P, L, K, D, C = sk.n_hyperplanes, sk.n_tables, sk.n_bits, sk.n_inputs, sk.n_outputs
    R = 1 << K
    ptr, sign = b.tap_ptr.astype(np.int64), b.tap_weight.astype(np.int64)
    sel = b.table_sel.astype(np.int64)
    thr = _clamped_thresholds(b)
    # compact code adds ~x[i] = -x[i] - 1 for a negative tap, so its thresholds drop by the negative-tap count; unless
    # every hyperplane has the same numbers of positive and negative taps (--signs balanced): then it reads x directly
    ntap = np.diff(ptr)
    nneg = [int((sign[ptr[p]:ptr[p + 1]] < 0).sum()) for p in range(P)]
    structure = hash_structure(b)
    direct = layout == "compact" and structure["balanced"]
    if layout == "compact" and not direct:
        thr = [t - int(n) for t, n in zip(thr, nneg)]
    # the C computes threshold - sum (its sign bit is the hash bit): |.| <= |threshold| + 128 * taps
    pbound = max([projection_bound(sk)] + [abs(t) + 128 * int(n) for t, n in zip(thr, ntap)])
    sbound = score_bound(sk)
    proj_t, proj_max = _fast_type(pbound)
    score_t, score_max = _fast_type(sbound)

    used = np.zeros(P, bool)
    used[sel.ravel()] = True

    ctx = _common(sk, layout, prefix, flat=True)
    nibble, count_t = ctx["nibble"], ctx["count_t"]
    shared = shared_rows(sk)
    counts = (b.counts if shared is None else shared[1]).astype(np.int64).reshape(-1)
    dsp = count_t == "int8_t" and sbound <= 32767

    ctx.update(
        smlad=False, proj_t=proj_t, proj_max=proj_max, proj_bound=pbound,
        score_t=score_t, score_max=score_max, score_bound=sbound, lane_bound=sbound,
        counts=[] if nibble else _count_rows(counts, C), n_counts=counts.size + COUNT_PAD,
        dsp=dsp,
        **(_plan_nibbles(b, C) if nibble else {}),
        n_rows=0 if shared is None else len(shared[1]),
        rows=[] if shared is None else _rows(shared[0], R if R <= 32 else 32),
        row_t=_uint_type(0 if shared is None else len(shared[1]) - 1),
    )
    if layout == "unrolled":
        ctx.update(_plan_unrolled(b, thr, used, f"{prefix}_proj_t"))
    else:
        ctx.update(_plan_compact(b, thr, used, direct, structure["windows"], prefix))
    return ctx


NIBBLE_GROUP = 17   # tables a byte lane can sum: 17 * 15 = 255
PRELOAD_MAX = 16    # windows of at most this many values are read into locals once per position


def _plan_nibbles(b: Branch, C: int) -> dict:
    """4-bit counts: planes of packed nibbles (class c0 + i at bits 4i of a plane's word, stored as count + 8) and,
    per class, the C expression that reads its sum out of the byte-lane accumulators lo<j> / hi<j>."""
    L, R = b.counts.shape[0], 1 << b.n_bits
    u = (b.counts.astype(np.int64) + 8).reshape(L * R, C)
    planes, c0 = [], 0
    while c0 < C:
        n = min(8, C - c0)
        width = 32 if n > 6 else 16 if n > 2 else 8
        if n in (5, 6):
            n, width = 4, 16                      # then a byte plane for the last 1 or 2: ceil(C / 2) bytes a cell
        mask = {32: "0x0F0F0F0Fu", 16: "0x0F0Fu", 8: "0x0Fu"}[width]
        words = (u[:, c0:c0 + n] << (4 * np.arange(n))).sum(1)
        planes.append(dict(j=len(planes), t=f"uint{width}_t", mask=mask, rd=f"U{width}",
                           rows=_rows([f"0x{int(w):0{width // 4}X}" for w in words], 8),
                           lanes=[(c0 + i, "hi" if i % 2 else "lo", i // 2) for i in range(n)]))
        c0 += n
    extract = {c: f"(int32_t)(({acc}{j} >> {8 * b}) & 0xFFu)" if b else f"(int32_t)({acc}{j} & 0xFFu)"
               for j, pl in enumerate(planes) for c, acc, b in pl["lanes"]}
    flush_after = sorted({min(L, g + NIBBLE_GROUP) - 1 for g in range(0, L, NIBBLE_GROUP)})
    return dict(cplanes=planes, extract=[extract[c] for c in range(C)], bias=8 * L, group=NIBBLE_GROUP,
                flush_after=flush_after)


def _negate(terms: str) -> str:
    """'- x[1] + 2 * x[3]' (threshold minus the sum) -> '+ x[1] - 2 * x[3]' (the sum itself)."""
    return " ".join({"-": "+", "+": "-"}.get(t, t) for t in terms.split(" "))


def _sum_key(b: Branch, p: int) -> tuple:
    """Hyperplanes with equal keys (the same taps and weights: distill's thresholds > 1) share one sum."""
    lo, hi = int(b.tap_ptr[p]), int(b.tap_ptr[p + 1])
    return tuple(int(i) for i in b.tap_idx[lo:hi]), tuple(int(v) for v in b.tap_weight[lo:hi])


def _plan_unrolled(b: Branch, thr, used, proj_t, offsets=None, xname: str = "x", preloaded: bool = False,
                   share: bool = False, smlad: dict | None = None, packed: np.ndarray | None = None,
                   inverted: bool = False) -> dict:
    """Straight-line hashing: each hyperplane one expression over xname[offset] (offsets: window element -> offset
    from the position's base; None: the element itself), its bit written where tables read it. smlad (with share):
    the DSP form of each sum, from _plan_smlad. packed (sketch.bit_order: a position for every hyperplane under which
    every table reads K consecutive positions of one 32-bit word): bit p goes once to its position and a bucket is one
    shift and mask. inverted (with share): z = sum - (threshold + 1), negative exactly when the bit is 0 (the C clears
    it in words that start all ones)."""
    P, L, K, C = b.n_hyperplanes, b.n_tables, b.n_bits, b.counts.shape[-1]
    R = 1 << K
    ptr, idx, sign = b.tap_ptr, b.tap_idx, b.tap_weight
    per = 32 // K                      # buckets per packed word; a bucket never straddles two words
    unused = [p for p in range(P) if not used[p]]
    pos: dict[int, list[int]] = {p: [] for p in range(P)}   # flat bit positions (word * 32 + bit) of each hash bit
    if packed is not None:
        nbw, nxw, at = -(-P // 32), 0, [int(packed[b.table_sel[l, 0]]) for l in range(L)]
        for p in range(P):
            pos[p].append(int(packed[p]))
    else:
        nbw, at = -(-L // per), [(l // per) * 32 + (l % per) * K for l in range(L)]
        nxw = -(-len(unused) // 32)
        for l in range(L):
            for k in range(K):
                pos[int(b.table_sel[l, k])].append(at[l] + k)
        for j, p in enumerate(unused):
            pos[p].append(nbw * 32 + j)

    def expr(p):
        """threshold - (sum of sign * x): negative exactly when the hash bit is 1, so the bit is its sign bit."""
        terms = [f"({proj_t}){_c_int(thr[p])}"]
        for t in range(ptr[p], ptr[p + 1]):
            at = int(idx[t]) if offsets is None else int(offsets[idx[t]])
            mag = abs(int(sign[t]))
            terms.append(f"{'+' if sign[t] < 0 else '-'} {f'{mag} * ' if mag > 1 else ''}" + (f"v{at}" if preloaded else f"{xname}[{at}]"))
        return " ".join(terms)

    # consecutive hyperplanes with the same taps (distill's thresholds > 1) share one sum: the first computes it into q,
    # the next ones only compare it with their own thresholds (windowed branches: `share`)
    key = lambda p: _sum_key(b, p)

    def planes(ps):
        out, prev = [], None
        for p in ps:
            e, pre = expr(p), None
            if share and ptr[p + 1] > ptr[p]:
                if prev != key(p):
                    pre = f"q = ({proj_t})0 {_negate(e.split(' ', 1)[1])};"
                e = f"q - ({proj_t}){_c_int(thr[p] + 1)}" if inverted else f"({proj_t}){_c_int(thr[p])} - q"
            elif inverted:
                e = f"({proj_t}){_c_int(-thr[p] - 1)}"
            prev = key(p) if share else None
            out.append(dict(p=p, expr=e, pre=pre, pre_dsp=pre and smlad and smlad["sums"][key(p)],
                            sets=[(q // 32, q % 32) for q in pos[p]]))
        return out

    src = [pos[p][0] for p in range(P)]
    return dict(
        per_word=per, n_bw=nbw, n_xw=nxw, bucket_mask=R - 1,
        planes=planes([p for p in range(P) if used[p]]), extra_planes=planes(unused),
        bit_src=_rows(src), bit_src_t=_uint_type(max(src, default=0)),
        tables=[dict(l=l, word=at[l] // 32, shift=at[l] % 32, base=l * R * C) for l in range(L)],
        bat=_rows(at), bat_t=_uint_type(max(at, default=0)),
    )


def _plan_smlad(b: Branch, offsets, avail: int, proj_t: str, name: str) -> dict | None:
    """The DSP form of a branch's straight-line sums, where it takes fewer instructions than the plain one: the
    window's bytes are read as 32-bit words (word j from offset start[j]; every read stays inside the avail bytes after
    the last position's base), each split by SXTB16 into two int16x2 registers (bytes 0,2 and 1,3), and a sum is one
    SMUAD/SMLAD per register it reads against a packed pair of tap weights (lanes without a tap weigh 0). Exact in
    int32, so the sums equal the plain ones. None when the plain form is cheaper or the window is under 4 bytes."""
    taps = sorted({int(offsets[i]) for i in b.tap_idx})
    if avail < 4 or not taps:
        return None
    start, word_of = [], {}
    for o in taps:                                  # greedy cover by 4-byte words; the last ones may start earlier
        if o not in word_of:
            start.append(min(o, avail - 4))
            for q in range(start[-1], start[-1] + 4):
                word_of.setdefault(q, len(start) - 1)
    sums, weights, regs, plain = {}, [], set(), 0
    for p in range(b.n_hyperplanes):
        key = _sum_key(b, p)
        if not key[0] or key in sums:
            continue
        lanes: dict[str, list[int]] = {}
        for i, v in zip(*key):
            o = int(offsets[i])
            j, r = word_of[o], o - start[word_of[o]]
            lanes.setdefault(f"p{'eo'[r % 2]}{j}", [0, 0])[r // 2] += v
            plain += 1 if abs(int(v)) & (abs(int(v)) - 1) == 0 else 2   # x, 2x, 4x: one add with a shifted operand
        acc = None
        regs |= set(lanes)
        for reg, (lo, hi) in lanes.items():
            weights.append(f"0x{((hi & 0xFFFF) << 16) | (lo & 0xFFFF):08X}u")
            w = f"(int32_t){name}_wk_[{len(weights) - 1}]"
            acc = f"__smuad({reg}, {w})" if acc is None else f"__smlad({reg}, {w}, {acc})"
        sums[key] = f"q = ({proj_t}){acc};"
    cost = 2 * len(weights) + 3 * len(start)        # a weight load and a multiply-add per register; per word 3
    if cost >= plain:
        return None
    return dict(words=[(j, s) for j, s in enumerate(start)], regs=sorted(regs), sums=sums, wk=_rows(weights, 8), n_wk=len(weights))


def _plan_compact(b: Branch, thr, used, direct: bool, windows: bool, prefix: str) -> dict:
    """direct: every hyperplane has the same (taps, negative taps); its positive taps come first and the C reads x
    itself (no negated copy). packed: table l reads the K consecutive hyperplanes start[l] .. start[l] + K - 1 within
    one 32-bit word (--selectors window): hash bits are packed into words and a bucket is one shift and mask."""
    P, D, K = b.n_hyperplanes, b.window.n_inputs, b.n_bits
    ptr, idx, sign = b.tap_ptr, b.tap_idx, b.tap_weight
    nxw = -(-D // 4)   # words of x in the stack buffer; ~x starts at byte 4 * nxw
    order = [p for p in range(P) if used[p]] + [p for p in range(P) if not used[p]]  # used first
    rank = np.empty(P, np.int64)
    rank[order] = np.arange(P)
    tap_idx, ntap, thr_o = [], [], []
    for p in order:   # a tap reads xx[i] = x[i] (positive) or xx[4 nxw + i] = ~x[i] (negative); direct: x[i], + then -
        taps = list(zip(sign[ptr[p]:ptr[p + 1]], idx[ptr[p]:ptr[p + 1]]))
        if direct:
            taps.sort(key=lambda t: -int(t[0]))
        ntap.append(int(ptr[p + 1] - ptr[p]))
        tap_idx += [int(i) + (4 * nxw if s < 0 and not direct else 0) for s, i in taps]
        thr_o.append(thr[p])
    uniform = len(set(ntap)) == 1
    permuted = order != list(range(P))
    sel = b.table_sel.astype(np.int64)
    packed, one_word = windows and not permuted, P <= 32
    npos = int((sign[ptr[0]:ptr[1]] > 0).sum()) if direct and P else 0
    if packed:   # one word stays in a register; more are read through BUCKET_ (es_debug_q's bucket too)
        starts = [int(r[0]) for r in sel]
        rd_sel = f"{prefix.upper()}_RD_{_RD[_uint_type(P - 1)]}_(sel)"
        bucket = f"((w0 >> {rd_sel}) & {prefix.upper()}_MASK_)" if one_word else f"{prefix.upper()}_BUCKET_(w, {rd_sel})"
    return dict(
        n_used=int(used.sum()), permuted=permuted, direct=direct, packed=packed,
        n_hw=-(-P // 32), one_word=one_word,
        rank=_rows([int(r) for r in rank]), rank_t=_uint_type(P - 1),
        tap_idx=_rows(tap_idx or [0]), idx_t=_uint_type(D - 1 if direct else 8 * nxw - 1), nxw=nxw, n_tapidx=max(1, len(tap_idx)),
        taps_each=ntap[0] if uniform else None, npos=npos, ntap=_rows(ntap), n_t=_uint_type(max(ntap, default=0)),
        thr=_rows([_c_int(t) for t in thr_o]), thr_t=_int_type(min(thr_o, default=0), max(thr_o, default=0)),
        sel=_rows(starts if packed else [int(rank[s]) for s in sel.reshape(-1)]),
        sel_t=_uint_type(P - 1),
        sel_step=1 if packed else K, bucket=bucket if packed else f"{prefix}_bucket_(b, sel)",
    )


def _plan_general(sk: Sketch, layout: str, prefix: str) -> dict:
    """Any sketch as a sum of branches (codegen_templates/branches.c.j2): per branch its const data, a hash function
    for one position (straight-line over a base pointer, or loops over tap lists) and a loop over read-out positions.
    Accumulator lanes (DSP 16-bit lanes, 4-bit byte lanes) are added into int32 scores often enough never to overflow."""
    ctx = _common(sk, layout, prefix, flat=False)
    C, nibble, count_t = sk.n_outputs, ctx["nibble"], ctx["count_t"]
    shared = shared_rows(sk)
    if shared is not None:   # one book of rows for every branch; each branch a row number per cell
        book = shared[1].astype(np.int64).reshape(-1)
        row_t = _uint_type(len(shared[1]) - 1)
        ctx.update(book=_count_rows(book, C), n_book=book.size + COUNT_PAD, n_rows=len(shared[1]),
                   row_t=row_t, row_rd=_rd(row_t))
    per_readout = [int(readout_bounds(b).max(initial=0)) for b in sk.branches]
    lane_bound = max(per_readout)
    dsp = count_t == "int8_t" and lane_bound <= 32767
    pbound, branches = 0, []
    nib = _plan_nibbles(sk.branches[0], C) if nibble else {}
    for j, b in enumerate(sk.branches):
        w, L, K, P = b.window, b.n_tables, b.n_bits, b.n_hyperplanes
        R = 1 << K
        thr = _clamped_thresholds(b)
        ptr, wt = b.tap_ptr.astype(np.int64), b.tap_weight.astype(np.int64)
        absw = weight_sums(b)
        pbound = max(pbound, max([abs(t) + 1 + 128 * int(a) for t, a in zip(thr, absw)], default=0), projection_bound(sk))
        offsets = w.element_offsets()
        pad = bool(any(w.padding))
        name = f"{prefix}_b{j}"
        base = w.position_base()
        br = dict(j=j, name=name, NAME=name.upper(), desc=_describe(b), L=L, K=K, P=P, R=R, cells=b.n_cells,
                  n_pos=w.n_positions, n_ro=w.n_readouts, pool=w.pool_size, regions=w.regions, ternary=b.ternary,
                  base=_rows([int(v) for v in base]), base_t=_uint_type(int(base.max(initial=0))),
                  base_rd=_rd(_uint_type(int(base.max(initial=0)))), pad=pad, padn=w.padded_inputs)
        if w.regions > 1:
            first = (w.readout_region * L * R).astype(np.int64)
            br.update(region=_rows([int(v) for v in first]), region_t=_uint_type(int(first.max())), region_rd=_rd(_uint_type(int(first.max()))))
        if pad:
            fill = [int(v) for v in np.asarray(sk.in_zero)[:w.channels]]
            runs = _copy_runs(w)
            rt = _uint_type(max(max(r) for r in runs))
            br.update(fill=fill, runs=runs, run_rows=_rows([v for r in runs for v in r], 12), run_t=rt, run_rd=_rd(rt))
        if nibble:
            planes = _plan_nibbles(b, C)["cplanes"]
            br.update(cplanes=planes)
        elif shared is not None:
            start = sum(o.n_cells for o in sk.branches[:j])
            br.update(rows=_rows([int(v) for v in shared[0][start:start + b.n_cells]]))
        else:
            counts = b.counts.astype(np.int64).reshape(-1)
            br.update(counts=_count_rows(counts, C), n_counts=counts.size + COUNT_PAD)
        if nibble:
            per_ro = NIBBLE_GROUP // L if L <= NIBBLE_GROUP else 1
            br.update(flush_every=per_ro, flush_within=[g - 1 for g in range(NIBBLE_GROUP, L, NIBBLE_GROUP)] if L > NIBBLE_GROUP else [])
        elif dsp:
            br.update(flush_every=max(1, 32767 // max(1, per_readout[j])), flush_within=[])
        else:
            br.update(flush_every=0, flush_within=[])
        used = np.zeros(P, bool)
        used[b.table_sel.reshape(-1)] = True
        if layout == "unrolled":
            # small windows: every value read once into a local (registers on most cores), not once per tap
            preload = sorted({int(offsets[i]) for i in b.tap_idx}) if w.n_elements <= PRELOAD_MAX else []
            avail = (w.padded_inputs if pad else sk.n_inputs) - int(base.max(initial=0))
            smlad = _plan_smlad(b, offsets, avail, f"{prefix}_proj_t", name) if preload else None
            u = _plan_unrolled(b, thr, used, f"{prefix}_proj_t", offsets, xname="b", preloaded=bool(preload), share=True,
                               smlad=smlad, packed=bit_order(b), inverted=True)
            br.update(smlad=smlad, tables=u["tables"], bat=u["bat"], bat_t=u["bat_t"], bat_rd=_rd(u["bat_t"]),
                      shared_sums=any(h["pre"] for h in u["planes"] + u["extra_planes"]), preload=preload, planes=u["planes"], extra_planes=u["extra_planes"], bit_src=u["bit_src"], bit_src_t=u["bit_src_t"],
                      bit_src_rd=_rd(u["bit_src_t"]), n_bw=u["n_bw"], n_xw=u["n_xw"], per_word=u["per_word"])
        else:
            off, npos, wts = [], [], []
            for p in range(P):
                taps = sorted(zip(wt[ptr[p]:ptr[p + 1]], b.tap_idx[ptr[p]:ptr[p + 1]]), key=lambda t: -int(t[0] > 0))
                off += [int(offsets[i]) for _, i in taps]
                wts += [int(v) for v, _ in taps]
                npos.append(sum(1 for v, _ in taps if v > 0))
            per = 32 // K
            places = {p: [] for p in range(P)}        # flat bit positions (word * 32 + bit) where tables read bit p
            for l in range(L):
                for k in range(K):
                    places[int(b.table_sel[l, k])].append((l // per) * 32 + (l % per) * K + k)
            dst = [q for p in range(P) for q in places[p]]
            ot, dt = _uint_type(max(off, default=0)), _uint_type(max(dst, default=0))
            br.update(off=_rows(off or [0]), n_off=max(1, len(off)), off_t=ot, off_rd=_rd(ot), npos=_rows(npos), wt=_rows(wts or [0]),
                      ntap=_rows([int(v) for v in np.diff(ptr)]), thr=_rows([_c_int(t) for t in thr]),
                      thr_t=_int_type(min(thr, default=0), max(thr, default=0)), n_hw=-(-P // 32), per_word=per,
                      n_bw=-(-L // per), ndst=_rows([len(places[p]) for p in range(P)]), dst=_rows(dst or [0]),
                      n_dst=max(1, len(dst)), dst_t=dt, dst_rd=_rd(dt))
            br.update(thr_rd=_rd(br["thr_t"]))
        branches.append(br)
    proj_t, proj_max = _fast_type(pbound)
    sbound = score_bound(sk)
    score_t, score_max = _fast_type(sbound)
    ctx.update(branches=branches, smlad=any(br.get("smlad") for br in branches), proj_t=proj_t, proj_max=proj_max, proj_bound=pbound, score_t=score_t, score_max=score_max,
               score_bound=sbound, lane_bound=lane_bound, dsp=dsp, lane_every=min((b["flush_every"] for b in branches), default=1),
               group=NIBBLE_GROUP, bias=8 * sum(b.n_reads for b in sk.branches),
               **({k: nib[k] for k in ("cplanes", "extract")} if nibble else {}))
    return ctx


def _rd(ctype: str) -> str:
    """The suffix of the program-memory read macro (ES_RD_<suffix>_) for a C type."""
    return _RD[ctype]


def _copy_runs(w) -> list[tuple[int, int, int]]:
    """(padded offset, input offset, length) runs that copy the input into its padded grid: one per row of the last
    spatial axis."""
    sp, pad, Cn = w.spatial, w.padding, w.channels
    padded = [s + 2 * p for s, p in zip(sp, pad)]
    pstr = np.cumprod([1] + padded[::-1][:-1])[::-1] * Cn
    istr = np.cumprod([1] + list(sp[::-1][:-1]))[::-1] * Cn
    runs = []
    for lead in np.ndindex(*sp[:-1]):
        dst = sum((i + p) * s for i, p, s in zip(lead, pad[:-1], pstr[:-1])) + pad[-1] * Cn
        src = sum(i * s for i, s in zip(lead, istr[:-1]))
        runs.append((int(dst), int(src), int(sp[-1] * Cn)))
    return runs


# ---------------------------------------------------------------- public
def generate(sketch: Sketch, layout: str = "unrolled", prefix: str = "es") -> dict[str, str]:
    """Render the model as C99: {f"{prefix}_model.h": ..., f"{prefix}_model.c": ...}.

    layout: "unrolled" (straight-line code per hyperplane, fastest) or "compact" (loops over const tap lists,
    smallest). prefix: C identifier prefix of every symbol and macro (ES_N_INPUTS, es_predict_q, ...), so several
    models can live in one firmware. The result equals sketch.int_scores bit for bit (tests/test_codegen.py)."""
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,30}", prefix):
        raise UserError(f"prefix {prefix!r} is not a lower-case C identifier (letters, digits, _; starts with a letter)")
    _check(sketch)
    ctx = _plan(sketch, layout, prefix) if _flat_code(sketch) else _plan_general(sketch, layout, prefix)
    return {f"{prefix}_model.h": render("es_model.h.j2", **ctx),
            f"{prefix}_model.c": render("es_model.c.j2", **ctx)}


def write(sketch: Sketch, out_dir, layout: str = "unrolled", prefix: str = "es") -> list:
    """generate() and write the files into out_dir (created if missing). Returns the paths written."""
    from pathlib import Path
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in generate(sketch, layout, prefix).items():
        (out / name).write_text(text)
        paths.append(out / name)
    return paths
