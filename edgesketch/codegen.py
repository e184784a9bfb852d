"""Codegen: Jinja2 only. Plan every value in Python, render codegen_templates/ as const data over the runtime.

generate(sketch) -> {"es_model.h": ..., "es_model.c": ...}: the C99 model API of docs/model-api.md. The inference loop
is the hand-written runtime in firmware/model/ (es_sketch.h, es_sketch_run.h and three small .c files, listed by
runtime_files()), which every export ships beside the model: the generated .c holds a banner, const arrays, one
descriptor per branch (es_branch_t) and of the model (es_model_t), and thin entry points that call the runtime,
which is inlined there with the descriptors as constants. Every number, type name and array literal is chosen here.

Two layouts of one computation (both equal sketch.int_scores bit for bit):
  unrolled  each hyperplane is straight-line code (one load at a constant offset and one add/sub per tap, or an SMLAD
            pair of taps on DSP cores; a sum shared by several thresholds computed once); its hash bit goes straight to
            its place(s) in packed bucket words, and each table's lookup is one runtime call with its constants. What
            unrolling needs is generated (a hash function and a lookup function per branch); the runtime does the rest.
            Fastest; about 6 bytes of code per tap.
  compact   only const data: tap lists that the runtime's loops read (es_sketch_hash_bytes / _words), hash bits a byte
            each (buckets gathered through selectors) or, when every table reads K consecutive hyperplanes of one
            32-bit word (--selectors window), packed words whose buckets are one shift and mask.
Count tables are const arrays (row = (region * L + table) * 2^K + bucket, C counts a row). On cores with the DSP
extension and unaligned loads (Cortex-M4/M7/M33...) int8 counts are added four at a time with SXTAB16 into 16-bit lanes
when every read-out fits a lane, flushed into the int32 scores before they could overflow. 4-bit counts (count_bits 4)
are stored biased by +8 as nibbles in planes of uint32/uint16/uint8 words (8, 4 or 2 classes a word, ceil(C/2) bytes a
cell) and added SIMD-within-a-register in byte lanes that hold the sum of 17 cells (17 * 15 = 255). Shared rows
(distill --codebook R) store the distinct rows once and a row number per cell.
"""
from __future__ import annotations

import re
from pathlib import Path

import jinja2
import numpy as np

from . import __version__
from .errors import UserError
from .paths import firmware_dir, templates_dir
from .sketch import (Branch, Sketch, bit_order, hash_structure, projection_bound, readout_bounds, score_bound, shared_rows,
                     sum_group, validate, weight_sums)

_env = None

LAYOUTS = ("unrolled", "compact")
INT32_MAX = 2**31 - 1


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


def _c_string(text: str) -> str:
    """A C string literal of text (UTF-8): printable ASCII as is, quotes and backslashes escaped, every other byte an
    octal escape (three digits, so that a digit after it stays a digit)."""
    out = []
    for byte in str(text).encode("utf-8"):
        ch = chr(byte)
        out.append("\\" + ch if ch in '"\\' else ch if 32 <= byte < 127 and ch != "?" else f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def _names(sk: Sketch) -> list[str]:
    """The outputs' names: the sketch's class_names, else 0, 1, ... (classification) or y0, y1, ... (regression)."""
    names = [str(n) for n in sk.meta.get("class_names") or []]
    if len(names) != sk.n_outputs:
        names = [str(c) if sk.task == "classification" else f"y{c}" for c in range(sk.n_outputs)]
    return names


def _inputs(sk: Sketch) -> tuple[str, list[str]]:
    """(the input units, comma-separated per channel, or "", the header's lines on the inputs' units and the ranges the
    model was distilled on) from the sketch's meta (input_units, input_ranges)."""
    units = sk.meta.get("input_units") or []
    ranges = sk.meta.get("input_ranges") or {}
    if not units and not ranges:
        return "", []
    lo, hi, mean = (ranges.get(k) or [] for k in ("min", "max", "mean"))
    n = max(len(lo), len(units))
    lines = [f"{n} channels (the last axis of a window), the training data's range per channel:" if n > 1 else
             "the training data's range (every input):"]
    for c in range(len(lo)):
        unit = units[c] if c < len(units) else (units[-1] if units else "")
        lines.append(f"  {c}: {lo[c]:.4g} .. {hi[c]:.4g}{' ' + unit if unit else ''} (mean {mean[c]:.4g})")
    return ",".join(units), lines


def _describe(b: Branch) -> str:
    w = b.window
    if w.is_flat:
        return f"flat, P={b.n_hyperplanes}, L={b.n_tables}, K={b.n_bits}"
    return (f"window {'x'.join(map(str, w.size))} over {'x'.join(map(str, w.shape))}, stride {'x'.join(map(str, w.stride))}, "
            f"dilation {'x'.join(map(str, w.dilation))}, padding {'x'.join(map(str, w.padding))}, pool {'x'.join(map(str, w.pool))}: "
            f"{w.n_positions} positions, {w.n_readouts} read-outs, {w.regions} region(s); P={b.n_hyperplanes}, L={b.n_tables}, K={b.n_bits}")


NIBBLE_GROUP = 17   # tables a byte lane can sum: 17 * 15 = 255
PRELOAD_MAX = 16    # windows of at most this many values are read into locals once per position


def _plan_nibbles(b: Branch, C: int) -> dict:
    """4-bit counts: planes of packed nibbles (class c0 + i at bits 4i of a plane's word, stored as count + 8) and for
    every class its plane * 16 + its place in the plane (nib)."""
    L, R = b.counts.shape[0], 1 << b.n_bits
    u = (b.counts.astype(np.int64) + 8).reshape(L * R, C)
    planes, nib, c0 = [], [], 0
    while c0 < C:
        n = min(8, C - c0)
        width = 32 if n > 6 else 16 if n > 2 else 8
        if n in (5, 6):
            n, width = 4, 16                      # then a byte plane for the last 1 or 2: ceil(C / 2) bytes a cell
        words = (u[:, c0:c0 + n] << (4 * np.arange(n))).sum(1)
        nib += [16 * len(planes) + i for i in range(n)]
        planes.append(dict(t=f"uint{width}_t", c0=c0, n=n, rows=_rows([f"0x{int(w):0{width // 4}X}" for w in words], 8)))
        c0 += n
    return dict(planes=planes, nib=nib)


def _negate(terms: str) -> str:
    """'- x[1] + 2 * x[3]' (threshold minus the sum) -> '+ x[1] - 2 * x[3]' (the sum itself)."""
    return " ".join({"-": "+", "+": "-"}.get(t, t) for t in terms.split(" "))


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
    keys = b.sum_keys
    key = lambda p: keys[p]

    def planes(ps):
        out, prev = [], None
        keys = [key(p) for p in ps]
        shared = {p for i, p in enumerate(ps) if i and keys[i] == keys[i - 1] or i + 1 < len(ps) and keys[i] == keys[i + 1]}
        for p in ps:
            e, pre = expr(p), None
            if share and ptr[p + 1] > ptr[p] and (p in shared or inverted):
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
        planes=planes([p for p in range(P) if used[p]]), extra_planes=planes(unused), src=src,
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
    keys = b.sum_keys
    for p in range(b.n_hyperplanes):
        key = keys[p]
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
            acc = f"es_smuad({reg}, {w})" if acc is None else f"es_smlad({reg}, {w}, {acc})"
        sums[key] = f"q = ({proj_t}){acc};"
    cost = 2 * len(weights) + 3 * len(start)        # a weight load and a multiply-add per register; per word 3
    if cost >= plain:
        return None
    return dict(words=[(j, s) for j, s in enumerate(start)], regs=sorted(regs), sums=sums, wk=_rows(weights, 8), n_wk=len(weights))



def _c_type_tag(ctype: str) -> str:
    """The runtime's type tag (ES_T_*) of a const array's element type."""
    return {"uint8_t": "ES_T_U8", "uint16_t": "ES_T_U16", "uint32_t": "ES_T_U32", "int8_t": "ES_T_I8",
            "int16_t": "ES_T_I16", "int32_t": "ES_T_I32"}[ctype]


class _Arrays:
    """The const arrays of one model, in the order they are printed: name -> element type, values, comment."""

    def __init__(self, prefix: str):
        self.p, self.items = prefix, []

    def add(self, name: str, ctype: str, values, doc: str = "", per_line: int = 16, rows=None, rom: bool = True) -> str:
        """Add {p}_{name}_ (program memory unless rom=False); returns its C name."""
        cname = f"{self.p}_{name}_"
        vals = [str(v) for v in values]
        n = len(vals) if rows is None else sum(len(r.split(",")) - 1 for r in rows)
        self.items.append(dict(name=cname, t=ctype, n=n, rows=rows if rows is not None else _rows(vals, per_line),
                               doc=doc, rom=rom))
        return cname

    def typed(self, name: str, values, doc: str = "", signed: bool = False) -> tuple[str, str]:
        """An integer array of the smallest type that holds values: (C name, type tag)."""
        vals = [int(v) for v in values] or [0]
        t = _int_type(min(vals), max(vals)) if signed else _uint_type(max(vals))
        return self.add(name, t, [_c_int(v) for v in vals] if signed else vals, doc), _c_type_tag(t)


def _plan(sk: Sketch, layout: str, prefix: str) -> dict:
    """Every value the template prints: names and sizes, the const arrays, the descriptors and (unrolled) the generated
    hash and lookup functions of every branch."""
    D, C = sk.n_inputs, sk.n_outputs
    P_ = prefix.upper()
    mid, id_bytes = _model_id(sk)
    nibble = sk.count_bits == 4
    shared = shared_rows(sk)
    count_t = "int4 (packed)" if nibble else "int8_t" if sk.branches[0].counts.dtype == np.int8 else "int16_t"
    arrays = _Arrays(prefix)
    per_readout = [int(readout_bounds(b).max(initial=0)) for b in sk.branches]
    lane_bound = max(per_readout)
    lanes = count_t == "int8_t" and lane_bound <= 32767
    sbound = score_bound(sk)
    score_t, score_max = _fast_type(sbound)

    model = {"n_inputs": D, "n_outputs": C, "counts": {"int8_t": "ES_COUNTS_I8", "int16_t": "ES_COUNTS_I16"}.get(count_t, "ES_COUNTS_I4"),
             "lanes": int(lanes)}
    if shared is not None:   # one book of rows for every branch; each branch a row number per cell
        book = shared[1].astype(np.int64).reshape(-1)
        model["book"] = arrays.add("book", count_t, list(book) + [0] * COUNT_PAD,
                                   f"the {len(shared[1])} distinct rows of counts the cells share (book[row * {C} + c]), "
                                   f"then {COUNT_PAD} bytes of padding (a word read at a row start stays inside)",
                                   per_line=C * max(1, 16 // C))
        row_t = _uint_type(len(shared[1]) - 1)
        model["row_t"] = _c_type_tag(row_t)
    nib = _plan_nibbles(sk.branches[0], C) if nibble else None
    if nibble:
        model.update(n_planes=len(nib["planes"]), plane_t="{ " + ", ".join(_c_type_tag(pl["t"]) for pl in nib["planes"]) + " }",
                     bias=_c_int(8 * sum(b.n_reads for b in sk.branches)),
                     nib=arrays.add("nib", "uint8_t", nib["nib"], "class c's plane * 16 + its place in the plane", rom=False))

    pbound, branches, src, neg, n_bytes, n_words, flushes = 0, [], 0, 0, 1, 1, 0
    proj_t_name = f"{prefix}_proj_t"
    for j, b in enumerate(sk.branches):
        w, L, K, P = b.window, b.n_tables, b.n_bits, b.n_hyperplanes
        R = 1 << K
        name = f"b{j}"
        thr = _clamped_thresholds(b)
        absw = weight_sums(b)
        pbound = max(pbound, max([abs(t) + 1 + 128 * int(a) for t, a in zip(thr, absw)], default=0), projection_bound(sk))
        offsets = w.element_offsets()
        base = w.position_base()
        d = dict(n_pos=w.n_positions, n_ro=w.n_readouts, pool=w.pool_size, P=P, L=L, K=K)
        if w.n_positions > 1:
            d["base"], d["base_t"] = arrays.typed(f"{name}_base", base, "offset of each hashed position's window in the "
                                                  f"{'padded ' if any(w.padding) else ''}input, in read-out then pool order")
        if w.regions > 1:
            d["region"], d["region_t"] = arrays.typed(f"{name}_region", (w.readout_region * L * R).astype(np.int64),
                                                      f"first cell (region * {L} * {R}) of each read-out's region")
        if any(w.padding):
            runs = _copy_runs(w)
            d["padn"] = w.padded_inputs
            src = max(src, w.padded_inputs)
            d["fill"] = arrays.add(f"{name}_fill", "int8_t", [int(v) for v in np.asarray(sk.in_zero)[:w.channels]],
                                   "the pad value of each channel (its zero point)")
            d["n_fill"] = w.channels
            d["runs"], d["run_t"] = arrays.typed(f"{name}_runs", [v for r in runs for v in r],
                                                 "(padded offset, input offset, length): the input copied into its pads")
            d["n_runs"] = len(runs)
        # tables
        if nibble:
            for k, pl in enumerate(_plan_nibbles(b, C)["planes"]):
                arrays.add(f"{name}_cq{k}", pl["t"], (), f"4-bit counts + 8 of classes {pl['c0']}..{pl['c0'] + pl['n'] - 1}, "
                           "one word a cell", rows=pl["rows"])
            d["planes"] = "{ " + ", ".join(f"{prefix}_{name}_cq{k}_" for k in range(len(nib["planes"]))) + " }"
        elif shared is not None:
            start = sum(o.n_cells for o in sk.branches[:j])
            d["cells"] = arrays.add(f"{name}_rows", row_t, [int(v) for v in shared[0][start:start + b.n_cells]],
                                    "the row of the book each cell holds ((region * L + l) * 2^K + bucket)",
                                    per_line=R if R <= 32 else 32)
        else:
            counts = b.counts.astype(np.int64).reshape(-1)
            d["cells"] = arrays.add(f"{name}_counts", count_t, (), f"counts[((region * {L} + l) * {R} + bucket) * {C} + c], "
                                    f"then {COUNT_PAD} bytes of padding (a word read at a row start stays inside)",
                                    rows=_count_rows(counts, C))
        # flushes of the lanes
        if nibble:
            d["flush_every"] = NIBBLE_GROUP // L if L <= NIBBLE_GROUP else 1
            if L > NIBBLE_GROUP:
                d["flush_within"] = NIBBLE_GROUP
        elif lanes:
            d["flush_every"] = max(1, 32767 // max(1, per_readout[j]))
            if d["flush_every"] >= w.n_readouts:
                d["flush_every"] = 0
        every = d.get("flush_every", 0)
        flushes += (w.n_readouts // every + (1 if w.n_readouts % every else 0)) if every else 1
        used = np.zeros(P, bool)
        used[b.table_sel.reshape(-1)] = True
        br = dict(j=j, name=f"{prefix}_{name}", desc=_describe(b), L=L, K=K, R=R, P=P)
        if layout == "unrolled":
            preload = sorted({int(offsets[i]) for i in b.tap_idx}) if w.n_elements <= PRELOAD_MAX else []
            avail = (w.padded_inputs if any(w.padding) else sk.n_inputs) - int(base.max(initial=0))
            smlad = _plan_smlad(b, offsets, avail, proj_t_name, f"{prefix}_{name}") if preload else None
            inverted = not w.is_flat   # windows: sum - (threshold + 1) (after shared sums); flat: threshold - sum
            u = _plan_unrolled(b, thr, used, proj_t_name, offsets, xname="b", preloaded=bool(preload), share=True,
                               smlad=smlad, packed=bit_order(b), inverted=inverted)
            d["bat"], d["bat_t"] = arrays.typed(f"{name}_bat", [t["word"] * 32 + t["shift"] for t in u["tables"]],
                                                f"first bit of table l's bucket in the hash words (debug)")
            d["bit_src"], d["src_t"] = arrays.typed(f"{name}_bit_src", [int(v) for v in u["src"]],
                                                    "where each hash bit lies in the hash words: word * 32 + bit (debug)")
            d.update(n_words=u["n_bw"] + u["n_xw"], n_bucket_words=u["n_bw"])
            n_words = max(n_words, u["n_bw"] + u["n_xw"])
            within = [l for l in range(L - 1) if d.get("flush_within") and l % NIBBLE_GROUP == NIBBLE_GROUP - 1]
            # ES_HASH_KEEP after each hyperplane (Thumb-1 only) where the hash words stay in registers: taps read from
            # memory (no preloaded window) and at most two words (more of them, and the sums spill instead)
            br.update(inverted=inverted, settle=w.n_readouts == 1 and not nibble,
                      keep_words=not preload and u["n_bw"] + u["n_xw"] <= 2,
                      smlad=smlad, preload=preload, planes=u["planes"], extra_planes=u["extra_planes"],
                      n_bw=u["n_bw"], n_xw=u["n_xw"], tables=u["tables"], flush_at=within,
                      shared_sums=any(h["pre"] for h in u["planes"] + u["extra_planes"]))
        else:
            d.update(_plan_taps(b, thr, used, arrays, name))
            if d["taps_kind"] == "ES_TAPS_NEG":
                neg = max(neg, 2 * d["neg_at"])
            if d["bits"] == "ES_BITS_WORDS":
                n_words = max(n_words, -(-P // 32))
            else:
                n_bytes = max(n_bytes, P)
        br["fields"] = d
        branches.append(br)
    proj_t, proj_max = _fast_type(pbound)
    model["one_flush"] = int(lanes and len(sk.branches) == 1 and flushes == 1)
    geometry = [f"branch {j}: {_describe(b)}" for j, b in enumerate(sk.branches)]
    return dict(
        p=prefix, P_=P_, layout=layout, model_id=mid, model_id_bytes=id_bytes,
        meta_lines=[f"mode {sk.meta.get('mode', '?')}, task {sk.task}, {D} inputs, {C} outputs",
                    f"P={sk.n_hyperplanes} hyperplanes, {sk.n_taps} taps (max {max(int(np.diff(b.tap_ptr).max(initial=0)) for b in sk.branches)} per hyperplane), "
                    f"{sk.n_tables} tables of up to 2^{sk.n_bits} cells in {len(sk.branches)} branch(es)",
                    f"counts {count_t} ({sk.table_bytes} bytes{'' if shared is None else f': {len(shared[1])} shared rows'}), "
                    f"layout {layout}"] + geometry,
        class_names=[_c_string(n) for n in _names(sk)], class_names_plain=_names(sk),
        longest_name=max(len(n.encode("utf-8")) for n in _names(sk)), units=_inputs(sk)[0], input_lines=_inputs(sk)[1],
        D=D, C=C, L=sk.n_tables, K=sk.n_bits, NP=sk.n_hyperplanes,
        n_q=int(len(sk.in_scale)), n_debug_bits=sk.n_debug_bits, n_debug_buckets=sk.n_debug_buckets,
        task_cls=1 if sk.task == "classification" else 0,
        in_scale=_rows([_c_float(v) for v in sk.in_scale], 8), in_zero=_rows([_c_int(v) for v in sk.in_zero]),
        out_scale=_rows([_c_float(v) for v in sk.out_scale], 8), out_bias=_rows([_c_float(v) for v in sk.out_bias], 8),
        proj_t=proj_t, proj_max=proj_max, proj_bound=pbound, score_t=score_t, score_max=score_max, score_bound=sbound,
        lane_bound=lane_bound, lanes=lanes, count_t=count_t,
        runtime=dict(outputs=C, proj_t=proj_t, score_t=score_t, planes=len(nib["planes"]) if nibble else 1, src=src, neg=neg,
                     bits=n_bytes, words=n_words),
        arrays=arrays.items, branches=branches, model=model,
    )


def _plan_taps(b: Branch, thr, used, arrays: _Arrays, name: str) -> dict:
    """The compact layout's tap lists of a branch: sums of T consecutive hyperplanes (sketch.sum_group) stored once;
    with one threshold a sum the hyperplanes some table reads come first (the rest are only for debug). Ternary taps
    whose sums all have the same numbers of positive and negative taps (--signs balanced) are read directly, positive
    first (ES_TAPS_SPLIT); other ternary taps read a negated copy of the input for their negative taps, so that every
    tap subtracts (ES_TAPS_NEG: ~x = -x - 1, the -1s folded into the thresholds; flat branches only: a window's copy
    would double its padded input on the stack, which the Uno's 2 KB cannot spare); integer weights multiply
    (ES_TAPS_WEIGHTS). Hash bits are packed words when every table reads K consecutive hyperplanes of one word in
    hyperplane order (buckets: one shift and mask), else a byte each (buckets gathered through the selectors)."""
    P, K, w = b.n_hyperplanes, b.n_bits, b.window
    T = sum_group(b)
    order = ([p for p in range(P) if used[p]] + [p for p in range(P) if not used[p]]) if T == 1 else list(range(P))
    rank = np.empty(P, np.int64)
    rank[order] = np.arange(P)
    permuted = order != list(range(P))
    ptr, idx, wt = b.tap_ptr.astype(np.int64), b.tap_idx, b.tap_weight.astype(np.int64)
    offsets = w.element_offsets()
    sums = []
    for p in order[::T]:
        taps = sorted(zip(wt[ptr[p]:ptr[p + 1]], idx[ptr[p]:ptr[p + 1]]), key=lambda t: -int(t[0] > 0))
        sums.append([(int(v), int(offsets[i])) for v, i in taps])
    npos = [sum(1 for v, _ in t if v > 0) for t in sums]
    ntap = [len(t) for t in sums]
    kind = ("ES_TAPS_WEIGHTS" if not b.ternary else
            "ES_TAPS_SPLIT" if len(set(zip(npos, ntap))) <= 1 or w.n_positions > 1 else "ES_TAPS_NEG")
    d = {"T": T, "n_used": int(used.sum()) if T == 1 else P, "taps_kind": kind}
    thr_o = [thr[p] for p in order]
    if kind == "ES_TAPS_NEG":   # negative taps read ~x, neg_at bytes on; each drops its sum's threshold by one
        d["neg_at"] = neg = 4 * -(-(w.padded_inputs if any(w.padding) else w.n_inputs) // 4)
        sums = [[(v, o + neg if v < 0 else o) for v, o in t] for t in sums]
        thr_o = [t - (ntap[k // T] - npos[k // T]) for k, t in enumerate(thr_o)]
    d["off"], d["off_t"] = arrays.typed(f"{name}_off", [o for t in sums for _, o in t] or [0],
                                        "tap offsets in the window, sum after sum" + (", positive taps first" if kind == "ES_TAPS_SPLIT"
                                                                                     else ", negative ones into the negated copy" if kind == "ES_TAPS_NEG" else ""))
    if len(set(ntap)) <= 1:
        d["taps"] = ntap[0] if ntap else 0
    else:
        d["ntap"] = arrays.add(f"{name}_ntap", "uint8_t", ntap, "taps of each sum")
    if kind == "ES_TAPS_SPLIT":
        if len(set(npos)) <= 1:
            d["npos"] = npos[0] if npos else 0
        else:
            d["npos_"] = arrays.add(f"{name}_npos", "uint8_t", npos, "positive taps of each sum (they come first)")
    elif kind == "ES_TAPS_WEIGHTS":
        d["wt"] = arrays.add(f"{name}_wt", "int8_t", [v for t in sums for v, _ in t] or [0], "tap weights, in the order of the offsets")
    d["thr"], d["thr_t"] = arrays.typed(f"{name}_thr", thr_o, "thresholds (stored order)" +
                                        (", each less its sum's negative taps" if kind == "ES_TAPS_NEG" else ""), signed=True)
    sel = b.table_sel.astype(np.int64)
    if hash_structure(b)["windows"] and not permuted:
        d["bits"] = "ES_BITS_WORDS"
        d["bat"], d["bat_t"] = arrays.typed(f"{name}_bat", [int(r[0]) for r in sel],
                                            f"table l's bucket: the {K} hash bits from bit bat[l] on")
    else:
        d["bits"] = "ES_BITS_BYTES"
        d["sel"], d["sel_t"] = arrays.typed(f"{name}_sel", [int(rank[s]) for s in sel.reshape(-1)],
                                            "sel[l * K + k]: the (stored) hyperplane giving bit k of table l's bucket")
        if permuted:
            d["rank"], d["rank_t"] = arrays.typed(f"{name}_rank", rank, "the stored place of each hyperplane (debug)")
    return d


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
RUNTIME = ("es_port.h", "es_sketch.h", "es_sketch_run.h", "es_sketch_stream.h", "es_sketch_quantize.c",
           "es_sketch_dequantize.c", "es_sketch_argmax.c")


_CTYPE_BYTES = {"int8_t": 1, "uint8_t": 1, "int16_t": 2, "uint16_t": 2, "int32_t": 4, "uint32_t": 4, "float": 4}
_TAP = re.compile(r"\b[bx]\[\d+\]|\bv\d+\b")          # a tap's read in a generated sum (b[3], v3)
_MUL = re.compile(r"\b(\d+) \* ")                         # an integer weight beyond 1


def footprint(sk: Sketch, layout: str = "unrolled", prefix: str = "es", dsp: bool = False) -> dict:
    """What the generated C holds, without rendering it (the plan of generate()): the inputs of the flash and RAM
    estimate (edgesketch.export.footprint, which weighs them with a board's [footprint]).

    data     bytes of const data in program memory: every array the plan prints (its C type and element count), the
             DSP tap weights of the unrolled hash (dsp: cores with the DSP extension compile that path)
    data_ram bytes of const arrays not in program memory (ES_ROM), which AVR copies into RAM
    quant    bytes of the public quantisation arrays (es_in_scale, es_in_zero, es_out_scale, es_out_bias) and of the
             class names (es_class_name's strings and table): a program links them only if it reads them or calls
             es_predict or es_class_name (the firmware does neither)
    code     the code's features, counts a board's [footprint.code] weighs in bytes each: model (1), class (C), branch,
             window / pad / pool / region (branches that have them), branch_class (branches x C), and by layout:
             unrolled: tap (a tap's read and add in a generated sum; with dsp the SMLAD form: smlad_word, smlad_term),
             tap_weight (a tap weighted beyond 1), reg_tap / reg_tap_weight (the same on a window of at most 16 values,
             each read once into a local: preload), hyperplane (its
             compare), bit_set (a hash bit written into a bucket word), table (a lookup: bucket and address), and the
             read-out's adds per table: table_class (int8 counts, a class), table_class16 (int16), table_lane (int8 in
             SXTAB16 lanes, 4 classes: dsp), table_plane (4-bit, a plane), table_book (shared rows: the row number);
             compact: c_branch, c_bytes / c_words (hash bits a byte each / packed), c_neg / c_weights (the tap kinds
             beside ES_TAPS_SPLIT), c_shared (thresholds > 1 a sum), c_term (straight-line tap terms: a run of a
             constant count, 16 for a count that varies), c_term_weight (the same with integer weights), c_select (a
             bucket's bits gathered from bytes, per bit), and the read-out per branch: c_class, c_class16, c_lane,
             c_plane, c_book as above
    stack    the stack's features: src (bytes of the largest padded input, rounded to words), neg (a flat input and its
             negation), hash (bytes of one position's hash state, es_sk_bits_t), pool (hash states of a pooled
             branch), acc16 / acc32 (accumulators of int_fast16_t / int32_t scores: C), lane (SXTAB16 lane words:
             dsp), plane (4-bit lane words), class (C), branch, window (windowed branches); a board weighs them by
             layout ([footprint.stack_unrolled], [footprint.stack_compact])
    arrays   [(C name, C type, elements, bytes)] of every const array (the quantisation arrays included)"""
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    _check(sk)
    ctx = _plan(sk, layout, prefix)
    C, rt, model = sk.n_outputs, ctx["runtime"], ctx["model"]
    n_q = int(len(sk.in_scale))
    arrays = [(f"{prefix}_in_scale", "float", n_q), (f"{prefix}_in_zero", "int32_t", n_q),
              (f"{prefix}_out_scale", "float", C), (f"{prefix}_out_bias", "float", C)]
    quant = sum(_CTYPE_BYTES[t] * n for _, t, n in arrays)
    names = ctx.get("class_names_plain") or []     # es_class_name's strings and their table (pointers: 4 bytes or less)
    quant += sum(len(n.encode("utf-8")) + 1 for n in names) + 4 * len(names)
    data = data_ram = 0
    for a in ctx["arrays"]:
        n = _CTYPE_BYTES[a["t"]] * a["n"]
        arrays.append((a["name"], a["t"], a["n"]))
        if a["rom"]:
            data += n
        else:
            data_ram += n
    kind = model["counts"]
    lanes = bool(ctx["lanes"]) and dsp and kind == "ES_COUNTS_I8"
    book = "row_t" in model
    planes = rt["planes"] if kind == "ES_COUNTS_I4" else 0
    code = dict.fromkeys(("model", "class", "branch", "window", "pad", "pool", "region", "branch_class"), 0)
    code.update(model=1, **{"class": C})
    for br, b in zip(ctx["branches"], sk.branches):
        w, d, L = b.window, br["fields"], b.n_tables
        code["branch"] += 1
        code["branch_class"] += C
        code["window"] += int(w.n_positions > 1)
        code["pad"] += int(any(w.padding))
        code["pool"] += int(w.pool_size > 1)
        code["region"] += int(w.regions > 1)
        reads = {"class": C if kind == "ES_COUNTS_I8" and not lanes else 0, "class16": C if kind == "ES_COUNTS_I16" else 0,
                 "lane": -(-C // 4) if lanes else 0, "plane": planes, "book": int(book)}
        if layout == "unrolled":
            smlad = br["smlad"] if dsp else None
            if smlad:
                arrays.append((f"{br['name']}_wk_", "uint32_t", smlad["n_wk"]))
                data += 4 * smlad["n_wk"]
            f = dict.fromkeys(("tap", "tap_weight", "reg_tap", "reg_tap_weight", "preload", "smlad_word", "smlad_term",
                               "hyperplane", "bit_set", "table"), 0)
            reg = "reg_" if br["preload"] and not smlad else ""     # taps of values read once into locals
            for h in br["planes"] + br["extra_planes"]:
                f["hyperplane"] += 1
                f["bit_set"] += len(h["sets"])
                if smlad and h["pre_dsp"]:
                    f["smlad_term"] += h["pre_dsp"].count("es_smlad") + h["pre_dsp"].count("es_smuad")
                    continue
                e = h["pre"] or h["expr"]
                f[reg + "tap"] += len(_TAP.findall(e))
                f[reg + "tap_weight"] += sum(1 for m in _MUL.findall(e) if int(m) > 1)
            if smlad:
                f["smlad_word"] += len(smlad["words"])
            else:
                f["preload"] += len(br["preload"])
            f["table"] = L
            for k, v in reads.items():
                f[f"table_{k}"] = L * v
        else:
            runs = []
            n = d.get("taps")
            if d["taps_kind"] == "ES_TAPS_SPLIT" and "npos" in d and n is not None:
                runs = [d["npos"], n - d["npos"]]
            elif d["taps_kind"] == "ES_TAPS_SPLIT":
                runs = [None, None]
            else:
                runs = [n]
            terms = sum(16 if r is None else min(r, 16) + (16 if r > 16 else 0) for r in runs if r != 0)
            weighted = d["taps_kind"] == "ES_TAPS_WEIGHTS"
            f = {"c_branch": 1, "c_bytes": int(d["bits"] == "ES_BITS_BYTES"), "c_words": int(d["bits"] == "ES_BITS_WORDS"),
                 "c_neg": int(d["taps_kind"] == "ES_TAPS_NEG"), "c_weights": int(weighted), "c_shared": int(d["T"] > 1),
                 "c_term": 0 if weighted else terms, "c_term_weight": terms if weighted else 0,
                 "c_select": b.n_bits if d["bits"] == "ES_BITS_BYTES" else 0}
            for k, v in reads.items():
                f[f"c_{k}"] = v
        for k, v in f.items():
            code[k] = code.get(k, 0) + v
    score32 = ctx["score_t"] == "int32_t"
    hash_bytes = max(4 * rt["words"], 4 * -(-rt["bits"] // 4))
    stack = {"src": 4 * -(-rt["src"] // 4), "neg": 4 * -(-rt.get("neg", 0) // 4), "hash": hash_bytes,
             "pool": hash_bytes * int(any(b.window.pool_size > 1 for b in sk.branches)),
             "acc16": 0 if score32 else C, "acc32": C if score32 else 0, "lane": -(-C // 4) if lanes else 0,
             "plane": planes, "class": C, "branch": len(sk.branches),
             "window": sum(int(b.window.n_positions > 1) for b in sk.branches)}
    return {"data": data, "data_ram": data_ram, "quant": quant, "code": code, "stack": stack,
            "arrays": [(n, t, k, _CTYPE_BYTES[t] * k) for n, t, k in arrays]}


def runtime_files() -> dict[str, str]:
    """The hand-written runtime every generated model includes (firmware/model/): {file name: text}. Exports ship it
    beside the model; two models in one program share one copy."""
    return {name: (firmware_dir() / "model" / name).read_text() for name in RUNTIME}


def generate(sketch: Sketch, layout: str = "unrolled", prefix: str = "es", hop: int | None = None,
             stream_state: str = "keep") -> dict[str, str]:
    """Render the model as C99: {f"{prefix}_model.h": ..., f"{prefix}_model.c": ...} (it includes the runtime of
    runtime_files()).

    layout: "unrolled" (straight-line code per hyperplane, fastest) or "compact" (const tap lists the runtime loops
    over, smallest). prefix: C identifier prefix of every symbol and macro of the model (ES_N_INPUTS, es_predict_q,
    ...), so several models can live in one firmware and share the runtime. The result equals sketch.int_scores bit
    for bit (tests/test_codegen.py). hop: also generate the stream ({prefix}_stream_t, _init, _push_q, _push: scores
    of a window hopping over a stream of samples, hop samples at a time; sketch.stream_scores bit for bit), keeping
    each read-out's contribution (stream_state "keep") or hashing the leaving ones again ("recompute"); None: no
    stream, and the files are those of a model without one, byte for byte."""
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,30}", prefix):
        raise UserError(f"prefix {prefix!r} is not a lower-case C identifier (letters, digits, _; starts with a letter)")
    _check(sketch)
    ctx = _plan(sketch, layout, prefix)
    ctx["stream"] = None if hop is None else _plan_stream(sketch, ctx, hop, stream_state)
    return {f"{prefix}_model.h": render("es_model.h.j2", **ctx),
            f"{prefix}_model.c": render("es_model.c.j2", **ctx)}


def write(sketch: Sketch, out_dir, layout: str = "unrolled", prefix: str = "es", hop: int | None = None,
          stream_state: str = "keep") -> list:
    """generate() and the runtime, written into out_dir (created if missing). Returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in {**generate(sketch, layout, prefix, hop, stream_state), **runtime_files()}.items():
        (out / name).write_text(text)
        paths.append(out / name)
    return paths


# ---------------------------------------------------------------- the stream (generate(hop=...))
STREAM_STATES = ("keep", "recompute")


def stream_ram(sk: Sketch, hop: int, stream_state: str = "keep") -> dict:
    """Bytes of the generated {p}_stream_t (32-bit cores; AVR packs the same fields without padding) and its parts:
    ring (the last samples, each twice, plus slack for word reads), acc (int32 scores), keep (per-read-out
    contributions, keep mode), ctr (uint16 counters)."""
    from .sketch import stream_plan
    plan = stream_plan(sk, hop)
    return _stream_layout(sk, plan, stream_state)["ram"]


def _stream_layout(sk: Sketch, plan, state: str) -> dict:
    """What the stream keeps: the ring (samples, slack), the keep type, the edge buffer, per branch its descriptor."""
    if state not in STREAM_STATES:
        raise UserError(f"stream state {state!r}: use keep or recompute", argument="stream_state")
    T, Cin, C = plan.length, plan.channels, sk.n_outputs
    keep_t = "int16_t" if max(int(readout_bounds(b).max(initial=0)) for b in sk.branches) <= 32767 else "int32_t"
    whole = state == "recompute" or any(sb.kind == "flat" or sb.recomputed for sb in plan.branches)
    spans = [sb.span for sb in plan.branches if sb.kind == "window" and sb.count]
    ring = T if whole or not spans else max(spans)
    slack, edge, branches, n_keep, n_ctr = 0, 0, [], 0, 2
    for b, sb in zip(sk.branches, plan.branches):
        w = b.window
        d = dict(kind=sb.kind, count=sb.count)
        if sb.kind == "window":
            padn = w.padded_inputs if any(w.padding) else w.n_inputs
            base = w.position_base()
            avail = padn - int(base.max(initial=0))                   # a position's reads stay within avail bytes
            extent = ((w.size[0] - 1) * w.dilation[0] + 1) * Cin
            slack = max(slack, avail - extent)
            step = sb.every * Cin
            left = min(padn, (sb.first * w.pool[0] - 1) * w.stride[0] * Cin + avail) if sb.first else 0
            right_from = sb.right_at * step
            right = padn - right_from if sb.right_at < sb.n_readouts else 0
            edge = max(edge, left, right)
            d.update(fields=dict(first=sb.first, count=sb.count, shift=sb.shift, every=sb.every, span=sb.span,
                                 wait0=sb.first * sb.every - sb.pad + sb.span, keep=int(state == "keep"),
                                 n_ro=sb.n_readouts, right_at=sb.right_at, pad=sb.pad * Cin, step=step, left_len=left,
                                 right_from=right_from, right_len=right, win=T * Cin),
                     edges=bool(sb.recomputed), ctr=n_ctr if sb.count else None,
                     keep_at=n_keep if sb.count and state == "keep" else None)
            if sb.count:
                n_ctr += 3
                n_keep += sb.count * C if state == "keep" else 0
        branches.append(d)
    kbytes = 2 if keep_t == "int16_t" else 4
    ring_bytes = 2 * ring * Cin + slack
    parts = dict(acc=4 * C, keep=kbytes * n_keep, ctr=2 * n_ctr, ring=ring_bytes)
    total32 = -(-(parts["acc"] + parts["keep"] + parts["ctr"] + parts["ring"]) // 4) * 4
    ram = dict(parts, total=total32, avr=sum(parts.values()))
    return dict(ring=ring, ring_bytes=ring_bytes, slack=slack, keep_t=keep_t, n_keep=n_keep, n_ctr=n_ctr, edge=edge,
                whole=whole, branches=branches, ram=ram)


def _plan_stream(sk: Sketch, ctx: dict, hop: int, state: str) -> dict:
    """The template's stream: descriptors (es_sk_stream_t, es_sk_stream_branch_t), the state's layout and the calls of
    {p}_stream_push_q, from sketch.stream_plan (ConfigError when the sketch cannot stream with this hop)."""
    from .sketch import stream_plan
    plan = stream_plan(sk, hop)
    lay = _stream_layout(sk, plan, state)
    if lay["ring_bytes"] > 65535:
        raise UserError(f"a stream window of {plan.length} samples of {plan.channels} values needs a ring of "
                        f"{lay['ring_bytes']} bytes, beyond 65535", argument="hop")
    p = ctx["p"]
    steps, edges, flats, drops = [], [], [], []
    for br, d in zip(ctx["branches"], lay["branches"]):
        one = f"{br['name']}_one_"
        if d["kind"] == "flat":
            flats.append(dict(one=one))
            continue
        sname = f"{br['name']}_stream_"
        d["name"], d["one"], d["br"] = sname, one, br["name"]
        if d["ctr"] is not None:
            steps.append(dict(name=sname, one=one, ctr=d["ctr"], keep_at=d["keep_at"]))
            if state == "recompute":
                drops.append(dict(name=sname, one=one))
        if d["edges"]:
            edges.append(dict(name=sname, one=one, br=br["name"]))
    new = plan.readouts_per_hop(sk)
    doc = [f"window {plan.length} samples of {plan.channels} value(s), scores every {plan.hop} samples once it filled "
           f"(stride x pool {plan.unit})"]
    for j, (b, sb) in enumerate(zip(sk.branches, plan.branches)):
        if sb.kind == "flat":
            doc.append(f"branch {j}: flat, its one read-out recomputed at every hop")
        else:
            doc.append(f"branch {j}: {sb.count} of {sb.n_readouts} read-outs computed once each ({sb.new_per_hop} a hop), "
                       f"{sb.recomputed} reading padding recomputed at every hop")
    doc.append(f"state: {state} ({'each interior read-out kept: count x C values of ' + lay['keep_t'] if state == 'keep' else 'the leaving read-outs hashed again from the samples at every hop'}); "
               f"ring of {lay['ring']} samples, each twice")
    doc.append(f"operations a hop: {new['new'] + new['recomputed'] * 1 + (new['new'] if state == 'recompute' else 0):,} "
               f"(full inference: {new['full']:,})")
    return dict(hop=plan.hop, len=plan.length, channels=plan.channels, ring=lay["ring"], ring_bytes=lay["ring_bytes"],
                keep_t=lay["keep_t"], n_keep=lay["n_keep"], n_ctr=lay["n_ctr"], edge=lay["edge"], whole=lay["whole"],
                branches=[d for d in lay["branches"] if d["kind"] == "window"], steps=steps, edges=edges, flats=flats,
                drops=drops, ram=lay["ram"], state=state, doc=doc, unit=plan.unit, name=f"{p}_stream_")
