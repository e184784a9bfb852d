"""How small can an int8 Conv1D be at a given accuracy on mnist1d? The peer of a sketch distilled from a Conv1D teacher.

    python examples/studies/cnn_baseline.py                       # the grid, then seeds 0-2 of the Pareto points
    python examples/studies/cnn_baseline.py --archs c8k9s2-gap c8k9s2-c16k5s2-gap --seeds 0 1 2
    python examples/studies/cnn_baseline.py --tune                # the training recipe, on a validation split of the training set

For the mnist1d Conv1D teacher (build/teachers/mnist1d-cnn.keras, trained by examples/studies/teachers.py if missing), every
architecture of the grid (1 or 2 Conv1D layers, 4 to 32 filters, kernel 5 or 9, stride 1 or 2, global average pooling
or flatten, then Dense(10)) is distilled with edgesketch.bench.cnn on the default augmentation (Config(): mixup to
40,000 samples relabelled by the teacher), quantised to int8 and run on qemu-m4 (the SMLAD kernel) through
edgesketch.bench.device's firmware, every test sample checked bit for bit against Int8CNN.forward. Instructions are
exact QEMU -icount counts (median over the test set; not cycles). The Pareto points of (M4 instructions, int8 accuracy)
are then distilled with the other seeds and run on qemu-m4 and qemu-m0; the last table gives means over the seeds and
the smallest architecture (by M4 instructions) whose mean int8 accuracy reaches each target.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "examples" / "studies")]

import numpy as np  # noqa: E402

from edgesketch import data, teacher as T  # noqa: E402
from edgesketch.bench import cnn, device, run as bench  # noqa: E402

GRID = (  # one conv, stride 2
    [f"c{c}k{k}s2-{p}" for p in ("gap", "flatten") for c in (4, 8, 16, 32) for k in (5, 9)]
    # one conv, stride 1
    + ["c8k9s1-gap", "c16k9s1-gap", "c8k5s1-flatten"]
    # two convs, kernel 9 then 5, strides 2 and 2
    + [f"c{a}k9s2-c{b}k5s2-gap" for a, b in ((4, 8), (8, 8), (8, 16), (16, 16), (16, 32), (32, 32))]
    + [f"c{a}k9s2-c{b}k5s2-flatten" for a, b in ((4, 8), (8, 16), (16, 32))]
    # kernel 5 twice; stride 1 then 2
    + ["c8k5s2-c16k5s2-gap", "c8k9s1-c16k5s2-gap", "c16k9s1-c32k5s2-gap"]
    # small two-conv nets between 10k and 25k M4 instructions (where the first pass found the 0.85-0.93 points)
    + ["c4k5s2-c8k5s2-gap", "c8k5s2-c8k5s2-gap", "c4k5s2-c16k5s2-gap", "c4k9s2-c16k5s2-gap", "c16k5s2-c16k5s2-gap"])
TARGETS = (0.85, 0.88, 0.90, 0.92)
MODELS: dict = {}   # (arch, seed) -> (C files, int8 test inputs, reference scores)


def log(*a):
    print(*a, flush=True)


def one(tch, ds, arch, seed, boards, workdir, epochs, lr):
    """Distil arch with seed, quantise, run on boards over the whole test set (asserting bit-exactness)."""
    t0 = time.time()
    net, f = cnn.build(tch, ds.x_train, arch, seed=seed, epochs=epochs, lr=lr)
    secs = time.time() - t0
    xq = net.quantize_inputs(ds.x_test)
    ref = net.forward(xq)
    r = dict(arch=str(cnn.Arch.parse(arch)), seed=seed, macs=net.macs, weight_bytes=net.weight_bytes,
             float_acc=float(np.mean(f.forward(ds.x_test).argmax(1) == ds.y_test)),
             int8_acc=float(np.mean(ref.argmax(1) == ds.y_test)), distil_s=secs)
    files = cnn.generate(net)
    MODELS[(r["arch"], seed)] = (files, xq, ref)
    for b in boards:
        d = device.run(b, files, xq, net.n_inputs, net.n_outputs, workdir, f"cnn-{seed}")
        assert (d.scores == ref).all(), f"{arch} seed {seed} on {b}: {int((d.scores != ref).any(1).sum())} samples differ"
        r[b] = d.instructions
        if b == "qemu-m4":
            r.update(flash=d.flash, ram=d.ram, stack=d.stack)
    log(f"  {r['arch']:<26} seed {seed}: float {r['float_acc']:.4f} int8 {r['int8_acc']:.4f}  {r['macs']:>7,} MACs "
        f"{r['weight_bytes']:>6,} B  " + "  ".join(f"{b} {r[b]:,}" for b in boards) + f"  ({secs:.0f} s distil)")
    return r


def pareto(rows, cost="qemu-m4", acc="int8_acc"):
    front = bench._pareto([(r[cost], r[acc]) for r in rows])
    return [r for r in sorted(rows, key=lambda r: r[cost]) if (r[cost], r[acc]) in front]


def tune(tch, ds, archs):
    """The recipe: lr x epochs x batch norm on an 80/20 split of the training set (never the test set)."""
    rng = np.random.default_rng(123)
    p = rng.permutation(len(ds.x_train))
    tr, va = p[:int(0.8 * len(p))], p[int(0.8 * len(p)):]
    log("| architecture | batch norm | epochs | lr | validation int8 accuracy |\n|---|---|---|---|---|")
    for arch in archs:
        for bn, ep, lr in ((False, 30, 3e-3), (False, 30, 3e-2), (False, 30, 0.1), (True, 30, 3e-3), (True, 30, 0.01),
                           (True, 30, 0.05), (True, 60, 0.05)):
            net, _ = cnn.build(tch, ds.x_train[tr], arch, seed=0, epochs=ep, lr=lr, bn=bn)
            a = float(np.mean(net.forward(net.quantize_inputs(ds.x_train[va])).argmax(1) == ds.y_train[va]))
            log(f"| {arch} | {'yes' if bn else 'no'} | {ep} | {lr:g} | {a:.4f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", default=str(ROOT / "build" / "teachers" / "mnist1d-cnn.keras"))
    ap.add_argument("--archs", nargs="+", default=GRID, help="architectures (default: the grid)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds for the Pareto points")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--min-acc", type=float, default=0.78, help="seeds only for Pareto points at least this accurate")
    ap.add_argument("--json", default=None, help="write every row here")
    ap.add_argument("--tune", action="store_true", help="only the recipe study on a validation split")
    a = ap.parse_args(argv)
    import teachers
    if not Path(a.teacher).exists():
        teachers.ensure("mnist1d-cnn", str(Path(a.teacher).parent))
    t_start = time.time()
    ds = data.load("mnist1d")
    tch = T.load(a.teacher)
    t_acc = float(np.mean(tch.outputs(ds.x_test).argmax(1) == ds.y_test))
    log(f"teacher {a.teacher}: test accuracy {t_acc:.4f}")
    if a.tune:
        tune(tch, ds, ["c16k9s2-gap", "c8k5s2-c16k5s2-gap"])
        return 0
    work = Path(tempfile.mkdtemp(prefix="cnn-baseline-"))
    rows = []
    log(f"grid: {len(a.archs)} architectures, seed {a.seeds[0]}, on qemu-m4")
    for arch in a.archs:
        rows.append(one(tch, ds, arch, a.seeds[0], ("qemu-m4",), work, a.epochs, a.lr))
    front = pareto(rows)
    log(f"Pareto points (M4 instructions, int8 accuracy): {', '.join(r['arch'] for r in front)}")
    seeded = []
    for r0 in [r for r in front if r["int8_acc"] >= a.min_acc]:
        seeded.append([])
        for s in a.seeds:
            if s == r0["seed"]:     # already distilled and run on M4: the M0 run only
                files, xq, ref = MODELS[(r0["arch"], s)]
                d = device.run("qemu-m0", files, xq, xq.shape[1], ref.shape[1], work, f"cnn-{s}")
                assert (d.scores == ref).all(), f"{r0['arch']} seed {s} on qemu-m0 differs from Int8CNN.forward"
                seeded[-1].append(dict(r0, **{"qemu-m0": d.instructions}))
                log(f"  {r0['arch']:<26} seed {s}: qemu-m0 {d.instructions:,}")
            else:
                seeded[-1].append(one(tch, ds, r0["arch"], s, ("qemu-m4", "qemu-m0"), work, a.epochs, a.lr))
    total = time.time() - t_start

    log(f"\n## Every architecture, seed {a.seeds[0]} (teacher {t_acc:.4f}; * Pareto point)\n")
    log("| architecture | MACs | weight bytes | flash (M4 fw delta) | float acc | int8 acc | M4 instr |\n|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: r["qemu-m4"]):
        star = " *" if r in front else ""
        log(f"| {r['arch']}{star} | {r['macs']:,} | {r['weight_bytes']:,} | {r['flash']:,} | {r['float_acc']:.4f} | "
            f"{r['int8_acc']:.4f} | {r['qemu-m4']:,} |")
    means = []
    for group in seeded:
        m = dict(arch=group[0]["arch"], macs=group[0]["macs"], weight_bytes=group[0]["weight_bytes"],
                 flash=int(np.mean([g["flash"] for g in group])), n=len(group),
                 **{k: float(np.mean([g[k] for g in group])) for k in ("float_acc", "int8_acc", "qemu-m4", "qemu-m0")},
                 int8_accs=[g["int8_acc"] for g in group])
        means.append(m)
    log(f"\n## Pareto points with int8 accuracy >= {a.min_acc} at seed {a.seeds[0]}: mean over seeds "
        f"{' '.join(map(str, a.seeds))} (qemu-m4 and qemu-m0, every test sample bit-exact)\n")
    log("| architecture | MACs | weight bytes | flash (M4) | float acc | int8 acc (per seed) | M4 instr | M0 instr |\n"
        "|---|---|---|---|---|---|---|---|")
    for m in means:
        log(f"| {m['arch']} | {m['macs']:,} | {m['weight_bytes']:,} | {m['flash']:,} | {m['float_acc']:.4f} | "
            f"{m['int8_acc']:.4f} ({' '.join(f'{v:.3f}' for v in m['int8_accs'])}) | {m['qemu-m4']:,.0f} | "
            f"{m['qemu-m0']:,.0f} |")
    log("\n## Smallest int8 CNN (by M4 instructions) whose mean int8 accuracy reaches each target\n")
    log("| target | architecture | int8 acc (mean) | MACs | weight bytes | M4 instr | M0 instr |\n|---|---|---|---|---|---|---|")
    for tgt in TARGETS:
        ok = [m for m in means if m["int8_acc"] >= tgt]
        if not ok:
            log(f"| {tgt:.2f} | none of the Pareto points | | | | | |")
            continue
        m = min(ok, key=lambda m: m["qemu-m4"])
        log(f"| {tgt:.2f} | {m['arch']} | {m['int8_acc']:.4f} | {m['macs']:,} | {m['weight_bytes']:,} | "
            f"{m['qemu-m4']:,.0f} | {m['qemu-m0']:,.0f} |")
    log(f"\n{len(rows) + sum(len(g) for g in seeded)} distils in {total / 60:.1f} min")
    if a.json:
        Path(a.json).write_text(json.dumps(dict(teacher_acc=t_acc, grid=rows, seeded=seeded, means=means,
                                                seconds=total), indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
