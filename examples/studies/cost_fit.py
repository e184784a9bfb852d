"""Fit edgesketch.cost's Cortex-M0 estimator to exact instruction counts: random sketches of many structures (flat and
windowed, 1-D and 2-D, ternary and integer taps, one or two thresholds a sum, 4-bit counts, shared rows) are built
for qemu-m0 (unrolled layout) and run under QEMU (-icount: exact counts, which do not depend on the sketch's values);
their structure's features (cost.features) are fitted by non-negative least squares, and cost_m0.json is rewritten.

    python examples/studies/cost_fit.py                       # measure (build/study/cost_m0.json), fit, write
    python examples/studies/cost_fit.py --fit-only            # refit the stored measurements
    python examples/studies/cost_fit.py --src /tmp/es-head    # measure another checkout's generated C

Run it again whenever the generated C changes. Every device run is checked bit for bit against the integer
reference. Prints the coefficients, each sketch's measured and estimated counts, and the fit error (in-sample and
leave-one-out).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MEASURED = ROOT / "build/study/cost_m0.json"


def cases():
    """(name, random_sketch arguments) of every structure measured."""
    from edgesketch.sketch import Window
    out = []
    flat = [  # D, C, L, K, P, taps, extra
        (64, 10, 16, 6, 48, 8, {}), (64, 10, 8, 4, 24, 4, {}), (64, 10, 32, 6, 96, 16, {}), (192, 6, 16, 6, 48, 8, {}),
        (192, 6, 12, 8, 32, 12, {}), (40, 10, 16, 5, 32, 6, {}), (768, 6, 16, 6, 48, 8, {}), (30, 2, 24, 7, 64, 5, {}),
        (384, 5, 20, 6, 64, 10, {}), (64, 10, 16, 6, 48, 8, {"count_bits": 4}), (192, 6, 24, 5, 40, 8, {"count_bits": 4}),
        (64, 10, 16, 6, 48, 8, {"codebook": 200}), (192, 6, 16, 6, 48, 9, {"weights": 7}),
        (64, 10, 16, 6, 48, 8, {"selectors": "window"}),
    ]
    for D, C, L, K, P, s, kw in flat:
        out.append((f"flat D{D} C{C} L{L} K{K} P{P} s{s} {kw or ''}".strip(),
                    dict(D=D, C=C, L=L, K=K, P=P, taps=s, **kw)))
    win = [  # shape, size, stride, dilation, pool, regions, C, L, K, P, taps, thresholds, weights, extra
        ((40, 1), 9, 2, 1, 1, 1, 10, 15, 6, 32, 9, 2, 7, {}),
        ((40, 1), 9, 2, 1, 1, 1, 10, 15, 6, 32, 9, 2, 1, {}),
        ((40, 1), 9, 4, 2, 1, 1, 10, 15, 6, 32, 9, 2, 7, {}),
        ((64, 3), 9, 2, 1, 1, 1, 6, 15, 6, 32, 9, 2, 7, {}),
        ((64, 3), 9, 6, 3, 1, 1, 6, 15, 6, 32, 9, 2, 7, {}),
        ((64, 3), 5, 3, 1, 1, 1, 6, 8, 5, 16, 6, 1, 1, {}),
        ((64, 3), 9, 2, 1, 2, 1, 6, 15, 6, 32, 9, 2, 7, {}),
        ((64, 3), 9, 4, 1, 1, 2, 6, 8, 6, 32, 9, 2, 7, {}),
        ((128, 6), 9, 6, 3, 1, 1, 6, 15, 6, 32, 9, 2, 7, {}),
        ((128, 6), 3, 8, 1, 1, 1, 6, 10, 6, 24, 12, 1, 3, {}),
        ((1000, 1), 9, 50, 25, 1, 1, 5, 15, 6, 32, 9, 2, 7, {}),
        ((1000, 1), 16, 40, 1, 1, 1, 5, 12, 6, 48, 9, 2, 7, {}),
        ((40, 1), 9, 2, 1, 1, 1, 10, 15, 6, 32, 9, 2, 7, {"count_bits": 4}),
        ((64, 3), 9, 4, 2, 1, 1, 6, 15, 6, 32, 9, 2, 7, {"codebook": 256}),
        ((64, 3), 9, 4, 2, 1, 1, 6, 15, 6, 32, 9, 2, 7, {"selectors": "window"}),
        ((40, 1), 9, 2, 1, 1, 1, 10, 15, 6, 32, 9, 2, 7, {"L": 4, "P": 24, "taps": 8}),     # a flat branch beside it
        ((8, 8, 1), 3, 1, 1, 1, 1, 10, 8, 6, 32, 9, 2, 7, {"L": 8, "P": 48, "taps": 8}),
        ((8, 8, 1), 3, 2, 1, 1, 1, 10, 8, 6, 32, 9, 2, 7, {"L": 7, "P": 48, "taps": 8}),
        ((8, 8, 1), 3, 2, 1, 1, 1, 10, 15, 6, 32, 9, 2, 7, {}),
        ((16, 16, 1), 3, 2, 1, 1, 1, 10, 10, 6, 32, 6, 2, 1, {}),
        # the candidates' geometries (distill.geometry) on the sensor inputs of the examples
        ((64, 3), 9, 4, 2, 1, 1, 6, 15, 6, 32, 9, 2, 7, {}),
        ((64, 3), 9, 7, 3, 1, 1, 6, 15, 6, 32, 9, 2, 7, {}),
        ((128, 6), 9, 7, 3, 1, 1, 6, 15, 6, 32, 9, 2, 7, {}),
        ((128, 6), 9, 13, 6, 1, 1, 6, 15, 6, 32, 9, 2, 7, {}),
        ((1500, 1), 9, 75, 37, 1, 1, 5, 15, 6, 32, 9, 2, 7, {}),
        ((1500, 1), 9, 150, 75, 1, 1, 5, 15, 6, 32, 9, 2, 7, {}),
        ((40, 1), 9, 4, 2, 1, 1, 10, 15, 6, 32, 9, 2, 7, {}),
        ((1500, 1), 1500, 1, 1, 1, 1, 5, 16, 6, 48, 8, 1, 1, {"padding": "valid"}),
        # the candidates' geometries with 32, 16 and 8 read-outs (distill.READOUTS)
        ((40, 1), 9, 5, 2, 1, 1, 10, 15, 6, 32, 9, 2, 7, {}),
        ((40, 1), 9, 3, 1, 1, 1, 10, 15, 6, 32, 9, 2, 7, {}),
        ((64, 3), 9, 8, 4, 1, 1, 6, 15, 6, 32, 9, 2, 7, {}),
        ((128, 6), 9, 16, 8, 1, 1, 6, 15, 6, 32, 9, 2, 7, {}),
        ((128, 6), 9, 8, 4, 1, 1, 6, 15, 6, 32, 9, 2, 7, {}),
        ((128, 6), 9, 4, 2, 1, 1, 6, 15, 6, 32, 9, 2, 7, {}),
        ((1500, 1), 9, 188, 94, 1, 1, 5, 15, 6, 32, 9, 2, 7, {}),
        ((1500, 1), 9, 94, 47, 1, 1, 5, 15, 6, 32, 9, 2, 7, {}),
        ((1500, 1), 9, 47, 23, 1, 1, 5, 15, 6, 32, 9, 2, 7, {}),
    ]
    for shape, k, st, d, q, R, C, L, K, P, s, T, wt, kw in win:
        n = len(shape) - 1
        kw = dict(kw)
        w = Window.over(shape, (k,) * n, (st,) * n, (d,) * n, kw.pop("padding", "same"), (q,) * n, R)
        flat_kw = {k2: kw[k2] for k2 in ("L", "P", "taps") if k2 in kw}
        rest = {k2: v for k2, v in kw.items() if k2 not in flat_kw}
        args = dict(C=C, L=flat_kw.get("L", 0), K=6, P=flat_kw.get("P"), taps=flat_kw.get("taps"), thresholds=T, weights=wt,
                    windows=[(w, L, K, P, s)], **rest)
        out.append((f"window {shape} k{k} s{st} d{d} q{q} R{R} C{C} L{L} K{K} P{P}x{T} s{s} w{wt} {kw or ''}".strip(), args))
    return out


def measure(board: str, limit: int | None, done=()) -> list[dict]:
    import numpy as np
    from edgesketch import codegen
    from edgesketch.bench import device
    from edgesketch.cost import structure_of
    from edgesketch.sketch import int_scores, random_sketch
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for i, (name, kw) in enumerate(cases()[:limit]):
            if name in done:
                continue
            sk = random_sketch(seed=i, **kw)
            xq = np.random.default_rng(i).integers(-128, 128, (3, sk.n_inputs)).astype(np.int8)
            t0 = time.time()
            r = device.run(board, codegen.generate(sk, "unrolled"), xq, sk.n_inputs, sk.n_outputs, Path(work), "cost")
            if not np.array_equal(r.scores, int_scores(sk, xq)):
                raise SystemExit(f"{name}: the device's scores differ from the integer reference")
            rows.append({"name": name, "instructions": int(r.instructions), "structure": structure_of(sk),
                         "flash": int(r.flash)})
            print(f"{name}: {r.instructions:,} instructions ({time.time() - t0:.0f} s)", flush=True)
    return rows


def fit(rows: list[dict]):
    import numpy as np
    from scipy.optimize import nnls
    from edgesketch.cost import FEATURES, features
    F = np.array([features(r["structure"]) for r in rows])
    y = np.array([r["instructions"] for r in rows], np.float64)
    used = F.any(0)                                  # a feature no case exercises gets 0
    w = 1.0 / y                                      # relative error: small sketches count as much as big ones
    coef = np.zeros(len(FEATURES))
    coef[used] = nnls(F[:, used] * w[:, None], y * w)[0]
    loo = np.zeros(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        c = np.zeros(len(FEATURES))
        c[used] = nnls(F[keep][:, used] * w[keep, None], y[keep] * w[keep])[0]
        loo[i] = F[i] @ c
    return coef, F @ coef, loo


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", help="measure this edgesketch checkout's generated C (default: this one)")
    ap.add_argument("--board", default="qemu-m0")
    ap.add_argument("--fit-only", action="store_true", help=f"refit the measurements in {MEASURED.relative_to(ROOT)}")
    ap.add_argument("--limit", type=int, help="measure only the first N cases")
    ap.add_argument("--new", action="store_true", help="measure only the cases the stored measurements lack, and add them")
    ap.add_argument("--src-commit", help="the commit --src was exported from (recorded; default: git rev-parse in --src, "
                    "else this checkout's HEAD)")
    ap.add_argument("--no-write", action="store_true", help="print the fit, leave edgesketch/cost_m0.json alone")
    a = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(Path(a.src).resolve() if a.src else ROOT))
    if not a.fit_only:
        import subprocess
        old = json.loads(MEASURED.read_text())["rows"] if a.new and MEASURED.exists() else []
        rows = old + measure(a.board, a.limit, {r["name"] for r in old})
        src = Path(a.src or ROOT)
        commit = a.src_commit or next(filter(None, (subprocess.run(["git", "-C", str(d), "rev-parse", "HEAD"], capture_output=True,
                                                                   text=True).stdout.strip() for d in (src, ROOT))), "")
        MEASURED.parent.mkdir(parents=True, exist_ok=True)
        MEASURED.write_text(json.dumps({"board": a.board, "src": str(src), "commit": commit, "rows": rows}, indent=1))
    stored = json.loads(MEASURED.read_text())
    rows = stored["rows"]
    sys.path.insert(0, str(ROOT))                    # the estimator of this checkout
    import numpy as np
    from edgesketch import cost
    coef, est, loo = fit(rows)
    y = np.array([r["instructions"] for r in rows], np.float64)
    err, lerr = (est - y) / y, (loo - y) / y
    print(f"\n{stored['board']}, {len(rows)} random sketches, generated C of {stored['src']} (commit {stored.get('commit', '?')[:10]})\n")
    print("| sketch | measured | estimated | error | leave-one-out estimate | error |")
    print("|---|---|---|---|---|---|")
    for r, e, l, ee, le in zip(rows, est, loo, err, lerr):
        print(f"| {r['name']} | {r['instructions']:,} | {e:,.0f} | {100 * ee:+.1f}% | {l:,.0f} | {100 * le:+.1f}% |")
    print(f"\nin-sample: mean |error| {100 * np.abs(err).mean():.1f}%, largest {100 * np.abs(err).max():.1f}%; "
          f"leave-one-out: mean |error| {100 * np.abs(lerr).mean():.1f}%, largest {100 * np.abs(lerr).max():.1f}%")
    print("coefficients (instructions per unit): " + ", ".join(f"{k} {v:.2f}" for k, v in zip(cost.FEATURES, coef)))
    if not a.no_write:
        out = ROOT / "edgesketch" / cost.COEF_FILE.name          # this checkout's, whichever C was measured
        out.write_text(json.dumps({
            "board": stored["board"], "layout": "unrolled", "fitted_by": "examples/studies/cost_fit.py",
            "measured_commit": stored.get("commit"), "cases": len(rows),
            "mean_abs_error": float(np.abs(err).mean()), "max_abs_error": float(np.abs(err).max()),
            "loo_mean_abs_error": float(np.abs(lerr).mean()), "loo_max_abs_error": float(np.abs(lerr).max()),
            "coefficients": {k: round(float(v), 4) for k, v in zip(cost.FEATURES, coef)}}, indent=1) + "\n")
        print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
