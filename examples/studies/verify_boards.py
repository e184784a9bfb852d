"""Sketches on every emulated board: each .esk exported, built and run under QEMU on its first --limit test inputs,
every score compared with the integer reference. Prints a markdown table (bit-exact / run, instructions median, flash
bytes) and exits 1 on any mismatch or failed build.

    python examples/studies/verify_boards.py build/study/kept/*.esk --limit 50
    python examples/studies/verify_boards.py a.esk --boards qemu-m0 qemu-uno
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main(argv=None):
    import edgesketch as es
    from edgesketch import boards
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", metavar="MODEL.esk")
    ap.add_argument("--boards", nargs="+", default=[b for b in boards.names() if b.startswith("qemu-")])
    ap.add_argument("--limit", type=int, default=50)
    a = ap.parse_args(argv)
    print("| model | kind | " + " | ".join(a.boards) + " |\n|---|---|" + "---|" * len(a.boards), flush=True)
    bad = 0
    for path in a.models:
        m = es.load(path)
        cells = []
        for b in a.boards:
            try:
                r = m.verify(board=b, limit=a.limit, progress=False)
                cells.append(f"{r.bit_exact}/{r.n} exact, {r.cost_median:,.0f} instr, {r.flash:,} B")
                bad += not r.ok
            except Exception as e:   # noqa: BLE001 - a failed build or run is a row entry, and the exit status
                cells.append(f"FAILED: {str(e).splitlines()[0][:80]}")
                bad += 1
        kind = "flat" if m.sketch.is_flat else f"{m.sketch.branches[0].window.n_readouts} read-outs"
        print(f"| {Path(path).name} | {kind} | " + " | ".join(cells) + " |", flush=True)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
