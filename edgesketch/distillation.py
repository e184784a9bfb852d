"""Distil a Keras teacher into a sketch. TensorFlow only here; the result is a numpy Sketch (float and integer).

learned (default, beyond the paper)
  Every branch (a window over the input: the whole input for the flat sketch, or windows sliding over the time or
  image axes) has P hyperplanes shared by its positions, with s taps each; its tables read K of their bits at every
  read-out position and the scores add them up. Three phases on teacher-relabelled augmented data: (1) relax: dense
  hyperplanes, soft bits sigmoid(beta*z) with beta annealed upward, tables learned jointly; (2) keep each
  hyperplane's s largest weights (as signs, or small integers with `weights` > 1) and refine them, the thresholds
  and the tables with a straight-through estimator (hard bits forward, soft bits backward); (3) refit the count
  tables on the exact integer hashes the device will compute.
shared rows (--codebook R)
  then cluster the cells of every branch into R rows (k-means, each cell weighted by how often training lands in it) and
  train the rows with every cell's row fixed: a row index per cell and R rows replace the tables.
representer (the paper, arXiv 2106.11426; flat)
  fit f(x) = sum_j alpha_j (1 - theta(x, w_j)/pi)^K to the teacher, then build L count arrays with random sparse
  ternary K-bit hashes: cell h_l(w_j) += alpha_j / L.
"""
from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass, fields
from typing import Callable

import numpy as np

from . import quantize
from .errors import ConfigError
from .sketch import (Branch, Sketch, Window, _positions, all_counts, csr_from_dense, int_cells, quantize_inputs, random_ternary,
                     representer_counts, set_all_counts, stored_rows, window_selectors)

UNIT = 64.0  # hyperplanes are trained on (u - offset) / UNIT: int8 units brought to about unit scale

Progress = Callable[[str, int, int, dict], None]


@dataclass
class Config:
    mode: str = "learned"
    tables: int = 16          # L
    bits: int = 6             # K
    hyperplanes: int = 48     # P (learned mode)
    taps: int = 8             # s (learned mode)
    window: tuple = ()        # window size per spatial axis of the teacher's input; () hashes the whole input (flat)
    stride: tuple = (1,)      # per spatial axis (one value: every axis)
    dilation: tuple = (1,)
    padding: str = "same"     # "same" or "valid"
    pool: tuple = (1,)        # OR-pool bits over this many positions per axis before the tables read them
    regions: int = 1          # read-out positions cut into this many groups with tables of their own
    flat_branch: tuple = ()   # (L, K, P, s) of a flat branch added to a windowed one; () none
    weights: int = 1          # largest |tap weight|: 1 ternary (additions only), up to 7 (a multiply per tap)
    thresholds: int = 1       # hash bits per projection: hyperplanes / thresholds distinct tap sets, each sum compared
                              # with this many thresholds (the C computes each sum once)
    representers: int = 128   # M (representer mode)
    density: float = 1 / 3    # ternary density of random projections (representer mode)
    augment: str = "mixup"    # "mixup", "signal" (shifts, amplitude, jitter along the time/image axes), "both", "none"
    aug_size: int = 0         # 0: max(40000, 10 * n_train)
    noise: float = 0.1        # Gaussian noise, in units of each feature's std
    shift: int = 0            # signal augmentation: largest shift along each spatial axis (0: window size // 2)
    epochs: int = 30          # per phase (relax, STE); representer fit uses 2x
    refit_epochs: int = 15
    ste_epochs: int = 0       # the straight-through phase's own epochs (0: epochs; studies set what early stopping kept)
    batch: int = 256
    lr: float = 0.01
    ste_lr: float = 0.0       # 0: lr
    refit_lr: float = 0.0     # 0: lr
    temperature: float = 1.0
    table_dropout: float = 0.0  # drop each table's vote with this probability while training (against co-adaptation)
    count_bits: int = 8
    selectors: str = "random"  # which hyperplanes a table reads: "random", or "window" (K consecutive ones in a 32-bit word)
    signs: str = "free"        # tap signs: "free", or "balanced" (s/2 positive and s/2 negative taps per hyperplane)
    codebook: int = 0          # store the cells as at most this many shared rows (0: every cell its own)
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.augment, bool):       # format 1 configs and older callers: True = mixup, False = none
            self.augment = "mixup" if self.augment else "none"
        for name in ("window", "stride", "dilation", "pool", "flat_branch"):
            v = getattr(self, name)
            setattr(self, name, tuple(v) if isinstance(v, (tuple, list)) else (v,) if v else ())
        if not self.stride:
            self.stride = (1,)
        if not self.dilation:
            self.dilation = (1,)
        if not self.pool:
            self.pool = (1,)

    @property
    def windowed(self) -> bool:
        return bool(self.window)


# The configuration of a windowed sketch when the caller gives none, by the number of spatial axes of the teacher's
# input; the geometry (stride, dilation) comes from the input's size (geometry()). Chosen on a validation split carved
# from the training data, never on the test set (examples/studies/windowed_study.py; docs/algorithm-notes.md).
FAMILIES = {
    1: dict(window=(9,), hyperplanes=32, thresholds=2, taps=9, weights=7, tables=15, bits=6,
            augment="both", epochs=20, refit_epochs=10, ste_lr=0.003, refit_lr=0.001),
    2: dict(window=(3, 3), hyperplanes=32, thresholds=2, taps=9, weights=7, tables=8, bits=6,
            flat_branch=(8, 6, 48, 8), augment="mixup", epochs=20, refit_epochs=10, ste_lr=0.003, refit_lr=0.001),
}
# Read-out positions per spatial axis of the windowed geometries, most first (the family's default, then the coarser
# candidates of edgesketch.choose): 1-D 32, 16, 8 (mnist1d's 40 samples: stride 2, the default chosen on its validation
# split; gestures' 64: stride 2, 4, 8); 2-D 8 and 4 per axis (digits' 8 x 8 at stride 1 and at stride 2).
READOUTS = {1: (32, 16, 8), 2: (8, 4)}


def spatial_axes(input_shape) -> tuple:
    """The time or image axes of a teacher's input shape ((T, C) -> (T,), (H, W, C) -> (H, W)); () when it has none
    ((D,), or sizes of 1 only)."""
    s = tuple(int(v) for v in input_shape)
    spatial = s[:-1] if len(s) >= 2 else ()
    return () if not spatial or all(v == 1 for v in spatial) else spatial


def geometry(input_shape, readouts: int | None = None) -> dict:
    """The windows for an input with time or image axes, from their lengths: at most `readouts` read-out positions per
    axis (default: the most of READOUTS for the number of axes, 32 in 1-D and 8 in 2-D), whatever the input's length.

    The rule, per spatial axis of length n: stride = ceil(n / readouts); the window keeps the family's taps per axis
    (9 in 1-D, 3 in 2-D) and dilation = max(1, stride // 2), so that a window spans about as many strides as the
    validated short-input default (9 samples at stride 2 on mnist1d's 40) however long the input; padding "same".
    Positions are then at most readouts per axis (32 in 1-D: about 57,000 Cortex-M0 instructions for the family's
    sizes on 3 channels), and training and device cost stop growing with the input (docs/algorithm-notes.md, issue 31).
    mnist1d (40 x 1) and 8 x 8 images get the geometries chosen on them before the rule (stride 2 and stride 1)."""
    spatial = spatial_axes(input_shape)
    n = len(spatial)
    if not n:
        return {}
    per_axis = readouts or READOUTS.get(n, READOUTS[2])[0]
    taps = FAMILIES.get(n, FAMILIES[2])["window"][0]
    stride = tuple(max(1, -(-int(v) // per_axis)) for v in spatial)
    return dict(window=(taps,) * n, stride=stride, dilation=tuple(max(1, st // 2) for st in stride), padding="same")


def family_defaults(input_shape, readouts: int | None = None) -> dict:
    """Config fields for a teacher's input shape: windows over its time axis ((T, C), T > 1) or image axes ((H, W, C))
    with the geometry of geometry(input_shape, readouts); {} (the flat sketch) for inputs with no such axis ((D,), or
    (1, C))."""
    spatial = spatial_axes(input_shape)
    if not spatial:
        return {}
    return dict(FAMILIES.get(len(spatial), FAMILIES[2]), **geometry(input_shape, readouts))


def check(cfg: Config, input_shape) -> None:
    """ConfigError naming the argument if cfg cannot make a sketch for inputs of input_shape (the teacher's)."""
    def need(ok, arg, msg):
        if not ok:
            raise ConfigError(msg, argument=arg)
    need(cfg.mode in ("learned", "representer"), "mode", f"mode={cfg.mode!r}: use mode=learned or mode=representer")
    need(cfg.ste_epochs >= 0, "ste_epochs", f"ste_epochs={cfg.ste_epochs}: must be 0 (the same as epochs) or more")
    for arg in ("tables", "bits", "hyperplanes", "taps", "representers", "epochs", "refit_epochs", "regions"):
        need(getattr(cfg, arg) >= 1, arg, f"{arg}={getattr(cfg, arg)}: must be at least 1")
    need(cfg.bits <= 12, "bits", f"bits={cfg.bits} makes tables of 2^{cfg.bits} cells each; use 12 or fewer (6 is typical)")
    need(cfg.mode == "representer" or cfg.bits <= cfg.hyperplanes, "bits",
         f"bits={cfg.bits} needs at least that many hyperplanes (hyperplanes={cfg.hyperplanes})")
    need(cfg.count_bits in (4, 8, 16), "count_bits", f"count_bits={cfg.count_bits}: use 4, 8 or 16")
    need(1 <= cfg.weights <= 7, "weights", f"weights={cfg.weights}: the largest tap weight is 1 (ternary) to 7")
    need(cfg.augment in ("mixup", "signal", "both", "none"), "augment", f"augment={cfg.augment!r}: use mixup, signal, both or none")
    need(cfg.thresholds >= 1 and cfg.hyperplanes % cfg.thresholds == 0, "thresholds",
         f"thresholds={cfg.thresholds}: must divide hyperplanes={cfg.hyperplanes} (projections x thresholds hash bits)")
    need(cfg.thresholds == 1 or cfg.mode == "learned", "thresholds", f"thresholds={cfg.thresholds}: learned mode only")
    if cfg.codebook:
        need(cfg.count_bits != 4, "codebook", "codebook=%d: shared rows hold int8 or int16 counts, not 4-bit ones; use count_bits=8 with it, or codebook=0" % cfg.codebook)
        cells = (cfg.regions if cfg.windowed else 1) * (cfg.tables << cfg.bits) + sum(L << K for L, K, _, _ in branch_sizes(cfg)[1:])
        need(2 <= cfg.codebook < cells, "codebook", f"codebook={cfg.codebook}: use 2 to {cells - 1} shared rows "
             f"(the sketch has {cells} cells), or 0 to store every cell")
    if cfg.selectors == "window":
        try:
            window_selectors(cfg.hyperplanes, cfg.tables, cfg.bits)
        except ValueError as e:
            raise ConfigError("selectors='window': " + str(e).replace("window selectors: ", ""), argument="selectors") from None
    if cfg.windowed:
        need(cfg.mode == "learned", "window", "window=%s: windows are a learned-mode sketch; use mode='learned'" % (cfg.window,))
        need(cfg.weights == 1 or cfg.signs == "free", "signs", "signs='balanced' is for ternary taps (weights=1)")
        for w in windows_of(cfg, input_shape):
            for p in w.problems():
                raise ConfigError(f"window={'x'.join(map(str, cfg.window))}: {p}", argument="window")
        if cfg.flat_branch:
            need(len(cfg.flat_branch) == 4 and min(cfg.flat_branch) >= 1 and cfg.flat_branch[1] <= cfg.flat_branch[2],
                 "flat_branch", f"flat_branch={cfg.flat_branch}: give (tables, bits, hyperplanes, taps) with bits <= hyperplanes")


def grid_shape(input_shape) -> tuple:
    """The teacher's input shape as spatial axes + channels: (T,) -> (T, 1); (T, C), (H, W, C) as they are."""
    s = tuple(int(v) for v in input_shape)
    return s + (1,) if len(s) == 1 else s


def windows_of(cfg: Config, input_shape) -> list[Window]:
    """The Window of every branch cfg describes over inputs of input_shape: the windowed branch, then the flat one."""
    D = int(np.prod(input_shape))
    if not cfg.windowed:
        return [Window.flat(D)]
    shape = grid_shape(input_shape)
    n = len(shape) - 1
    def axes(v, name):
        v = tuple(v) if isinstance(v, (tuple, list)) else (v,)
        if len(v) not in (1, n):
            raise ConfigError(f"{name}={v}: give one value, or one per spatial axis of the input {shape[:-1]}", argument=name)
        return v * n if len(v) == 1 else v
    w = Window.over(shape, axes(cfg.window, "window"), axes(cfg.stride, "stride"), axes(cfg.dilation, "dilation"),
                    cfg.padding, axes(cfg.pool, "pool"), cfg.regions)
    return [w] + ([Window.flat(D)] if cfg.flat_branch else [])


def branch_sizes(cfg: Config) -> list[tuple[int, int, int, int]]:
    """(L, K, P, s) of every branch, in the order of windows_of."""
    main = (cfg.tables, cfg.bits, cfg.hyperplanes, cfg.taps)
    return [main] + ([tuple(int(v) for v in cfg.flat_branch)] if cfg.windowed and cfg.flat_branch else [])


# ---------------------------------------------------------------- augmentation
def aug_size(cfg: Config, n: int) -> int:
    """Samples after augmentation for a training set of n: cfg.aug_size, else 40,000 or 10 per training sample."""
    return cfg.aug_size or max(40000, 10 * n)


def augment(x: np.ndarray, cfg: Config, rng: np.random.Generator, transfer: np.ndarray | None = None,
            shape: tuple | None = None) -> np.ndarray:
    """The training set, then unlabelled transfer inputs if given, then made-up samples up to the augmented size; the
    teacher relabels all of them, so the sketch learns the teacher's function between and around training points.
    mixup: pairs (lambda ~ U(0,1), random partner) with Gaussian noise. signal: a training sample shifted along its
    time or image axes (zero-filled, up to cfg.shift), scaled in amplitude (0.8 to 1.2) and jittered (Gaussian noise).
    both: half of each. Transfer inputs take the place of made-up samples: on mnist1d, real inputs taught more than
    mixup did (examples/studies/levers.py). shape: the teacher's input shape (signal augmentation needs its axes)."""
    n = aug_size(cfg, len(x))
    if transfer is not None and len(transfer):
        x = np.concatenate([x, np.asarray(transfer, np.float32).reshape(len(transfer), -1)])
    if cfg.augment == "none" or n <= len(x):
        return x.astype(np.float32)
    k = n - len(x)
    kinds = {"mixup": ["mixup"], "signal": ["signal"], "both": ["mixup", "signal"]}[cfg.augment]
    parts = [x]
    for j, kind in enumerate(kinds):
        m = k // len(kinds) + (k % len(kinds) if j == 0 else 0)
        i = rng.integers(0, len(x), m)
        if kind == "mixup":
            jj = rng.integers(0, len(x), m)
            lam = rng.uniform(0, 1, (m, 1)).astype(np.float32)
            noise = rng.normal(0, 1, (m, x.shape[1])).astype(np.float32) * (cfg.noise * x.std(0))
            parts.append(lam * x[i] + (1 - lam) * x[jj] + noise)
        else:
            parts.append(_signal(x[i], grid_shape(shape or (x.shape[1],)), cfg, rng))
    return np.concatenate(parts).astype(np.float32)


def _signal(x: np.ndarray, shape: tuple, cfg: Config, rng) -> np.ndarray:
    """Shift (zero fill), scale and jitter samples [m, D] along the spatial axes of shape."""
    m, sp = len(x), shape[:-1]
    g = x.reshape((m,) + shape).copy()
    win = cfg.window if isinstance(cfg.window, (tuple, list)) else (cfg.window,)
    for a, size in enumerate(sp):
        most = cfg.shift or max(1, (win[min(a, len(win) - 1)] if win else size // 8) // 2)
        sh = rng.integers(-most, most + 1, m)
        for v in np.unique(sh):
            if v == 0:
                continue
            sel = sh == v
            moved = np.roll(g[sel], v, axis=a + 1)
            cut = [slice(None)] * (len(shape) + 1)
            cut[a + 1] = slice(0, v) if v > 0 else slice(v, None)
            moved[tuple(cut)] = 0.0
            g[sel] = moved
    g *= rng.uniform(0.8, 1.2, (m,) + (1,) * len(shape)).astype(np.float32)
    g += rng.normal(0, 1, g.shape).astype(np.float32) * (cfg.noise * 0.5 * x.std())
    return g.reshape(m, -1)


def targets(teacher, x: np.ndarray, cfg: Config) -> tuple[np.ndarray, dict]:
    """Soft targets: class probabilities at temperature T, or standardised regression outputs."""
    if teacher.task == "classification":
        z = teacher.logits(x) / cfg.temperature
        p = np.exp(z - z.max(1, keepdims=True))
        return (p / p.sum(1, keepdims=True)).astype(np.float32), {}
    y = teacher.outputs(x)
    mu, sd = y.mean(0), np.maximum(y.std(0), 1e-8)
    return ((y - mu) / sd).astype(np.float32), {"mean": mu, "std": sd}


# ---------------------------------------------------------------- the pipeline
def distill(teacher, x_train: np.ndarray, cfg: Config, meta: dict, progress: Progress | None = None,
            transfer: np.ndarray | None = None, validation: np.ndarray | None = None,
            patience: int | None = None, start: Sketch | None = None, keep_hashes: bool = False) -> Sketch:
    """The sketch of `teacher` on x_train and unlabelled `transfer` inputs (relabelled by the teacher like the augmented
    samples, and calibrating the input quantisation with the training set: both are real inputs).
    validation: held-out real inputs (never trained on); the teacher labels them and every epoch of the
    straight-through and refit phases reports the loss on them (progress info "val"). patience: with validation, end
    those phases after this many epochs without a lower validation loss and keep the epoch that had the lowest
    (early stopping: candidate scoring, edgesketch.choose); None trains every epoch.
    start: a learned sketch of the same configuration (the choice's kept candidate) to continue from: its
    hyperplanes, thresholds and tables start the straight-through phase, and the relax phase is skipped.
    keep_hashes: with start, skip the straight-through phase too: start's hashes are kept and only its tables are
    refitted (on the exact integer hashes of x_train's augmented set).
    Seeds the global generators from cfg.seed and turns op determinism on for the call (see _deterministic)."""
    shape = tuple(teacher.input_shape)
    check(cfg, shape)
    from .teacher import tensorflow
    tf = tensorflow()
    with _deterministic(tf, cfg.seed):
        return _distill(tf, teacher, x_train, cfg, meta, progress or (lambda *a: None), transfer, shape,
                        validation, patience, start, keep_hashes)


class _deterministic:
    """Seeds TensorFlow/NumPy/Python's global generators (keras.utils.set_random_seed) and enables op determinism;
    on the outermost exit Python's and NumPy's generator states and the op-determinism setting are restored.
    Reentrant and thread-safe: the choice distils two candidates at once (edgesketch.choose), and determinism stays
    on until the last of them ends. TensorFlow's global seed stays set to the distil seed (TensorFlow cannot read
    back the previous one)."""
    _lock, _depth, _saved = threading.Lock(), 0, None

    def __init__(self, tf, seed):
        self.tf, self.seed = tf, seed

    def __enter__(self):
        import random

        from tensorflow.python.framework import config as tfconfig   # is/disable_op_determinism are not exported
        cls = _deterministic
        with cls._lock:
            if cls._depth == 0:
                cls._saved = (random.getstate(), np.random.get_state(), tfconfig.is_op_determinism_enabled())
                self.tf.config.experimental.enable_op_determinism()
            cls._depth += 1
            self.tf.keras.utils.set_random_seed(self.seed)

    def __exit__(self, *exc):
        import random

        from tensorflow.python.framework import config as tfconfig
        cls = _deterministic
        with cls._lock:
            cls._depth -= 1
            if cls._depth == 0:
                py, np_, det = cls._saved
                random.setstate(py)
                np.random.set_state(np_)
                if not det:
                    tfconfig.disable_op_determinism()
        return False


def _distill(tf, teacher, x_train, cfg, meta, progress, transfer, shape, validation=None, patience=None,
             start=None, keep_hashes=False) -> Sketch:
    rng = np.random.default_rng(cfg.seed)
    wins = windows_of(cfg, shape)
    per_channel = not wins[0].is_flat
    x_train = np.asarray(x_train, np.float32).reshape(len(x_train), -1)
    progress("relabel", 0, 1, {})
    xa = augment(x_train, cfg, rng, transfer, shape)
    real = xa[:len(x_train) + (0 if transfer is None else len(transfer))]   # augment puts the real inputs first
    in_scale, in_zero = quantize.calibrate_inputs(real, wins[0].channels if per_channel else None)
    Q = len(in_scale)
    u_real = real / np.tile(in_scale, real.shape[1] // Q) + np.tile(in_zero, real.shape[1] // Q)
    feat_off = (u_real.reshape(-1, Q).mean(0) if per_channel else u_real.mean(0)).astype(np.float32)
    y, ystat = targets(teacher, xa, cfg)
    progress("relabel", 1, 1, {"samples": len(xa)})
    # centred units of every feature, then the pad value of each channel (float 0 -> in_zero) after them
    off_feat = np.tile(feat_off, x_train.shape[1] // len(feat_off))
    centre = lambda v: ((v / np.tile(in_scale, v.shape[1] // Q) + np.tile(in_zero, v.shape[1] // Q) - off_feat) / UNIT).astype(np.float32)
    xc = centre(xa)
    val = None
    if validation is not None and len(validation):
        xv = np.asarray(validation, np.float32).reshape(len(validation), -1)
        yv = targets(teacher, xv, cfg)[0] if not ystat else ((teacher.outputs(xv) - ystat["mean"]) / ystat["std"]).astype(np.float32)
        val = _Validation(xv, centre(xv), yv, patience)
    branches = []
    for w, (L, K, P, s) in zip(wins, branch_sizes(cfg)):
        eoff = np.tile(feat_off, w.n_elements // len(feat_off)) if per_channel else feat_off
        branches.append(Branch(w, eoff.astype(np.float32), tap_ptr=None, tap_idx=None, tap_weight=None, threshold_f=None,
                               threshold=None, table_sel=None, counts_f=None, counts=None))   # filled by the fit below
    sk = Sketch(meta=dict(meta, task=teacher.task, mode=cfg.mode, config=asdict(cfg)), in_scale=in_scale, in_zero=in_zero,
                branches=branches, out_scale=None, out_bias=None)
    pad = ((in_zero[:wins[0].channels] - feat_off[:wins[0].channels]) / UNIT).astype(np.float32) if per_channel else None
    fit = _Fit(tf, xc, y, teacher.task, cfg, rng, progress, pad, val)
    if cfg.mode == "learned":
        fit.learned(sk, xa, None if start is None else _start_values(start, branches, cfg, ystat),
                    ste=start is None or not keep_hashes)
    else:
        fit.representer(sk)
    if fit.kept:
        sk.meta["epochs_kept"] = dict(fit.kept)
    if cfg.codebook:
        fit.codebook(sk, _exact_cells(sk, xa))
    if ystat:  # regression: back to the teacher's units
        for b in sk.branches:
            b.counts_f = b.counts_f * ystat["std"].astype(np.float32)
        sk.out_bias = (sk.out_bias * ystat["std"] + ystat["mean"]).astype(np.float32)
    for b in sk.branches:
        b.counts_f = b.counts_f.astype(np.float32)
    sk = quantize.finalize(sk, cfg.count_bits)
    from .esk import assign_id
    assign_id(sk)
    return sk


def _start_values(start: Sketch, branches: list, cfg: Config, ystat: dict) -> list:
    """(dense hyperplanes [E, P], bias [P], tables in training units, table selectors) of every branch of `start`, the
    bias moved to the centring of this run's `branches`; ConfigError unless start has cfg's windows and sizes."""
    sizes = branch_sizes(cfg)
    if (cfg.mode != "learned" or len(start.branches) != len(branches)
            or any(a.window != b.window or a.table_sel.shape != (L, K) or len(a.tap_ptr) != P + 1
                   for a, b, (L, K, P, _) in zip(start.branches, branches, sizes))):
        raise ConfigError("start: give a learned sketch distilled with the same configuration (windows, tables, bits, "
                          "hyperplanes) as this one", argument="start")
    out = []
    for a, b in zip(start.branches, branches):
        R = a.dense_projection()    # sum w (u - o) / UNIT + bias > 0 keeps its hashes under another centring o
        bias = (-a.threshold_f + R.T.astype(np.float32) @ (b.offset - a.offset)) / UNIT
        out.append((R, bias, a.counts_f / (ystat["std"] if ystat else 1.0), a.table_sel))
    return out


@dataclass
class _Validation:
    """Held-out real inputs: raw (for the exact hashes), centred (the graphs' units), their teacher targets, and the
    early-stopping patience (None: report the loss, never stop)."""
    x: np.ndarray
    xc: np.ndarray
    y: np.ndarray
    patience: int | None


class _Fit:
    """The TensorFlow training loops. Variables live on this object; each phase reports progress per epoch."""

    def __init__(self, tf, xc, y, task, cfg: Config, rng, progress: Progress, pad=None, val: _Validation | None = None):
        self.tf, self.xc, self.y, self.task, self.cfg, self.rng, self.progress = tf, xc, y, task, cfg, rng, progress
        self.val = val
        self.kept: dict = {}       # phase -> epochs kept (the epoch of the lowest validation loss, with early stopping)
        self.D, self.C = xc.shape[1], y.shape[1]
        self.pad = pad     # centred value of a padded element per channel (windowed branches)

    # -- shared pieces
    def compiled(self, fn):
        """fn as a TensorFlow graph, compiled by XLA (fused elementwise work: the training steps ran 2.9x faster on
        the gestures geometry) unless table dropout draws random numbers inside it or ES_NO_XLA is set."""
        import os
        jit = self.cfg.table_dropout == 0 and not os.environ.get("ES_NO_XLA")
        return self.tf.function(fn, jit_compile=jit)

    def loss(self, out, y):
        tf = self.tf
        if self.task == "classification":
            return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=out / self.cfg.temperature))
        return tf.reduce_mean(tf.square(out - y))

    def batches(self, n):
        b = min(self.cfg.batch, n)
        perm = self.rng.permutation(n)
        return [perm[i:i + b] for i in range(0, n - b + 1, b)]

    def run(self, phase, epochs, step, data, extra=lambda e: {}, watch=None):
        """Run `step(*batch_tensors, *extra(epoch))` over epochs of shuffled fixed-size batches. watch: (val_loss(),
        variables): the validation loss is reported after every epoch; with a patience the phase ends after that many
        epochs without a lower one, and the variables go back to their values at the lowest."""
        tf = self.tf
        best, kept, bad = np.inf, None, 0
        patience = self.val.patience if watch is not None and self.val is not None else None
        for e in range(epochs):
            losses = [float(step(*[tf.constant(a[idx]) for a in data], *extra(e))) for idx in self.batches(len(data[0]))]
            info = {"loss": float(np.mean(losses))}
            if watch is not None and self.val is not None:
                info["val"] = v = float(watch[0]())
                if v < best - 1e-4:
                    best, bad = v, 0
                    kept = [x.numpy() for x in watch[1]] if patience is not None else None
                else:
                    bad += 1
            if patience is not None and bad >= patience and e + 1 < epochs:
                info["stopped"] = f"early at epoch {e + 1}, kept {e + 1 - bad}"
                self.progress(phase, epochs, epochs, info)
                break
            self.progress(phase, e + 1, epochs, info)
        if kept is not None:
            for x, v in zip(watch[1], kept):
                x.assign(v)
        if patience is not None:
            self.kept[phase] = e + 1 - bad

    def table_mask(self, B, L):
        """[B, L, 1] keep-mask scaled by 1/keep (identity when table_dropout is 0)."""
        tf, keep = self.tf, 1.0 - self.cfg.table_dropout
        if keep >= 1.0:
            return 1.0
        return tf.cast(tf.random.uniform((B, L, 1)) < keep, tf.float32) / keep

    def bucket_probs(self, bits, sel, regions=None):
        """Hash bits [B, N, P] in [0, 1] of N read-out positions -> the bucket probabilities of every table, summed over
        the positions of each region: [B, R, L, 2^K] (bucket = sum of bit k * 2^k). Each half of a table's K bits gives
        probabilities of 2^(K/2) buckets [B, L, 2^(K/2), N]; one batched matmul over the positions adds up their outer
        products. Selecting bits is a matmul with a 0/1 matrix (its gradient is one too, where a gather's is a
        scatter); the bucket axis stays off the last axis while the products are built. Float for float the sums of
        the per-position products of the bits, faster on CPU than building every position's 2^K probabilities.
        regions: the number of read-out positions of each region, in order (None: one region of all N)."""
        tf = self.tf
        L, K = sel.shape
        P = int(bits.shape[-1])
        pick = np.zeros((K * L, P), np.float32)                           # row k * L + l selects bit sel[l, k]
        pick[np.arange(K)[:, None] * L + np.arange(L)[None, :], sel.T] = 1.0
        g = tf.einsum("qp,bnp->bqn", tf.constant(pick), bits)
        g = tf.reshape(g, tf.stack([tf.shape(g)[0], K, L, tf.shape(g)[-1]]))  # [B, K, L, N]

        def half(part):                                                 # [B, k, L, N] -> [B, L, 2^k, N]
            probs = tf.ones_like(g[:, 0])[:, :, None]
            for k in range(part.shape[1]):
                gk = part[:, k][:, :, None]
                probs = tf.concat([probs * (1 - gk), probs * gk], 2)
            return probs
        h = K // 2
        lo, hi = half(g[:, :h]), half(g[:, h:])
        parts = [(lo, hi)] if regions is None else zip(tf.split(lo, regions, -1), tf.split(hi, regions, -1))
        out = [tf.reshape(tf.matmul(b_hi, b_lo, transpose_b=True), (-1, L, 1 << K)) for b_lo, b_hi in parts]
        return tf.stack(out, 1)                                         # [B, R, L, 2^K]

    # -- learned mode
    def _branch_graph(self, b: Branch, L: int, K: int, P: int, s: int, sel, Tn: int = 1):
        """TensorFlow pieces of one branch: project(x, W) (every hash bit's sum [B, N, P], Tn bits sharing each
        projection; a flat branch has one position), scores(bits) [B, C] and the variables W, bias, T. A windowed
        branch's sums at every position are a convolution of the padded input with the hyperplanes (without dilation;
        with it, a gather of the windows and a matmul); bits are OR-pooled, then the cells of every read-out position
        are added up."""
        tf, C = self.tf, self.C
        w = b.window
        T = tf.Variable(np.zeros((w.regions * L, 1 << K, C), np.float32))
        q, Nr, R = w.pool_size, w.n_readouts, w.regions
        if w.is_flat:
            sums = lambda x, W: (x @ W)[:, None, :]
        elif max(w.dilation) == 1 and len(w.spatial) <= 3:
            sums = self._conv_sums(w)
        else:
            idx = tf.constant(w.element_index().astype(np.int32))
            padv = tf.constant(self.pad)
            sums = lambda x, W: tf.gather(tf.concat([x, tf.broadcast_to(padv[None], (tf.shape(x)[0], len(self.pad)))], 1), idx, axis=1) @ W
        sizes = None if R == 1 else [int(v) for v in np.bincount(w.readout_region, minlength=R)]

        def scores(bits):
            if q > 1:   # OR over each pool block: 1 - prod(1 - b)
                bits = 1.0 - tf.reduce_prod(1.0 - tf.reshape(bits, (-1, Nr, q, P)), 2)
            mask = self.table_mask(tf.shape(bits)[0], L)
            probs = self.bucket_probs(bits, sel, sizes) * (mask if isinstance(mask, float) else mask[:, None])   # [B, R, L, M]
            return tf.einsum("brlm,rlmc->bc", probs, tf.reshape(T, (R, L, 1 << K, C)))

        def project(x, W):   # each projection's sum at every position, once per threshold
            s = sums(x, W)
            return s if Tn == 1 else tf.repeat(s, Tn, axis=-1)
        W = tf.Variable(self.rng.normal(0, 1 / math.sqrt(w.n_elements), (w.n_elements, P // Tn)).astype(np.float32))
        # several thresholds per projection start spread out (equal ones would stay equal)
        bias = tf.Variable((np.zeros(P) if Tn == 1 else np.tile(np.linspace(-0.5, 0.5, Tn), P // Tn)).astype(np.float32))
        return project, scores, W, bias, T

    def _conv_sums(self, w: Window):
        """sums(x, W): every position's window times W [E, P'] as a convolution (stride, no dilation) of the input
        padded with each channel's pad value: [B, n_positions, P'] in element_index's position order."""
        tf = self.tf
        n, ch = len(w.spatial), w.channels
        padv = tf.constant(self.pad)
        cut = [slice(None)] + [slice(0, g) for g in w.grid] + [slice(None)]      # whole pool blocks only
        pads = [[0, 0]] + [[p, p] for p in w.padding] + [[0, 0]]
        order = np.ravel_multi_index(tuple(_positions(w).T), w.grid)             # read-out then pool order
        perm = None if np.array_equal(order, np.arange(len(order))) else tf.constant(order.astype(np.int32))

        def sums(x, W):
            g = tf.reshape(x, (-1,) + tuple(w.spatial) + (ch,))
            g = tf.pad(g - padv, pads) + padv
            f = tf.reshape(W, tuple(w.size) + (ch, -1))
            out = tf.nn.convolution(g, f, strides=list(w.stride), padding="VALID")[tuple(cut)]
            out = tf.reshape(out, (tf.shape(x)[0], w.n_positions, -1))
            return out if perm is None else tf.gather(out, perm, axis=1)
        return sums

    def learned(self, sk: Sketch, xa: np.ndarray, start: list | None = None, ste: bool = True):
        """Relax, straight-through, refit. start: (dense hyperplanes [E, P], bias [P], tables, table selectors) per
        branch to continue from: the straight-through phase starts there (no relax); ste False: nor that phase."""
        tf, cfg = self.tf, self.cfg
        sizes = branch_sizes(cfg)
        G, thresholds = [], [cfg.thresholds] + [1] * (len(sizes) - 1)     # a flat branch beside windows: one each
        for i, (b, (L, K, P, s), Tn) in enumerate(zip(sk.branches, sizes, thresholds)):
            sel = (start[i][3] if start is not None else window_selectors(P, L, K, Tn) if cfg.selectors == "window"
                   else _selectors(P, L, K, self.rng))
            G.append((b, L, K, P, min(s, b.window.n_elements), sel) + self._branch_graph(b, L, K, P, s, sel, Tn))
        half = lambda s: s // 2 if cfg.signs == "balanced" else None
        opt = tf.keras.optimizers.Adam(cfg.lr)
        relax_vars = [v for g in G for v in g[8:11]]

        @self.compiled
        def relax_step(x, y, beta):
            with tf.GradientTape() as t:
                out = sum(scores(tf.sigmoid(beta * (project(x, W) + bias))) for _, _, _, _, _, _, project, scores, W, bias, _ in G)
                loss = self.loss(out, y)
            opt.apply_gradients(zip(t.gradient(loss, relax_vars), relax_vars))
            return loss
        betas = np.geomspace(1.0, 30.0, cfg.epochs).astype(np.float32)
        if start is None:
            self.run("relax", cfg.epochs, relax_step, (self.xc, self.y), lambda e: (tf.constant(betas[e]),))

        # keep the s largest weights of each hyperplane (signs, or integers up to cfg.weights); rescale the thresholds
        latent = []
        for i, ((b, L, K, P, s, sel, project, scores, W, bias, T), Tn) in enumerate(zip(G, thresholds)):
            if start is not None:     # the start's integer hyperplanes are latent weights at the right scale already
                R, b0, T0, _ = start[i]
                bias.assign(b0.astype(np.float32))
                T.assign(T0.reshape(T.shape).astype(np.float32))
                latent.append(tf.Variable(R[:, ::Tn].astype(np.float32)))
                continue
            top = np.sort(np.abs(W.numpy()), 0)[-s:]
            norm = np.maximum(top.mean(0) if cfg.weights == 1 else top.max(0) / cfg.weights, 1e-6)
            bias.assign(bias.numpy() / np.repeat(norm, Tn))
            latent.append(tf.Variable(W.numpy() / norm))
        opt2 = tf.keras.optimizers.Adam(cfg.ste_lr or cfg.lr)
        ste_vars = [v for g, Wl in zip(G, latent) for v in (Wl, g[9], g[10])]

        def hard_soft(z):
            soft = tf.sigmoid(4.0 * z / tf.stop_gradient(tf.math.reduce_std(z, axis=list(range(len(z.shape) - 1))) + 1e-3))
            return tf.cast(z > 0, tf.float32) + soft - tf.stop_gradient(soft)

        def ste_out(x):
            out = 0.0
            for (b, L, K, P, s, sel, project, scores, W, bias, T), Wl in zip(G, latent):
                w = Wl + tf.stop_gradient(self.ternary(Wl, s, half(s)) - Wl)  # straight through to the latent weights
                out += scores(hard_soft(project(x, w) + bias))
            return out

        @self.compiled
        def ste_step(x, y):
            with tf.GradientTape() as t:
                loss = self.loss(ste_out(x), y)
            opt2.apply_gradients(zip(t.gradient(loss, ste_vars), ste_vars))
            return loss
        if ste:
            self.run("ste", cfg.ste_epochs or cfg.epochs, ste_step, (self.xc, self.y),
                     watch=self.watch(tf.function(ste_out), ste_vars))

        for (b, L, K, P, s, sel, project, scores, W, bias, T), Wl, Tn in zip(G, latent, thresholds):
            R = np.repeat(self.ternary(Wl, s, half(s)).numpy().astype(np.int8), Tn, axis=1)
            b.tap_ptr, b.tap_idx, b.tap_weight = csr_from_dense(R)
            b.threshold_f = (-UNIT * bias.numpy()).astype(np.float32)  # sum w*(u-o)/UNIT + b > 0
            b.table_sel = sel.astype(np.int32)
            b.counts_f = T.numpy()
        sk.out_bias = np.zeros(self.C, np.float32)
        self.progress("hash", 0, 1, {})
        idx = _exact_cells(sk, xa)             # phase 3 sees the device's exact hashes
        self.progress("hash", 1, 1, {"samples": len(xa)})
        self.refit(sk, idx)

    def watch(self, out, variables, cells: np.ndarray | None = None):
        """run()'s watch for a phase: (the loss of out(x) on the validation inputs, centred or as cells, variables);
        None without validation inputs."""
        if self.val is None:
            return None
        tf, v = self.tf, self.val
        data = v.xc if cells is None else cells
        chunks = [(tf.constant(data[i:i + 2048]), tf.constant(v.y[i:i + 2048])) for i in range(0, len(data), 2048)]
        return (lambda: sum(float(self.loss(out(x), y)) * len(y) for x, y in chunks) / len(data), variables)

    def ternary(self, w, s: int, half: int | None):
        """Each hyperplane's (column's) s largest latent weights, the rest 0: as signs (cfg.weights 1), or rounded
        to integers up to cfg.weights in magnitude (the latent weights are scaled so that the largest is about
        cfg.weights); balanced (half = s // 2): the s/2 largest positive weights as +1 and the s - s/2 most negative
        as -1."""
        tf = self.tf
        if half is not None:
            kn = tf.math.top_k(tf.transpose(-w), s - half).values[:, -1]
            neg = tf.where(-w >= kn[None, :], 1.0, 0.0)
            if not half:
                return -neg
            kp = tf.math.top_k(tf.transpose(w), half).values[:, -1]
            return tf.where(w >= kp[None, :], 1.0, 0.0) - neg
        kth = tf.math.top_k(tf.transpose(tf.abs(w)), s).values[:, -1]
        keep = tf.abs(w) >= kth[None, :]
        if self.cfg.weights == 1:
            return tf.where(keep, tf.sign(w), 0.0)
        q = float(self.cfg.weights)
        mag = tf.clip_by_value(tf.round(tf.abs(w)), 1.0, q)       # a kept tap is never 0
        return tf.where(keep, tf.sign(w) * mag, 0.0)

    def refit(self, sk: Sketch, idx: np.ndarray):
        """Phase 3: tables only, on exact integer cells (flat index into every branch's cells) [N, cells read]."""
        tf, cfg = self.tf, self.cfg
        T = tf.Variable(all_counts(sk, "counts_f"))
        opt = tf.keras.optimizers.Adam(cfg.refit_lr or cfg.lr)
        L = idx.shape[1]
        step_fn = lambda table: self.cell_step(T, table, opt, L)
        watch = None if self.val is None else self.watch(lambda i: tf.reduce_sum(tf.gather(T, i), 1), [T],
                                                         _exact_cells(sk, self.val.x))
        self.run("refit", cfg.refit_epochs, step_fn(lambda: T), (idx, self.y), watch=watch)
        if cfg.count_bits == 4:   # quantisation-aware: train through the 4-bit grid (straight-through), scale fixed
            _, scale = quantize.quantize_counts(T.numpy()[None], self.task, 4)
            s = tf.constant(scale)

            def fake_quant():
                Tc = T - tf.reduce_mean(T, -1, keepdims=True) if self.task == "classification" else T + 0.0
                return Tc + tf.stop_gradient(tf.clip_by_value(tf.round(Tc / s), -7.0, 7.0) * s - Tc)
            self.run("refit int4", max(3, cfg.refit_epochs // 3), step_fn(fake_quant), (idx, self.y))
            sk.meta["count_scale"] = [float(v) for v in scale]
        set_all_counts(sk, "counts_f", T.numpy())

    def cell_step(self, var, table, opt, L):
        """One training step of `var` through table() [cells, C], on batches of flat cell indices [B, L]."""
        tf = self.tf

        @self.compiled
        def step(i, y):
            with tf.GradientTape() as t:
                loss = self.loss(tf.reduce_sum(tf.gather(table(), i) * self.table_mask(tf.shape(i)[0], L), 1), y)
            opt.apply_gradients([(t.gradient(loss, var), var)])
            return loss
        return step

    def codebook(self, sk: Sketch, idx: np.ndarray):
        """Shared rows (--codebook R): k-means of the cells of every branch into R rows, weighted by how often the
        training inputs land in each cell (idx: flat cell indices [N, cells read]), then the rows are trained with
        every cell's row fixed."""
        tf, cfg = self.tf, self.cfg
        cells = all_counts(sk, "counts_f")
        hits = np.bincount(idx.reshape(-1), minlength=len(cells))
        rows, book = quantize.cluster_rows(cells, cfg.codebook, hits + 1.0, self.task, cfg.seed)
        B, A = tf.Variable(book.astype(np.float32)), tf.constant(rows.astype(np.int32))
        self.run("codebook", cfg.refit_epochs, self.cell_step(B, lambda: tf.gather(B, A), tf.keras.optimizers.Adam(cfg.lr),
                 idx.shape[1]), (idx, self.y))
        set_all_counts(sk, "counts_f", B.numpy()[rows])
        sk.extras["cell_rows"] = stored_rows(sk.branches, rows)

    # -- representer mode
    def representer(self, sk: Sketch):
        tf, cfg, D, C = self.tf, self.cfg, self.D, self.C
        L, K, Mr = cfg.tables, cfg.bits, cfg.representers
        Wr = tf.Variable(self.xc[self.rng.choice(len(self.xc), Mr, replace=Mr > len(self.xc))] + 1e-3)
        A = tf.Variable(self.rng.normal(0, 0.1, (Mr, C)).astype(np.float32))
        bias = tf.Variable(np.zeros(C, np.float32))
        opt = tf.keras.optimizers.Adam(cfg.lr)

        def kernel(x):
            cos = tf.linalg.l2_normalize(x, 1) @ tf.transpose(tf.linalg.l2_normalize(Wr, 1))
            return (1.0 - tf.acos(tf.clip_by_value(cos, -1 + 1e-6, 1 - 1e-6)) / math.pi) ** K

        @tf.function
        def step(x, y):
            with tf.GradientTape() as t:
                loss = self.loss(kernel(x) @ A + bias, y)
            opt.apply_gradients(zip(t.gradient(loss, [Wr, A, bias]), [Wr, A, bias]))
            return loss
        self.run("fit", 2 * cfg.epochs, step, (self.xc, self.y))

        R = random_ternary(D, L * K, self.rng, cfg.density)
        w, alpha, c0 = Wr.numpy(), A.numpy().astype(np.float64), bias.numpy()
        b = sk.branches[0]
        b.tap_ptr, b.tap_idx, b.tap_weight = csr_from_dense(R)
        b.threshold_f = np.zeros(L * K, np.float32)
        b.table_sel = np.arange(L * K, dtype=np.int32).reshape(L, K)
        counts = representer_counts(w @ R.astype(np.float64) > 0, alpha, L, K)
        if self.task == "classification":  # fold the bias into the cells: integer argmax must see it
            counts += c0 / L
            sk.out_bias = np.zeros(C, np.float32)
        else:
            sk.out_bias = c0.astype(np.float32)
        b.counts_f = counts.astype(np.float32)
        sk.extras = {"representers": w.astype(np.float32), "alpha": alpha.astype(np.float32), "bias": c0.astype(np.float32)}


def _exact_cells(sk: Sketch, x: np.ndarray) -> np.ndarray:
    """Fold the integer thresholds into sk (in place), then the cell each table reads for every row of the float
    inputs x, exactly as the device hashes them: flat indices [N, cells read] (int32, for tf.gather)."""
    quantize.fold_thresholds(sk)
    out = []
    for i in range(0, len(x), 8192):
        out.append(int_cells(sk, quantize_inputs(sk, x[i:i + 8192])).astype(np.int32))
    return np.concatenate(out)


def _selectors(P: int, L: int, K: int, rng) -> np.ndarray:
    """Which K hyperplanes each table reads: distinct within a table, every hyperplane used about equally."""
    if K > P:
        raise ConfigError(f"bits={K} needs at least {K} hyperplanes", argument="bits")
    use, sel = np.zeros(P), []
    for _ in range(L):
        row = np.lexsort((rng.random(P), use))[:K]  # least used first, random among equals
        use[row] += 1
        sel.append(row)
    return np.array(sel, np.int64)


def config(input_shape, window="auto", **options):
    """The Config for a teacher input shape: the family's defaults (windows over a time or image axis unless
    window="flat"), then `options` (any Config field). ConfigError names an unknown option."""
    known = {f.name for f in fields(Config)}
    bad = [k for k in options if k not in known]
    if bad:
        raise ConfigError(f"{bad[0]}=...: no such option; use one of {', '.join(sorted(known))}", argument=bad[0])
    kw = {} if window == "flat" or options.get("mode") == "representer" else dict(family_defaults(input_shape))
    if window not in ("auto", "flat"):
        win = tuple(window) if isinstance(window, (tuple, list)) else (int(window),)
        if not kw:
            kw = dict(family_defaults((16,) * len(win) + (1,)))
        kw["window"] = win
    if "stride" in options and "dilation" not in options:   # a stride of the caller's: windows without gaps, as before
        kw["dilation"] = (1,)
    kw.update(options)
    cfg = Config(**kw)
    check(cfg, input_shape)
    return cfg
