"""Tiny int8 Conv1D networks, TFLite-style, as the peer of a sketch distilled from a Conv1D teacher: Conv1D layers
(ReLU, padding 'same' or 'valid', strides) -> global average pooling or flatten -> one Dense layer. numpy integer
reference (`Int8CNN.forward`) and a generated C model with the es_predict_q API (`generate`), equal bit for bit.

Quantisation (as TFLite / CMSIS-NN's arm_convolve_s8, single-rounding requantisation as in mlp.py):
  inputs   int8 per input channel (one scale and zero point per channel over every position, as the windowed sketch)
  convs    int8 weights per output channel, int32 accumulation, requantised to int8 by (acc * m + 2^(sh-1)) >> sh
           plus the output zero point -128, ReLU as the clamp at -128; input zero points are folded into the int32
           biases, so padding reads each channel's zero point (float 0) and adds nothing
  pooling  global average pooling keeps the int32 sum over positions S[c] = sum_t q[t, c]: the mean's 1/T' and the
           activations' zero point go into the head's weights and bias (no rounding there)
  head     int8 weights with one scale for all outputs, int32 accumulators returned as scores (scores * out_scale =
           logits); its input is S (GAP, int32) or the flattened int8 activations
The float network is distilled from a teacher on exactly the data edgesketch.distill uses (augment + targets with the
same Config, transfer inputs included) and calibrated on the real inputs (training set + transfer).
"""
from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass, field

import numpy as np

from .. import codegen
from ..errors import ConfigError
from ..sketch import quantize_int8
from .mlp import _fits_int32, _multiplier

ZP = -128                    # zero point of every hidden activation (TFLite's ReLU output)
MAX_DIM = 32767              # every buffer, weight row and offset fits a 16-bit int (C: int may be 16 bits)


# ---------------------------------------------------------------- architecture
@dataclass(frozen=True)
class Arch:
    """Conv1D layers (channels, kernel, stride), then 'gap' (global average pooling) or 'flatten', then Dense(classes).
    Written c8k5s2-c16k5s1-gap."""
    convs: tuple
    pool: str = "gap"
    padding: str = "same"

    def __post_init__(self):
        object.__setattr__(self, "convs", tuple(tuple(int(v) for v in c) for c in self.convs))
        if not self.convs or any(len(c) != 3 or min(c) < 1 for c in self.convs):
            raise ConfigError(f"convs {self.convs}: give (channels, kernel, stride) of each Conv1D, all >= 1", argument="arch")
        if self.pool not in ("gap", "flatten"):
            raise ConfigError(f"pool {self.pool!r}: use gap or flatten", argument="arch")
        if self.padding not in ("same", "valid"):
            raise ConfigError(f"padding {self.padding!r}: use same or valid", argument="arch")

    def __str__(self) -> str:
        return "-".join(f"c{c}k{k}s{s}" for c, k, s in self.convs) + f"-{self.pool}" + ("" if self.padding == "same" else "-valid")

    @classmethod
    def parse(cls, text: str) -> "Arch":
        parts = str(text).strip().lower().split("-")
        convs = [re.fullmatch(r"c(\d+)k(\d+)(?:s(\d+))?", p) for p in parts if p.startswith("c")]
        rest = [p for p in parts if not p.startswith("c")]
        if not convs or not all(convs) or not rest or rest[0] not in ("gap", "flatten") or rest[1:] not in ([], ["valid"]):
            raise ConfigError(f"architecture {text!r}: write it as c8k5s2-c16k5s1-gap (Conv1D channels, kernel, "
                              "stride; then gap or flatten; optionally -valid)", argument="arch")
        return cls(tuple((int(m[1]), int(m[2]), int(m[3] or 1)) for m in convs), rest[0],
                   "valid" if rest[1:] else "same")

    def geometry(self, T: int) -> list[tuple[int, int, int, int]]:
        """(positions in, positions out, pad left, pad right) of every conv layer, as Keras pads ('same': out =
        ceil(T / stride), the odd padding element on the right)."""
        out = []
        for _, k, s in self.convs:
            if self.padding == "same":
                t = -(-T // s)
                tot = max((t - 1) * s + k - T, 0)
                out.append((T, t, tot // 2, tot - tot // 2))
            else:
                t = (T - k) // s + 1
                if t < 1:
                    raise ConfigError(f"{self}: kernel {k} is longer than the {T} positions it slides over", argument="arch")
                out.append((T, t, 0, 0))
            T = t
        return out

    def macs(self, T: int, c_in: int, classes: int) -> int:
        total, c = 0, c_in
        for (ch, k, _), (_, t, _, _) in zip(self.convs, self.geometry(T)):
            total += t * ch * k * c
            c = ch
        n_head = c if self.pool == "gap" else self.geometry(T)[-1][1] * c
        return total + n_head * classes


# ---------------------------------------------------------------- the integer network
@dataclass
class QConv:
    w: np.ndarray        # int8 [c_out, k, c_in]
    bias: np.ndarray     # int32 [c_out] (input zero points folded in)
    mult: np.ndarray     # int32 [c_out]
    shift: np.ndarray    # int32 [c_out] total right shift
    stride: int
    pad: tuple           # (left, right) positions, read as the input's zero point per channel


@dataclass
class Int8CNN:
    in_scale: np.ndarray     # float32 [c_in] (per input channel)
    in_zero: np.ndarray      # int32 [c_in]
    T: int                   # input positions; inputs are channels-last [T, c_in], flattened to T * c_in
    convs: list[QConv]
    pool: str                # "gap" or "flatten"
    head_w: np.ndarray       # int8 [classes, n_head]
    head_bias: np.ndarray    # int32 [classes]
    out_scale: float         # scores * out_scale = logits
    name: str = "cnn"
    meta: dict = field(default_factory=dict)

    @property
    def c_in(self) -> int:
        return len(self.in_scale)

    @property
    def n_inputs(self) -> int:
        return self.T * self.c_in

    @property
    def n_outputs(self) -> int:
        return len(self.head_bias)

    def geometry(self) -> list[tuple[int, int]]:
        """(positions in, positions out) of every conv layer."""
        out, t = [], self.T
        for l in self.convs:
            t_out = (t + l.pad[0] + l.pad[1] - l.w.shape[1]) // l.stride + 1
            out.append((t, t_out))
            t = t_out
        return out

    @property
    def arch(self) -> Arch:
        convs = tuple((l.w.shape[0], l.w.shape[1], l.stride) for l in self.convs)
        valid = all(l.pad == (0, 0) for l in self.convs) and any(
            l.pad != g[2:] for l, g in zip(self.convs, Arch(convs, self.pool).geometry(self.T)))
        return Arch(convs, self.pool, "valid" if valid else "same")

    @property
    def shape_str(self) -> str:
        return f"{self.T}x{self.c_in}-{self.arch}-{self.n_outputs}"

    @property
    def macs(self) -> int:
        return sum(t * l.w.size for (_, t), l in zip(self.geometry(), self.convs)) + self.head_w.size

    @property
    def weight_bytes(self) -> int:
        """What the C model stores as const data: int8 weights (rows zero-padded to a multiple of 4 bytes), int32
        biases, int32 multipliers and uint8 shifts of the conv layers, the head's int8 weights and int32 biases."""
        conv = sum(l.w.shape[0] * _row(l.w[0].size) + 9 * l.w.shape[0] for l in self.convs)
        head = self.head_w.shape[0] * (_row(self.head_w.shape[1]) if self.pool == "flatten" else self.head_w.shape[1])
        return conv + head + 4 * self.n_outputs

    def quantize_inputs(self, x: np.ndarray) -> np.ndarray:
        """Float inputs [N, T * c_in] (channels last) -> int8, per channel (sketch.quantize_int8)."""
        return quantize_int8(x, self.in_scale, self.in_zero)

    def forward(self, xq: np.ndarray) -> np.ndarray:
        """THE integer reference: int8 [N, T * c_in] -> int32 scores [N, classes]."""
        xq = np.asarray(xq).reshape(len(xq), -1)
        if xq.shape[1] != self.n_inputs:
            raise ConfigError(f"inputs have {xq.shape[1]} values per sample, the network takes {self.n_inputs}")
        return np.concatenate([self._forward(xq[i:i + 500]) for i in range(0, len(xq), 500)] or
                              [np.zeros((0, self.n_outputs), np.int32)])

    def _forward(self, xq):
        h = np.asarray(xq, np.int64).reshape(len(xq), self.T, self.c_in)
        zp = self.in_zero.astype(np.int64)
        for l in self.convs:
            acc = _conv_acc(h, l, zp)
            v = acc * l.mult.astype(np.int64)
            sh = l.shift.astype(np.int64)
            h = np.clip(((v + (np.int64(1) << (sh - 1))) >> sh) + ZP, ZP, 127)
            zp = np.full(h.shape[2], ZP, np.int64)
        v = h.sum(1) if self.pool == "gap" else h.reshape(len(h), -1)
        acc = _exact_matmul(v, self.head_w) + self.head_bias.astype(np.int64)
        _fits_int32(acc)
        return acc.astype(np.int32)


def _row(n: int) -> int:
    """A weight row of n int8 values, zero-padded to whole 32-bit words (the DSP kernel reads 4 at a time)."""
    return -(-n // 4) * 4


def _exact_matmul(v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """int64 [N, n] @ int8 [m, n].T, computed in float64 (BLAS) where every partial sum is an exact integer."""
    bound = float(np.abs(v).max(initial=0)) * float(np.abs(w.astype(np.int64)).sum(1).max(initial=0))
    if bound < 2**52:
        return np.rint(v.astype(np.float64) @ w.astype(np.float64).T).astype(np.int64)
    return v @ w.astype(np.int64).T


def _windows(h: np.ndarray, k: int, stride: int, pad: tuple, pad_value) -> np.ndarray:
    """[N, T, c] -> [N, T_out, k * c]: each output position's window, padding filled with pad_value [c]."""
    n, t, c = h.shape
    left = np.broadcast_to(np.asarray(pad_value, h.dtype), (n, pad[0], c))
    right = np.broadcast_to(np.asarray(pad_value, h.dtype), (n, pad[1], c))
    hp = np.concatenate([left, h, right], 1)
    t_out = (t + pad[0] + pad[1] - k) // stride + 1
    idx = np.arange(t_out)[:, None] * stride + np.arange(k)[None]
    return hp[:, idx, :].reshape(n, t_out, k * c)


def _conv_acc(h, l: QConv, zp) -> np.ndarray:
    k = l.w.shape[1]
    win = _windows(h, k, l.stride, l.pad, zp)
    n, t, e = win.shape
    acc = _exact_matmul(win.reshape(n * t, e), l.w.reshape(len(l.w), -1)) + l.bias.astype(np.int64)
    _fits_int32(acc)
    return acc.reshape(n, t, -1)


# ---------------------------------------------------------------- float network and quantisation
@dataclass
class FloatCNN:
    """Float layers acting on the real input [N, T, c_in]: convs [(W [k, c_in, c_out], b [c_out], stride, (left,
    right))], ReLU after each, then pooling and the head (W [n_head, classes], b)."""
    T: int
    c_in: int
    convs: list
    pool: str
    head: tuple
    arch: Arch | None = None

    def hidden(self, x) -> list[np.ndarray]:
        h = np.asarray(x, np.float64).reshape(len(x), self.T, self.c_in)
        out = []
        for W, b, s, pad in self.convs:
            h = np.maximum(_windows(h, W.shape[0], s, pad, 0.0) @ W.reshape(-1, W.shape[2]) + b, 0)
            out.append(h)
        return out

    def forward(self, x) -> np.ndarray:
        h = self.hidden(x)[-1]
        v = h.mean(1) if self.pool == "gap" else h.reshape(len(h), -1)
        return v @ self.head[0] + self.head[1]


def calibrate_channels(x: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel asymmetric int8 input quantisation (edgesketch.quantize.calibrate_inputs with channels)."""
    from ..quantize import calibrate_inputs
    return calibrate_inputs(x, channels=channels)


def quantize(f: FloatCNN, in_scale, in_zero, x_calib, name: str = "cnn") -> Int8CNN:
    """Float network -> Int8CNN. Inputs arrive as per-channel int8 (x = (xq - in_zero[c]) * in_scale[c]); hidden
    activations are int8 with one scale per layer from the calibration data's maximum and zero point -128."""
    s_in = np.asarray(in_scale, np.float64)
    z_in = np.asarray(in_zero, np.int64)
    hs = f.hidden(x_calib)
    convs = []
    for (W, b, stride, pad), h in zip(f.convs, hs):
        W, b = np.asarray(W, np.float64), np.asarray(b, np.float64)
        s_h = max(float(h.max()), 1e-6) / 255.0
        weff = W * s_in[None, :, None]                      # acts on (q - z) per input channel
        # per output channel; kept above what would overflow the bias or the shift (near-dead channels)
        sw = np.maximum.reduce([np.abs(weff).max((0, 1)) / 127.0, np.abs(b) / 2**24, np.full(len(b), s_h * 2**-30)])
        wq = np.clip(np.rint(weff / sw), -127, 127).astype(np.int64)     # [k, c_in, c_out]
        bias = np.rint(b / sw).astype(np.int64) - (wq * z_in[None, :, None]).sum((0, 1))
        m, sh = _multiplier(sw / s_h)
        convs.append(QConv(np.ascontiguousarray(wq.transpose(2, 0, 1)).astype(np.int8), bias.astype(np.int32), m, sh,
                           int(stride), tuple(int(v) for v in pad)))
        s_in, z_in = np.full(len(b), s_h), np.full(len(b), ZP, np.int64)
    W, b = (np.asarray(v, np.float64) for v in f.head)
    t_last = hs[-1].shape[1]
    if f.pool == "gap":     # head input S[c] = sum_t q[t, c]: mean = s_h / T' * (S - T' * z)
        weff, zsum = W * (s_in[0] / t_last), t_last * z_in[0]
        z_vec = np.full(W.shape[0], zsum, np.int64)
    else:
        weff, z_vec = W * s_in[0], np.full(W.shape[0], z_in[0], np.int64)
    sw = max(float(np.abs(weff).max()), 1e-30) / 127.0
    wq = np.clip(np.rint(weff / sw), -127, 127).astype(np.int64)          # [n_head, classes]
    bias = np.rint(b / sw).astype(np.int64) - (wq * z_vec[:, None]).sum(0)
    if np.abs(bias).max() >= 2**31:
        raise ConfigError(f"{name}: a head bias does not fit int32 after quantisation; retrain (or lower the bias)")
    return Int8CNN(np.asarray(in_scale, np.float32), np.asarray(in_zero, np.int32), f.T, convs, f.pool,
                   np.ascontiguousarray(wq.T).astype(np.int8), bias.astype(np.int32), float(sw), name,
                   dict(arch=str(f.arch) if f.arch else None))


# ---------------------------------------------------------------- distillation
def distill_cnn(teacher, x_train, arch: Arch | str, epochs: int = 30, seed: int = 0, lr: float = 0.05,
                transfer=None, cfg=None, batch: int = 256, bn: bool = True, verbose: int = 0) -> FloatCNN:
    """A small Conv1D network trained on the teacher's soft labels of edgesketch.distill's augmentation: augment() and
    targets() with cfg (default Config(seed=seed): mixup to 40,000 samples), the same unlabelled `transfer` inputs a
    sketch would get. Inputs are channels-last (T, c_in) as the teacher's. Returns float layers acting on the real input.
    Recipe (chosen on a validation split of mnist1d's training set, examples/studies/cnn_baseline.py --tune): inputs scaled to
    unit variance, batch normalisation after each conv (folded into it afterwards), Adam with lr 0.05 decayed to 0
    (cosine) over 30 epochs; small nets train far worse without batch norm or at Keras' usual lr 1e-3."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from ..distillation import Config, _deterministic, augment, targets
    from ..teacher import tensorflow
    tf = tensorflow()
    import keras
    arch = Arch.parse(arch) if isinstance(arch, str) else arch
    shape = tuple(int(v) for v in teacher.input_shape)
    T, c_in = (shape[0], 1) if len(shape) == 1 else shape
    if len(shape) > 2:
        raise ConfigError(f"teacher input {shape}: the int8 Conv1D baseline takes (T,) or (T, C) inputs", argument="teacher")
    cfg = cfg or Config(seed=seed)     # cfg.seed draws the augmentation, seed the network's initialisation and batches
    with _deterministic(tf, seed):
        rng = np.random.default_rng(cfg.seed)
        x = np.asarray(x_train, np.float32).reshape(len(x_train), -1)
        xa = augment(x, cfg, rng, transfer, shape)
        y, _ = targets(teacher, xa, cfg)
        k = 1.0 / np.maximum(x.reshape(-1, c_in).std(0), 1e-6)   # unit variance per channel (folded into conv 0)
        body = []
        for c, kk, s in arch.convs:   # Conv1D -> BatchNormalization (folded into the conv after training) -> ReLU
            body += ([keras.layers.Conv1D(c, kk, strides=s, padding=arch.padding, use_bias=False),
                      keras.layers.BatchNormalization(), keras.layers.ReLU()] if bn else
                     [keras.layers.Conv1D(c, kk, strides=s, padding=arch.padding, activation="relu")])
        pool = keras.layers.GlobalAveragePooling1D() if arch.pool == "gap" else keras.layers.Flatten()
        m = keras.Sequential([keras.Input((T, c_in)), *body, pool, keras.layers.Dense(y.shape[1])])
        steps = epochs * math.ceil(len(xa) / batch)
        m.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, steps)),
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True))
        m.fit((xa.reshape(-1, T, c_in) * k).astype(np.float32), y, epochs=epochs, batch_size=batch, verbose=verbose,
              shuffle=True)
    convs = []
    layers = [l for l in m.layers if type(l).__name__ == "Conv1D"]
    norms = [l for l in m.layers if type(l).__name__ == "BatchNormalization"] or [None] * len(layers)
    for layer, norm, (_, t_out, pl, pr) in zip(layers, norms, arch.geometry(T)):
        if norm is None:
            W, b = (np.asarray(v, np.float64) for v in layer.get_weights())
        else:   # inference-mode batch norm folded into the conv: g * (Wx - mean) + beta
            W = np.asarray(layer.get_weights()[0], np.float64)
            gamma, beta, mean, var = (np.asarray(v, np.float64) for v in norm.get_weights())
            g = gamma / np.sqrt(var + norm.epsilon)
            W, b = W * g, beta - mean * g
        convs.append([W, b, layer.strides[0], (pl, pr)])
    convs[0][0] = convs[0][0] * k[None, :, None]
    head = tuple(np.asarray(v, np.float64) for v in m.layers[-1].get_weights())
    f = FloatCNN(T, c_in, [tuple(c) for c in convs], arch.pool, head, arch)
    probe = xa[:256]
    want = np.asarray(m((probe.reshape(-1, T, c_in) * k).astype(np.float32), training=False), np.float64)
    if not np.allclose(f.forward(probe), want, rtol=1e-3, atol=1e-3 * max(1.0, np.abs(want).max())):
        raise RuntimeError("the float CNN's layers disagree with the Keras model they were read from")
    return f


def build(teacher, x_train, arch: Arch | str, seed: int = 0, transfer=None, name: str | None = None,
          **kw) -> tuple[Int8CNN, FloatCNN]:
    """distill_cnn, then quantise, calibrated on the real inputs (training set and transfer inputs)."""
    f = distill_cnn(teacher, x_train, arch, seed=seed, transfer=transfer, **kw)
    real = np.asarray(x_train, np.float32).reshape(len(x_train), -1)
    if transfer is not None and len(transfer):
        real = np.concatenate([real, np.asarray(transfer, np.float32).reshape(len(transfer), -1)])
    s, z = calibrate_channels(real, f.c_in)
    return quantize(f, s, z, real, name or f"distilled {f.arch}"), f


# the search space of smallest_cnn, cheapest first by qemu-m4 instructions on mnist1d (40 x 1 inputs, 10 classes)
SEARCH = ("c4k5s2-gap", "c8k5s2-gap", "c4k9s2-c8k5s2-gap", "c8k9s2-gap", "c8k5s2-c8k5s2-gap", "c8k5s2-c16k5s2-gap",
          "c8k9s2-c16k5s2-gap", "c16k9s2-c16k5s2-gap", "c8k5s1-c16k5s2-gap", "c16k9s2-c32k5s2-gap", "c16k5s1-c32k5s2-gap",
          "c32k9s2-c32k5s2-gap")


def smallest_cnn(target_accuracy: float, teacher, x_train, x_test, y_test, archs=SEARCH, seed: int = 0, log=None, **kw):
    """Distil the architectures of `archs` in their order (cheapest first) and stop at the first whose int8 test accuracy
    reaches target_accuracy, as the bench searches MLP widths. kw: build's (epochs, lr, transfer, cfg...).
    Returns (the net that reached it, or the last one tried; tried [(Arch, int8 accuracy, Int8CNN)])."""
    tried = []
    for a in (Arch.parse(a) if isinstance(a, str) else a for a in archs):
        net, _ = build(teacher, x_train, a, seed=seed, **kw)
        acc = float(np.mean(net.forward(net.quantize_inputs(x_test)).argmax(1) == np.asarray(y_test)))
        tried.append((a, acc, net))
        if log:
            log(f"int8 CNN {a} ({net.macs:,} MACs): {acc:.4f} (target {target_accuracy:.4f})")
        if acc >= target_accuracy:
            break
    return tried[-1][2], tried


# ---------------------------------------------------------------- C
def _lines(v, per_line: int = 32) -> list[str]:
    flat = [codegen._c_int(int(x)) for x in np.asarray(v).reshape(-1)]
    return [", ".join(flat[i:i + per_line]) + "," for i in range(0, len(flat), per_line)]


def _padded_rows(w2: np.ndarray) -> np.ndarray:
    out = np.zeros((w2.shape[0], _row(w2.shape[1])), np.int64)
    out[:, :w2.shape[1]] = w2
    return out


def model_id(net: Int8CNN) -> str:
    h = hashlib.sha256(f"{net.T} {net.pool} {[(l.stride, l.pad) for l in net.convs]}".encode())
    for l in net.convs:
        h.update(l.w.tobytes() + l.bias.tobytes() + l.mult.tobytes() + l.shift.tobytes())
    h.update(net.head_w.tobytes() + net.head_bias.tobytes() + net.in_zero.tobytes() + net.in_scale.tobytes())
    return h.hexdigest()[:32]


def generate(net: Int8CNN) -> dict[str, str]:
    """{"es_model.h", "es_model.c", "es_port.h"}: the C model with the es_predict_q API (the same as mlp.generate's)."""
    mid = model_id(net)
    geo = net.geometry()
    layers, sizes = [], [0, 0]
    c = net.c_in
    for i, (l, (t_in, t_out)) in enumerate(zip(net.convs, geo)):
        c_out, k = int(l.w.shape[0]), int(l.w.shape[1])
        last = i == len(net.convs) - 1
        nxt = net.convs[i + 1].pad if not last else (0, 0)
        src, dst = i % 2, (i + 1) % 2
        sizes[src] = max(sizes[src], _row((l.pad[0] + t_in + l.pad[1]) * c + 3))
        stored = not (last and net.pool == "gap")
        if stored:
            sizes[dst] = max(sizes[dst], _row((nxt[0] + t_out + nxt[1]) * c_out + 3))
        layers.append(dict(i=i, c_in=c, c_out=c_out, k=k, stride=int(l.stride), t_in=t_in, t_out=t_out, pl=l.pad[0],
                           pr=l.pad[1], len=k * c, row=_row(k * c), w_rows=_lines(_padded_rows(l.w.reshape(c_out, -1))),
                           bias=_lines(l.bias), mult=_lines(l.mult), shift=[str(int(v)) for v in l.shift],
                           src="ab"[src], dst="ab"[dst], stored=stored, next_pl=nxt[0], next_pr=nxt[1], last=last))
        c = c_out
    t_last = geo[-1][1]
    n_head = int(net.head_w.shape[1])
    flatten = net.pool == "flatten"
    head_w = _padded_rows(net.head_w) if flatten else net.head_w
    dims = sizes + [n_head, net.n_inputs] + [l["c_out"] * l["row"] for l in layers] + [head_w.size]
    if max(dims) > MAX_DIM:
        raise ConfigError(f"{net.shape_str}: a buffer or weight array of {max(dims):,} values is over {MAX_DIM:,}; "
                          "use fewer channels or positions", argument="arch")
    ctx = dict(description=f"int8 CNN {net.shape_str} ({net.name}), {net.macs:,} MACs, {net.weight_bytes:,} weight bytes",
               model_id=mid, model_id_bytes=[f"0x{mid[2 * i:2 * i + 2]}" for i in range(8)], D=net.n_inputs,
               C=net.n_outputs, Q=net.c_in, in_scale=[codegen._c_float(v) for v in net.in_scale],
               in_zero=[str(int(v)) for v in net.in_zero], layers=layers, zp=ZP, size_a=sizes[0], size_b=sizes[1],
               flatten=flatten, n_head=n_head, head_row=_row(n_head) if flatten else n_head, head_rows=_lines(head_w),
               head_bias=_lines(net.head_bias), t_last=t_last, c_last=c, src_head="ab"[len(layers) % 2],
               out_scale=codegen._c_float(np.float32(net.out_scale)))
    return {"es_model.h": codegen.render("bench/int8_cnn.h.j2", **ctx),
            "es_model.c": codegen.render("bench/int8_cnn.c.j2", **ctx),
            "es_port.h": codegen.runtime_files()["es_port.h"]}   # the DSP intrinsics it shares with the sketch runtime
