"""The .esk sketch file: a zip (numpy .npz) of named arrays plus `meta.json`, versioned, with a content id.

The model id is the SHA-256 of everything that changes what the device computes (the arrays and the task and
output names), so the firmware can prove which model it runs. Metrics and provenance are in meta but not hashed.
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
from .sketch import Sketch, validate

FORMAT = "edgesketch-sketch"
VERSION = 1
ARRAYS = ("in_scale", "in_zero", "offset", "tap_ptr", "tap_idx", "tap_sign", "threshold_f", "threshold", "table_sel",
          "counts_f", "counts", "out_scale", "out_bias")
HASHED_META = ("task", "class_names", "input_shape")


def model_id(sk: Sketch) -> str:
    h = hashlib.sha256()
    for name in ARRAYS:
        a = np.ascontiguousarray(getattr(sk, name))
        h.update(f"{name}:{a.dtype.str}:{a.shape};".encode()); h.update(a.tobytes())
    h.update(json.dumps({k: sk.meta.get(k) for k in HASHED_META}, sort_keys=True).encode())
    return h.hexdigest()[:32]


def save(sk: Sketch, path: str | Path, force: bool = False) -> str:
    """Write atomically (temp file + rename). Refuses to replace an existing file unless force. Returns the id."""
    path = Path(path)
    if path.exists() and not force:
        raise UserError(f"{path} already exists; pass --force to replace it or choose another -o")
    sk.meta.update(format=FORMAT, format_version=VERSION, edgesketch_version=__version__, model_id=model_id(sk))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("meta.json", json.dumps(sk.meta, indent=1, sort_keys=True, default=_json_default))
        for name, a in [(n, getattr(sk, n)) for n in ARRAYS] + [(f"extra.{k}", v) for k, v in sk.extras.items()]:
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
        raise UserError(f"sketch file {path} not found; make one with `edgesketch distill TEACHER --data DATA -o {path.name}`")
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a sketch file; give the .esk that `edgesketch distill` wrote")
    bad = f"{path} is not a valid edgesketch sketch"
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if "meta.json" not in names:
                raise UserError(f"{bad} (no meta.json); give a file written by `edgesketch distill`")
            meta = json.loads(z.read("meta.json"))
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise UserError(f"{bad} (wrong format tag); give a file written by `edgesketch distill`")
            ver = meta.get("format_version")
            if not isinstance(ver, int) or ver > VERSION:
                raise UserError(f"{path} has sketch format version {ver}, newer than this edgesketch reads ({VERSION}); upgrade edgesketch")
            arrays = {n[:-4]: np.load(io.BytesIO(z.read(n)), allow_pickle=False) for n in names if n.endswith(".npy")}
    except UserError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, KeyError) as e:
        raise UserError(f"{bad}: the file is corrupt or truncated ({type(e).__name__}); distil it again") from None
    missing = [n for n in ARRAYS if n not in arrays]
    if missing:
        raise UserError(f"{bad}: arrays {', '.join(missing)} are missing; distil it again")
    sk = Sketch(meta=meta, **{n: arrays[n] for n in ARRAYS},
                extras={n[6:]: a for n, a in arrays.items() if n.startswith("extra.")})
    problems = validate(sk)
    if problems:
        raise UserError(f"{bad}: {'; '.join(problems)}; distil it again")
    if model_id(sk) != meta.get("model_id"):
        raise UserError(f"{bad}: its contents do not match its model id (corrupted?); distil it again")
    return sk


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))
