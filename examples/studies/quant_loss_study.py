"""Where a windowed sketch's quantisation loss comes from, and what the int8 table grid costs.

For each seed the family default is distilled on the validation split's training part (80%, stratified, fixed seed;
--split test: the whole training set, scored on the test set, for diagnosis only) and scored several ways:
  float         the float sketch (float hash of unrounded inputs, float tables)
  int hash      the device's integer hash with the float tables (what the refit trained)
  int           THE integer reference (integer hash, int8 tables as distilled)
  int peak / int clipped   the same hash with the tables on the grids below
so "int hash - int" is what rounding the tables costs. Labels of a few hundred images move in steps of 0.3 points, so
the same is measured without labels, as agreement with the teacher on 20,000 augmented evaluation inputs (the
family's own augmentation, fixed generator), for the int8 tables as distilled and for alternative grids. Also printed: each
branch's spread of cells (standard deviation, centred across classes) in steps of the shared int8 scale.
  peak          the shared scale maps the largest |cell| to 127 (what distill did before the clipped grid)
  clipped       the shared scale clips at quantize.read_weighted_scale's level (distill's grid for windowed sketches)
  centred       each cell centred across classes before the shared scale (as 4-bit tables are)
  branch shift  each branch on its own power-of-two finer scale (a shift per branch on the device)

    python examples/studies/quant_loss_study.py --data sklearn:digits --teacher build/teachers/digits-cnn.keras
    python examples/studies/quant_loss_study.py --data mnist1d --teacher build/teachers/mnist1d-cnn.keras --seeds 0

Sketches are kept in --dir (reused when present: distilling is deterministic for a seed).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402

from edgesketch import data as esdata, esk, teacher as T  # noqa: E402
from edgesketch.distillation import Config, augment, distill, family_defaults  # noqa: E402
from edgesketch.quantize import quantize_counts, read_weighted_scale  # noqa: E402
from edgesketch.sketch import _sum_cells, all_counts, float_outputs, int_cells, int_scores, quantize_inputs  # noqa: E402


def q8(t, scale):
    """Cells [N, C] on quantize_counts' int8 grid at this scale: the integer codes (as float64)."""
    return quantize_counts(t[None], "classification", 8, scale)[0][0].astype(np.float64)


def grids(sk) -> dict:
    """Tables [cells, C] of every grid compared: the float tables, and int8 ones as integer codes in units of the grid's
    finest step (so that sums, and ties between classes, are exact, as on the device)."""
    per = [b.counts_f.reshape(-1, sk.n_outputs).astype(np.float64) for b in sk.branches]
    cen = [p - p.mean(1, keepdims=True) for p in per]
    reads = [b.n_reads for b in sk.branches]
    peak, peakc = max(np.abs(p).max() for p in per), max(np.abs(p).max() for p in cen)
    codes = lambda ps, scale: np.concatenate([q8(p, scale) for p in ps])

    def shift(ps, pk):   # branch b on scale pk / 127 / 2^k[b]; in units of the finest
        k = [int(np.floor(np.log2(pk / np.abs(p).max()))) for p in ps]
        return np.concatenate([q8(p, pk / 127 / 2 ** kb) * 2 ** (max(k) - kb) for p, kb in zip(ps, k)])
    return {"float tables": np.concatenate(per), "int8 (as distilled)": all_counts(sk).astype(np.float64),
            "peak": codes(per, peak / 127), "centred": codes(cen, peakc / 127), "branch shift": shift(per, peak),
            "centred + branch shift": shift(cen, peakc), "clipped": codes(per, read_weighted_scale(per, reads)),
            "centred + clipped": codes(cen, read_weighted_scale(cen, reads))}


def split_and_sketches(data, teacher_path, split, seeds, cache_dir):
    """(teacher, training inputs, evaluation inputs [N, D], labels, family defaults, iterator of (seed, sketch)): the
    family default distilled per seed on the split's training part, kept in cache_dir (deterministic for a seed)."""
    ds, teacher = esdata.load(data), T.load(teacher_path)
    fam = family_defaults(teacher.input_shape)
    if split == "test":
        xf, xe, ye = ds.x_train, ds.x_test, ds.y_test
    else:
        from sklearn.model_selection import train_test_split
        xf, xe, _, ye = train_test_split(ds.x_train, ds.y_train, test_size=0.2, random_state=0, stratify=ds.y_train)
    xe = np.asarray(xe, np.float32).reshape(len(xe), -1)

    def sketches():
        for seed in seeds:
            path = Path(cache_dir) / f"{Path(teacher_path).stem}-{split}-{seed}.esk"
            if path.is_file():
                yield seed, esk.load(path)
                continue
            sk = distill(teacher, xf, Config(seed=seed, **fam), {"source": data, "input_shape": list(teacher.input_shape)})
            path.parent.mkdir(parents=True, exist_ok=True)
            esk.save(sk, path)
            yield seed, sk
    return teacher, xf, xe, np.asarray(ye), fam, sketches()


def argmax_of(table, cells):
    return _sum_cells(table, cells).argmax(1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="sklearn:digits")
    ap.add_argument("--teacher", default="build/teachers/digits-cnn.keras")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--split", choices=["validation", "test"], default="validation")
    ap.add_argument("--unlabelled", type=int, default=20000, help="augmented evaluation inputs for teacher agreement")
    ap.add_argument("--dir", default="build/quant_loss")
    a = ap.parse_args(argv)
    teacher, xf, xe, ye, fam, sketches = split_and_sketches(a.data, a.teacher, a.split, a.seeds, a.dir)
    xa = augment(xe, Config(**{**fam, "aug_size": a.unlabelled + len(xe)}), np.random.default_rng(123), None,
                 tuple(teacher.input_shape))
    tp = teacher.outputs(xa).argmax(1)
    rows = []
    for seed, sk in sketches:
        xq = quantize_inputs(sk, xe)
        g = grids(sk)
        ce = int_cells(sk, xq)
        acc = {"float": np.mean(float_outputs(sk, xe).argmax(1) == ye), "int hash": np.mean(argmax_of(g["float tables"], ce) == ye),
               "int": np.mean(int_scores(sk, xq).argmax(1) == ye), "int peak": np.mean(argmax_of(g["peak"], ce) == ye),
               "int clipped": np.mean(argmax_of(g["clipped"], ce) == ye)}
        cells = int_cells(sk, quantize_inputs(sk, xa))
        agree = {k: np.mean(argmax_of(t, cells) == tp) for k, t in g.items()}
        rows.append((seed, acc, agree))
        spread = [(b.counts_f - b.counts_f.mean(-1, keepdims=True)).std() / sk.out_scale[0] for b in sk.branches]
        print(f"seed {seed}: {a.split} " + ", ".join(f"{k} {v:.4f}" for k, v in acc.items()) + "; teacher agreement "
              + ", ".join(f"{k} {v:.4f}" for k, v in agree.items()) + "; spread of the cells (centred, int8 steps) "
              + " / ".join(f"branch {j} {v:.1f}" for j, v in enumerate(spread)), flush=True)
    print(f"\n{a.teacher}, {a.split} ({len(xe)} inputs; agreement on {len(xa):,} augmented ones), seeds {a.seeds}: means")
    print("| " + " | ".join(f"{a.split} {k}" for k in rows[0][1]) + " | " + " | ".join(f"agreement, {k}" for k in rows[0][2]) + " |")
    print("|" + "---|" * (len(rows[0][1]) + len(rows[0][2])))
    print("| " + " | ".join(f"{np.mean([r[1][k] for r in rows]):.4f}" for k in rows[0][1]) + " | "
          + " | ".join(f"{np.mean([r[2][k] for r in rows]):.4f}" for k in rows[0][2]) + " |")


if __name__ == "__main__":
    main()
