"""Generated C (codegen_templates/ via edgesketch.codegen) against THE integer reference (edgesketch.sketch).

Every row of every input set must give the scores of int_scores, the bits of int_hash_bits and the buckets of
int_buckets, for both layouts, learned and representer sketches, int4 (packed), int8 and int16 counts and several (L, K).
The lead's trained sketches join by adding to SKETCHES (or by calling ctest_util.assert_c_matches_reference).
"""
from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest

import ctest_util as cu
from edgesketch import __version__, codegen
from edgesketch.errors import UserError
from edgesketch.sketch import Window, int_outputs, int_projections, int_scores, quantize_inputs, random_sketch

LAYOUTS = codegen.LAYOUTS
# name -> random_sketch arguments: learned (shared P hyperplanes, fixed taps) and representer (L*K private, random
# density) layouts, three (L, K) sizes, C from 1 to 10
SIZES = {"L16K6": dict(L=16, K=6), "L8K4": dict(L=8, K=4), "L24K9": dict(L=24, K=9)}
MODES = {"learned": dict(P=48, taps=8), "representer": dict(P=None)}
DTYPES = {"int8": dict(count_dtype=np.int8), "int16": dict(count_dtype=np.int16), "int4": dict(count_bits=4)}
SKETCHES = {f"{m}-{s}-{d}": dict(D=64, C=10, **MODES[m], **SIZES[s], **DTYPES[d], seed=i)
            for i, (m, s, d) in enumerate((m, s, d) for m in MODES for s in SIZES for d in DTYPES)}
SKETCHES["learned-odd-D40-C3"] = dict(D=40, C=3, P=20, taps=5, L=6, K=5, seed=7)
SKETCHES["representer-dense-C1-regression"] = dict(D=17, C=1, L=3, K=3, seed=8, task="regression")
SKETCHES["learned-wide-D200-P300"] = dict(D=200, C=5, P=300, taps=12, L=60, K=7, seed=9)   # u16 indices, selectors
SKETCHES["learned-empty-hyperplanes"] = dict(D=64, C=10, P=48, taps=8, L=16, K=6, seed=10)
SKETCHES["learned-wide-D200-P300-int4"] = dict(D=200, C=5, P=300, taps=12, L=60, K=7, seed=11, count_bits=4)  # 4 groups
# --selectors window / --signs balanced: packed hash bits (one word, several words) and direct reads of x, alone and
# together, on every count type
SKETCHES["learned-window-balanced-int4"] = dict(D=64, C=10, P=32, taps=8, L=16, K=4, seed=30, count_bits=4,
                                                selectors="window", signs="balanced")
SKETCHES["learned-window-balanced-P48-int8"] = dict(D=64, C=10, P=48, taps=8, L=16, K=6, seed=31, selectors="window",
                                                    signs="balanced")
SKETCHES["learned-window-P48-int16"] = dict(D=64, C=10, P=48, taps=8, L=16, K=6, seed=32, count_dtype=np.int16,
                                            selectors="window")
SKETCHES["learned-balanced-odd-taps-C3"] = dict(D=40, C=3, P=20, taps=5, L=6, K=5, seed=33, signs="balanced")
SKETCHES["learned-window-balanced-wide-P300-int4"] = dict(D=200, C=5, P=300, taps=12, L=60, K=7, seed=34, count_bits=4,
                                                          selectors="window", signs="balanced")
# --codebook: cells share rows (a row number per cell, uint8 or uint16), alone and with structured hashing
SKETCHES["learned-codebook-int8"] = dict(D=64, C=10, P=48, taps=8, L=16, K=6, seed=40, codebook=200)
SKETCHES["learned-window-balanced-codebook-int8"] = dict(D=64, C=10, P=48, taps=8, L=16, K=6, seed=41, codebook=100,
                                                         selectors="window", signs="balanced")
SKETCHES["learned-codebook-int16-u16rows-C3"] = dict(D=40, C=3, P=20, taps=5, L=60, K=7, seed=42, codebook=300,
                                                     count_dtype=np.int16)
SKETCHES["representer-codebook-int8"] = dict(D=64, C=10, L=8, K=4, seed=43, codebook=50)
# windowed branches (shift-invariant sketches): 1-D and 2-D windows, stride, dilation, padding, pooling, regions, a flat
# branch beside a windowed one, integer tap weights, every count type; both layouts (straight-line hashing over a base
# pointer, and tap lists), windows small enough to be read into locals and larger ones
W1 = Window.over((40, 1), 9, 2)
WINDOWED = {
    "win1d-int8": dict(L=0, windows=[(W1, 15, 6, 32, 6)], seed=50),
    "win1d-flat-branch-int8": dict(L=12, K=6, P=48, taps=8, windows=[(W1, 16, 6, 16, 6)], seed=51),
    "win1d-pool-regions-C3": dict(L=0, C=3, windows=[(Window.over((40, 2), 5, 1, pool=2, regions=3), 8, 5, 20, 5)], seed=52),
    "win2d-int8": dict(L=0, windows=[(Window.over((8, 8, 1), 3, 2), 8, 4, 8, 6)], seed=53),
    "win2d-valid-dilated-wide": dict(L=0, windows=[(Window.over((8, 8, 3), (3, 2), (1, 2), (2, 1), "valid"), 6, 3, 40, 7)], seed=54),
    "win1d-weights": dict(L=0, weights=5, windows=[(W1, 16, 6, 16, 6)], seed=55),
    "win1d-int4": dict(L=0, count_bits=4, windows=[(W1, 20, 6, 16, 6)], seed=56),
    "win1d-int4-L8": dict(L=0, count_bits=4, windows=[(W1, 8, 4, 16, 6)], seed=57),
    "win1d-int16": dict(L=0, count_dtype=np.int16, windows=[(W1, 16, 6, 40, 6)], seed=58),
    "win1d-multichannel-wide": dict(L=0, windows=[(Window.over((32, 3), 7, 3, padding=(2,)), 10, 6, 24, 9)], seed=59),
    "flat-weights": dict(D=64, L=16, K=6, P=48, taps=8, weights=3, seed=60),
    "win1d-thresholds": dict(L=0, thresholds=2, windows=[(W1, 15, 6, 32, 6)], seed=61),
    "win1d-thresholds-weights-int4": dict(L=0, thresholds=3, weights=3, count_bits=4, windows=[(W1, 12, 6, 24, 9)], seed=62),
    # --selectors window on windows: buckets are shifts of the packed (threshold-major) hash word
    "win1d-window-selectors": dict(L=0, thresholds=2, weights=7, selectors="window", windows=[(W1, 15, 6, 32, 9)], seed=63),
    "win2d-window-selectors-P48-int4": dict(L=0, selectors="window", weights=3, count_bits=4,
                                            windows=[(Window.over((8, 8, 1), 3, 2), 12, 5, 48, 9)], seed=64),
    # --codebook on windows: one book of rows for every branch, a row number per cell (uint8, uint16)
    "win1d-codebook-flat-branch": dict(L=12, K=6, P=48, taps=8, thresholds=2, weights=7, codebook=120,
                                       windows=[(W1, 16, 6, 16, 6)], seed=65),
    "flat-weights-codebook": dict(D=64, L=16, K=6, P=48, taps=8, weights=3, codebook=150, seed=67),
    "win1d-codebook-int16-u16rows-regions-C3": dict(L=0, C=3, count_dtype=np.int16, codebook=400,
                                                    windows=[(Window.over((40, 2), 5, 1, pool=2, regions=3), 8, 5, 20, 5)], seed=66),
}
SKETCHES.update(WINDOWED)
STRUCTURED = {"learned-window-balanced-int4": (True, True), "learned-window-balanced-P48-int8": (True, True),
              "learned-window-P48-int16": (False, True), "learned-balanced-odd-taps-C3": (True, False),
              "learned-window-balanced-wide-P300-int4": (True, True), "learned-L16K6-int8": (False, False)}
for _c in (1, 2, 3, 6, 7, 8, 9, 16, 17):   # every plane mix of 4-bit counts (uint32 / uint16 / uint8 words)
    SKETCHES[f"learned-int4-C{_c}"] = dict(D=24, C=_c, P=16, taps=4, L=18, K=4, seed=20 + _c, count_bits=4)


def _drop_taps(sk, planes):
    """Remove every tap of the given hyperplanes (a sum of nothing is 0; its bit is 0 > threshold)."""
    keep = np.ones(sk.n_taps, bool)
    counts = np.diff(sk.branches[0].tap_ptr)
    for p in planes:
        keep[sk.branches[0].tap_ptr[p]:sk.branches[0].tap_ptr[p + 1]] = False
        counts[p] = 0
    sk.branches[0].tap_idx, sk.branches[0].tap_weight = sk.branches[0].tap_idx[keep], sk.branches[0].tap_weight[keep]
    sk.branches[0].tap_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    sk.branches[0].threshold[planes[0]], sk.branches[0].threshold[planes[-1]] = -1, 0       # one always-on, one always-off
    return sk


def make(name):
    sk = random_sketch(**SKETCHES[name])
    if name == "learned-empty-hyperplanes":
        sk = _drop_taps(sk, [0, 5, sk.n_hyperplanes - 1])   # the last: trailing empty rows of tap_ptr
    return sk


def rows_for(sk, n=3000, seed=0) -> np.ndarray:
    """Edge rows, uniform int8 rows, small-valued rows (sums near the thresholds) and rows built so that some
    hyperplane's sum, at some position of its window, equals its threshold exactly (catches > versus >=)."""
    from edgesketch.sketch import windows
    rng = np.random.default_rng(seed)
    D = sk.n_inputs
    uni = rng.integers(-128, 128, (n, D))
    small = rng.integers(-6, 7, (n // 3, D))
    ties = []
    for b in sk.branches:
        idx = b.window.element_index()
        for p in rng.permutation(b.n_hyperplanes)[: min(b.n_hyperplanes, 200)]:
            lo, hi = b.tap_ptr[p], b.tap_ptr[p + 1]
            pos = int(rng.integers(0, b.window.n_positions))
            unit = [t for t in range(lo, hi) if abs(int(b.tap_weight[t])) == 1 and idx[pos, b.tap_idx[t]] < D]
            if not unit:
                continue
            x = rng.integers(-20, 21, D)
            t = unit[0]
            i, s_ = int(idx[pos, b.tap_idx[t]]), int(b.tap_weight[t])
            z = int((windows(sk, b, x[None].astype(np.int8))[0, pos, b.tap_idx[lo:hi]] * b.tap_weight[lo:hi]).sum())
            x[i] += s_ * (int(b.threshold[p]) - z)           # now z_p == threshold[p] exactly at that position
            if -128 <= x[i] <= 127:
                ties.append(x.copy())
                x[i] += s_                                    # and one above it
                if -128 <= x[i] <= 127:
                    ties.append(x)
    out = np.concatenate([cu.edge_rows(D), uni, small] + ([np.array(ties)] if ties else [])).astype(np.int8)
    return out


def check_ties_present(sk, xq):
    z = int_projections(sk, xq)
    thr = np.concatenate([np.tile(b.threshold, b.window.n_positions) for b in sk.branches])
    assert (z == thr).any(), "the row set has no exact threshold ties"


# ---------------------------------------------------------------- host: bit-exact on every row
# the fast tier (pytest -m fast) builds one sketch of each kind; the full suite every one
FAST = {"learned-L16K6-int8", "representer-L8K4-int16", "learned-L16K6-int4", "learned-window-balanced-int4",
        "learned-codebook-int8", "win1d-flat-branch-int8", "win1d-pool-regions-C3", "win2d-valid-dilated-wide",
        "win1d-thresholds-weights-int4", "win1d-codebook-int16-u16rows-regions-C3"}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in SKETCHES])
def test_host_matches_reference(name, layout, tmp_path):
    sk = make(name)
    xq = rows_for(sk)
    if sk.n_taps:
        check_ties_present(sk, xq)
    cu.assert_c_matches_reference(sk, xq, layout, workdir=tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", [n for n in SKETCHES if n.endswith(("L16K6-int8", "L8K4-int16", "L16K6-int4"))]
                         + ["learned-odd-D40-C3", "representer-dense-C1-regression", "learned-empty-hyperplanes",
                            "learned-wide-D200-P300-int4", "learned-int4-C1", "learned-int4-C9"] + list(STRUCTURED)[:5]
                         + [n for n in SKETCHES if "codebook" in n] + list(WINDOWED))
def test_sanitizers(name, layout, tmp_path):
    """-fsanitize=address,undefined over the same rows (out-of-bounds reads of the tables or x, signed overflow)."""
    sk = make(name)
    xq = rows_for(sk, n=1000)
    exe = cu.build_host(sk, layout, tmp_path, sanitize=True, cflags=("-O1",))
    cu.check_q(sk, xq, cu.run_q(exe, sk, xq))
    assert np.all(cu.run_null(exe) == [-1] * 8 + [0])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_null_pointers_and_argmax_ties(layout, tmp_path):
    sk = make("learned-L8K4-int8")
    exe = cu.build_host(sk, layout, tmp_path)
    assert cu.run_null(exe).tolist() == [-1] * 8 + [0]
    # a sketch whose counts are all equal: every score ties, argmax must be 0 (first on ties, as numpy)
    flat = make("learned-L8K4-int8")
    flat.branches[0].counts[:] = 3
    got = cu.run_q(cu.build_host(flat, layout, tmp_path / "flat"), flat, rows_for(flat, n=50))
    assert np.all(got["argmax"] == 0) and np.all(got["scores"] == 3 * flat.n_tables)


@pytest.mark.slow
def test_int8_count_extremes(tmp_path):
    """Counts at -128/127, int16 at -32768/32767 and 4-bit at -8/7 everywhere: the largest sums the types must hold
    (4 bits: 40 tables of 15 in a byte lane would carry into the next class without the flush every 17 tables)."""
    for dt, bits, (lo, hi) in ((np.int8, None, (-128, 127)), (np.int16, None, (-32768, 32767)), (np.int8, 4, (-8, 7))):
        sk = random_sketch(D=64, C=4, L=40, K=5, count_dtype=dt, count_bits=bits, seed=3)
        sk.branches[0].counts[:] = np.where(np.random.default_rng(0).random(sk.branches[0].counts.shape) < 0.5, lo, hi)
        sk.branches[0].counts[:, :, 0], sk.branches[0].counts[:, :, 1] = lo, hi
        for layout in LAYOUTS:
            cu.assert_c_matches_reference(sk, rows_for(sk, n=300), layout, workdir=tmp_path / f"{dt.__name__}{bits}{layout}")


# ---------------------------------------------------------------- es_predict (float) = quantise + integer path
@pytest.mark.parametrize("layout", LAYOUTS)
def test_float_predict_matches_quantised_path(layout, tmp_path):
    sk = make("learned-L16K6-int8")
    sk.out_bias[:] = np.linspace(-1, 1, sk.n_outputs).astype(np.float32)
    rng = np.random.default_rng(5)
    D = sk.n_inputs
    # float inputs spread over (and past) the int8 range, plus exact half-way points of the rounding
    u = rng.uniform(-200, 200, (2000, D))
    half = (rng.integers(-130, 130, (500, D)) + 0.5)
    x = np.concatenate([(u - sk.in_zero) * sk.in_scale, (half - sk.in_zero) * sk.in_scale,
                        np.zeros((1, D)), np.full((1, D), 1e9), np.full((1, D), -1e9)]).astype(np.float32)
    ties = (x / sk.in_scale + sk.in_zero) % 1 == 0.5
    assert ties.sum() > 1000, "the input set has too few exact rounding ties"

    # the quantiser alone (the runtime's es_sketch_quantize, over the model's parameters)
    drv = tmp_path / "quant.c"
    cu.write_model(sk, layout, tmp_path)
    drv.write_text('#include <stdio.h>\n#include "es_model.h"\n#include "es_sketch.h"\nint main(void) { float x[ES_N_INPUTS]; '
                   'int8_t q[ES_N_INPUTS]; while (fread(x, sizeof x, 1, stdin) == 1) { es_sketch_quantize(x, q, ES_N_INPUTS, '
                   'es_in_scale, es_in_zero, ES_N_QPARAMS); fwrite(q, sizeof q, 1, stdout); } return 0; }\n')
    exe = tmp_path / "quant"
    subprocess.run(["gcc", *cu.WARN, "-O2", "-I", str(tmp_path), str(drv), str(tmp_path / "es_model.c"),
                    *map(str, cu.runtime_sources(tmp_path)), "-o", str(exe)], check=True)
    q = np.frombuffer(subprocess.run([str(exe)], input=x.tobytes(), capture_output=True, check=True).stdout, np.int8)
    want_q = quantize_inputs(sk, x)
    assert np.array_equal(q.reshape(want_q.shape), want_q), "es_sketch_quantize differs from quantize_inputs"

    out, rc = cu.run_f(cu.build_host(sk, layout, tmp_path), sk, x)
    assert np.all(rc == 0)
    want = int_outputs(sk, x)
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- cross compilers, warnings as errors
@pytest.mark.slow
@pytest.mark.parametrize("target", list(cu.CROSS))
@pytest.mark.parametrize("name", ["learned-L16K6-int8", "representer-L8K4-int16", "representer-dense-C1-regression",
                                  "learned-L16K6-int4", "learned-int4-C9", "learned-window-balanced-int4",
                                  "learned-window-P48-int16", "learned-codebook-int8", "learned-codebook-int16-u16rows-C3",
                                  "win1d-int8", "win1d-flat-branch-int8", "win2d-valid-dilated-wide", "win1d-weights",
                                  "win1d-int4", "win1d-pool-regions-C3", "win1d-codebook-flat-branch",
                                  "win1d-codebook-int16-u16rows-regions-C3"])
def test_cross_compiles(name, target, tmp_path):
    sk = make(name)
    for layout in LAYOUTS:
        obj = cu.cross_compile(sk, layout, target, tmp_path / layout)
        assert obj.stat().st_size > 0
        if target.startswith("cortex"):
            size = cu.arm_size(obj)
            assert size["data"] == 0 and size["bss"] == 0, f"tables must be const (.rodata), got {size}"
            assert size["text"] > sk.table_bytes
            heads = subprocess.run(["arm-none-eabi-objdump", "-h", str(obj)], capture_output=True, text=True,
                                   check=True).stdout
            assert re.search(r"\.rodata\.es_(b0_)?(counts|cq0|book)_\s", heads), "count tables are not in .rodata"
        if target == "avr5":                 # every const model array in program memory, none copied into RAM
            size = subprocess.run(["avr-size", str(obj)], capture_output=True, text=True, check=True).stdout
            text, data, bss = (int(v) for v in size.splitlines()[1].split()[:3])
            longest = max(len(str(n).encode()) for n in sk.meta["class_names"])   # es_class_name's copy of a name
            assert data == 0 and bss == longest + 1 and text > sk.table_bytes, size
            heads = subprocess.run(["avr-objdump", "-h", str(obj)], capture_output=True, text=True, check=True).stdout
            assert re.search(r"\.progmem\.data\.es_(b0_)?(counts|cq0|book)_\s", heads), "count tables are not in PROGMEM"
            assert re.search(r"\.progmem\.data\.es_in_scale\s", heads), "es_in_scale is not in PROGMEM"


@pytest.mark.parametrize("std", ["-std=c99", "-std=c11"])
def test_static_asserts_fire(std, tmp_path):
    """Both branches of the compile-time assert (C99 typedef trick, C11 _Static_assert) really stop the build."""
    sk = make("learned-L16K6-int8")
    src = cu.write_model(sk, "unrolled", tmp_path)
    subprocess.run(["gcc", std, "-pedantic", "-Wall", "-Wextra", "-Werror", "-c", str(src), "-o", str(tmp_path / "a.o")],
                   check=True)
    text = src.read_text()
    for what in ("projection_fits_its_type", "score_fits_its_type"):
        broken = re.sub(rf"\w+ >= \d+L, (\w*){what}", rf"0 >= 1, \g<1>{what}", text)
        assert broken != text
        (tmp_path / "broken.c").write_text(broken)
        r = subprocess.run(["gcc", std, "-c", str(tmp_path / "broken.c"), "-o", str(tmp_path / "b.o"), "-I", str(tmp_path)],
                           capture_output=True, text=True)
        assert r.returncode != 0 and what in r.stderr


# ---------------------------------------------------------------- Cortex-M under QEMU: the SXTAB16 path and the plain one
# Cortex-M0 (Thumb-1): unrolled lookups of plain counts keep their rows and add them class by class (ES_SK_GATHER in
# es_sketch_run.h; the codebook sketch's L=60 adds them every 16 tables), and straight-line hashes of at most two words
# set each bit at once (ES_HASH_KEEP)
@pytest.mark.slow
@pytest.mark.parametrize("cpu,layout,counts", [("cortex-m4", "unrolled", "int8"), ("cortex-m4", "compact", "int8"),
                                              ("cortex-m3", "unrolled", "int8"), ("cortex-m4", "unrolled", "int4"),
                                              ("cortex-m4", "compact", "int4"), ("cortex-m4", "compact", "window-int8"),
                                              ("cortex-m3", "compact", "window-int4"), ("cortex-m4", "compact", "codebook-int8"),
                                              ("cortex-m4", "unrolled", "codebook-int8"), ("cortex-m3", "compact", "codebook-int8"),
                                              ("cortex-m4", "unrolled", "win1d-int8"), ("cortex-m4", "compact", "win1d-int8"),
                                              ("cortex-m3", "unrolled", "win1d-flat-branch-int8"),
                                              ("cortex-m4", "unrolled", "win1d-int4"), ("cortex-m4", "unrolled", "win1d-weights"),
                                              ("cortex-m4", "unrolled", "win1d-codebook-flat-branch"),
                                              ("cortex-m3", "compact", "win1d-codebook-flat-branch"),
                                              ("cortex-m0", "unrolled", "int8"), ("cortex-m0", "unrolled", "int16"),
                                              ("cortex-m0", "unrolled", "codebook-int16-C3"), ("cortex-m0", "unrolled", "window-int4"),
                                              ("cortex-m0", "unrolled", "win1d-flat-branch-int8"),
                                              ("cortex-m0", "unrolled", "win1d-codebook-int16-u16rows-regions-C3"),
                                              ("cortex-m0", "compact", "int8")])
def test_cortex_m_under_qemu(cpu, layout, counts, tmp_path):
    sk = make({"window-int8": "learned-window-balanced-P48-int8", "window-int4": "learned-window-balanced-int4",
               "codebook-int8": "learned-codebook-int8", "codebook-int16-C3": "learned-codebook-int16-u16rows-C3"}
              .get(counts, counts if counts.startswith("win") else f"learned-L16K6-{counts}"))
    assert (".lanes = 1," in codegen.generate(sk, layout)["es_model.c"]) == (sk.count_bits == 8)
    xq = rows_for(sk, n=150)[:300]
    scores, instr = cu.run_qemu_cortex_m(sk, layout, xq, tmp_path, cpu)
    want = int_scores(sk, xq)
    bad = np.flatnonzero((scores != want).any(1))
    assert bad.size == 0, f"{cpu} {layout}: {bad.size} rows differ, first {bad[0]}: {scores[bad[0]]} != {want[bad[0]]}"
    assert 100 < instr < (100000 if counts.startswith("win") else 20000)


def test_two_models_link_together(tmp_path):
    """prefix= gives every symbol of a model its own name: two models in one program share one copy of the runtime,
    with no duplicate symbols."""
    a, b = make("learned-L8K4-int8"), make("representer-L8K4-int16")
    for sk, pre in ((a, "alpha"), (b, "beta")):
        for name, text in {**codegen.generate(sk, "compact" if pre == "beta" else "unrolled", pre), **codegen.runtime_files()}.items():
            (tmp_path / name).write_text(text)
    main = tmp_path / "main.c"
    main.write_text('#include <stdio.h>\n#include "alpha_model.h"\n#include "beta_model.h"\n'
                    'int main(void) { int8_t x[ALPHA_N_INPUTS] = {0}; int32_t s[ALPHA_N_OUTPUTS], t[BETA_N_OUTPUTS];'
                    ' alpha_predict_q(x, s); beta_predict_q(x, t); printf("%ld %ld %d %d\\n", (long)s[0], (long)t[0],'
                    ' alpha_argmax(s), beta_argmax(t)); return 0; }\n')
    exe = tmp_path / "two"
    subprocess.run(["gcc", *cu.WARN, "-I", str(tmp_path), str(main), str(tmp_path / "alpha_model.c"),
                    str(tmp_path / "beta_model.c"), *map(str, cu.runtime_sources(tmp_path)), "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    z = np.zeros((1, 64), np.int8)
    sa, sb = int_scores(a, z)[0], int_scores(b, z)[0]
    assert [int(v) for v in out] == [int(sa[0]), int(sb[0]), int(sa.argmax()), int(sb.argmax())]


# ---------------------------------------------------------------- the generated text
def test_header_banner_and_api():
    sk = make("learned-L16K6-int8")
    sk.meta["model_id"] = "0123456789abcdef0123456789abcdef"
    files = codegen.generate(sk)
    assert set(files) == {"es_model.h", "es_model.c"}
    h, c = files["es_model.h"], files["es_model.c"]
    for text in (h, c):
        assert text.startswith("/* !!! This file is generated by edgesketch")
        assert __version__ in text.splitlines()[0] and "0123456789abcdef0123456789abcdef" in text[:400]
    assert '#define ES_MODEL_ID        "0123456789abcdef0123456789abcdef"' in h
    assert "#define ES_MODEL_ID_BYTES  {0x01,0x23,0x45,0x67,0x89,0xab,0xcd,0xef}" in h
    for macro, v in (("N_INPUTS", 64), ("N_OUTPUTS", 10), ("N_TABLES", 16), ("N_BITS", 6), ("N_HASHBITS", 48),
                     ("TASK_CLASSIFICATION", 1)):
        assert re.search(rf"#define ES_{macro}\s+{v}\n", h), macro
    for proto in ("int es_predict_q(const int8_t *x, int32_t *scores);", "int es_argmax(const int32_t *scores);",
                  "int es_predict(const float *x, float *out);",
                  "int es_debug_q(const int8_t *x, uint8_t *bits, uint16_t *buckets);"):
        assert proto in h
    assert "#define ES_OK 0" in h and "#define ES_ERR_NULL (-1)" in h
    assert "static const ES_ROM int8_t es_b0_counts_[" in c and "const ES_ROM float es_in_scale[" in c
    assert "malloc" not in c and "float" not in c[c.index("int es_predict_q"):c.index("int es_debug_q")]
    rt = codegen.runtime_files()
    assert not any(re.search(r"\b(malloc|calloc|realloc|free)\s*\(", t) for t in rt.values())
    run = rt["es_sketch_run.h"]
    assert not re.search(r"\b(float|double)\b", run.split("*/", 1)[1])
    # no model id yet
    del sk.meta["model_id"]
    assert '#define ES_MODEL_ID        "unsaved"' in codegen.generate(sk)["es_model.h"]


@pytest.mark.parametrize("name", list(STRUCTURED))
def test_structured_hashing_takes_its_paths(name):
    """Compact C reads x directly (no negated copy) when every hyperplane has the same numbers of positive and
    negative taps, and packs hash bits into words (a bucket is one shift and mask) when every table reads a window."""
    direct, packed = STRUCTURED[name]
    c = codegen.generate(make(name), "compact")["es_model.c"]
    assert (".taps_kind = ES_TAPS_SPLIT," in c) == direct and (".taps_kind = ES_TAPS_NEG," in c) == (not direct)
    assert (".bits = ES_BITS_WORDS," in c) == packed and (".bits = ES_BITS_BYTES," in c) == (not packed)


def test_codebook_stores_each_row_once(tmp_path):
    """Shared rows: the C holds the distinct rows and a row number per cell (smaller than every cell), and computes
    the same scores as the sketch with every cell stored."""
    sk = make("learned-codebook-int8")
    full = make("learned-codebook-int8")
    full.extras = {}
    assert sk.table_bytes == 16 * 64 + 200 * 10 < full.table_bytes == 16 * 64 * 10
    c = codegen.generate(sk, "compact")["es_model.c"]
    assert "static const ES_ROM int8_t es_book_[2004]" in c and "static const ES_ROM uint8_t es_b0_rows_[1024]" in c
    assert "es_b0_rows_" not in codegen.generate(full, "compact")["es_model.c"]
    size = {n: cu.arm_size(cu.cross_compile(k, "compact", "cortex-m4", tmp_path / n))["text"] for n, k in (("a", sk), ("b", full))}
    assert size["b"] - size["a"] > full.table_bytes - sk.table_bytes - 64
    xq = rows_for(sk, n=500)
    np.testing.assert_array_equal(int_scores(sk, xq), int_scores(full, xq))


def test_unrolled_is_straight_line():
    """The unrolled layout generates straight-line hashing (a load and an add per tap) and lookups (a call of the
    runtime per table); the compact one only const data and thin entry points over the runtime's loops."""
    sk = make("learned-L16K6-int8")
    c = codegen.generate(sk, "unrolled")["es_model.c"]
    body = c[c.index("static void es_b0_hash_"):c.index("int es_predict_q")]
    assert "for (" not in body and "while" not in body
    p = 0
    taps = [f"b[{i}]" for i in sk.branches[0].tap_idx[sk.branches[0].tap_ptr[p]:sk.branches[0].tap_ptr[p + 1]]]
    assert any(all(t in line for t in taps) for line in body.splitlines() if line.strip().startswith(("z =", "q =")))
    assert body.count("es_sketch_cell(") == sk.n_tables
    c2 = codegen.generate(sk, "compact")["es_model.c"]
    assert "es_b0_off_" in c2 and len(c2) < len(c)
    code = re.sub(r"/\*.*?\*/", "", c2[c2.index("int es_predict_q"):], flags=re.S)
    assert not re.search(r"\b(for|while)\b", code) and "_hash_(" not in c2


def test_bad_arguments():
    sk = make("learned-L8K4-int8")
    with pytest.raises(UserError, match="layout"):
        codegen.generate(sk, "fast")
    with pytest.raises(UserError, match="prefix"):
        codegen.generate(sk, prefix="9lives")
    with pytest.raises(UserError, match="model_id"):
        sk.meta["model_id"] = "not hex"
        codegen.generate(sk)
    sk.meta.pop("model_id")
    bad = make("learned-L8K4-int8")
    bad.branches[0].tap_idx[0] = 999
    with pytest.raises(UserError, match="outside the window"):
        codegen.generate(bad)


def test_class_names_in_the_c(tmp_path):
    """es_class_name(i) and ES_CLASS_NAMES give the sketch's class names, escaped for C (quotes, backslashes, UTF-8,
    a '?' that would start a trigraph), NULL outside 0 .. C-1; an AVR build keeps them in program memory."""
    sk = make("learned-odd-D40-C3")
    sk.meta["class_names"] = ['say "hi"', "back\\slash??=", "café"]
    exe = tmp_path / "names"
    cu.write_model(sk, "compact", tmp_path)
    (tmp_path / "main.c").write_text(
        '#include <stdio.h>\n#include "es_model.h"\nstatic const char *const mine[] = ES_CLASS_NAMES;\n'
        'int main(void) { int i; for (i = 0; i < ES_N_OUTPUTS; ++i) printf("%s|%s\\n", es_class_name(i), mine[i]);'
        ' printf("%d %d\\n", es_class_name(-1) == NULL, es_class_name(ES_N_OUTPUTS) == NULL); return 0; }\n')
    subprocess.run(["gcc", *cu.WARN, "-I", str(tmp_path), str(tmp_path / "main.c"), str(tmp_path / "es_model.c"),
                    *map(str, cu.runtime_sources(tmp_path)), "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, check=True).stdout.decode("utf-8").splitlines()
    assert out == [f"{n}|{n}" for n in sk.meta["class_names"]] + ["1 1"]
    c = codegen.generate(sk)["es_model.c"]
    assert 'static const char ES_ROM es_cn2_[] = "caf\\303\\251";' in c
