"""Data sources: an .npz of the user's, sklearn:<name> (bundled with scikit-learn), mnist1d (built offline) or
synthetic:<name> (sensor windows generated from a fixed seed: edgesketch.synthetic).

Every source returns the same Dataset with a recorded `source` and `split`, so a sketch file can name the data it
was distilled on and later steps (eval, verify, bench) find the same test set.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import UserError
from .safezip import read_npz

SKLEARN = ("digits", "wine", "breast_cancer", "diabetes", "iris")
SPLIT = {"test_fraction": 0.2, "seed": 0, "stratified": True}


@dataclass
class Dataset:
    source: str
    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray | None = None
    y_test: np.ndarray | None = None
    class_names: list[str] | None = None
    split: dict = field(default_factory=dict)

    @property
    def has_labels(self) -> bool: return self.y_train is not None and self.y_test is not None


def describe_sources() -> str:
    from .synthetic import SETS
    return ("an .npz file (x_train, x_test, optional y_train, y_test), " + ", ".join(f"sklearn:{n}" for n in SKLEARN)
            + ", mnist1d, or " + ", ".join(f"synthetic:{n}" for n in SETS))


def load(source: str) -> Dataset:
    """Load and validate a data source. Errors are UserError with a one-line fix."""
    if source.startswith("sklearn:"):
        ds = _sklearn(source.split(":", 1)[1])
    elif source == "mnist1d":
        ds = _mnist1d()
    elif source.startswith("synthetic:"):
        ds = _synthetic(source.split(":", 1)[1])
    else:
        ds = _npz(source)
    validate(ds)
    return ds


def validate(ds: Dataset) -> None:
    for name in ("x_train", "x_test", "y_train", "y_test"):
        a = getattr(ds, name)
        if a is None:
            continue
        if not np.issubdtype(a.dtype, np.number):
            raise UserError(f"{ds.source}: {name} has dtype {a.dtype}, not numbers; store it as float32 or int")
        if not np.all(np.isfinite(a)):
            bad = int((~np.isfinite(a)).sum())
            raise UserError(f"{ds.source}: {name} has {bad} NaN or Inf values; clean or impute them before distilling")
    if ds.x_train.shape[1:] != ds.x_test.shape[1:]:
        raise UserError(f"{ds.source}: x_train samples have shape {ds.x_train.shape[1:]} but x_test samples {ds.x_test.shape[1:]}; they must match")
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        if y is not None and len(y) != len(x):
            raise UserError(f"{ds.source}: {len(x)} inputs but {len(y)} labels; give one label per sample")
    if len(ds.x_train) < 2 or len(ds.x_test) < 1:
        raise UserError(f"{ds.source}: needs at least 2 training and 1 test samples")


def load_transfer(path: str, n_features: int) -> np.ndarray:
    """Unlabelled inputs for distillation: an .npz holding an array `x` (one sample per row, the data's features).
    The teacher labels them; they are never used for testing."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"transfer file {path} not found; give an .npz with an array x of unlabelled inputs")
    if p.is_dir():
        raise UserError(f"transfer file {path} is a folder; give an .npz with an array x of unlabelled inputs")
    z = read_npz(p, f"{path} is not a usable .npz", "; save it with numpy.savez(path, x=inputs)")
    if "x" not in z:
        raise UserError(f"{path} has no array x (it has {', '.join(sorted(z)) or 'nothing'}); save it with numpy.savez(path, x=inputs)")
    x = z["x"]
    if not np.issubdtype(x.dtype, np.number) or x.ndim < 1 or len(x) == 0:
        raise UserError(f"{path}: x must be a non-empty numeric array, one sample per row (got dtype {x.dtype}, shape {x.shape})")
    x = x.astype(np.float32).reshape(len(x), -1)
    if x.shape[1] != n_features:
        raise UserError(f"{path}: x has {x.shape[1]} values per sample but the data has {n_features}; give inputs of the same features")
    if not np.all(np.isfinite(x)):
        raise UserError(f"{path}: x has {int((~np.isfinite(x)).sum())} NaN or Inf values; clean them before distilling")
    return x


def _split(x, y, stratify: bool):
    from sklearn.model_selection import train_test_split
    return train_test_split(x, y, test_size=SPLIT["test_fraction"], random_state=SPLIT["seed"], stratify=y if stratify else None)


def _sklearn(name: str) -> Dataset:
    import sklearn.datasets as skd
    if name not in SKLEARN:
        raise UserError(f"unknown data source sklearn:{name}; use one of " + ", ".join(f"sklearn:{n}" for n in SKLEARN))
    b = getattr(skd, f"load_{name}")()
    classify = name != "diabetes"
    x, y = b.data.astype(np.float32), (b.target.astype(np.int64) if classify else b.target.astype(np.float32))
    xtr, xte, ytr, yte = _split(x, y, classify)
    names = [str(n) for n in b.target_names] if classify and hasattr(b, "target_names") else None
    return Dataset(f"sklearn:{name}", xtr, xte, ytr, yte, names, dict(SPLIT, stratified=classify))


def _mnist1d() -> Dataset:
    from mnist1d.data import get_dataset_args, make_dataset
    d = make_dataset(get_dataset_args())  # built from templates with a fixed seed: no download
    return Dataset("mnist1d", d["x"].astype(np.float32), d["x_test"].astype(np.float32), d["y"].astype(np.int64),
                   d["y_test"].astype(np.int64), [str(i) for i in range(10)], {"builtin": "mnist1d.make_dataset(seed=42)"})


def _synthetic(name: str) -> Dataset:
    from . import synthetic
    if name not in synthetic.SETS:
        raise UserError(f"unknown data source synthetic:{name}; use one of " + ", ".join(f"synthetic:{n}" for n in synthetic.SETS))
    xtr, ytr, xte, yte, classes, units, rate = synthetic.load(name)
    return Dataset(f"synthetic:{name}", xtr, xte, ytr, yte, classes,
                   {"builtin": f"edgesketch.synthetic.load({name!r})", "units": units, "rate_hz": rate})


def _npz(source: str) -> Dataset:
    p = Path(source)
    if not p.exists():
        raise UserError(f"data file {source} not found; give an existing path or one of: {describe_sources()}")
    if p.is_dir():
        raise UserError(f"data file {source} is a folder; give an .npz file or one of: {describe_sources()}")
    arrays = read_npz(p, f"{source} is not a usable .npz", "; save it with numpy.savez(path, x_train=..., x_test=...)")
    missing = [k for k in ("x_train", "x_test") if k not in arrays]
    if missing:
        raise UserError(f"{source} lacks {', '.join(missing)} (it has {', '.join(sorted(arrays)) or 'nothing'}); save x_train and x_test, and optionally y_train, y_test")
    y_tr, y_te = arrays.get("y_train"), arrays.get("y_test")
    if (y_tr is None) != (y_te is None):
        raise UserError(f"{source} has only one of y_train/y_test; give both or neither")
    names = [str(n) for n in arrays["class_names"]] if "class_names" in arrays else None
    return Dataset(str(p), arrays["x_train"].astype(np.float32), arrays["x_test"].astype(np.float32),
                   y_tr, y_te, names, {"file": str(p.resolve())})
