"""Where does the sketch lose accuracy on mnist1d? One lever at a time against the default learned sketch
(L=16 K=6 P=48 s=8, int8 counts), distilled from the mnist1d Conv1D and MLP teachers; integer accuracy on the test
set, one seed. Runs the configurations in 2 processes (about 12 minutes on 2 cores for the default nine levers).

    python examples/studies/levers.py [--teachers mnist1d-cnn mnist1d-mlp] [--only NAME ...] [--jobs 2]

Levers (each row changes one thing):
  default          the shipped defaults (mixup + noise augmentation to 40,000 samples, relabelled by the teacher)
  taps 16 / taps 40  more taps per hyperplane (40 = every input: a dense ternary hyperplane)
  L64 P96          four times the tables (capacity probe: 40 KB of int8 tables)
  noise only       augmentation without mixup (Gaussian noise around training points only)
  fresh data       a transfer set of 36,000 new mnist1d samples from its generator (seed 1), no mixup: what a user
                   with more unlabelled inputs would pass
  fresh + mixup    the same, plus mixup + noise up to 80,000 samples
  temperature 2    softer teacher targets
  median of means  the default sketch read as the median over 4 groups of 4 tables (no retraining)
  int4 L64 K4 P96  the same table bytes as --count-bits 4 at L16 K6 (5 KB), in four times as many 16-cell tables
  fresh 150k       150,000 samples: 146,000 fresh generator inputs (is it data or capacity?)
  fresh 150k, L64 P96  and four times the tables
  fresh 150k, int4 L64 K6 P96 / int4 L64 K4 P96  the same with 4-bit counts (20 KB), and with 16-cell tables (5 KB)
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "examples" / "studies")]

import numpy as np  # noqa: E402

from mnist1d_transfer import fresh_inputs  # noqa: E402

LEVERS = {
    "default": {},
    "taps 16": dict(taps=16),
    "taps 40": dict(taps=40),
    "L64 P96": dict(tables=64, hyperplanes=96),
    "noise only": dict(_data="noise"),
    "fresh data": dict(_data="fresh"),
    "fresh + mixup": dict(_data="fresh", aug_size=80000),
    "temperature 2": dict(temperature=2.0),
    "int4 L64 K4 P96": dict(tables=64, bits=4, hyperplanes=96, count_bits=4),
    "fresh 150k": dict(_data="fresh", _n=146000),
    "fresh 150k, L64 P96": dict(_data="fresh", _n=146000, tables=64, hyperplanes=96),
    "fresh 150k, int4 L64 K6 P96": dict(_data="fresh", _n=146000, tables=64, hyperplanes=96, count_bits=4),
    "fresh 150k, int4 L64 K4 P96": dict(_data="fresh", _n=146000, tables=64, bits=4, hyperplanes=96, count_bits=4),
}
DEFAULT_LEVERS = list(LEVERS)[:9]   # the rest are slow (4 to 11 minutes each): ask for them with --only


def median_of_means(sk, x, groups: int = 4) -> np.ndarray:
    """Class scores as the median over `groups` groups of tables of each group's summed counts (int tables)."""
    from edgesketch.sketch import int_buckets, quantize_inputs
    b = int_buckets(sk, quantize_inputs(sk, x))                      # [N, L]
    cells = sk.branches[0].counts[np.arange(sk.n_tables)[None, :], b].astype(np.int64)  # [N, L, C]
    return np.median(cells.reshape(len(x), groups, -1, cells.shape[-1]).sum(2), 1)


def one(tname: str, lever: str) -> dict:
    import teachers
    from edgesketch import data, evaluate, teacher
    from edgesketch.distillation import Config, distill
    ds, t = data.load("mnist1d"), teacher.load(teachers.ensure(tname))
    kw = dict(LEVERS[lever])
    how, n_fresh = kw.pop("_data", None), kw.pop("_n", 36000)
    x = ds.x_train
    if how == "noise":
        rng = np.random.default_rng(0)
        k = 36000
        x = np.concatenate([x, x[rng.integers(0, len(x), k)] + rng.normal(0, 1, (k, x.shape[1])).astype(np.float32) * 0.1 * x.std(0)])
        kw["augment"] = False
    t0 = time.time()
    sk = distill(t, x, Config(**kw), {"source": "mnist1d"}, transfer=fresh_inputs(n_fresh) if how == "fresh" else None)
    m = evaluate.evaluate(sk, ds.x_test, ds.y_test, t)
    train = float(np.mean(evaluate.int_outputs(sk, ds.x_train).argmax(1) == ds.y_train))
    row = dict(teacher=tname, lever=lever, int_accuracy=m["int_accuracy"], teacher_accuracy=m["teacher_accuracy"],
               agreement=m["teacher_agreement"], train=train, table_bytes=sk.table_bytes, seconds=time.time() - t0)
    if lever == "default":
        mom = median_of_means(sk, ds.x_test)
        row["mom"] = float(np.mean(mom.argmax(1) == ds.y_test))
    return row


def mlp_one(tname: str, hidden: int, fresh: int) -> dict:
    """The bench's equal-accuracy baseline (edgesketch.bench.mlp: one hidden layer, int8) with or without the same
    fresh inputs the sketch gets: does the transfer set help the sketch more than the MLP?"""
    import teachers
    from edgesketch import data, teacher
    from edgesketch.bench import mlp
    from edgesketch.quantize import calibrate_inputs
    ds, t = data.load("mnist1d"), teacher.load(teachers.ensure(tname))
    layers = mlp.distill_mlp(t, ds.x_train, hidden, transfer=fresh_inputs(fresh) if fresh else None)
    net = mlp.quantize(layers, *calibrate_inputs(ds.x_train), ds.x_train)
    acc = float(np.mean(net.forward(net.quantize_inputs(ds.x_test)).argmax(1) == ds.y_test))
    return dict(teacher=tname, shape=net.shape_str, fresh=fresh, int_accuracy=acc)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teachers", nargs="+", default=["mnist1d-cnn", "mnist1d-mlp"])
    ap.add_argument("--only", nargs="+", choices=sorted(LEVERS), default=DEFAULT_LEVERS)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--mlp", action="store_true", help="instead: the bench's int8 MLP baseline at widths 16-64, "
                    "without and with 146,000 fresh inputs (about 10 minutes)")
    a = ap.parse_args()
    import teachers
    for tn in a.teachers:
        teachers.ensure(tn)
    if a.mlp:
        print("| teacher | distilled int8 MLP | mixup (default) | 146,000 fresh inputs |")
        print("|---|---|---|---|")
        jobs = [(tn, h, f) for tn in a.teachers for h in (16, 32, 48, 64) for f in (0, 146000)]
        with ProcessPoolExecutor(a.jobs, mp_context=get_context("spawn")) as ex:
            res = list(ex.map(mlp_one, *zip(*jobs)))
        for i in range(0, len(res), 2):
            print(f"| {res[i]['teacher']} | {res[i]['shape']} | {res[i]['int_accuracy']:.4f} | {res[i + 1]['int_accuracy']:.4f} |")
        sys.exit(0)
    jobs = [(tn, lv) for tn in a.teachers for lv in a.only]
    print("| teacher | lever | test accuracy (int) | agreement with teacher | train accuracy | table bytes |")
    print("|---|---|---|---|---|---|")
    with ProcessPoolExecutor(a.jobs, mp_context=get_context("spawn")) as ex:
        for r in ex.map(one, *zip(*jobs)):
            print(f"| {r['teacher']} ({r['teacher_accuracy']:.3f}) | {r['lever']} | {r['int_accuracy']:.4f} | {r['agreement']:.4f} | "
                  f"{r['train']:.4f} | {r['table_bytes']:,} | <!-- {r['seconds']:.0f} s -->", flush=True)
            if "mom" in r:
                print(f"| {r['teacher']} ({r['teacher_accuracy']:.3f}) | median of means (4 x 4 tables) | {r['mom']:.4f} | | | "
                      f"{r['table_bytes']:,} |", flush=True)
