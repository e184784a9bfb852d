"""A long live stream through a windowed sketch on emulated boards, every hop checked bit for bit (issue 35): a
synthetic gesture recording (edgesketch.synthetic.stream: gestures of random classes with idle gaps) is quantised and
streamed through each board's firmware (Model.verify(hop=..., stream=...): export with the stream, build, QEMU,
STREAM frames); every hop's scores are compared with Model.predict_stream_int.

    python examples/studies/stream_soak.py build/stream/gestures-valid.esk --boards qemu-m0=100000 qemu-uno=100000 \\
        qemu-m4=10000 qemu-m3=10000 qemu-m7=10000 qemu-m55=10000 qemu-rv32=10000 qemu-lx106=10000

Prints a row per board: samples, hops, bit-exact hops, instructions per hop against a whole window, stream state,
seconds. Exits 1 on any mismatch.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sketch", metavar="MODEL.esk")
    ap.add_argument("--boards", nargs="+", default=["qemu-m0=100000", "qemu-uno=100000"], metavar="BOARD=SAMPLES")
    ap.add_argument("--hop", type=int, help="default: the windowed branch's stride x pool")
    ap.add_argument("--set", default="gestures", help="the synthetic set the recording is drawn from")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args(argv)

    from rich.table import Table

    from edgesketch import api, codegen, export, synthetic
    from edgesketch.report import out
    m = api.load(a.sketch)
    w = next(b for b in m.sketch.branches if not b.window.is_flat).window
    hop = a.hop or w.stride[0] * w.pool_size
    rows = []
    for spec in a.boards:
        board, n = spec.split("=") if "=" in spec else (spec, "10000")
        x, _ = synthetic.stream(a.set, int(n), a.seed)
        t0 = time.time()
        r = m.verify(board, hop=hop, stream=x, progress=False)
        st = r.stream
        state = export.stream_choice(m.sketch, hop, __import__("edgesketch.boards", fromlist=["load"]).load(board))
        rows.append(dict(board=board, samples=st["samples"], hops=st["hops"], bit_exact=r.bit_exact, ok=r.ok,
                         per_hop=r.cost_median, per_hop_max=r.cost_max, window=st["window_cost"], state=state,
                         state_ram=codegen.stream_ram(m.sketch, hop, state)["total"], retries=r.link.get("retries", 0),
                         seconds=round(time.time() - t0, 1)))
        print(json.dumps(rows[-1]), flush=True)
    t = Table(title=f"{a.sketch}: a {a.set} stream, hop {hop}, every hop against predict_stream_int")
    for c in ("board", "samples", "hops", "bit-exact", "instr. per hop", "whole window", "state", "state RAM", "s"):
        t.add_column(c, justify="left" if c in ("board", "state") else "right")
    for r in rows:
        t.add_row(r["board"], f"{r['samples']:,}", f"{r['hops']:,}", f"{r['bit_exact']:,}" + ("" if r["ok"] else " MISMATCH"),
                  f"{r['per_hop']:,.0f}", f"{r['window']:,}", r["state"], f"{r['state_ram']:,}", f"{r['seconds']:.0f}")
    out.print(t)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
