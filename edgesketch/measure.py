"""Measure a model on an emulated board (tune and the bench use it): build a firmware around any C model with the es_predict_q API, run a whole int8 test set through it under QEMU,
and read its size. The cost of each inference is the firmware's own counter (exact instruction counts under
QEMU -icount). Sizes: text+data (flash) and data+bss (static RAM) of the firmware minus the same firmware built
around a model that does nothing (the trivial model, same ES_N_INPUTS/ES_N_OUTPUTS); every firmware is built without
the DEBUG command (bench_board). Peak stack of es_predict_q: the firmware paints the stack below sp before each call
and scans it after (STACK request, docs/protocol.md)."""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from . import build, codegen, emulate, harness
from .boards import load

_trivial: dict = {}


@dataclass
class DeviceRun:
    board: str
    scores: np.ndarray | None
    costs: np.ndarray | None
    flash: int            # model: firmware text+data minus the trivial firmware's
    ram: int              # model: static data+bss minus the trivial firmware's
    fw_flash: int
    fw_ram: int
    stack: int | None = None   # peak stack of es_predict_q over the run, bytes (painted); None: not measured
    stack_full: bool = False   # the whole painted window was overwritten: stack is a lower bound

    @property
    def instructions(self) -> int | None:
        return None if self.costs is None else int(np.median(self.costs))


# The model's firmware is too big for the board: the linker reported a region overflow (edgesketch.build parses it:
# "does not fit: N bytes over in flash ...").
DoesNotFit = build.DoesNotFit


def bench_board(board: str):
    """The board as the bench builds it: without the DEBUG command (ES_DEBUG_RAM 0). DEBUG's arrays hold every hash bit
    and bucket of a windowed sketch (3,136 B for the 2-D default's 64 positions); they serve `verify`, not inference,
    and the bench measures the model, so no contender's firmware carries them."""
    b = load(board)
    return replace(b, firmware=replace(b.firmware, defines={**b.firmware.defines, "ES_DEBUG_RAM": "0"}))


def build_elf(board: str, files: dict[str, str], workdir: Path, tag: str) -> Path:
    """Build the firmware (bench_board); DoesNotFit if the linker finds it too big for the board's memory."""
    proj = Path(workdir) / f"{tag}-{board}"
    build.write_project(bench_board(board), files, proj, force=True)
    return build.run_pio(proj, build.default_core_dir())     # build.DoesNotFit when the linker refuses it


def trivial_files(n_inputs: int, n_outputs: int) -> dict[str, str]:
    ctx = dict(description="trivial model", model_id="0" * 32, model_id_bytes=["0x00"] * 8, D=n_inputs, C=n_outputs)
    return {"es_model.h": codegen.render("bench/int8_mlp.h.j2", **ctx), "es_model.c": codegen.render("bench/trivial.c.j2", **ctx)}


def trivial_size(board: str, n_inputs: int, n_outputs: int, workdir: Path) -> build.ElfSize:
    key = (board, n_inputs, n_outputs)
    if key not in _trivial:
        _trivial[key] = build.elf_size(build_elf(board, trivial_files(n_inputs, n_outputs), workdir, f"trivial{n_inputs}x{n_outputs}"))
    return _trivial[key]


def run(board: str, files: dict[str, str], xq: np.ndarray | None, n_inputs: int, n_outputs: int, workdir: Path,
        tag: str, keep: bool = False) -> DeviceRun:
    """Build, measure sizes, and (if xq is given) run every row of xq on the emulated board."""
    workdir = Path(workdir)
    elf = build_elf(board, files, workdir, tag)
    size = build.elf_size(elf)
    base = trivial_size(board, n_inputs, n_outputs, workdir)
    scores = costs = stack = None
    full = False
    if xq is not None:
        with emulate.qemu(board, elf) as url, harness.Device(url, timeout=5.0) as dev:
            scores, costs = dev.run(np.asarray(xq, np.int8))
            st = dev.stack()
            stack, full = (st.peak, st.full) if st.measured else (None, False)
    if not keep:
        shutil.rmtree(elf.parents[3], ignore_errors=True)
    return DeviceRun(board, scores, costs, size.flash - base.flash, size.ram - base.ram, size.flash, size.ram, stack, full)


def host_run(files: dict[str, str], main_c: str, args: list[str], stdin: bytes, workdir: Path | None = None):
    """Compile the model's files (with the runtime they include, codegen.runtime_files) and a driver `main_c` with the
    host gcc (-O2), run it with `args` and `stdin`, and return the finished process (stdout, stderr as bytes)."""
    import subprocess
    tmp = Path(tempfile.mkdtemp(prefix="es-host-", dir=workdir))
    files = {**codegen.runtime_files(), **files}
    try:
        for k, v in files.items():
            (tmp / k).write_text(v)
        (tmp / "main.c").write_text(main_c)
        cs = [str(tmp / k) for k in files if k.endswith(".c")]
        subprocess.run(["gcc", "-O2", "-std=c99", "-o", str(tmp / "drv"), str(tmp / "main.c"), *cs, "-lm"], check=True,
                       capture_output=True)
        return subprocess.run([str(tmp / "drv"), *args], input=stdin, capture_output=True, check=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def host_check(files: dict[str, str], xq: np.ndarray, n_outputs: int, workdir: Path | None = None) -> np.ndarray:
    """Compile the model with the host gcc (-O2) into a small driver and return its scores on every row of xq."""
    main_c = ("#include <stdio.h>\n#include \"es_model.h\"\nint main(void){int8_t x[ES_N_INPUTS];int32_t s[ES_N_OUTPUTS];\n"
              "while(fread(x,1,ES_N_INPUTS,stdin)==ES_N_INPUTS){es_predict_q(x,s);fwrite(s,4,ES_N_OUTPUTS,stdout);}return 0;}\n")
    out = host_run(files, main_c, [], np.ascontiguousarray(xq, np.int8).tobytes(), workdir).stdout
    return np.frombuffer(out, np.int32).reshape(-1, n_outputs)
