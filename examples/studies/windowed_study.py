"""Choose the windowed sketch's configuration honestly: candidates are distilled on 80% of the training set and scored
on the other 20% (a stratified validation split with a fixed seed), never on the test set; over several seeds. The
chosen configuration is then distilled on the whole training set and reported once on the test set (--final).

    python examples/studies/windowed_study.py --data mnist1d --teacher build/teachers/mnist1d-cnn.keras --seeds 0 1 2
    python examples/studies/windowed_study.py ... --only "P16x2 s6" "P32 s6"          # some candidates
    python examples/studies/windowed_study.py ... --final "P16x2 s6"                  # the chosen one, on the test set
    python examples/studies/windowed_study.py ... --device qemu-m4 qemu-m0            # also measure instructions per inference
    python examples/studies/windowed_study.py ... --transfer build/mnist1d-transfer.npz  # with unlabelled generator inputs

Every candidate keeps its tables and hashing parameters within --budget bytes (10,240 by default). Prints a markdown
table (mean and spread over seeds of the integer validation accuracy, bytes, ops, distil time) and writes --json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402

from edgesketch import data as esdata, evaluate, teacher as T  # noqa: E402
from edgesketch.distillation import Config, distill, family_defaults  # noqa: E402

BASE = dict(window=(9,), stride=(2,), tables=15, bits=6, ste_lr=0.003, refit_lr=0.001)
BASE2 = dict(window=(3, 3), ste_lr=0.003, refit_lr=0.001)
CANDIDATES2 = {  # 2-D windows (8 x 8 digits), with or without a flat branch; table bytes in the names
    "flat L16 K6 P48 s8 (10,240)": dict(window=(), tables=16, bits=6, hyperplanes=48, taps=8),
    "3x3 s2 P8x2 w7 L8 K4 + flat L12 K6 P48 (8,960)": dict(stride=(2, 2), hyperplanes=16, thresholds=2, taps=9, weights=7,
                                                          tables=8, bits=4, flat_branch=(12, 6, 48, 8)),
    "3x3 s2 P8 s6 L8 K4 + flat L12 K6 P48 (8,960)": dict(stride=(2, 2), hyperplanes=8, taps=6, tables=8, bits=4,
                                                        flat_branch=(12, 6, 48, 8)),
    "3x3 s1 P16x2 w7 L10 K6 (6,400)": dict(stride=(1, 1), hyperplanes=32, thresholds=2, taps=9, weights=7, tables=10, bits=6),
    "3x3 s2 P16x2 w7 L15 K6 (9,600)": dict(stride=(2, 2), hyperplanes=32, thresholds=2, taps=9, weights=7, tables=15, bits=6),
    "3x3 s2 P16x2 w7 L8 K6 + flat L8 K6 P48 (10,240)": dict(stride=(2, 2), hyperplanes=32, thresholds=2, taps=9, weights=7,
                                                           tables=8, bits=6, flat_branch=(8, 6, 48, 8)),
    "3x3 s2 P16x2 w7 L8 K6 + flat L7 K6 P48 (9,600)": dict(stride=(2, 2), hyperplanes=32, thresholds=2, taps=9, weights=7,
                                                          tables=8, bits=6, flat_branch=(7, 6, 48, 8)),
    "3x3 s2 P16x2 w7 L12 K6 + flat L12 K6 P48 (15,360)": dict(stride=(2, 2), hyperplanes=32, thresholds=2, taps=9, weights=7,
                                                             tables=12, bits=6, flat_branch=(12, 6, 48, 8)),
    "3x3 s1 P16x2 w7 L8 K6 + flat L8 K6 P48 (10,240)": dict(stride=(1, 1), hyperplanes=32, thresholds=2, taps=9, weights=7,
                                                           tables=8, bits=6, flat_branch=(8, 6, 48, 8)),
}
CANDIDATES = {   # name: Config fields over BASE (1-D windows; table bytes 15 * 64 * 10 = 9,600 int8)
    "P32 s6": dict(hyperplanes=32, taps=6),
    "P16x2 s6": dict(hyperplanes=32, thresholds=2, taps=6),
    "P32x2 s6": dict(hyperplanes=64, thresholds=2, taps=6),
    "P16x2 s9 w7": dict(hyperplanes=32, thresholds=2, taps=9, weights=7),
    "P32 s9 w7": dict(hyperplanes=32, taps=9, weights=7),
    "P16x2 s6 both": dict(hyperplanes=32, thresholds=2, taps=6, augment="both"),
    "P16x2 s6 int4 L30": dict(hyperplanes=32, thresholds=2, taps=6, tables=30, count_bits=4),
    "P16x2 s6 stride 3": dict(hyperplanes=32, thresholds=2, taps=6, stride=(3,)),
    "P16x2 s9 w3": dict(hyperplanes=32, thresholds=2, taps=9, weights=3),
    "P32x2 s9 w7": dict(hyperplanes=64, thresholds=2, taps=9, weights=7),
    "P16x2 s9 w7 L7 K7": dict(hyperplanes=32, thresholds=2, taps=9, weights=7, tables=7, bits=7),
    "P16x2 s9 w7 stride 3": dict(hyperplanes=32, thresholds=2, taps=9, weights=7, stride=(3,)),
    "P16x2 s9 w7 both": dict(hyperplanes=32, thresholds=2, taps=9, weights=7, augment="both"),
    # levers of the issue on the chosen configuration: 2 regions, OR-pooling of bits over 2 positions, dilation 2,
    # a flat branch beside the window (11 tables + a flat L4 K6 P24), mixup only; and today's flat sketch (not run yet)
    "P16x2 s9 w7 regions 2 L7": dict(hyperplanes=32, thresholds=2, taps=9, weights=7, regions=2, tables=7),
    "P16x2 s9 w7 pool 2": dict(hyperplanes=32, thresholds=2, taps=9, weights=7, pool=(2,), stride=(1,)),
    "P16x2 s9 w7 dilation 2": dict(hyperplanes=32, thresholds=2, taps=9, weights=7, dilation=(2,)),
    "P16x2 s9 w7 L11 + flat L4 K6 P24 s8": dict(hyperplanes=32, thresholds=2, taps=9, weights=7, tables=11,
                                                 flat_branch=(4, 6, 24, 8)),
    "P16x2 s9 w7 mixup": dict(hyperplanes=32, thresholds=2, taps=9, weights=7, augment="mixup"),
    "flat L16 K6 P48 s8 (today)": dict(window=(), tables=16, bits=6, hyperplanes=48, taps=8),
    # each table reads 6 consecutive bits of the threshold-major packed hash word: a bucket is one shift and mask on
    # the device (no bit written to several tables' words)
    "P16x2 s9 w7 window selectors": dict(hyperplanes=32, thresholds=2, taps=9, weights=7, selectors="window"),
    # half the read-outs (the L x C lookup-adds): the bits of two neighbouring positions OR-ed, read once
    "P16x2 s9 w7 stride 2 pool 2": dict(hyperplanes=32, thresholds=2, taps=9, weights=7, pool=(2,)),
    # smaller tables, towards the flash of the small int8 Conv1D (3,924 bytes in the bench): 4-bit counts, fewer cells
    "P16x2 s9 w7 int4 (4,800)": dict(hyperplanes=32, thresholds=2, taps=9, weights=7, count_bits=4),
    "P16x2 s9 w7 int4 L8 K5 (1,280)": dict(hyperplanes=32, thresholds=2, taps=9, weights=7, count_bits=4, tables=8, bits=5),
    # shared rows (--codebook R): a row number per cell (1 byte) and R rows of 10 int8 counts
    "P16x2 s9 w7 codebook 256 (3,520)": dict(hyperplanes=32, thresholds=2, taps=9, weights=7, codebook=256),
    "P16x2 s9 w7 codebook 128 (2,240)": dict(hyperplanes=32, thresholds=2, taps=9, weights=7, codebook=128),
    "P16x2 s9 w7 L30 codebook 256 (4,480)": dict(hyperplanes=32, thresholds=2, taps=9, weights=7, tables=30, codebook=256),
}


def split(x, y, fraction=0.2, seed=0):
    """Stratified train/validation split of the training set (fixed seed)."""
    from sklearn.model_selection import train_test_split
    return train_test_split(x, y, test_size=fraction, random_state=seed, stratify=y)


def device_costs(sk, x, boards, workdir):
    """Median instructions per inference on each board, and the model's flash (firmware delta, bytes) on each as
    "<board> flash"; the device's scores must equal THE integer reference."""
    from edgesketch import codegen
    from edgesketch.bench import device
    from edgesketch.sketch import int_scores, quantize_inputs
    xq = quantize_inputs(sk, x)
    want, out = int_scores(sk, xq), {}
    for b in boards:
        r = device.run(b, codegen.generate(sk), xq, sk.n_inputs, sk.n_outputs, workdir, f"study-{b}")
        bad = np.flatnonzero((np.asarray(r.scores) != want).any(1))
        if len(bad):
            raise SystemExit(f"{b}: the device's scores differ from the integer reference on {len(bad)} of {len(xq)} inputs")
        out[b], out[f"{b} flash"] = r.instructions, r.flash
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="mnist1d")
    ap.add_argument("--teacher", default="build/teachers/mnist1d-cnn.keras")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--only", nargs="+", help="candidate names")
    ap.add_argument("--final", help="distil this candidate on the whole training set and report the test set")
    ap.add_argument("--epochs", type=int, help="epochs per phase for every candidate (default: the family's)")
    ap.add_argument("--budget", type=int, default=10240, help="table + hashing bytes allowed")
    ap.add_argument("--device", nargs="*", default=[], help="emulated boards to measure instructions "
                    "and flash on (the last seed's sketch)")
    ap.add_argument("--transfer", help="an .npz of unlabelled inputs (x) for every candidate (examples/studies/mnist1d_transfer.py)")
    ap.add_argument("--json", default="build/study/windowed_study.json")
    a = ap.parse_args(argv)
    ds = esdata.load(a.data)
    teacher = T.load(a.teacher)
    transfer = None if not a.transfer else np.load(a.transfer)["x"].astype(np.float32).reshape(-1, int(np.prod(teacher.input_shape)))
    fam = family_defaults(teacher.input_shape)
    two_d = len(teacher.input_shape) == 3
    cands, base = (CANDIDATES2, BASE2) if two_d else (CANDIDATES, BASE)
    names = [a.final] if a.final else (a.only or list(cands))
    unknown = [n for n in names if n not in cands]
    if unknown:
        sys.exit(f"unknown candidates {unknown}; choose from {list(cands)}")
    if a.final:
        xfit, yfit, xev, yev, what = ds.x_train, ds.y_train, ds.x_test, ds.y_test, "test"
    else:
        xfit, xev, yfit, yev = split(ds.x_train, ds.y_train)
        what = "validation"
    rows = []
    for name in names:
        kw = {**fam, **base, "flat_branch": (), **cands[name]}   # a flat branch only where the candidate names one
        if not kw.get("window"):   # today's flat sketch: distill's defaults but for the candidate's own fields
            kw = dict(cands[name])
        if a.epochs:
            kw.update(epochs=a.epochs, refit_epochs=max(1, a.epochs // 2))
        accs, flts, secs, sk = [], [], [], None
        for seed in a.seeds:
            t0 = time.time()
            sk = distill(teacher, xfit, Config(seed=seed, **kw), {"source": a.data, "input_shape": list(teacher.input_shape)},
                         transfer=transfer)
            secs.append(time.time() - t0)
            m = evaluate.evaluate(sk, xev, yev)
            accs.append(m["int_accuracy"]); flts.append(m["float_accuracy"])
            print(f"{name} seed {seed}: {what} int {accs[-1]:.4f} float {flts[-1]:.4f} ({secs[-1]:.0f} s)", flush=True)
        nbytes = sk.table_bytes + sk.projection_bytes
        row = dict(name=name, config=kw, what=what, transfer=a.transfer, seeds=a.seeds, int=accs, float=flts, mean=float(np.mean(accs)),
                   spread=float(np.max(accs) - np.min(accs)), float_mean=float(np.mean(flts)), table_bytes=sk.table_bytes,
                   hash_bytes=sk.projection_bytes, over_budget=nbytes > a.budget, ops=sk.ops_per_inference,
                   seconds=float(np.mean(secs)))
        if a.device:
            row["instructions"] = device_costs(sk, xev[:100], a.device, Path("build/study/fw"))
        rows.append(row)
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(rows, indent=1, default=str))
    boards = a.device
    print(f"\n| candidate | {what} int accuracy, mean (min-max) over seeds {a.seeds} | float | table + hashing bytes | "
          f"ops | " + "".join(f"{b} instr | " for b in boards) + (f"{boards[0]} flash (fw delta) | " if boards else "") + "distil s |")
    print("|---|---|---|---|---|" + "---|" * (len(boards) + bool(boards)) + "---|")
    for r in rows:
        print(f"| {r['name']} | {r['mean']:.4f} ({min(r['int']):.4f}-{max(r['int']):.4f}) | {r['float_mean']:.4f} | "
              f"{r['table_bytes']:,} + {r['hash_bytes']:,}{' (over budget)' if r['over_budget'] else ''} | {r['ops']:,} | "
              + "".join(f"{r.get('instructions', {}).get(b, 0):,} | " for b in boards)
              + (f"{r.get('instructions', {}).get(boards[0] + ' flash', 0):,} | " if boards else "") + f"{r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
