"""Figures of a sketch on a test set: teacher, float sketch and integer sketch side by side. numpy (+ the teacher)."""
from __future__ import annotations

import numpy as np

from .errors import UserError
from .sketch import Sketch, float_outputs, int_outputs


def reference_labels(sk: Sketch, y, teacher_out):
    """Ground truth for the test set: the labels, else the teacher's predictions, else an error."""
    if y is not None:
        return np.asarray(y)
    if teacher_out is None:
        raise UserError("the data has no labels and no teacher was given; pass --teacher TEACHER or data with y_test")
    return teacher_out.argmax(1) if sk.task == "classification" else teacher_out


def evaluate(sk: Sketch, x: np.ndarray, y=None, teacher=None) -> dict:
    t_out = teacher.outputs(x) if teacher is not None else None
    truth = reference_labels(sk, y, t_out)
    f_out, i_out = float_outputs(sk, x), int_outputs(sk, x)
    m = {"n_test": int(len(x)), "task": sk.task, "mode": sk.meta.get("mode"),
         "tables": sk.n_tables, "bits": sk.n_bits, "hyperplanes": sk.n_hyperplanes, "taps": sk.n_taps,
         "table_bytes": sk.table_bytes, "projection_bytes": sk.projection_bytes, "ops_per_inference": sk.ops_per_inference}
    if sk.task == "classification":
        acc = lambda o: float(np.mean(o.argmax(1) == truth))
        m.update(teacher_accuracy=acc(t_out) if t_out is not None else None, float_accuracy=acc(f_out), int_accuracy=acc(i_out),
                 teacher_agreement=float(np.mean(i_out.argmax(1) == t_out.argmax(1))) if t_out is not None else None)
    else:
        truth = truth.reshape(len(x), -1)
        rmse = lambda o: float(np.sqrt(np.mean((o - truth) ** 2)))
        m.update(teacher_rmse=rmse(t_out) if t_out is not None else None, float_rmse=rmse(f_out), int_rmse=rmse(i_out),
                 teacher_agreement_rmse=float(np.sqrt(np.mean((i_out - t_out) ** 2))) if t_out is not None else None)
    return m
