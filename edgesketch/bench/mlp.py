"""int8 MLPs, TFLite-style: per-channel int8 weights, int32 accumulation, requantisation to int8 between layers
(single rounding, as CMSIS-NN's arm_nn_requantize), zero points folded into int32 biases. numpy integer reference
(`Int8MLP.forward`) and a generated C model with the es_predict_q API (`generate`), equal bit for bit.

Two sources of float layers:
  distill_mlp  one hidden layer distilled from a teacher on the teacher-relabelled augmentation of edgesketch.distill
  teacher_layers  the Dense layers of a Keras MLP teacher (Rescaling folded in), to cost the teacher's int8 form
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import numpy as np

from .. import codegen
from ..sketch import quantize_int8


@dataclass
class QLayer:
    w: np.ndarray        # int8 [n_out, n_in]
    bias: np.ndarray     # int32 [n_out] (zero points folded in)
    mult: np.ndarray     # int32 [n_out] (hidden layers), 0 for the last
    shift: np.ndarray    # int32 [n_out] total right shift
    zp: int              # output zero point (hidden: -128)


@dataclass
class Int8MLP:
    in_scale: np.ndarray     # float32 [D] (per-feature input quantisation, shared with the sketch)
    in_zero: np.ndarray      # int32 [D]
    layers: list[QLayer]
    out_scale: float         # last layer: scores * out_scale = logits
    name: str = "mlp"
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> list[int]:
        return [self.layers[0].w.shape[1]] + [l.w.shape[0] for l in self.layers]

    @property
    def shape_str(self) -> str:
        return "-".join(str(s) for s in self.shape)

    @property
    def weight_bytes(self) -> int:
        """int8 weights + int32 biases + multipliers/shifts (what the C model stores)."""
        return sum(l.w.size + 4 * l.bias.size + (5 * l.mult.size if i < len(self.layers) - 1 else 0)
                   for i, l in enumerate(self.layers))

    @property
    def macs(self) -> int:
        return sum(l.w.size for l in self.layers)

    def quantize_inputs(self, x: np.ndarray) -> np.ndarray:
        return quantize_int8(x, self.in_scale, self.in_zero)

    def forward(self, xq: np.ndarray) -> np.ndarray:
        """THE integer reference: int8 [N, D] -> int32 scores [N, C]."""
        h = np.asarray(xq, np.int64)
        for i, l in enumerate(self.layers):
            acc = h @ l.w.astype(np.int64).T + l.bias.astype(np.int64)
            if i == len(self.layers) - 1:
                _fits_int32(acc)
                return acc.astype(np.int32)
            v = acc * l.mult.astype(np.int64)
            sh = l.shift.astype(np.int64)
            q = ((v + (np.int64(1) << (sh - 1))) >> sh) + l.zp
            h = np.clip(q, l.zp, 127)
        raise AssertionError("no layers")


def _multiplier(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Real multipliers M > 0 -> (m, shift) with M ~= m * 2^-shift, m in [2^30, 2^31)."""
    e = np.floor(np.log2(M)).astype(np.int64)
    m = np.rint(M * np.exp2(30 - e)).astype(np.int64)
    over = m >= 2**31
    m[over] //= 2
    e[over] += 1
    shift = 30 - e
    if not ((shift >= 1).all() and (shift <= 62).all()):
        raise OverflowError(f"a requantisation shift outside 1..62: {shift}")
    return m.astype(np.int32), shift.astype(np.int32)


def _fits_int32(acc: np.ndarray) -> None:
    """The C accumulates in int32: refuse a layer whose exact sums do not fit (a check that survives python -O)."""
    if np.abs(acc).max(initial=0) >= 2**31:
        raise OverflowError("an int8 layer's accumulator exceeds int32")


def quantize(float_layers, in_scale, in_zero, x_calib, name="mlp", per_channel=True) -> Int8MLP:
    """float_layers: [(W [n_in, n_out], b [n_out])] acting on the real input x, ReLU between layers.
    Inputs arrive as per-feature int8 xq (x = (xq - in_zero) * in_scale); hidden activations are int8 with a
    per-tensor scale from the calibration data's maximum and zero point -128 (TFLite's ReLU output)."""
    in_scale = np.asarray(in_scale, np.float64)
    in_zero = np.asarray(in_zero, np.int64)
    x = np.asarray(x_calib, np.float64).reshape(len(x_calib), -1)
    s_in = in_scale                       # real value of one input step, per feature
    z_in = in_zero
    qlayers, out_scale = [], 1.0
    h = x
    for i, (W, b) in enumerate(float_layers):
        W, b = np.asarray(W, np.float64), np.asarray(b, np.float64)
        last = i == len(float_layers) - 1
        weff = W * s_in[:, None]          # acts on (q - z) per input
        amax = np.abs(weff).max(0)
        sw = (np.full_like(amax, amax.max()) if (last or not per_channel) else amax) / 127.0
        sw = np.where(sw > 0, sw, 1e-12)
        wq = np.clip(np.rint(weff / sw), -127, 127).astype(np.int64)   # [n_in, n_out]
        bias = np.rint(b / sw).astype(np.int64) - (z_in[:, None] * wq).sum(0)
        h = np.maximum(h @ W + b, 0) if not last else h @ W + b
        if last:
            qlayers.append(QLayer(wq.T.astype(np.int8).copy(), bias.astype(np.int32), np.zeros(len(b), np.int32),
                                  np.zeros(len(b), np.int32), 0))
            out_scale = float(sw[0])
        else:
            s_h = max(float(h.max()), 1e-6) / 255.0
            m, sh = _multiplier(sw / s_h)
            qlayers.append(QLayer(wq.T.astype(np.int8).copy(), bias.astype(np.int32), m, sh, -128))
            s_in = np.full(len(b), s_h)
            z_in = np.full(len(b), -128, np.int64)
    return Int8MLP(np.asarray(in_scale, np.float32), np.asarray(in_zero, np.int32), qlayers, out_scale, name)


# ---------------------------------------------------------------- float layers
def teacher_layers(keras_model):
    """Dense layers of a Keras MLP (Rescaling folded into the first, Dropout skipped) -> [(W, b)], or None if the
    model has other layers (a CNN)."""
    scale, offset, out = 1.0, 0.0, []
    for layer in keras_model.layers:
        kind = type(layer).__name__
        if kind in ("InputLayer", "Dropout", "Flatten"):
            continue
        if kind == "Rescaling":
            scale, offset = float(np.asarray(layer.scale)), float(np.asarray(layer.offset))
            continue
        if kind != "Dense":
            return None
        W, b = [np.asarray(v, np.float64) for v in layer.get_weights()]
        if not out:
            b = b + offset * W.sum(0)
            W = W * scale
        out.append((W, b))
    return out


def distill_mlp(teacher, x_train, hidden: int, epochs: int = 20, aug_size: int = 0, seed: int = 0, lr: float = 3e-3,
                transfer=None):
    """One hidden layer (ReLU) trained on the teacher's soft labels of edgesketch.distill's augmentation (with the
    same unlabelled `transfer` inputs a sketch would get). Returns float layers [(W, b)] acting on the real input."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf
    from ..distillation import Config, augment, targets
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    cfg = Config(aug_size=aug_size, seed=seed)
    rng = np.random.default_rng(seed)
    x = np.asarray(x_train, np.float32).reshape(len(x_train), -1)
    xa = augment(x, cfg, rng, transfer)
    y, _ = targets(teacher, xa, cfg)
    k = 1.0 / max(float(np.abs(x).max()), 1e-6)
    m = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(hidden, activation="relu"),
                          keras.layers.Dense(y.shape[1])])
    m.compile(optimizer=keras.optimizers.Adam(lr), loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    m.fit(xa * k, y, epochs=epochs, batch_size=256, verbose=0, shuffle=True)
    (W1, b1), (W2, b2) = [[np.asarray(v, np.float64) for v in l.get_weights()] for l in m.layers]
    return [(W1 * k, b1), (W2, b2)]


def float_forward(layers, x):
    h = np.asarray(x, np.float64).reshape(len(x), -1)
    for i, (W, b) in enumerate(layers):
        h = h @ W + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0)
    return h


# ---------------------------------------------------------------- C
def _row_lines(w: np.ndarray, per_line: int = 32) -> list[str]:
    flat = [str(int(v)) for v in w.reshape(-1)]
    return [", ".join(flat[i:i + per_line]) + "," for i in range(0, len(flat), per_line)]


def model_id(net: Int8MLP) -> str:
    h = hashlib.sha256()
    for l in net.layers:
        h.update(l.w.tobytes() + l.bias.tobytes() + l.mult.tobytes() + l.shift.tobytes())
    return h.hexdigest()[:32]


def generate(net: Int8MLP) -> dict[str, str]:
    """{"es_model.h", "es_model.c", "es_port.h"}: the C model with the es_predict_q API."""
    mid = model_id(net)
    layers, src = [], "x"
    for i, l in enumerate(net.layers):
        last = i == len(net.layers) - 1
        dst = "h0" if src != "h0" else "h1"
        layers.append(dict(n_in=int(l.w.shape[1]), n_out=int(l.w.shape[0]), w_rows=_row_lines(l.w),
                           bias=[str(int(v)) for v in l.bias], mult=[str(int(v)) for v in l.mult],
                           shift=[str(int(v)) for v in l.shift], zp=int(l.zp), last=last, src=src, dst=dst))
        src = dst
    ctx = dict(description=f"int8 MLP {net.shape_str} ({net.name}), {net.macs:,} MACs", model_id=mid,
               model_id_bytes=[f"0x{mid[2 * i:2 * i + 2]}" for i in range(8)], D=int(net.shape[0]),
               C=int(net.shape[-1]), in_scale=[codegen._c_float(v) for v in net.in_scale],
               in_zero=[str(int(v)) for v in net.in_zero], layers=layers,
               max_width=max(net.shape[1:-1] + [4]), out_scale=codegen._c_float(np.float32(net.out_scale)))
    return {"es_model.h": codegen.render("bench/int8_mlp.h.j2", **ctx),
            "es_model.c": codegen.render("bench/int8_mlp.c.j2", **ctx),
            "es_port.h": codegen.runtime_files()["es_port.h"]}   # the DSP intrinsics it shares with the sketch runtime
