"""Prototype: two-level hashing on mnist1d, accuracy only (not in the model format, codegen or firmware).

The learned sketch hashes the input through P sparse ternary hyperplanes. Two-level hashing adds P2 hyperplanes over
the first level's bits (s2 ternary taps on the +-1 bits each), and the tables read from both levels: a second layer of
sign units, the nonlinearity that docs/algorithm-notes.md finds missing on mnist1d. Trained like distill's learned
mode (relax with annealed soft bits, ternary straight-through, table refit on hard bits) on the same augmented,
teacher-relabelled data and int8 inputs; test accuracy with hard bits and float tables (the integer path would
match it up to threshold rounding). One seed; one row per configuration; "adds" counts the hashing additions.

    python examples/studies/two_level.py [--teacher mnist1d-mlp] [--data mnist1d] [--only NAME ...]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "examples" / "studies")]

import teachers  # noqa: E402
from edgesketch import data, quantize, teacher  # noqa: E402
from edgesketch.distillation import UNIT, Config, _Fit, _selectors, augment, targets  # noqa: E402

# name -> (P1, s1, P2, s2, L, K)
CONFIGS = {
    "one level P48 (the default sketch)": (48, 8, 0, 0, 16, 6),
    "one level P64": (64, 8, 0, 0, 16, 6),
    "one level P80": (80, 8, 0, 0, 16, 6),
    "two levels P32 + P16 s8": (32, 8, 16, 8, 16, 6),
    "two levels P48 + P16 s8": (48, 8, 16, 8, 16, 6),
    "two levels P48 + P32 s8": (48, 8, 32, 8, 16, 6),
    "two levels P48 + P32 s16": (48, 8, 32, 16, 16, 6),
}


def run(tf, fit: _Fit, xt, yt, P1, s1, P2, s2, L, K, seed):
    D, C = fit.D, fit.C
    rng = np.random.default_rng(seed)
    sel = _selectors(P1 + P2, L, K, rng)
    W1 = tf.Variable(rng.normal(0, 1 / math.sqrt(D), (D, P1)).astype(np.float32))
    b1 = tf.Variable(np.zeros(P1, np.float32))
    W2 = tf.Variable(rng.normal(0, 1 / math.sqrt(max(P1, 1)), (P1, max(P2, 1))).astype(np.float32))
    b2 = tf.Variable(np.zeros(max(P2, 1), np.float32))
    T = tf.Variable(np.zeros((L, 1 << K, C), np.float32))
    weights = [W1, b1, T] + ([W2, b2] if P2 else [])

    def ternary(w, s):
        kth = tf.math.top_k(tf.transpose(tf.abs(w)), s).values[:, -1]
        return tf.where(tf.abs(w) >= kth[None, :], tf.sign(w), 0.0)

    def out(x, bit, w1, w2):
        h1 = bit(x @ w1 + b1)
        if P2:
            h2 = bit((2.0 * h1 - 1.0) @ w2 + b2)
            h1 = tf.concat([h1, h2], 1)
        return tf.einsum("blm,lmc->bc", fit.bucket_probs(h1[:, None], sel)[:, 0], T)

    opt = tf.keras.optimizers.Adam(fit.cfg.lr)

    @tf.function
    def relax(x, y, beta):
        with tf.GradientTape() as t:
            loss = fit.loss(out(x, lambda z: tf.sigmoid(beta * z), W1, W2), y)
        opt.apply_gradients(zip(t.gradient(loss, weights), weights))
        return loss
    betas = np.geomspace(1.0, 30.0, fit.cfg.epochs).astype(np.float32)
    fit.run("relax", fit.cfg.epochs, relax, (fit.xc, fit.y), lambda e: (tf.constant(betas[e]),))

    def ste_bit(z):
        soft = tf.sigmoid(4.0 * z / tf.stop_gradient(tf.math.reduce_std(z, 0) + 1e-3))
        return tf.cast(z > 0, tf.float32) + soft - tf.stop_gradient(soft)
    for W, b, s in ((W1, b1, s1), (W2, b2, s2)):   # rescale to the ternary weights, as distill does
        if s:
            top = np.sort(np.abs(W.numpy()), 0)[-s:].mean(0)
            W.assign(W.numpy() / np.maximum(top, 1e-6))
            b.assign(b.numpy() / np.maximum(top, 1e-6))
    opt2 = tf.keras.optimizers.Adam(fit.cfg.lr)

    def w_ste(W, s):
        return W + tf.stop_gradient(ternary(W, s) - W)

    @tf.function
    def ste(x, y):
        with tf.GradientTape() as t:
            loss = fit.loss(out(x, ste_bit, w_ste(W1, s1), w_ste(W2, s2) if P2 else W2), y)
        opt2.apply_gradients(zip(t.gradient(loss, weights), weights))
        return loss
    fit.run("ste", fit.cfg.epochs, ste, (fit.xc, fit.y))

    hard = lambda z: tf.cast(z > 0, tf.float32)  # noqa: E731
    w1, w2 = ternary(W1, s1), (ternary(W2, s2) if P2 else W2)
    opt3 = tf.keras.optimizers.Adam(fit.cfg.lr)

    @tf.function
    def refit(x, y):
        with tf.GradientTape() as t:
            loss = fit.loss(out(x, hard, w1, w2), y)
        opt3.apply_gradients([(t.gradient(loss, T), T)])
        return loss
    fit.run("refit", fit.cfg.refit_epochs, refit, (fit.xc, fit.y))
    acc = lambda x, y: float(np.mean(np.argmax(out(tf.constant(x), hard, w1, w2).numpy(), 1) == y))  # noqa: E731
    return acc(xt, yt), acc(fit.xc[:len(yt)], np.argmax(fit.y[:len(yt)], 1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", default="mnist1d-mlp")
    ap.add_argument("--data", default="mnist1d")
    ap.add_argument("--only", nargs="+", choices=list(CONFIGS))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    from edgesketch.teacher import tensorflow
    tf = tensorflow()
    ds, tch = data.load(a.data), teacher.load(teachers.ensure(a.teacher))
    cfg = Config(seed=a.seed)
    print(f"| {a.teacher} on {a.data}, seed {a.seed} | P1 s1 | P2 s2 | L K | adds | test | train (teacher labels) |")
    print("|---|---|---|---|---|---|---|", flush=True)
    for name in a.only or CONFIGS:
        P1, s1, P2, s2, L, K = CONFIGS[name]
        tf.keras.utils.set_random_seed(a.seed)
        rng = np.random.default_rng(a.seed)
        x = ds.x_train.reshape(len(ds.x_train), -1).astype(np.float32)
        xa = augment(x, cfg, rng)
        in_scale, in_zero = quantize.calibrate_inputs(xa[:len(x)])
        offset = (xa[:len(x)] / in_scale + in_zero).mean(0).astype(np.float32)
        y, _ = targets(tch, xa, cfg)

        def unit(v, rounded):   # int8 units, centred and scaled as distill trains on them (it trains unrounded)
            u = v.reshape(len(v), -1) / in_scale + in_zero
            return ((np.clip(np.rint(u), -128, 127) if rounded else u) - offset) / UNIT
        fit = _Fit(tf, unit(xa, False).astype(np.float32), y, tch.task, cfg, rng, lambda *p: None)
        t0 = time.time()
        test, train = run(tf, fit, unit(ds.x_test, True).astype(np.float32), ds.y_test, P1, s1, P2, s2, L, K, a.seed)
        print(f"| {name} | {P1} {s1} | {P2} {s2} | {L} {K} | {P1 * s1 + P2 * s2} | {test:.4f} | {train:.4f} |"
              f" <!-- {time.time() - t0:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
