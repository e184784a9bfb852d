"""Export: check a sketch fits a board, generate its C, and write it in one of the formats (atomically): a PlatformIO
project for a board (build.write_project), plain C, an Arduino library, or a CMake / ESP-IDF component
(edgesketch.formats)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import build, codegen, formats
from .boards import Board, FootprintModel, default_board, load
from .errors import ConfigError, UserError, missing_extra
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


def first_test_sample(sk: Sketch) -> tuple[object, str]:
    """The first test sample of the data the sketch was distilled on, quantised to int8, and a note saying what it is;
    (None, why) when that data cannot be loaded here (no recorded source, the file is gone, or the [train] extra that
    loads sklearn and mnist1d sources is not installed)."""
    from . import data
    from .sketch import quantize_inputs
    source = sk.meta.get("source")
    if not source:
        return None, "the sketch records no data source"
    try:
        ds = data.load(source)
    except ModuleNotFoundError as e:
        return None, str(missing_extra(e.name or "", f"loading {source}") or f"{source} could not be loaded ({e})")
    except (UserError, ImportError, OSError, ValueError) as e:
        return None, f"{source} could not be loaded ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
    if int(ds.x_test[0].size) != sk.n_inputs:
        return None, f"{source} has {ds.x_test[0].size} values per sample, the sketch {sk.n_inputs}"
    label = f", label {ds.y_test[0]}" if ds.y_test is not None and sk.task == "classification" else ""
    return quantize_inputs(sk, ds.x_test[:1])[0], f"test sample 0 of {source}{label}, quantised"


def export(sk: Sketch, board: Board | str | None, out_dir: str | Path, layout: str = "unrolled", force: bool = False,
           format: str = "platformio", *, sample=None, sample_note: str | None = None,
           zip: bool = False) -> tuple[Path, Footprint]:
    """Write the sketch in `format` into out_dir (replaced whole with force; else an existing one is an error) and
    return (out_dir, the model's footprint estimate).

    platformio: a PlatformIO project for `board` (None: the default board, qemu-m4). c, arduino, cmake, espidf: the
    model for any build; a board is optional there, and when given the model must fit its flash and RAM.
    arduino: `sample` (int8 [n_inputs]) is the example's input (None: zeros; first_test_sample(sk) gives the sketch's first
    test sample), `zip` also writes <out_dir>.zip."""
    if format not in formats.FORMATS:
        raise ConfigError(f"unknown format {format!r}: use one of {', '.join(formats.FORMATS)}", argument="format")
    if zip and format != "arduino":
        raise ConfigError(f"zip is for the arduino format, not {format}", argument="zip")
    if sample is not None and format != "arduino":
        raise ConfigError(f"sample is for the arduino format's example, not {format}", argument="sample")
    if layout not in codegen.LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r}: use one of {', '.join(codegen.LAYOUTS)}", argument="layout")
    if isinstance(board, str):
        board = load(board)
    if format == "platformio":
        board = board or default_board()
    fp = check_fits(sk, board, layout) if board is not None else footprint(sk, layout)
    if format == "platformio":
        return build.write_project(board, codegen.generate(sk, layout), out_dir, force=force,
                                   model_id=sk.meta.get("model_id")), fp
    if format == "c":
        return formats.write_c(sk, out_dir, layout, force), fp
    if format == "arduino":
        return formats.write_arduino(sk, out_dir, layout, force, sample, sample_note, zip), fp
    return formats.write_cmake(sk, out_dir, layout, force), fp
