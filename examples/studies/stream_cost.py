"""What a hop of a live stream costs on the device against a whole window (issue 35): for each sketch, board, hop and
stream state, the model's stream is exported, built and run under QEMU (-icount: exact instruction counts) on the
sketch's test windows laid end to end, every hop's outputs checked bit for bit against Model.predict_stream_int.

    python examples/studies/stream_cost.py build/stream/mnist1d-valid-s0.esk --boards qemu-m4 qemu-m0 qemu-uno
    python examples/studies/stream_cost.py MODEL.esk --hops 2 4 8 --states keep recompute --limit 50 --json out.json

Prints one row per run: instructions per hop (median), a whole window through es_predict_q, the ratio, the first
window's fill, the stream state's RAM (codegen.stream_ram) and whether every hop agreed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sketches", nargs="+", metavar="MODEL.esk")
    ap.add_argument("--boards", nargs="+", default=["qemu-m4"])
    ap.add_argument("--hops", nargs="+", type=int, default=None, help="default: the sketch's stride x pool")
    ap.add_argument("--states", nargs="+", default=["keep", "recompute"], choices=["keep", "recompute"])
    ap.add_argument("--layout", default="unrolled", choices=["unrolled", "compact"])
    ap.add_argument("--limit", type=int, default=50, help="test windows laid end to end (default 50)")
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args(argv)

    from edgesketch import api, codegen, data
    from edgesketch.errors import UserError
    from rich.table import Table

    from edgesketch.report import out
    rows = []
    for path in a.sketches:
        m = api.load(path)
        sk = m.sketch
        x = data.load(sk.meta["source"]).x_test[:a.limit]
        b = next(b for b in sk.branches if not b.window.is_flat).window
        hops = a.hops or [b.stride[0] * b.pool_size]
        for board in a.boards:
            for hop in hops:
                for state in a.states:
                    try:
                        r = m.verify(board, x=x, layout=a.layout, hop=hop, stream=True, stream_state=state,
                                     progress=False)
                    except UserError as e:          # e.g. keep does not fit the Uno's RAM: a row that says so
                        rows.append(dict(sketch=Path(path).name, board=board, hop=hop, state=state, error=str(e)))
                        continue
                    st = r.stream
                    rows.append(dict(sketch=Path(path).name, board=board, hop=hop, state=state, hops=st["hops"],
                                     bit_exact=r.ok, per_hop=r.cost_median, window=st["window_cost"],
                                     fill=st["fill_cost"], ram=codegen.stream_ram(sk, hop, state)["total"],
                                     flash=r.flash, static_ram=r.static_ram))
    cols = ["sketch", "board", "hop", "state", "hops", "per hop", "whole window", "x less", "first fill",
            "state RAM", "bit-exact"]
    body = []
    for r in rows:
        if "error" in r:
            body.append([r["sketch"], r["board"], r["hop"], r["state"], "-", r["error"][:60], "", "", "", "", ""])
            continue
        ratio = f"{r['window'] / r['per_hop']:.1f}" if r["per_hop"] else "-"
        body.append([r["sketch"], r["board"], r["hop"], r["state"], f"{r['hops']:,}", f"{r['per_hop']:,.0f}",
                     f"{r['window']:,}", ratio, f"{r['fill']:,}", f"{r['ram']:,}", "yes" if r["bit_exact"] else "NO"])
    t = Table(title="instructions per hop of a stream against a whole window (QEMU -icount, exact)")
    for c in cols:
        t.add_column(c, justify="left" if c in ("sketch", "board", "state") else "right")
    for r in body:
        t.add_row(*map(str, r))
    out.print(t)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(r.get("bit_exact", True) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
