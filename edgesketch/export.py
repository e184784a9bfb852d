"""Export: check a sketch fits a board, generate its C, and write it in one of the formats (atomically): a PlatformIO
project for a board (build.write_project), plain C, an Arduino library, or a CMake / ESP-IDF component
(edgesketch.formats)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import build, codegen, formats
from .boards import Board, FootprintModel, default_board, load
from .errors import ConfigError, UserError, missing_extra
from .sketch import Sketch


@dataclass(frozen=True)
class Footprint:
    """The estimate of what a model takes on a board (footprint()). Model figures (flash, ram and their parts) and,
    with the firmware around it, the whole (total_flash, total_ram) that must fit the board."""
    flash: int          # the model in flash: const data + code
    ram: int            # the model in RAM: its deepest stack + the firmware's per-model arrays (+ data AVR copies)
    data: int           # const data the generated C holds in flash (exact)
    code: int           # code (estimated from the layout and the structure)
    stack: int          # deepest stack of es_predict_q / es_debug_q (estimated), of it `src` for the padded input
    arrays: int         # the firmware's per-model static arrays: the input, the scores, DEBUG's bits and buckets
    debug: int          # of `arrays`, DEBUG's (0 when the board leaves DEBUG out: ES_DEBUG_RAM)
    total_flash: int    # with the firmware (the board's [footprint] firmware_flash)
    total_ram: int      # with the firmware: its static RAM, and its stack or the linker's reserve if larger
    layout: str = "unrolled"
    tables: int = 0     # of `data`, the count tables (and shared rows)
    src: int = 0        # of `stack`, the padded copy of the input (windows with padding) or a negated one
    data_ram: int = 0   # const data that is in RAM too (AVR: arrays not in program memory)
    firmware_flash: int = 0
    firmware_static: int = 0    # the firmware's static RAM besides the per-model arrays
    firmware_stack: int = 0     # its stack outside the model
    min_stack: int = 0          # the stack the linker reserves whatever the need


def _debug_cap(board: Board | None) -> int | None:
    cap = (board.firmware.defines or {}).get("ES_DEBUG_RAM") if board is not None else None
    return None if cap is None else int(str(cap).rstrip("uUlL"), 0)


def footprint(sk: Sketch, layout: str, board: Board | None = None, float_api: bool = False) -> Footprint:
    """An estimate of the model's flash and RAM on `board` (without one, the conservative defaults of
    boards.FootprintModel), from the model as generated (codegen.footprint) and the board's [footprint]
    (examples/studies/footprint_fit.py fits it to linked firmware and prints how far off it is).

    flash = const data (exact: every array codegen prints, with its C type and length) + code (bytes per feature of the
    layout: taps, hyperplanes, tables by count kind for unrolled code, the runtime's loops by hash mode and count kind
    for compact code). RAM = the model's stack (its padded input or negated copy, hash state, accumulators and the
    frames, by feature) + the firmware's per-model arrays (the input: a byte an input; the scores: 4 bytes an output;
    DEBUG's hash bits and buckets of every position unless the board caps them with ES_DEBUG_RAM) + const data AVR
    copies into RAM. float_api: a program that calls es_predict links the quantisation arrays too (the firmware does
    not)."""
    fm = board.footprint if board is not None else FootprintModel()
    f = codegen.footprint(sk, layout, dsp=fm.dsp)
    data = f["data"] + (0 if fm.harvard else f["data_ram"]) + (f["quant"] if float_api else 0)
    data_ram = f["data_ram"] if fm.harvard else 0
    code = fm.code(f["code"], layout)
    stack = fm.stack_bytes(f["stack"], layout)
    a = max(1, fm.align)
    up = lambda n: -(-n // a) * a
    debug = up(sk.n_debug_bits) + up(2 * sk.n_debug_buckets)
    cap = _debug_cap(board)
    if cap is not None and sk.n_debug_bits + 2 * sk.n_debug_buckets > cap:
        debug = 0
    arrays = up(sk.n_inputs) + 4 * sk.n_outputs + debug
    static_fw = fm.firmware_ram - fm.firmware_stack
    return Footprint(flash=data + code, ram=stack + arrays + data_ram, data=data, code=code, stack=stack, arrays=arrays,
                     debug=debug, total_flash=fm.firmware_flash + data + code,
                     total_ram=static_fw + arrays + data_ram + max(fm.min_stack, fm.firmware_stack + stack),
                     layout=layout, tables=sk.table_bytes, src=f["stack"]["src"] + f["stack"]["neg"], data_ram=data_ram,
                     firmware_flash=fm.firmware_flash, firmware_static=static_fw, firmware_stack=fm.firmware_stack,
                     min_stack=fm.min_stack)


def _shape(sk: Sketch) -> str:
    dims = [f"{b.n_tables} tables of 2^{b.n_bits} cells" for b in sk.branches]
    if len(set(dims)) == 1:
        return dims[0] + (f" in each of {len(dims)} branches" if len(dims) > 1 else "")
    return ", ".join(f"{d} in branch {j}" for j, d in enumerate(dims))


def _flash_advice(sk: Sketch, fp: Footprint, board: Board, other: Footprint) -> list[str]:
    """What makes the flash figure smaller, with the bytes it comes to where the estimate can tell."""
    out = []
    if other.total_flash < fp.total_flash:
        out.append(f"layout={other.layout} {'fits in' if other.total_flash <= board.flash_bytes else 'needs'} about "
                   f"{other.total_flash:,}")
    redistil = []
    cells = sum(b.n_cells for b in sk.branches)
    plain = sum(int(b.counts.nbytes) for b in sk.branches)
    if sk.count_bits != 4 and fp.tables == plain:       # plain int8 / int16 tables
        redistil.append(f"count_bits=4 (tables {cells * -(-sk.n_outputs // 2):,} bytes)")
        rows = min(256, cells)
        book = cells + rows * sk.n_outputs * (sk.count_bits // 8)
        if book < fp.tables:
            redistil.append(f"codebook={rows} (tables about {book:,} bytes)")
    redistil.append(f"fewer tables or bits (now {_shape(sk)})")
    out.append("re-distil with " + ", ".join(redistil[:-1]) + (" or " if len(redistil) > 1 else "") + redistil[-1])
    return out


def _ram_advice(sk: Sketch, fp: Footprint, board: Board, other: Footprint) -> list[str]:
    """What makes the RAM figure smaller, with the bytes it comes to where the estimate can tell."""
    out = []
    if other.total_ram < fp.total_ram:
        out.append(f"layout={other.layout} {'fits in' if other.total_ram <= board.ram_bytes else 'needs'} about "
                   f"{other.total_ram:,}")
    redistil, over = [], fp.total_ram - board.ram_bytes
    # the model's stack counts (it is above the linker's reserve), and a copy of the input is a good part of it
    if fp.firmware_stack + fp.stack > fp.min_stack and 10 * fp.src >= over:
        padded = any(any(b.window.padding) for b in sk.branches)
        redistil.append(f"padding=valid (no {fp.src:,}-byte padded copy of the input on the stack)" if padded else
                        f"signs=balanced (no {fp.src:,}-byte negated copy of the input on the stack)")
    if 10 * fp.debug >= over:
        redistil.append(f"fewer positions (a larger stride) or hyperplanes (DEBUG's {fp.debug:,} bytes of hash bits and "
                        "buckets of every position shrink with them)")
    if redistil:
        out.append("re-distil with " + " or ".join(redistil))
    return out


def check_fits(sk: Sketch, board: Board, layout: str, float_api: bool = False) -> Footprint:
    """The estimate (footprint()), or a one-line UserError when the model and the firmware around it would not fit the
    board's flash or RAM: the figures, and what would make the one that overflows smaller."""
    fp = footprint(sk, layout, board, float_api)
    flash_over, ram_over = fp.total_flash > board.flash_bytes, fp.total_ram > board.ram_bytes
    if not (flash_over or ram_over):
        return fp
    other = footprint(sk, "compact" if layout == "unrolled" else "unrolled", board, float_api)
    if flash_over:
        what = (f"the model needs about {fp.total_flash:,} bytes of flash ({fp.firmware_flash:,} for the firmware, "
                f"{fp.data:,} of const data, {fp.tables:,} of them tables, and about {fp.code:,} of {layout} code) "
                f"but {board.name} has {board.flash_bytes:,}" + ("; and RAM too" if ram_over else ""))
        advice = _flash_advice(sk, fp, board, other)
    else:
        stack = (f"{fp.firmware_stack + fp.stack:,} of stack (about {fp.stack:,} the model's"
                 + (f", {fp.src:,} of them a copy of the input" if fp.src else "") + ")")
        if fp.min_stack > fp.firmware_stack + fp.stack:
            stack = f"the {fp.min_stack:,} of stack the linker reserves"
        what = (f"the model needs about {fp.total_ram:,} bytes of RAM ({fp.firmware_static:,} for the firmware, "
                f"{sk.n_inputs:,} for the input, {4 * sk.n_outputs:,} for the scores"
                + (f", {fp.debug:,} for DEBUG's hash bits and buckets" if fp.debug else "")
                + (f", {fp.data_ram:,} of const data" if fp.data_ram else "") + f", {stack}) but {board.name} has "
                f"{board.ram_bytes:,}")
        advice = _ram_advice(sk, fp, board, other)
    fix = "; ".join(advice + ["or pick a bigger board (edgesketch boards)"])
    raise UserError(f"{what}; {fix}", argument="layout" if advice and advice[0].startswith("layout=") else "board")


def first_test_sample(sk: Sketch, floats: bool = False) -> tuple:
    """The first test sample of the data the sketch was distilled on, quantised to int8, and a note saying what it is;
    (None, why) when that data cannot be loaded here (no recorded source, the file is gone, or the [train] extra that
    loads sklearn and mnist1d sources is not installed). floats: also the recorded values, float32 [n_inputs] (None
    with the int8 one): (xq, note, x)."""
    xq, note, x = _first_test_sample(sk)
    return (xq, note, x) if floats else (xq, note)


def _first_test_sample(sk: Sketch) -> tuple:
    from . import data
    from .sketch import quantize_inputs
    source = sk.meta.get("source")
    if not source:
        return None, "the sketch records no data source", None
    try:
        ds = data.load(source)
    except ModuleNotFoundError as e:
        return None, str(missing_extra(e.name or "", f"loading {source}") or f"{source} could not be loaded ({e})"), None
    except (UserError, ImportError, OSError, ValueError) as e:
        return None, f"{source} could not be loaded ({str(e).splitlines()[0] if str(e) else type(e).__name__})", None
    if int(ds.x_test[0].size) != sk.n_inputs:
        return None, f"{source} has {ds.x_test[0].size} values per sample, the sketch {sk.n_inputs}", None
    label = f", label {ds.y_test[0]}" if ds.y_test is not None and sk.task == "classification" else ""
    x = np.asarray(ds.x_test[0], np.float32).reshape(-1)
    return quantize_inputs(sk, x[None])[0], f"test sample 0 of {source}{label}, quantised", x


def export(sk: Sketch, board: Board | str | None, out_dir: str | Path, layout: str = "unrolled", force: bool = False,
           format: str = "platformio", *, sample=None, sample_note: str | None = None, sample_float=None,
           zip: bool = False, hop: int | None = None, stream_state: str | None = None, prefix: str = "es",
           name: str | None = None) -> tuple[Path, Footprint]:
    """Write the sketch in `format` into out_dir (replaced whole with force; else an existing one is an error) and
    return (out_dir, the model's footprint estimate).

    platformio: a PlatformIO project for `board` (None: the default board, qemu-m4). c, arduino, cmake, espidf: the
    model for any build; a board is optional there, and when given the model must fit its flash and RAM.
    arduino: `sample` (int8 [n_inputs]) is the example's input (None: zeros; first_test_sample(sk) gives the sketch's first
    test sample), `zip` also writes <out_dir>.zip.
    hop: also generate the stream (samples between two scores; docs/model-api.md, "Streaming"), whose state keeps
    each read-out's contribution or hashes the leaving ones again: stream_state "keep" / "recompute", or None for
    the board's choice (stream_choice).
    prefix: of the model's files, symbols and macros in c, arduino, cmake and espidf ({prefix}_model.h,
    {prefix}_predict_q, {PREFIX}_N_INPUTS; default es), so two models live in one program; the runtime they share keeps
    its names. platformio takes only es (its firmware calls es_*). name: the Arduino library's name (default: the
    folder's name)."""
    if format not in formats.FORMATS:
        raise ConfigError(f"unknown format {format!r}: use one of {', '.join(formats.FORMATS)}", argument="format")
    formats.check_prefix(prefix)
    if format == "platformio" and prefix != "es":
        raise ConfigError(f"prefix={prefix} is for the c, arduino, cmake and espidf formats: a platformio project's "
                          "firmware calls the es_* functions, so it takes the default prefix es", argument="prefix")
    if name is not None and format != "arduino":
        raise ConfigError(f"name={name} is the Arduino library's name: use it with format=arduino, not "
                          f"format={format}", argument="name")
    if name is not None:
        formats.check_library_name(name)
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
    float_api = format != "platformio"        # a program of the user's may call es_predict (the firmware does not)
    fp = check_fits(sk, board, layout, float_api) if board is not None else footprint(sk, layout, None, float_api)
    st = {} if hop is None else dict(hop=hop, stream_state=stream_choice(sk, hop, board, layout, stream_state, fp))
    if format == "platformio":
        return build.write_project(board, codegen.generate(sk, layout, **st), out_dir, force=force,
                                   model_id=sk.meta.get("model_id")), fp
    if format == "c":
        return formats.write_c(sk, out_dir, layout, force, prefix=prefix, **st), fp
    if format == "arduino":
        return formats.write_arduino(sk, out_dir, layout, force, sample, sample_note, zip, sample_float=sample_float, prefix=prefix, name=name,
                                     **st), fp
    return formats.write_cmake(sk, out_dir, layout, force, prefix=prefix, **st), fp


def stream_choice(sk: Sketch, hop: int, board: Board | None, layout: str = "unrolled", state: str | None = None,
                  fp: Footprint | None = None) -> str:
    """How the stream of sk (this hop) keeps its state on `board`: "keep" (each interior read-out's contribution, C
    values of int16 or int32 a read-out: a hop hashes only its new read-outs) or "recompute" (no contributions: the
    read-outs that leave the window are hashed again from the ring of samples, twice the hashing a hop, and the ring
    holds a whole window). The choice: keep when it takes no more RAM than recompute (then it is better both ways:
    windows whose read-outs are few, or whose ring must hold a window anyway), or when the board has RAM to spare for
    it: at most half of what is left after the firmware and the model (the footprint estimate); else recompute (the
    Uno's 2 KB). `state` given: that, checked. ConfigError (argument hop) when the sketch cannot stream; UserError when
    the chosen state does not fit the board's RAM left."""
    from .errors import ConfigError
    if state is not None and state not in codegen.STREAM_STATES:
        raise ConfigError(f"stream state {state!r}: use keep or recompute", argument="stream_state")
    keep, rec = codegen.stream_ram(sk, hop, "keep"), codegen.stream_ram(sk, hop, "recompute")
    if board is None:
        return state or "keep"
    fm = board.footprint
    fp = fp or footprint(sk, layout, board)
    left = board.ram_bytes - int(getattr(fm, "firmware_ram", 0)) - fp.ram
    if state is None:
        state = "keep" if keep["total"] <= rec["total"] or keep["total"] <= left // 2 else "recompute"
    need = (keep if state == "keep" else rec)["total"]
    if need > left:
        raise UserError(f"the stream's state takes {need:,} bytes ({state}) but {board.name} has about {max(left, 0):,} "
                        f"left after the firmware and the model; use a larger hop or stream_state=recompute, or a "
                        f"board with more RAM")
    return state
