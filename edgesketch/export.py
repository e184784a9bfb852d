"""Export: check a sketch fits a board, generate its C, and write a PlatformIO project (atomically)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import build, codegen
from .boards import Board, FootprintModel
from .errors import UserError
from .sketch import Sketch


@dataclass(frozen=True)
class Footprint:
    flash: int  # const tables + code of the model
    ram: int    # the model's own stack use, and the per-model arrays of the firmware (hash bits, buckets, scores)


def footprint(sk: Sketch, layout: str, board: Board | None = None) -> Footprint:
    """An upper estimate of the model's flash and RAM, from its shape and the board's [footprint] (boards.py; without
    a board, Thumb-2's: unrolled code is about 11 bytes a tap and 16 a table, the compact loop under 600 bytes; AVR
    needs about twice that, and 38 bytes a table and output). Tables and every const array count as flash: on AVR
    too, where the generated C keeps them in program memory. Windowed branches add their position offsets (flash),
    a padded copy of the input (stack) and the firmware's DEBUG arrays of every position (RAM)."""
    fm = board.footprint if board is not None else FootprintModel()
    code = fm.code(sk.n_taps, sk.n_tables, sk.n_outputs, layout)
    data = sk.table_bytes + sk.projection_bytes + 12 * sk.n_inputs + 8 * sk.n_outputs + 2 * sum(
        b.window.n_positions for b in sk.branches if not b.window.is_flat)
    pad = max([b.window.padded_inputs for b in sk.branches if any(b.window.padding)], default=0)
    stack = 2 * sk.n_inputs + 4 * sk.n_outputs + 256 + pad
    debug = sk.n_debug_bits + 2 * sk.n_debug_buckets        # the firmware's DEBUG arrays, unless the board caps them
    cap = (board.firmware.defines or {}).get("ES_DEBUG_RAM") if board is not None else None
    if cap is not None and debug > int(str(cap).rstrip("uU")):
        debug = 0
    return Footprint(code + data, stack + debug + 4 * sk.n_outputs)


def check_fits(sk: Sketch, board: Board, layout: str) -> Footprint:
    fp = footprint(sk, layout, board)
    fm = board.footprint
    fix = (f"distil a smaller sketch (fewer --tables or --bits: tables take L*2^K*C = {sk.n_tables}*{1 << sk.n_bits}*{sk.n_outputs}"
           f" cells now){', try --layout compact' if layout == 'unrolled' else ''} or pick a bigger board (edgesketch boards)")
    if fp.flash + fm.firmware_flash > board.flash_bytes:
        raise UserError(f"the model needs about {fp.flash:,} bytes of flash plus {fm.firmware_flash:,} for the firmware, "
                        f"but {board.name} has {board.flash_bytes:,}; {fix}")
    if fp.ram + fm.firmware_ram > board.ram_bytes:
        raise UserError(f"the model needs about {fp.ram:,} bytes of RAM plus {fm.firmware_ram:,} for the firmware, "
                        f"but {board.name} has {board.ram_bytes:,}; {fix}")
    return fp


def export(sk: Sketch, board: Board, out_dir: str | Path, layout: str = "unrolled", force: bool = False) -> tuple[Path, Footprint]:
    fp = check_fits(sk, board, layout)
    files = codegen.generate(sk, layout)
    return build.write_project(board, files, out_dir, force=force, model_id=sk.meta.get("model_id")), fp
