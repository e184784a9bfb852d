"""Export formats besides the PlatformIO project (build.write_project): plain C, an Arduino library, and a component
folder for CMake builds (ESP-IDF, Zephyr, any CMake project). One writer per format; each renders
codegen_templates/formats/ around the generated model (codegen.generate) into a temporary folder that replaces out_dir
whole (build.atomic_dir), and refuses an existing out_dir unless force.

    c        {prefix}_model.h, {prefix}_model.c, the runtime (codegen.runtime_files: es_sketch*.h/.c, es_port.h),
             README.md (the API and a usage example)
    arduino  library.properties, README.md, src/ (the model and the runtime), examples/classify/classify.ino
             (and <out_dir>.zip, the same folder zipped for the IDE's "Add .ZIP Library", when zip=True); with a hop
             also examples/stream/stream.ino (a sample at a fixed rate, the class at every hop)
    cmake    CMakeLists.txt (an ESP-IDF component under IDF, else a static library target {prefix}_model), the model
             and the runtime, README.md; `espidf` writes the same folder
prefix (default "es"): the model's files, symbols and macros ({prefix}_predict_q, {PREFIX}_N_INPUTS), and so the
README's and the examples' code. Two models exported with different prefixes live in one program and share one copy
of the runtime, whose names (es_sketch*, es_port.h) never change.
"""
from __future__ import annotations

import os
import re
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from . import codegen
from .build import atomic_dir, refuse_existing
from .errors import ConfigError
from .sketch import Sketch, dequantize_int8, int_scores, quantize_inputs

FORMATS = ("platformio", "c", "arduino", "cmake", "espidf")
EXAMPLE = "classify"          # the Arduino library's example: examples/classify/classify.ino
STREAM_EXAMPLE = "stream"     # with a hop: examples/stream/stream.ino
FLOAT_EXAMPLE = "classify_float"   # classification: examples/classify_float/classify_float.ino (float sensor values)


PREFIX_RE = re.compile(r"[a-z][a-z0-9_]{0,30}")   # codegen.generate's rule: a lower-case C identifier, 31 at most
LIBRARY_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def check_prefix(prefix) -> str:
    """prefix as given, if it is a lower-case C identifier (codegen.generate's rule); else a one-line ConfigError
    (argument prefix)."""
    if not isinstance(prefix, str) or not PREFIX_RE.fullmatch(prefix):
        shown = " is empty" if prefix == "" else f"={prefix!r} is not a C identifier"
        raise ConfigError(f"prefix{shown}: it names the model's files and symbols ({{prefix}}_model.h, "
                          "{prefix}_predict_q), so give up to 31 lower-case letters, digits and _, starting with a "
                          "letter (e.g. walk)", argument="prefix")
    return prefix


def check_library_name(name) -> str:
    """An Arduino library name given by the user, as it is if the library specification allows it (letters, digits,
    _ . -, starting with a letter or digit, at least one letter); else a one-line ConfigError (argument name)."""
    if not isinstance(name, str) or not LIBRARY_NAME_RE.fullmatch(name) or not re.search(r"[A-Za-z]", name):
        raise ConfigError(f"name {name!r} is not an Arduino library name: use letters, digits, _ . -, starting with a "
                          f"letter or digit, with at least one letter (e.g. {safe_library_name(str(name))})",
                          argument="name")
    return name


def _context(sk: Sketch, files: dict[str, str], layout: str, prefix: str = "es") -> dict:
    names = [str(n) for n in sk.meta.get("class_names") or []]
    units, lines = codegen._inputs(sk)
    shape = sk.meta.get("input_shape")
    return dict(p=prefix, P_=prefix.upper(), header=f"{prefix}_model.h", source_c=f"{prefix}_model.c",
                target=f"{prefix}_model",
                model_id=sk.meta.get("model_id") or "unsaved", task=sk.task, D=sk.n_inputs, C=sk.n_outputs,
                L=sk.n_tables, layout=layout, class_names=names if len(names) == sk.n_outputs else [],
                table_bytes=sk.table_bytes, projection_bytes=sk.projection_bytes,
                source=sk.meta.get("source"), files=sorted(files), runtime=sorted(codegen.runtime_files()),
                sources=sorted(n for n in {**files, **codegen.runtime_files()} if n.endswith(".c")),
                units_text=_units_text(units), input_lines=lines,
                input_shape="x".join(map(str, shape)) if shape else str(sk.n_inputs))


def _cfloat(v: float) -> str:
    """A float literal C and C++ both read: 0.0f, -1.5f, 1e-05f (not 0f)."""
    t = f"{float(v):.9g}"
    return (t if any(c in t for c in ".en") else t + ".0") + "f"


def _units_text(units: str) -> str:
    """"g on every channel" or "g, g, g, dps, dps, dps (per channel)" from codegen._inputs' comma-separated units."""
    u = [x for x in units.split(",") if x]
    if not u:
        return ""
    return f"{u[0]} on every channel" if len(set(u)) == 1 else f"{', '.join(u)} (per channel)"


def _write(folder: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = folder / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")


def write_c(sk: Sketch, out_dir: str | os.PathLike, layout: str = "unrolled", force: bool = False,
            hop: int | None = None, stream_state: str = "keep", prefix: str = "es") -> Path:
    """{prefix}_model.h, {prefix}_model.c, the runtime and a README.md with the C API and a usage example; nothing
    else. hop: the model's stream too (codegen.generate). prefix: of the model's files, symbols and macros."""
    files = codegen.generate(sk, layout, prefix=check_prefix(prefix), hop=hop, stream_state=stream_state)
    readme = codegen.render("formats/c_README.md.j2", **_context(sk, files, layout, prefix))
    with atomic_dir(out_dir, force) as tmp:
        _write(tmp, {**files, **codegen.runtime_files(), "README.md": readme})
    return Path(out_dir).resolve()


def write_cmake(sk: Sketch, out_dir: str | os.PathLike, layout: str = "unrolled", force: bool = False,
                hop: int | None = None, stream_state: str = "keep", prefix: str = "es") -> Path:
    """A component folder: CMakeLists.txt (idf_component_register under ESP-IDF, else add_library({prefix}_model
    STATIC)), {prefix}_model.h, {prefix}_model.c, the runtime and README.md. The `espidf` format writes the same
    folder. hop: the model's stream too. prefix: of the model's files, symbols, macros and CMake target."""
    files = codegen.generate(sk, layout, prefix=check_prefix(prefix), hop=hop, stream_state=stream_state)
    ctx = _context(sk, files, layout, prefix)
    with atomic_dir(out_dir, force) as tmp:
        _write(tmp, {**files, **codegen.runtime_files(), "CMakeLists.txt": codegen.render("formats/CMakeLists.txt.j2", **ctx),
                     "README.md": codegen.render("formats/cmake_README.md.j2", component=Path(out_dir).resolve().name,
                                                 **ctx)})
    return Path(out_dir).resolve()


def safe_library_name(text: str) -> str:
    """text as an Arduino library name: every character outside [A-Za-z0-9_.-] an underscore (the library
    specification's rule: those characters, starting with a letter or digit, at least one letter)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", text).lstrip("._-")[:63]
    return name if re.search(r"[A-Za-z]", name) else f"es_model{name and '_' + name}"[:63]


def library_name(out_dir: str | os.PathLike, name: str | None = None) -> str:
    """The Arduino library's name: `name` if given (checked: check_library_name), else the folder's name made safe
    (safe_library_name). The command line gives the .esk file's stem as `name` when --name is not given."""
    return check_library_name(name) if name is not None else safe_library_name(Path(out_dir).resolve().name)


def zip_path(out_dir: str | os.PathLike) -> Path:
    """Where write_arduino(zip=True) puts the zipped library: next to the folder, <folder>.zip."""
    out = Path(out_dir).resolve()
    return out.with_name(out.name + ".zip")


def check_sample(sk: Sketch, sample) -> np.ndarray:
    """sample as int8 [{PREFIX}_N_INPUTS] (any shape of that many int8 values is accepted); else ConfigError (`sample`)."""
    a = np.asarray(sample)
    if a.dtype != np.int8 or a.size != sk.n_inputs:
        raise ConfigError(f"sample must be {sk.n_inputs} int8 values (quantised: edgesketch.sketch.quantize_inputs), "
                          f"got {a.size} of {a.dtype}", argument="sample")
    return a.reshape(-1)


def _stream_context(sk: Sketch, ctx: dict) -> dict:
    """The stream example's values: its sample rate (the synthetic source's, the sketch's meta rate_hz, else 50 Hz) and
    the inputs' units."""
    from . import synthetic
    source = str(sk.meta.get("source") or "")
    rate = sk.meta.get("rate_hz") or (synthetic.SETS[source.split(":", 1)[1]][5]
                                      if source.startswith("synthetic:") and source.split(":", 1)[1] in synthetic.SETS else 50)
    return dict(ctx, stream_example=STREAM_EXAMPLE, sample_hz=int(rate), units=",".join(sk.meta.get("input_units") or []))


def write_arduino(sk: Sketch, out_dir: str | os.PathLike, layout: str = "unrolled", force: bool = False,
                  sample=None, sample_note: str | None = None, zip: bool = False, hop: int | None = None,
                  stream_state: str = "keep", prefix: str = "es", name: str | None = None, sample_float=None) -> Path:
    """An Arduino library: library.properties, README.md, src/{prefix}_model.{h,c} with the runtime and
    examples/classify/classify.ino, which classifies `sample` (int8 [{PREFIX}_N_INPUTS]; None: zeros) and prints the
    class, the microseconds and, where the core has a cycle counter (ESP32/ESP8266, Cortex-M3 and up), the cycles.
    zip: also write <out_dir>.zip (the library folder inside, for the IDE's Add .ZIP Library); it too is refused if it
    exists, unless force. hop: the model's stream too, and examples/stream/stream.ino, which pushes a sample at a fixed
    rate (read_sample: a stand-in for the user's sensor) and prints the class at every hop, with optional majority
    smoothing over the last hops. prefix: of the model's files, symbols and macros. name: the library's name
    (library.properties and the zip's top folder; None: library_name(out_dir)); the folder written is out_dir."""
    check_prefix(prefix)
    lib = library_name(out_dir, name)
    out = refuse_existing(out_dir, force)
    zpath = refuse_existing(zip_path(out), force) if zip else None
    xq = np.zeros(sk.n_inputs, np.int8) if sample is None else check_sample(sk, sample)
    note = sample_note or ("a sample given to the exporter" if sample is not None else
                           "zeros (no test sample was given): replace them with a real input, quantised")
    files = codegen.generate(sk, layout, prefix=prefix, hop=hop, stream_state=stream_state)
    scores = [int(s) for s in int_scores(sk, xq[None])[0]]
    ctx = dict(_context(sk, files, layout, prefix), name=lib, example=EXAMPLE, sample_rows=codegen._rows([int(v) for v in xq]),
               sample_note=note, scores=scores, expected=int(np.argmax(scores)),
               stream_example=STREAM_EXAMPLE if hop is not None else "", float_example="")
    examples = {f"examples/{EXAMPLE}/{EXAMPLE}.ino": codegen.render("formats/example.ino.j2", **ctx)}
    if sk.task == "classification":
        # the float example: the same sample as sensor values (sample_float: the recorded values; else the int8 one
        # dequantised, within half a quantisation step of them), and the class the integer reference gives once
        # es_predict quantises it
        recorded = sample_float is not None
        xf = (np.asarray(sample_float, np.float32).reshape(-1) if recorded else dequantize_int8(xq, sk.in_scale, sk.in_zero))
        ctx.update(float_example=FLOAT_EXAMPLE, float_rows=codegen._rows([_cfloat(v) for v in xf]),
                   float_note=(note.replace(", quantised", "") + (", as recorded" if recorded else " as float values (the "
                               "int8 sample dequantised: within half a quantisation step of the recording)"))
                   if sample is not None else "zeros: replace them with your sensor's readings",
                   float_expected=int(np.argmax(int_scores(sk, quantize_inputs(sk, xf[None]))[0])))
        examples[f"examples/{FLOAT_EXAMPLE}/{FLOAT_EXAMPLE}.ino"] = codegen.render("formats/example_float.ino.j2", **ctx)
    tmpzip = None
    try:
        with atomic_dir(out, force) as tmp:
            _write(tmp, {"library.properties": codegen.render("formats/library.properties.j2", **ctx),
                         "README.md": codegen.render("formats/arduino_README.md.j2", **ctx),
                         **{f"src/{n}": t for n, t in {**files, **codegen.runtime_files()}.items()},
                         **examples,
                         **({} if hop is None else {f"examples/{STREAM_EXAMPLE}/{STREAM_EXAMPLE}.ino":
                                                    codegen.render("formats/stream.ino.j2", **_stream_context(sk, ctx))})})
            if zpath is not None:   # zipped from the temporary folder, renamed into place after it
                fd, tmpzip = tempfile.mkstemp(prefix=f".{zpath.name}.tmp-", dir=out.parent)
                with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as z:
                    z.write(tmp, f"{lib}/")
                    for p in sorted(tmp.rglob("*")):
                        z.write(p, f"{lib}/{p.relative_to(tmp).as_posix()}" + ("/" if p.is_dir() else ""))
                os.chmod(tmpzip, 0o644)
        if tmpzip is not None:
            os.replace(tmpzip, zpath)
    finally:
        if tmpzip is not None and Path(tmpzip).exists():
            Path(tmpzip).unlink()
    return out
