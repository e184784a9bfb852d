"""The .esk sketch file: a zip (numpy .npz) of named arrays plus `meta.json`, versioned, with a content id.

Version 2 (this one) holds branches: `meta["branches"]` lists each branch's window, and its arrays are stored as
`b<j>.<name>.npy`. Version 1 files (one flat branch, arrays at the top level, `tap_sign`) still load.

The model id is the SHA-256 of everything that changes what the device computes (the arrays, the geometry, the task
and output names), so the firmware can prove which model it runs. A sketch of one flat branch with per-feature input
quantisation hashes exactly as version 1 did, so its id did not change. Metrics and provenance are in meta but not
hashed.

Files are opened as untrusted: member names, sizes and array shapes are checked against limits and against
meta.json before anything is decompressed in full.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from . import __version__
from .errors import UserError
from .safezip import check_members, read_array
from .sketch import Branch, Sketch, Window, validate

FORMAT = "edgesketch-sketch"
VERSION = 2
TOP = ("in_scale", "in_zero", "out_scale", "out_bias")
BRANCH = ("offset", "tap_ptr", "tap_idx", "tap_weight", "threshold_f", "threshold", "table_sel", "counts_f", "counts")
V1_ARRAYS = ("in_scale", "in_zero", "offset", "tap_ptr", "tap_idx", "tap_sign", "threshold_f", "threshold", "table_sel",
             "counts_f", "counts", "out_scale", "out_bias")
HASHED_META = ("task", "class_names", "input_shape")
MAX_META = 4 << 20
FIX = "; give a file written by `edgesketch distill`"


def _v1_compatible(sk: Sketch) -> bool:
    return sk.is_flat and sk.branches[0].window.regions == 1 and np.asarray(sk.in_scale).shape[0] == sk.n_inputs


def _v1_arrays(sk: Sketch) -> list[tuple[str, np.ndarray]]:
    b = sk.branches[0]
    arrays = dict(in_scale=sk.in_scale, in_zero=sk.in_zero, out_scale=sk.out_scale, out_bias=sk.out_bias,
                  tap_sign=b.tap_weight, **{n: getattr(b, n) for n in BRANCH if n != "tap_weight"})
    return [(n, arrays[n]) for n in V1_ARRAYS]


def arrays(sk: Sketch) -> list[tuple[str, np.ndarray]]:
    """(name, array) of everything the device computes with, in file order."""
    return [(n, getattr(sk, n)) for n in TOP] + [(f"b{j}.{n}", getattr(b, n)) for j, b in enumerate(sk.branches) for n in BRANCH]


def model_id(sk: Sketch) -> str:
    h = hashlib.sha256()
    if _v1_compatible(sk):
        named = _v1_arrays(sk)
    else:
        named = arrays(sk)
        h.update(json.dumps([b.window.to_json() for b in sk.branches], sort_keys=True).encode())
    for name, a in named:
        a = np.ascontiguousarray(a)
        h.update(f"{name}:{a.dtype.str}:{a.shape};".encode()); h.update(a.tobytes())
    h.update(json.dumps({k: sk.meta.get(k) for k in HASHED_META}, sort_keys=True).encode())
    return h.hexdigest()[:32]


def assign_id(sk: Sketch) -> str:
    """Record the sketch's model id in its meta (done when a sketch is made, and again on save) and return it."""
    sk.meta["model_id"] = model_id(sk)
    return sk.meta["model_id"]


def save(sk: Sketch, path: str | Path, force: bool = False) -> str:
    """Write atomically (temp file + rename). Refuses to replace an existing file unless force. Returns the id."""
    path = Path(path)
    if path.exists() and not force:
        raise UserError(f"{path} already exists; use force=True to replace it, or another path", argument="force")
    sk.meta.update(format=FORMAT, format_version=VERSION, edgesketch_version=__version__,
                   branches=[{"window": b.window.to_json()} for b in sk.branches])
    assign_id(sk)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("meta.json", json.dumps(sk.meta, indent=1, sort_keys=True, default=_json_default))
        for name, a in arrays(sk) + [(f"extra.{k}", v) for k, v in sk.extras.items()]:
            b = io.BytesIO(); np.save(b, np.ascontiguousarray(a), allow_pickle=False)
            z.writestr(f"{name}.npy", b.getvalue())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.getvalue())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return sk.meta["model_id"]


def load(path: str | Path) -> Sketch:
    path = Path(path)
    if not path.exists():
        raise UserError(f"sketch file {path} not found; distil one first (edgesketch.distill, or the command line's distill)")
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a sketch file; give the .esk that `edgesketch distill` wrote")
    bad = f"{path} is not a valid edgesketch sketch"
    try:
        with zipfile.ZipFile(path) as z:
            names = check_members(z, bad, extra=("meta.json",), fix=FIX)
            if "meta.json" not in names:
                raise UserError(f"{bad} (no meta.json); give a file written by `edgesketch distill`")
            if names["meta.json"].file_size > MAX_META:
                raise UserError(f"{bad} (meta.json claims {names['meta.json'].file_size:,} bytes); give a file written by `edgesketch distill`")
            meta = json.loads(z.read("meta.json"))
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise UserError(f"{bad} (wrong format tag); give a file written by `edgesketch distill`")
            ver = meta.get("format_version")
            if not isinstance(ver, int) or ver > VERSION or ver < 1:
                raise UserError(f"{path} has sketch format version {ver}, newer than this edgesketch reads ({VERSION}); upgrade edgesketch")
            arrays_ = {n[:-4]: read_array(z, i, bad, FIX) for n, i in names.items() if n.endswith(".npy")}
    except UserError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{bad}: the file is corrupt or truncated ({type(e).__name__}); distil it again") from None
    extras = {n[6:]: a for n, a in arrays_.items() if n.startswith("extra.")}
    try:
        sk = _from_v1(meta, arrays_, extras) if ver == 1 else _from_v2(meta, arrays_, extras)
    except (KeyError, TypeError, ValueError) as e:
        missing = str(e).strip("'\"")
        raise UserError(f"{bad}: {missing if isinstance(e, KeyError) and missing else type(e).__name__} is missing or "
                        f"malformed; distil it again") from None
    problems = validate(sk)
    if problems:
        raise UserError(f"{bad}: {'; '.join(problems)}; distil it again")
    if model_id(sk) != meta.get("model_id"):
        raise UserError(f"{bad}: its contents do not match its model id (corrupted?); distil it again")
    return sk


def _from_v1(meta, a, extras) -> Sketch:
    missing = [n for n in V1_ARRAYS if n not in a]
    if missing:
        raise KeyError(f"arrays {', '.join(missing)}")
    win = Window.flat(int(a["offset"].shape[0]))
    br = Branch(win, tap_weight=a["tap_sign"], **{n: a[n] for n in BRANCH if n != "tap_weight"})
    return Sketch(meta, a["in_scale"], a["in_zero"], [br], a["out_scale"], a["out_bias"], extras)


def _from_v2(meta, a, extras) -> Sketch:
    specs = meta.get("branches")
    if not isinstance(specs, list) or not specs or len(specs) > 16:
        raise KeyError("the branch list in meta.json")
    missing = [n for n in TOP if n not in a] + [f"b{j}.{n}" for j in range(len(specs)) for n in BRANCH if f"b{j}.{n}" not in a]
    if missing:
        raise KeyError(f"arrays {', '.join(missing)}")
    branches = [Branch(Window.from_json(s["window"]), **{n: a[f"b{j}.{n}"] for n in BRANCH}) for j, s in enumerate(specs)]
    return Sketch(meta, a["in_scale"], a["in_zero"], branches, a["out_scale"], a["out_bias"], extras)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))
