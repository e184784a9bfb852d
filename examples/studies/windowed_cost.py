"""What a windowed sketch costs on the device, by structure: ternary taps against small integer tap weights, one
threshold or two per projection, both code layouts, on qemu-m4 and qemu-m0 (QEMU -icount, exact instruction counts).

    python examples/studies/windowed_cost.py                      # the mnist1d geometry (40 x 1, window 9, stride 2, L15 K6)
    python examples/studies/windowed_cost.py --boards qemu-m4     # one board

The sketches are random (sketch.random_sketch, seed 1): the generated code and its cost depend on the structure
(positions, taps, weights, tables), not on the values the distillation would learn. Every run is checked bit for bit
against the numpy integer reference. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402

from edgesketch import codegen  # noqa: E402
from edgesketch.bench import device  # noqa: E402
from edgesketch.sketch import Window, int_scores, random_sketch  # noqa: E402

W = Window.over((40, 1), 9, 2)
CASES = {   # name: random_sketch arguments (windows: (Window, L, K, P, taps))
    "P16x2 s9 w7 (default)": dict(thresholds=2, weights=7, windows=[(W, 15, 6, 32, 9)]),
    "P16x2 s9 w7 window selectors": dict(thresholds=2, weights=7, selectors="window", windows=[(W, 15, 6, 32, 9)]),
    "P16x2 s9 ternary": dict(thresholds=2, windows=[(W, 15, 6, 32, 9)]),
    "P16x2 s6 ternary": dict(thresholds=2, windows=[(W, 15, 6, 32, 6)]),
    "P32 s6 ternary": dict(windows=[(W, 15, 6, 32, 6)]),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--boards", nargs="+", default=["qemu-m4", "qemu-m0"])
    ap.add_argument("--layouts", nargs="+", default=["unrolled", "compact"])
    a = ap.parse_args(argv)
    xq = np.random.default_rng(0).integers(-128, 128, (30, 40)).astype(np.int8)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name, kw in CASES.items():
            sk = random_sketch(L=0, seed=1, **kw)
            for layout in a.layouts:
                runs = {}
                for b in a.boards:
                    r = device.run(b, codegen.generate(sk, layout), xq, 40, 10, Path(work), "cost")
                    assert np.array_equal(r.scores, int_scores(sk, xq)), f"{name} {layout} on {b}: not bit-exact"
                    runs[b] = r
                    print(f"{name} {layout} {b}: {r.instructions:,} instructions, flash {r.flash:,} B", flush=True)
                rows.append((name, layout, sk.ops_per_inference, runs))
    print("\n| sketch | layout | ops | " + " | ".join(f"{b} instr | {b} flash" for b in a.boards) + " |")
    print("|---|---|---|" + "---|---|" * len(a.boards))
    for name, layout, ops, runs in rows:
        print(f"| {name} | {layout} | {ops:,} | " + " | ".join(f"{runs[b].instructions:,} | {runs[b].flash:,}" for b in a.boards) + " |")


if __name__ == "__main__":
    main()
