"""Read .npz-style zips that users download and share (sketch files, data files) as untrusted: member names, the
sizes the zip claims, array headers and the bytes each array really holds are checked before anything is kept, and
memory stays bounded by what the headers allow (no pickled objects)."""
from __future__ import annotations

import zipfile

import numpy as np

from .errors import DataError

MAX_MEMBER = 256 << 20        # bytes one array may take uncompressed
MAX_TOTAL = 1 << 30           # bytes all members may take uncompressed
MAX_MEMBERS = 256


def check_members(z: zipfile.ZipFile, bad: str, allowed=(".npy",), extra=(), fix: str = "") -> dict[str, zipfile.ZipInfo]:
    """The zip's members by name, refused if there are too many, repeated or path-like names, other suffixes, or
    more uncompressed bytes than MAX_TOTAL. `bad`: how an error message starts ("x.npz is not a valid ..."); `fix`:
    how it ends ("; save it with numpy.savez")."""
    infos = z.infolist()
    names = {i.filename: i for i in infos}
    if len(infos) > MAX_MEMBERS or len(names) != len(infos):
        raise DataError(f"{bad} ({len(infos)} members, some repeated or too many)" + fix)
    for i in infos:
        if "/" in i.filename or "\\" in i.filename or i.filename.startswith(".") or not (
                i.filename in extra or i.filename.endswith(allowed)):
            raise DataError(f"{bad} (unexpected member {i.filename[:60]!r})" + fix)
    total = sum(i.file_size for i in infos)
    if total > MAX_TOTAL:
        raise DataError(f"{bad} (its members claim {total:,} bytes, more than {MAX_TOTAL:,})" + fix)
    return names


def read_array(z: zipfile.ZipFile, info: zipfile.ZipInfo, bad: str, fix: str = "", kinds: str = "biuf") -> np.ndarray:
    """One .npy member, its header checked against the bytes it claims before the data is read. kinds: the dtype
    kinds accepted (numbers; "US" adds fixed-width strings: never pickled objects)."""
    with z.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
        except ValueError as e:
            raise DataError(f"{bad}: member {info.filename} has no valid array header ({str(e)[:60]})" + fix) from None
        if dtype.hasobject or dtype.kind not in kinds:
            raise DataError(f"{bad}: member {info.filename} holds {dtype}, not {'numbers' if kinds == 'biuf' else 'numbers or text'}" + fix)
        n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if n > MAX_MEMBER or n > info.file_size:
            raise DataError(f"{bad}: member {info.filename} claims {n:,} bytes in a {info.file_size:,}-byte entry" + fix)
        data = f.read(n + 1)
        if len(data) > n:
            raise DataError(f"{bad}: member {info.filename} holds more bytes than its header claims ({n:,})" + fix)
        if len(data) < n:
            raise DataError(f"{bad}: member {info.filename} is truncated" + fix)
        return np.ascontiguousarray(np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C"))


def read_npz(path, bad: str, fix: str = "", kinds: str = "biufUS") -> dict[str, np.ndarray]:
    """Every array of an .npz file (np.savez / np.savez_compressed), read as untrusted."""
    try:
        with zipfile.ZipFile(path) as z:
            names = check_members(z, bad, fix=fix)
            return {n[:-4]: read_array(z, i, bad, fix, kinds) for n, i in names.items()}
    except DataError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{bad}: the file is corrupt or truncated ({type(e).__name__})" + fix) from None
