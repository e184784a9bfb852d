"""Export: check a sketch fits a board, generate its C, and write a PlatformIO project (atomically)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import build, codegen
from .boards import Board
from .errors import UserError
from .sketch import Sketch

FIRMWARE_FLASH = 16 * 1024  # kept for the firmware around the model (protocol, UART, start-up)
FIRMWARE_RAM = 11 * 1024    # frame buffers and ring (6.2 KB bss) plus the 4 KB stack the linker reserves


@dataclass(frozen=True)
class Footprint:
    flash: int  # const tables + code of the model
    ram: int    # the model's own stack use


def footprint(sk: Sketch, layout: str) -> Footprint:
    """An upper estimate of the model's flash and RAM, from its shape (measured: unrolled code is about 11 bytes a
    tap and 16 a table on Thumb-2; the compact loop is under 600 bytes)."""
    code = 11 * sk.n_taps + 16 * sk.n_tables + 400 if layout == "unrolled" else 600
    data = sk.table_bytes + sk.projection_bytes + 12 * sk.n_inputs + 8 * sk.n_outputs + 2 * sum(
        b.window.n_positions for b in sk.branches if not b.window.is_flat)
    pad = max([b.window.padded_inputs for b in sk.branches if any(b.window.padding)], default=0)
    debug = 0 if sk.is_flat else sk.n_debug_bits + 2 * sk.n_debug_buckets   # the firmware's DEBUG buffers
    stack = 2 * sk.n_inputs + 4 * sk.n_outputs + 256 + pad + debug
    return Footprint(code + data, stack)


def check_fits(sk: Sketch, board: Board, layout: str) -> Footprint:
    fp = footprint(sk, layout)
    fix = (f"distil a smaller sketch (fewer --tables or --bits: tables take L*2^K*C = {sk.n_tables}*{1 << sk.n_bits}*{sk.n_outputs}"
           f" cells now) or pick a bigger board (edgesketch boards)")
    if fp.flash + FIRMWARE_FLASH > board.flash_bytes:
        raise UserError(f"the model needs about {fp.flash:,} bytes of flash plus {FIRMWARE_FLASH:,} for the firmware, "
                        f"but {board.name} has {board.flash_bytes:,}; {fix}")
    if fp.ram + FIRMWARE_RAM > board.ram_bytes:
        raise UserError(f"the model needs about {fp.ram:,} bytes of RAM plus {FIRMWARE_RAM:,} for the firmware, "
                        f"but {board.name} has {board.ram_bytes:,}; {fix}")
    return fp


def export(sk: Sketch, board: Board, out_dir: str | Path, layout: str = "unrolled", force: bool = False) -> tuple[Path, Footprint]:
    fp = check_fits(sk, board, layout)
    files = codegen.generate(sk, layout)
    return build.write_project(board, files, out_dir, force=force, model_id=sk.meta.get("model_id")), fp
