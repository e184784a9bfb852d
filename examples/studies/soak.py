"""Soak test (a script, not a test): many samples through tests/faultproxy.py (flipped and dropped bytes, frames
duplicated at once or late, resets mid-run) between the harness and an emulated board; every sample must come back
exactly once and bit-exact.

    python examples/studies/soak.py                                   # 100,000 samples on qemu-uno, then on qemu-m0
    python examples/studies/soak.py --boards qemu-m4 --samples 20000 --flip 0.0002
    python examples/studies/soak.py --boards qemu-m0 --samples 10000 --inputs 1500     # inputs larger than a frame
    python examples/studies/soak.py --boards qemu-uno --samples 2000 --inputs 192      # 64 x 3 windows, 160-byte frames

For each board: build the firmware of a random sketch offline with PlatformIO (--inputs 64 or less: a flat sketch,
5 outputs, L=8, K=4; more: a windowed one over --inputs / C steps of C channels, C = 3 when it divides --inputs and
--inputs <= 768, else 1, window 9, 8 tables of 5 bits over 16 hyperplanes of 9 taps), start QEMU, put the fault proxy
in front of its serial port and stream the samples with edgesketch.harness.Device.run: BATCH of the most the device
takes when an input fits a frame, else each input in LOAD frames and RUN. Then compare every sample's scores with the
integer reference (edgesketch.sketch.int_scores): the inputs are distinct random rows, so a lost, repeated or shifted
answer would show as a mismatch. Prints the faults the proxy injected and what the harness did to recover (resends,
restarted input transfers, timeouts, NAKs, bad frames, stale replies, BOOTs, HELLO probes). Exit code 1 if any sample
differs.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from edgesketch import boards, build, codegen, emulate, sketch  # noqa: E402
from edgesketch import protocol as P  # noqa: E402
from edgesketch.harness import Device  # noqa: E402
from tests.faultproxy import FaultProxy  # noqa: E402

FAULTS = ("flipped", "dropped", "garbage_bursts", "duplicated", "duplicated_late", "resets_injected")
RECOVERY = ("requests", "retries", "restarts", "timeouts", "naks", "bad_frames", "stale", "boots", "probes")


def soak_sketch(n_inputs: int) -> tuple[sketch.Sketch, str]:
    """The random sketch a soak runs, and a line saying what it is."""
    if n_inputs <= 64:
        return sketch.random_sketch(D=n_inputs, C=5, L=8, K=4, seed=11), f"flat, {n_inputs} inputs, 5 outputs, L=8, K=4"
    ch = 3 if n_inputs % 3 == 0 and n_inputs <= 768 else 1
    steps = n_inputs // ch
    if steps * ch != n_inputs:
        raise SystemExit(f"--inputs {n_inputs}: a windowed sketch needs a multiple of its channels")
    stride = max(2, steps // 64)
    win = sketch.Window.over((steps, ch), 9, stride)
    sk = sketch.random_sketch(L=0, C=5, seed=11, windows=[(win, 8, 5, 16, 9)])
    return sk, (f"windowed over {steps} x {ch} ({n_inputs} inputs), window 9 stride {stride}: {win.n_positions} "
                f"positions, 16 hyperplanes of 9 taps, 8 tables of 5 bits, 5 outputs")


def soak(board_name: str, n: int, seed: int, flip: float, drop: float, dup: float, dup_late: float, reset_every: int,
         n_inputs: int, work: Path) -> dict:
    board = boards.load(board_name)
    sk, what = soak_sketch(n_inputs)
    files = codegen.generate(sk, layout="compact" if n_inputs > 64 else "unrolled")
    ids = re.search(r"ES_MODEL_ID_BYTES\s+\{([^}]*)\}", files["es_model.h"]).group(1)
    model_id = bytes(int(v, 16) for v in ids.split(","))
    elf = build.run_pio(build.write_project(board, files, work / board_name / "proj"), build.default_core_dir())
    x = np.random.default_rng(seed).integers(-128, 128, (n, sk.n_inputs)).astype(np.int8)
    ref = sketch.int_scores(sk, x)
    # resets every reset_every host frames, from frame 20 on (the handshake and the first batches go through clean)
    resets = range(20, 10 * n, reset_every) if reset_every else ()
    done = [0]

    def progress(i, total):
        if i - done[0] >= total // 20 or i == total:
            done[0] = i
            print(f"  {board_name}: {i:,}/{total:,}", flush=True)

    t0 = time.monotonic()
    with emulate.qemu(board, elf) as url, \
            FaultProxy(("127.0.0.1", url.port), seed=seed, flip=flip, drop=drop, dup=dup, dup_delayed=dup_late,
                       reset_at=resets) as px, \
            Device(px.url, model_id=model_id, timeout=0.5, retries=20) as dev:
        scores, costs = dev.run(x, progress=progress)
        seconds = time.monotonic() - t0
        stats, counts, info = dev.stats, dict(px.counts), dev.info
    bad = np.flatnonzero((scores != ref).any(1))
    how = (f"BATCH of {P.batch_limit(info)}" if P.batch_limit(info) >= 1 else
           f"LOAD in {len(P.load_pieces(info.n_inputs, info.max_body))} frames + RUN ({info.max_body}-byte frames)")
    return dict(board=board_name, samples=n, inputs=n_inputs, sketch=what, bit_exact=int(n - len(bad)),
                first_mismatch=bad[:5].tolist(), how=how, seconds=round(seconds, 1),
                samples_per_second=round(n / seconds, 1), cost_min=int(costs.min()), cost_max=int(costs.max()),
                injected={k: counts[k] for k in FAULTS}, host_frames=counts["host_frames"],
                device_frames=counts["device_frames"], recovery={k: getattr(stats, k) for k in RECOVERY})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boards", nargs="+", default=["qemu-uno", "qemu-m0"])
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--flip", type=float, default=0.0001, help="per-byte probability, both directions")
    ap.add_argument("--drop", type=float, default=0.0001, help="per-byte probability, both directions")
    ap.add_argument("--dup", type=float, default=0.002, help="per-frame probability of an immediate copy, both directions")
    ap.add_argument("--dup-late", type=float, default=0.002,
                    help="per-frame probability of a late copy (after 1..4 later frames), both directions")
    ap.add_argument("--reset-every", type=int, default=500, help="a RESET injected every N host frames (0: none)")
    ap.add_argument("--inputs", type=int, default=32,
                    help="inputs of the random sketch (more than a frame holds: LOAD frames and RUN)")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args(argv)
    if not 1 <= a.inputs <= 65535 or a.samples < 1:
        ap.error("--inputs must be 1..65535 and --samples at least 1")
    results = []
    with tempfile.TemporaryDirectory(prefix="edgesketch-soak-") as tmp:
        for b in a.boards:
            r = soak(b, a.samples, a.seed, a.flip, a.drop, a.dup, a.dup_late, a.reset_every, a.inputs, Path(tmp))
            results.append(r)
            print(f"{b}: {r['bit_exact']:,} / {r['samples']:,} samples bit-exact, each answered once, "
                  f"{r['samples'] - r['bit_exact']} mismatches ({r['sketch']}; {r['how']}), {r['seconds']} s wall "
                  f"({r['samples_per_second']} samples/s); cost {r['cost_min']:,}..{r['cost_max']:,} instructions")
            print(f"  injected: {r['injected']} over {r['host_frames']:,} host and {r['device_frames']:,} device frames")
            print(f"  recovered by the harness: {r['recovery']}")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(r["bit_exact"] == r["samples"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
