"""TFLite full-int8 conversion of a Keras teacher; accuracy and host latency in ai-edge-litert; TFLite Micro on the
host (PyPI tflite-micro) with the smallest arena found by bisection."""
from __future__ import annotations

import os
import tempfile
import time

import numpy as np


def convert_int8(keras_model, x_calib: np.ndarray, n_calib: int = 300) -> bytes:
    """Full-integer conversion: int8 weights and activations, int8 input and output, representative dataset."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    shape = tuple(keras_model.inputs[0].shape[1:])
    xc = np.asarray(x_calib, np.float32).reshape((len(x_calib),) + shape)[:n_calib]

    def rep():
        for i in range(len(xc)):
            yield [xc[i:i + 1]]
    with tempfile.TemporaryDirectory() as tmp:
        keras_model.export(tmp, format="tf_saved_model", verbose=False)
        conv = tf.lite.TFLiteConverter.from_saved_model(tmp)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        return conv.convert()


def _q8(x, scale, zero):
    """Float inputs -> the model's int8 input tensor (TFLite's per-tensor scale and zero point: sketch.quantize_int8)."""
    from ..sketch import quantize_int8
    return quantize_int8(x, np.float32(scale), zero).reshape(np.shape(x))


def litert_eval(model_bytes: bytes, x: np.ndarray, repeats: int = 3):
    """(predictions [N], seconds per sample) with ai_edge_litert, one sample per invoke (as a device would)."""
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_content=model_bytes, num_threads=1)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    xq = _q8(np.asarray(x, np.float32).reshape((len(x),) + tuple(inp["shape"][1:])), *inp["quantization"])
    preds = np.zeros(len(x), np.int64)
    best = float("inf")
    for r in range(repeats):
        t0 = time.perf_counter()
        for i in range(len(xq)):
            it.set_tensor(inp["index"], xq[i:i + 1])
            it.invoke()
            if r == 0:
                preds[i] = int(np.argmax(it.get_tensor(out["index"])[0]))
        best = min(best, (time.perf_counter() - t0) / len(xq))
    return preds, best


def litert_batched(model_bytes: bytes, x: np.ndarray, repeats: int = 5) -> float:
    """ai-edge-litert seconds per sample with the whole test set in one invoke (its best case)."""
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_content=model_bytes, num_threads=1)
    inp = it.get_input_details()[0]
    shape = (len(x),) + tuple(inp["shape"][1:])
    it.resize_tensor_input(inp["index"], shape)
    it.allocate_tensors()
    xq = _q8(np.asarray(x, np.float32).reshape(shape), *inp["quantization"])
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        it.set_tensor(inp["index"], xq)
        it.invoke()
        best = min(best, (time.perf_counter() - t0) / len(x))
    return best


_PROBE = """
import sys, numpy as np
from tflite_micro.python.tflite_micro import runtime
it = runtime.Interpreter.from_bytes(open(sys.argv[1], "rb").read(), arena_size=int(sys.argv[2]))
d = it.get_input_details(0)
it.set_input(np.zeros(d["shape"], np.int8), 0)
it.invoke()
print("OK")
"""


def _arena_works(path: str, arena: int) -> bool:
    """One probe in a child process: a too-small arena can abort the process inside TFLM, not only raise."""
    import subprocess
    import sys
    p = subprocess.run([sys.executable, "-c", _PROBE, path, str(arena)], capture_output=True, text=True, timeout=120)
    return p.returncode == 0 and "OK" in p.stdout


def tflm_eval(model_bytes: bytes, x: np.ndarray):
    """TFLite Micro (host build from PyPI tflite-micro): (predictions [N], smallest arena bytes that works, to 16 B).
    Bisection on the arena size; each probe runs in a child process (too small: RuntimeError, or an abort)."""
    from tflite_micro.python.tflite_micro import runtime
    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(model_bytes)
        f.flush()
        hi = 1 << 12
        while not _arena_works(f.name, hi):
            hi *= 2
            if hi > 1 << 24:
                raise RuntimeError("TFLM: no arena up to 16 MB works")
        lo = hi // 2 if hi > 1 << 12 else 16
        while hi - lo > 16:
            mid = (lo + hi) // 2
            if _arena_works(f.name, mid):
                hi = mid
            else:
                lo = mid
    it = runtime.Interpreter.from_bytes(model_bytes, arena_size=hi)
    d = it.get_input_details(0)
    s, z = d["quantization_parameters"]["scales"][0], d["quantization_parameters"]["zero_points"][0]
    xs = np.asarray(x, np.float32).reshape((len(x),) + tuple(d["shape"][1:]))
    xq = _q8(xs, s, z)
    preds = np.zeros(len(x), np.int64)
    for i in range(len(x)):
        it.set_input(xq[i:i + 1], 0)
        it.invoke()
        preds[i] = int(np.argmax(it.get_output(0)[0]))
    return preds, hi
