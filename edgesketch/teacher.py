"""The teacher: any Keras 3 model with one fixed-shape input (.keras, .h5, or a SavedModel folder). TensorFlow here."""
from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DataError, UserError


def tensorflow():
    """Import TensorFlow and Keras quietly and return tensorflow. Its C++ start-up lines (absl, oneDNN) ignore
    TF_CPP_MIN_LOG_LEVEL, so stderr is closed while it imports; Keras gets a KERAS_HOME outside ~/.keras."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_HOME", str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgesketch-keras"))
    if "tensorflow" not in sys.modules:
        saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        try:
            import keras  # noqa: F401
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(null)
    import absl.logging
    absl.logging.set_verbosity(absl.logging.ERROR)
    return sys.modules["tensorflow"]


@dataclass
class Teacher:
    path: str
    model: object
    input_shape: tuple[int, ...]
    n_outputs: int
    task: str            # classification | regression
    softmax_output: bool  # outputs are probabilities (else logits or values)
    _memo: tuple | None = field(default=None, init=False, repr=False, compare=False)   # outputs(): (key, last outputs)
    _graph: object = field(default=None, init=False, repr=False, compare=False)        # outputs(): the traced call

    @property
    def n_inputs(self) -> int: return int(np.prod(self.input_shape))

    def check_data(self, x: np.ndarray, source: str, argument: str | None = None) -> None:
        """DataError (naming `argument`) unless x holds samples of the teacher's input: as many values, and not its
        axes swapped (channels-first windows (N, 3, 64) for a (64, 3) teacher would be reshaped into nonsense)."""
        shape = tuple(int(v) for v in np.shape(x)[1:])
        n = int(np.prod(shape))
        if n != self.n_inputs:
            raise DataError(f"{source} has {n} values per sample {shape} but the teacher {Path(self.path).name} "
                            f"expects {self.n_inputs} {self.input_shape}; pass the data the teacher was trained on",
                            argument=argument)
        if len(shape) == len(self.input_shape) > 1 and shape != self.input_shape and sorted(shape) == sorted(self.input_shape):
            order = tuple(shape.index(d) + 1 for d in self.input_shape) if len(set(shape)) == len(shape) else None
            fix = f"x.transpose(0, {', '.join(map(str, order))})" if order else "transpose them"
            raise DataError(f"{source} has samples of shape {shape} but the teacher takes {self.input_shape}: the axes look "
                            f"swapped (channels first?); reorder them with {fix}", argument=argument)

    def check_labels(self, y, source: str, argument: str | None = None) -> None:
        """DataError (naming `argument`) unless y can be this teacher's labels: for classification, integers 0..C-1
        (C = the teacher's outputs), one a sample, or one-hot rows of C; for regression, numbers, C a sample."""
        if y is None:
            return
        a = np.asarray(y)
        if a.dtype.kind in "USO":
            ex = next((v for v in a.reshape(-1)[:1]), "")
            raise DataError(f"{source} holds {'strings' if a.dtype.kind in 'US' else 'objects'} ({str(ex)!r}, ...): map "
                            f"them to integers 0..{self.n_outputs - 1} and pass the names as class names", argument=argument)
        if a.dtype.kind not in "biuf":
            raise DataError(f"{source} is {a.dtype}, not numbers", argument=argument)
        if self.task != "classification":
            if a.size and not np.all(np.isfinite(a.astype(np.float64))):
                raise DataError(f"{source} holds NaN or Inf values; clean them first", argument=argument)
            return
        C = self.n_outputs
        if a.ndim == 2 and a.shape[1] == C and C > 1:          # one-hot rows
            return
        if a.ndim > 1 and int(np.prod(a.shape[1:])) != 1:
            raise DataError(f"{source} has shape {a.shape}: give one integer label a sample (or one-hot rows of {C})",
                            argument=argument)
        a = a.reshape(-1)
        if a.size == 0:
            return
        if a.dtype.kind == "f" and not (np.all(np.isfinite(a)) and np.all(a == np.round(a))):
            raise DataError(f"{source} holds non-integer labels (such as {a[a != np.round(a)][:1].tolist() or 'NaN'}): "
                            f"classification labels are integers 0..{C - 1}", argument=argument)
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi >= C:
            fix = (f"subtract {lo} (labels {lo}..{hi} for {C} classes)" if hi - lo < C and lo > 0
                   else f"the teacher has {C} outputs; pass the labels it was trained on")
            raise DataError(f"{source} has labels {lo}..{hi} but a classifier of {C} outputs needs 0..{C - 1}; {fix}",
                            argument=argument)

    def outputs(self, x: np.ndarray, batch: int = 1024) -> np.ndarray:
        """Raw outputs [N, C]: probabilities for a softmax teacher, logits or values otherwise. The model runs as one
        traced graph (tf.function: a GRU teacher labelled 20,000 gesture windows in 1.1 s where eager calls took
        13.4 s; examples/studies/teacher_speed.py). The last large batch's outputs are remembered by its content: the
        choice's windowed candidates relabel the same augmented set."""
        x = np.asarray(x, np.float32).reshape((len(x),) + self.input_shape)
        key = (x.shape, hashlib.blake2b(x.tobytes(), digest_size=16).digest()) if len(x) >= batch else None
        if key is not None and self._memo is not None and self._memo[0] == key:
            return self._memo[1].copy()
        call = self._traced()
        out = [np.asarray(call(x[i:i + batch])) for i in range(0, len(x), batch)]
        out = np.concatenate(out).reshape(len(x), -1).astype(np.float64)
        if key is not None:
            self._memo = (key, out)
        return out.copy() if key is not None else out

    def _traced(self):
        """The model's inference call as a tf.function over any batch size, traced once; the eager call for anything
        but a Keras model, or a model that cannot be traced (a layer with Python side effects)."""
        if self._graph is None:
            eager = lambda v: self.model(v, training=False)
            self._graph = eager
            if "keras" in sys.modules and isinstance(self.model, sys.modules["keras"].Model):
                tf = tensorflow()
                graph = tf.function(eager, input_signature=[tf.TensorSpec((None,) + tuple(self.input_shape), tf.float32)])
                try:
                    graph.get_concrete_function()
                    self._graph = graph
                except Exception:   # noqa: BLE001 - any tracing failure: the eager call still works
                    pass
        return self._graph

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Class scores on a log scale (log-probabilities for a softmax teacher): what the sketch learns to add up."""
        o = self.outputs(x)
        return np.log(np.clip(o, 1e-7, 1.0)) if self.softmax_output else o


def load(path: str, task: str | None = None, labels: np.ndarray | None = None) -> Teacher:
    """A teacher from a file: .keras, .h5 or a SavedModel folder."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"teacher {path} not found; give a Keras model file (.keras or .h5) or a SavedModel folder",
                        argument="teacher")
    if p.is_file() and p.stat().st_size == 0:
        raise UserError(f"teacher {path} is an empty file (0 bytes): save the model again, model.save('{p.name}')",
                        argument="teacher")
    tensorflow()
    import keras
    try:
        if p.is_dir():
            model = _wrap_savedmodel(str(p))
        else:
            model = keras.models.load_model(str(p), compile=False)
    except UserError:
        raise
    except Exception as e:
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot load teacher {path} ({first}); save it with model.save('teacher.keras') in Keras 3",
                        argument="teacher") from None
    return from_model(model, str(p), task, labels)


def from_model(model, path: str = "<in-memory model>", task: str | None = None, labels: np.ndarray | None = None) -> Teacher:
    """A teacher from a Keras model object already in memory (a notebook's `model`)."""
    tensorflow()
    if not hasattr(model, "inputs") or not callable(model):
        raise UserError(f"the teacher is a {type(model).__name__}, not a Keras model; pass a keras.Model or a path to one",
                        argument="teacher")
    inputs = getattr(model, "inputs", None) or []
    if len(inputs) != 1:
        raise UserError(f"teacher {path} has {len(inputs)} inputs; edgesketch needs a model with exactly one input tensor")
    shape = tuple(inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise UserError(f"teacher {path} has input shape {shape} with unknown sizes; give it a fixed input shape (keras.Input(shape=...))")
    outs = model.outputs
    if len(outs) != 1:
        raise UserError(f"teacher {path} has {len(outs)} outputs; edgesketch needs one output tensor")
    n_out = int(np.prod(outs[0].shape[1:]))
    softmax = _final_activation(model) == "softmax"
    detected = "classification" if softmax else _guess_task(n_out, labels)
    task = task or detected
    if task not in ("classification", "regression"):
        raise UserError(f"task={task!r}: use classification or regression", argument="task")
    if task == "classification" and n_out < 2:
        raise UserError(f"teacher {path} has one output, too few for classification; use task='regression'", argument="task")
    return Teacher(str(path), model, tuple(int(d) for d in shape), n_out, task, softmax)


def _final_activation(model) -> str | None:
    layers = [l for l in getattr(model, "layers", []) if l.__class__.__name__ not in ("InputLayer", "Dropout")]
    if not layers:
        return None
    last = layers[-1]
    if last.__class__.__name__ == "Softmax":
        return "softmax"
    act = getattr(last, "activation", None)
    return getattr(act, "__name__", None)


def _guess_task(n_out: int, labels) -> str:
    if n_out == 1:
        return "regression"
    if labels is not None and np.issubdtype(np.asarray(labels).dtype, np.integer):
        return "classification"
    if labels is not None and np.allclose(labels, np.round(labels)) and labels.min() >= 0 and labels.max() < n_out:
        return "classification"
    return "classification" if labels is None else "regression"


def _wrap_savedmodel(path: str):
    """A SavedModel folder as a one-input Keras model (TFSMLayer on its serving signature)."""
    import keras
    import tensorflow as tf
    sigs = tf.saved_model.load(path).signatures
    if "serving_default" not in sigs:
        raise UserError(f"SavedModel {path} has no serving_default signature; export it with model.export(path)")
    inputs = sigs["serving_default"].structured_input_signature[1]
    if len(inputs) != 1:
        raise UserError(f"teacher {path} has {len(inputs)} inputs; edgesketch needs a model with exactly one input tensor")
    spec = next(iter(inputs.values()))
    inp = keras.Input(shape=tuple(spec.shape[1:]))
    out = keras.layers.TFSMLayer(path, call_endpoint="serving_default")(inp)
    if isinstance(out, dict):
        if len(out) != 1:
            raise UserError(f"SavedModel {path} has {len(out)} outputs; edgesketch needs one output tensor")
        out = next(iter(out.values()))
    return keras.Model(inp, out)


def resolve(model, task: str | None = None, labels=None) -> Teacher:
    """A Teacher from what a caller has: a Teacher (as it is), a path (.keras, .h5, SavedModel) or a keras.Model."""
    if isinstance(model, Teacher):
        return model
    if isinstance(model, (str, Path)):
        return load(str(model), task, labels)
    return from_model(model, task=task, labels=labels)
