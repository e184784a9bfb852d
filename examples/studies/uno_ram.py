"""The Uno's firmware footprint, measured (the figures behind boards/uno.toml and boards/qemu-uno.toml [footprint]).

    python examples/studies/uno_ram.py                 # builds 4 models for qemu-uno and an uno stand-in, runs 3 under QEMU

For each model (the stand-in of tests/fixtures/standin_model, flat 32 and 64 inputs, a 64 x 3 windowed one of 192):
  - build the firmware offline for qemu-uno and for a stand-in of the real uno (qemu-uno's toolchain and Arduino core
    with boards/uno.toml's counter and defines: PlatformIO's atmelavr needs internet), and print avr-size's flash
    (text + data) and static RAM (data + bss), the latter split into the per-model arrays of es_app.c (es_input,
    es_scores, es_bits, es_buckets) and the rest, the firmware's own;
  - on qemu-uno, stream 40 random inputs (BATCH, or LOAD + RUN), dump SRAM with QEMU's monitor (pmemsave) and find the
    deepest stack byte: the lowest byte above __heap_start (the end of .bss) that is neither 0 (QEMU's RAM starts
    zeroed) nor 0xA5 (es_measure's painted window). A pushed 0 or 0xA5 can hide a byte, so it is a close lower bound.
    Minus the model's own peak (the STACK reply) it gives the stack the firmware takes outside es_predict_q.
"""
from __future__ import annotations

import dataclasses
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from edgesketch import boards, build, codegen, emulate, esk, sketch  # noqa: E402
from edgesketch.harness import Device  # noqa: E402

MODELS = {
    "stand-in": None,
    "flat 32": dict(D=32, C=5, L=8, K=4, seed=11),
    "flat 64": dict(D=64, C=10, L=16, K=6, seed=11, P=48, taps=8),
    "64 x 3 window": dict(L=0, seed=5, windows=[(sketch.Window.over((64, 3), 9, 2), 8, 5, 16, 9)]),
}
PER_MODEL = ("es_input", "es_scores", "es_bits", "es_buckets")


def sizes(elf: Path) -> tuple[int, int, int]:
    """flash, static RAM and the per-model arrays' share of it."""
    s = build.elf_size(elf)
    nm = subprocess.run(["avr-nm", "-S", str(elf)], capture_output=True, text=True, check=True).stdout
    arrays = sum(int(f[1], 16) for f in map(str.split, nm.splitlines()) if len(f) == 4 and f[3] in PER_MODEL)
    return s.flash, s.ram, arrays


def deepest_stack(elf: Path, sk: sketch.Sketch, n: int = 40) -> tuple[int, int]:
    """(bytes of stack written at the deepest point, the model's own peak from STACK) on qemu-uno."""
    nm = subprocess.run(["avr-nm", str(elf)], capture_output=True, text=True, check=True).stdout
    heap = int(re.search(r"^([0-9a-f]+) . __heap_start$", nm, re.M).group(1), 16) & 0xFFFF
    with tempfile.TemporaryDirectory() as tmp:
        mon, dump = Path(tmp) / "mon.sock", Path(tmp) / "sram.bin"
        x = np.random.default_rng(0).integers(-128, 128, (n, sk.n_inputs)).astype(np.int8)
        with emulate.qemu("qemu-uno", elf, extra_args=["-monitor", f"unix:{mon},server=on,wait=off"]) as url:
            with Device(url, timeout=5) as dev:
                scores, _ = dev.run(x)
                if not (scores == sketch.int_scores(sk, x)).all():
                    raise SystemExit("the device's scores differ from the integer reference")
                peak = dev.stack().peak
            m = socket.socket(socket.AF_UNIX)
            m.connect(str(mon))
            time.sleep(0.3)
            m.recv(65536)
            m.sendall(f'pmemsave 0x800100 0x800 "{dump}"\n'.encode())   # SRAM: 0x100..0x8ff in data space
            for _ in range(50):
                if dump.is_file() and dump.stat().st_size == 0x800:
                    break
                time.sleep(0.1)
            m.close()
        ram = bytes(0x100) + dump.read_bytes()
    low = next(a for a in range(heap, 0x900) if ram[a] not in (0, 0xA5))
    return 0x900 - low, peak


def main() -> int:
    import test_build
    qu, uno = boards.load("qemu-uno"), boards.load("uno")
    uno_like = dataclasses.replace(qu, name="uno-standin", counter=uno.counter,
                                   firmware=dataclasses.replace(qu.firmware, defines=dict(uno.firmware.defines)))
    with tempfile.TemporaryDirectory(prefix="edgesketch-uno-ram-") as tmp:
        for name, kw in MODELS.items():
            sk = None if kw is None else sketch.random_sketch(**kw)
            if sk is not None:
                esk.assign_id(sk)
            files = test_build.standin_model() if sk is None else codegen.generate(sk, layout="compact")
            for board in (qu, uno_like):
                proj = build.write_project(board, files, Path(tmp) / f"{board.name}-{len(list(Path(tmp).iterdir()))}")
                elf = build.run_pio(proj, build.default_core_dir())
                flash, ram, arrays = sizes(elf)
                line = (f"{board.name:12s} {name:14s} flash {flash:6,}  static RAM {ram:5,} = {arrays:4} per-model "
                        f"arrays + {ram - arrays} firmware")
                if board is qu and sk is not None:
                    stack, peak = deepest_stack(elf, sk)
                    line += f"; stack {stack} at the deepest point, {peak} of them es_predict_q's: {stack - peak} outside"
                print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
