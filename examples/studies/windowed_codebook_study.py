"""How small can a windowed sketch's tables get if its cells share rows (the flat sketches' `--codebook R`, not built
for windowed ones)? A post-hoc estimate on the family default's sketches, validation split, towards issue 18's flash
bar (at most the flash of the smallest int8 Conv1D of equal accuracy; docs/algorithm-notes.md).

Per seed and R: k-means of the float cells into R rows (quantize.cluster_rows: centred, weighted by how often the
training part lands in each cell), then
  rows          the k-means centres
  rows refit    the rows refitted by ridge least squares to the float tables' scores on the training part (every
                cell's row fixed; a score is a row histogram times the rows, so this is exact least squares)
  int8          the refitted rows on an int8 grid (shared scale, peak at 127), integer sums as on a device
all on the device's integer hash. distill's own refit (teacher targets, augmentation, epochs) could do better than
this least-squares fit, so read it as an estimate. Bytes: a row number per cell (one byte), R int8 rows of C, and
the hashing parameters.

    python examples/studies/windowed_codebook_study.py --data mnist1d --teacher build/teachers/mnist1d-cnn.keras
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parent)]

import numpy as np  # noqa: E402

from edgesketch.quantize import cluster_rows, finalize, quantize_counts  # noqa: E402
from edgesketch.sketch import _sum_cells, all_counts, int_cells, quantize_inputs  # noqa: E402
from quant_loss_study import split_and_sketches  # noqa: E402


def row_histogram(rows, cells, R):
    """[N, R]: how many of an input's reads land in cells of each row."""
    return np.stack([np.bincount(r, minlength=R) for r in rows[cells]]).astype(np.float64)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="mnist1d")
    ap.add_argument("--teacher", default="build/teachers/mnist1d-cnn.keras")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rows", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--ridge", type=float, default=1.0)
    ap.add_argument("--dir", default="build/quant_loss", help="sketch cache shared with quant_loss_study.py")
    a = ap.parse_args(argv)
    _, xf, xe, ye, _, sketches = split_and_sketches(a.data, a.teacher, "validation", a.seeds, a.dir)
    xf = np.asarray(xf, np.float32).reshape(len(xf), -1)
    res = {}
    for seed, sk in sketches:
        finalize(sk)                            # int8 tables on distill's current grid (a cached sketch may predate it)
        T = all_counts(sk, "counts_f").astype(np.float64)
        cf, ce = int_cells(sk, quantize_inputs(sk, xf)), int_cells(sk, quantize_inputs(sk, xe))
        acc = lambda s: float(np.mean(s.argmax(1) == ye))
        res.setdefault("float tables", []).append((acc(_sum_cells(T, ce)), sk.table_bytes + sk.projection_bytes))
        res.setdefault("int8 tables (distill's grid)", []).append(
            (acc(_sum_cells(all_counts(sk).astype(np.int64), ce)), sk.table_bytes + sk.projection_bytes))
        S, hits = _sum_cells(T, cf), np.bincount(cf.ravel(), minlength=len(T))
        for R in a.rows:
            rows, book = cluster_rows(T, R, hits + 1.0, "classification", seed)
            Hf, He = row_histogram(rows, cf, len(book)), row_histogram(rows, ce, len(book))
            fit = np.linalg.solve(Hf.T @ Hf + a.ridge * np.eye(len(book)), Hf.T @ S)
            q = quantize_counts(fit[None], "classification", 8)[0][0].astype(np.int64)
            nbytes = len(T) + len(book) * sk.n_outputs + sk.projection_bytes
            for name, s in ((f"{R} rows", He @ book), (f"{R} rows refit", He @ fit), (f"{R} rows refit, int8", He @ q)):
                res.setdefault(name, []).append((acc(s), nbytes))
        print(f"seed {seed}: " + ", ".join(f"{k} {v[-1][0]:.4f}" for k, v in res.items()), flush=True)
    print(f"\n{a.teacher}, validation ({len(xe)} inputs), seeds {a.seeds}\n")
    print("| tables | accuracy, mean (min-max) | table + hashing bytes |\n|---|---|---|")
    for k, v in res.items():
        x = [r[0] for r in v]
        print(f"| {k} | {np.mean(x):.4f} ({min(x):.4f}-{max(x):.4f}) | {v[0][1]:,} |")


if __name__ == "__main__":
    main()
