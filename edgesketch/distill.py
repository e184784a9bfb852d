"""Distil a Keras teacher into a sketch. TensorFlow only here; the result is a numpy Sketch (float and integer).

learned (default, beyond the paper)
  P shared hyperplanes with s ternary taps each; table l reads K of them. Three phases on teacher-relabelled
  augmented data: (1) relax: dense hyperplanes, soft bits sigmoid(beta*z) with beta annealed upward, tables learned
  jointly; (2) keep each hyperplane's s largest weights as signs and refine signs and thresholds with a
  straight-through estimator (hard bits forward, soft bits backward); (3) refit the count tables on the exact
  integer hashes the device will compute.
shared rows (--codebook R, either mode)
  then cluster the L * 2^K cells into R rows (k-means, each cell weighted by how often training lands in it) and
  train the rows with every cell's row fixed: a row index per cell and R rows replace the tables.
representer (the paper, arXiv 2106.11426)
  fit f(x) = sum_j alpha_j (1 - theta(x, w_j)/pi)^K to the teacher, then build L count arrays with random sparse
  ternary K-bit hashes: cell h_l(w_j) += alpha_j / L.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from . import quantize
from .sketch import (Sketch, csr_from_dense, int_cells, quantize_inputs, random_ternary, representer_counts,
                     window_selectors)

UNIT = 64.0  # hyperplanes are trained on (u - offset) / UNIT: int8 units brought to about unit scale

Progress = Callable[[str, int, int, dict], None]


@dataclass
class Config:
    mode: str = "learned"
    tables: int = 16          # L
    bits: int = 6             # K
    hyperplanes: int = 48     # P (learned mode)
    taps: int = 8             # s (learned mode)
    representers: int = 128   # M (representer mode)
    density: float = 1 / 3    # ternary density of random projections (representer mode)
    augment: bool = True
    aug_size: int = 0         # 0: max(40000, 10 * n_train)
    noise: float = 0.1        # Gaussian noise, in units of each feature's std
    epochs: int = 30          # per phase (relax, STE); representer fit uses 2x
    refit_epochs: int = 15
    batch: int = 256
    lr: float = 0.01
    temperature: float = 1.0
    table_dropout: float = 0.0  # drop each table's vote with this probability while training (against co-adaptation)
    count_bits: int = 8
    selectors: str = "random"  # which hyperplanes a table reads: "random", or "window" (K consecutive ones in a 32-bit word)
    signs: str = "free"        # tap signs: "free", or "balanced" (s/2 positive and s/2 negative taps per hyperplane)
    codebook: int = 0          # store the cells as at most this many shared rows (0: every cell its own)
    seed: int = 0


def augment(x: np.ndarray, cfg: Config, rng: np.random.Generator, transfer: np.ndarray | None = None) -> np.ndarray:
    """The training set, then unlabelled transfer inputs if given, then mixup pairs (lambda ~ U(0,1), random partner)
    with Gaussian noise up to the augmented size; the teacher relabels all of them, so the sketch learns the teacher's
    function between and around training points. Transfer inputs take the place of mixup samples: on mnist1d, real
    inputs taught more than mixup did (examples/levers.py)."""
    n = cfg.aug_size or max(40000, 10 * len(x))
    if transfer is not None and len(transfer):
        x = np.concatenate([x, np.asarray(transfer, np.float32).reshape(len(transfer), -1)])
    if not cfg.augment or n <= len(x):
        return x.astype(np.float32)
    k = n - len(x)
    i, j = rng.integers(0, len(x), k), rng.integers(0, len(x), k)
    lam = rng.uniform(0, 1, (k, 1)).astype(np.float32)
    noise = rng.normal(0, 1, (k, x.shape[1])).astype(np.float32) * (cfg.noise * x.std(0))
    return np.concatenate([x, lam * x[i] + (1 - lam) * x[j] + noise]).astype(np.float32)


def targets(teacher, x: np.ndarray, cfg: Config) -> tuple[np.ndarray, dict]:
    """Soft targets: class probabilities at temperature T, or standardised regression outputs."""
    if teacher.task == "classification":
        z = teacher.logits(x) / cfg.temperature
        p = np.exp(z - z.max(1, keepdims=True))
        return (p / p.sum(1, keepdims=True)).astype(np.float32), {}
    y = teacher.outputs(x)
    mu, sd = y.mean(0), np.maximum(y.std(0), 1e-8)
    return ((y - mu) / sd).astype(np.float32), {"mean": mu, "std": sd}


def distill(teacher, x_train: np.ndarray, cfg: Config, meta: dict, progress: Progress | None = None,
            transfer: np.ndarray | None = None) -> Sketch:
    """The sketch of `teacher` on x_train and unlabelled `transfer` inputs (relabelled by the teacher like the augmented
    samples, and calibrating the input quantisation with the training set: both are real inputs)."""
    if cfg.codebook and cfg.count_bits == 4:
        raise ValueError("shared rows (codebook) hold int8 or int16 counts, not 4-bit ones")
    from .teacher import tensorflow
    tf = tensorflow()
    tf.keras.utils.set_random_seed(cfg.seed)
    tf.config.experimental.enable_op_determinism()
    progress = progress or (lambda *a: None)
    rng = np.random.default_rng(cfg.seed)

    x_train = np.asarray(x_train, np.float32).reshape(len(x_train), -1)
    progress("relabel", 0, 1, {})
    xa = augment(x_train, cfg, rng, transfer)
    real = xa[:len(x_train) + (0 if transfer is None else len(transfer))]   # augment puts the real inputs first
    in_scale, in_zero = quantize.calibrate_inputs(real)
    offset = (real / in_scale + in_zero).mean(0).astype(np.float32)
    y, ystat = targets(teacher, xa, cfg)
    progress("relabel", 1, 1, {"samples": len(xa)})
    xc = ((xa / in_scale + in_zero - offset) / UNIT).astype(np.float32)

    sk = Sketch(meta=dict(meta, task=teacher.task, mode=cfg.mode, config=asdict(cfg)), in_scale=in_scale,
                in_zero=in_zero, offset=offset, tap_ptr=None, tap_idx=None, tap_sign=None, threshold_f=None,
                threshold=None, table_sel=None, counts_f=None, counts=None, out_scale=None, out_bias=None)
    fit = _Fit(tf, xc, y, teacher.task, cfg, rng, progress)
    if cfg.mode == "learned":
        fit.learned(sk, xa)
    elif cfg.mode == "representer":
        fit.representer(sk)
    else:
        raise ValueError(cfg.mode)
    if cfg.codebook:
        fit.codebook(sk, _exact_cells(sk, xa))
    if ystat:  # regression: back to the teacher's units
        sk.counts_f = sk.counts_f * ystat["std"].astype(np.float32)
        sk.out_bias = (sk.out_bias * ystat["std"] + ystat["mean"]).astype(np.float32)
    sk.counts_f = sk.counts_f.astype(np.float32)
    return quantize.finalize(sk, cfg.count_bits)


class _Fit:
    """The TensorFlow training loops. Variables live on this object; each phase reports progress per epoch."""

    def __init__(self, tf, xc, y, task, cfg: Config, rng, progress: Progress):
        self.tf, self.xc, self.y, self.task, self.cfg, self.rng, self.progress = tf, xc, y, task, cfg, rng, progress
        self.D, self.C = xc.shape[1], y.shape[1]

    # -- shared pieces
    def loss(self, out, y):
        tf = self.tf
        if self.task == "classification":
            return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=out / self.cfg.temperature))
        return tf.reduce_mean(tf.square(out - y))

    def batches(self, n):
        b = min(self.cfg.batch, n)
        perm = self.rng.permutation(n)
        return [perm[i:i + b] for i in range(0, n - b + 1, b)]

    def run(self, phase, epochs, step, data, extra=lambda e: {}):
        """Run `step(*batch_tensors, *extra(epoch))` over epochs of shuffled fixed-size batches."""
        tf = self.tf
        for e in range(epochs):
            losses = [float(step(*[tf.constant(a[idx]) for a in data], *extra(e))) for idx in self.batches(len(data[0]))]
            self.progress(phase, e + 1, epochs, {"loss": float(np.mean(losses))})

    def table_mask(self, B, L):
        """[B, L, 1] keep-mask scaled by 1/keep (identity when table_dropout is 0)."""
        tf, keep = self.tf, 1.0 - self.cfg.table_dropout
        if keep >= 1.0:
            return 1.0
        return tf.cast(tf.random.uniform((B, L, 1)) < keep, tf.float32) / keep

    def bucket_probs(self, bits, sel):
        """bits [B, P] in [0, 1] -> probabilities of each table's 2^K buckets [B, L, 2^K]; bit k has weight 2^k."""
        tf = self.tf
        g = tf.gather(bits, sel, axis=1)  # [B, L, K]
        probs = tf.stack([1 - g[..., 0], g[..., 0]], -1)
        for k in range(1, sel.shape[1]):
            gk = g[..., k:k + 1]
            probs = tf.concat([probs * (1 - gk), probs * gk], -1)
        return probs

    # -- learned mode
    def learned(self, sk: Sketch, xa: np.ndarray):
        tf, cfg, D, C = self.tf, self.cfg, self.D, self.C
        L, K, P, s = cfg.tables, cfg.bits, cfg.hyperplanes, min(cfg.taps, self.D)
        sel = window_selectors(P, L, K) if cfg.selectors == "window" else _selectors(P, L, K, self.rng)
        half = s // 2 if cfg.signs == "balanced" else None
        W = tf.Variable(self.rng.normal(0, 1 / math.sqrt(D), (D, P)).astype(np.float32))
        b = tf.Variable(np.zeros(P, np.float32))
        T = tf.Variable(np.zeros((L, 1 << K, C), np.float32))
        opt = tf.keras.optimizers.Adam(cfg.lr)
        def out(bits):
            probs = self.bucket_probs(bits, sel) * self.table_mask(tf.shape(bits)[0], L)
            return tf.einsum("blm,lmc->bc", probs, T)

        @tf.function
        def relax_step(x, y, beta):
            with tf.GradientTape() as t:
                loss = self.loss(out(tf.sigmoid(beta * (x @ W + b))), y)
            opt.apply_gradients(zip(t.gradient(loss, [W, b, T]), [W, b, T]))
            return loss
        betas = np.geomspace(1.0, 30.0, cfg.epochs).astype(np.float32)
        self.run("relax", cfg.epochs, relax_step, (self.xc, self.y), lambda e: (tf.constant(betas[e]),))

        # keep the s largest weights of each hyperplane as signs; rescale thresholds to the ternary weights
        top = np.sort(np.abs(W.numpy()), 0)[-s:].mean(0)
        b.assign(b.numpy() / np.maximum(top, 1e-6))
        Wl = tf.Variable(W.numpy() / np.maximum(top, 1e-6))
        opt2 = tf.keras.optimizers.Adam(cfg.lr)

        ternary = lambda w: self.ternary(w, s, half)

        @tf.function
        def ste_step(x, y):
            with tf.GradientTape() as t:
                w = Wl + tf.stop_gradient(ternary(Wl) - Wl)  # straight through to the latent weights
                z = x @ w + b
                soft = tf.sigmoid(4.0 * z / tf.stop_gradient(tf.math.reduce_std(z, 0) + 1e-3))
                hard = tf.cast(z > 0, tf.float32)
                loss = self.loss(out(hard + soft - tf.stop_gradient(soft)), y)
            opt2.apply_gradients(zip(t.gradient(loss, [Wl, b, T]), [Wl, b, T]))
            return loss
        self.run("ste", cfg.epochs, ste_step, (self.xc, self.y))

        R = ternary(Wl).numpy().astype(np.int8)
        sk.tap_ptr, sk.tap_idx, sk.tap_sign = csr_from_dense(R)
        sk.threshold_f = (-UNIT * b.numpy()).astype(np.float32)  # sum sign*(u-o)/UNIT + b > 0
        sk.table_sel = sel.astype(np.int32)
        sk.out_bias = np.zeros(C, np.float32)
        sk.counts_f = T.numpy()
        self.refit(sk, _exact_cells(sk, xa))   # phase 3 sees the device's exact hashes

    def ternary(self, w, s: int, half: int | None):
        """Each hyperplane's (column's) s largest latent weights as signs, the rest 0; balanced (half = s // 2): the
        s/2 largest positive weights as +1 and the s - s/2 most negative as -1."""
        tf = self.tf
        if half is not None:
            kn = tf.math.top_k(tf.transpose(-w), s - half).values[:, -1]
            neg = tf.where(-w >= kn[None, :], 1.0, 0.0)
            if not half:
                return -neg
            kp = tf.math.top_k(tf.transpose(w), half).values[:, -1]
            return tf.where(w >= kp[None, :], 1.0, 0.0) - neg
        kth = tf.math.top_k(tf.transpose(tf.abs(w)), s).values[:, -1]
        return tf.where(tf.abs(w) >= kth[None, :], tf.sign(w), 0.0)

    def refit(self, sk: Sketch, idx: np.ndarray):
        """Phase 3: tables only, on exact integer buckets (flat cell index per table) [N, L]."""
        tf, cfg = self.tf, self.cfg
        L, M, C = sk.counts_f.shape
        T = tf.Variable(sk.counts_f.reshape(L * M, C))
        opt = tf.keras.optimizers.Adam(cfg.lr)
        step_fn = lambda table: self.cell_step(T, table, opt, L)
        self.run("refit", cfg.refit_epochs, step_fn(lambda: T), (idx, self.y))
        if cfg.count_bits == 4:   # quantisation-aware: train through the 4-bit grid (straight-through), scale fixed
            _, scale = quantize.quantize_counts(T.numpy().reshape(L, M, C), self.task, 4)
            s = tf.constant(scale)

            def fake_quant():
                Tc = T - tf.reduce_mean(T, -1, keepdims=True) if self.task == "classification" else T + 0.0
                return Tc + tf.stop_gradient(tf.clip_by_value(tf.round(Tc / s), -7.0, 7.0) * s - Tc)
            self.run("refit int4", max(3, cfg.refit_epochs // 3), step_fn(fake_quant), (idx, self.y))
            sk.meta["count_scale"] = [float(v) for v in scale]
        sk.counts_f = T.numpy().reshape(L, M, C)

    def cell_step(self, var, table, opt, L):
        """One training step of `var` through table() [L * 2^K, C], on batches of flat cell indices [B, L]."""
        tf = self.tf

        @tf.function
        def step(i, y):
            with tf.GradientTape() as t:
                loss = self.loss(tf.reduce_sum(tf.gather(table(), i) * self.table_mask(tf.shape(i)[0], L), 1), y)
            opt.apply_gradients([(t.gradient(loss, var), var)])
            return loss
        return step

    def codebook(self, sk: Sketch, idx: np.ndarray):
        """Shared rows (--codebook R): k-means of the cells into R rows, weighted by how often the training inputs land
        in each cell (idx: flat cell indices [N, L]), then the rows are trained with every cell's row fixed."""
        tf, cfg = self.tf, self.cfg
        L, M, C = sk.counts_f.shape
        hits = np.bincount(idx.reshape(-1), minlength=L * M)
        rows, book = quantize.cluster_rows(sk.counts_f.reshape(L * M, C), cfg.codebook, hits + 1.0, self.task, cfg.seed)
        B, A = tf.Variable(book.astype(np.float32)), tf.constant(rows.astype(np.int32))
        self.run("codebook", cfg.refit_epochs, self.cell_step(B, lambda: tf.gather(B, A), tf.keras.optimizers.Adam(cfg.lr), L),
                 (idx, self.y))
        sk.counts_f = B.numpy()[rows].reshape(L, M, C)
        sk.extras["cell_rows"] = rows.reshape(L, M).astype(np.uint8 if len(book) <= 256 else np.uint16)

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
        sk.tap_ptr, sk.tap_idx, sk.tap_sign = csr_from_dense(R)
        sk.threshold_f = np.zeros(L * K, np.float32)
        sk.table_sel = np.arange(L * K, dtype=np.int32).reshape(L, K)
        counts = representer_counts(w @ R.astype(np.float64) > 0, alpha, L, K)
        if self.task == "classification":  # fold the bias into the cells: integer argmax must see it
            counts += c0 / L
            sk.out_bias = np.zeros(C, np.float32)
        else:
            sk.out_bias = c0.astype(np.float32)
        sk.counts_f = counts.astype(np.float32)
        sk.extras = {"representers": w.astype(np.float32), "alpha": alpha.astype(np.float32), "bias": c0.astype(np.float32)}


def _exact_cells(sk: Sketch, x: np.ndarray) -> np.ndarray:
    """Fold the integer thresholds into sk (in place), then the cell each table reads for every row of the float
    inputs x, exactly as the device hashes them: flat indices [N, L] (int32, for tf.gather)."""
    quantize.fold_thresholds(sk)
    return int_cells(sk, quantize_inputs(sk, x)).astype(np.int32)


def _selectors(P: int, L: int, K: int, rng) -> np.ndarray:
    """Which K hyperplanes each table reads: distinct within a table, every hyperplane used about equally."""
    if K > P:
        raise ValueError(f"--bits {K} needs at least {K} hyperplanes")
    use, sel = np.zeros(P), []
    for _ in range(L):
        row = np.lexsort((rng.random(P), use))[:K]  # least used first, random among equals
        use[row] += 1
        sel.append(row)
    return np.array(sel, np.int64)
