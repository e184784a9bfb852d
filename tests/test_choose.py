"""The choice (issue 31): candidates cheapest first by an estimate of their M0 instructions, windowed geometries that
stay bounded as inputs grow, the rule that keeps the first within max_loss of the teacher on a validation split, and
one-line errors for a bad --max-loss. The training tests are small: few epochs, a few thousand augmented samples."""
import json

import numpy as np
import pytest

import edgesketch as es
from edgesketch import api, choose, cost, data
from edgesketch.distillation import geometry, windows_of
from edgesketch.errors import ConfigError
from test_esk_cli import assert_user_error, run_cli

QUICK = dict(epochs=2, refit_epochs=2, aug_size=2000)


@pytest.mark.parametrize("shape", [(64, 3), (40, 1), (128, 6), (1500, 1), (8, 8, 1), (28, 28, 1)])
def test_candidates_are_cheapest_first_and_bounded(shape):
    """The flat sketch first, then windowed geometries of at most 32 read-outs (1-D) or 8 x 8 (2-D), whatever the
    input's length; estimates grow with the read-outs and the options apply to every candidate."""
    cands = choose.candidates(shape, 6, {})
    assert cands[0].name == "flat" and not cands[0].cfg.windowed
    est = [c.instructions for c in cands]
    assert est == sorted(est) and len(cands) == (4 if len(shape) == 2 else 3)
    for c in cands[1:]:
        w = windows_of(c.cfg, shape)[0]
        assert w.n_readouts <= (32 if len(shape) == 2 else 64) and w.n_readouts >= (5 if len(shape) == 2 else 16)
        assert cost.m0_instructions(cost.structure(c.cfg, shape, 6)) == c.instructions
    assert est[-1] < 90_000                                       # bounded: 1,500 samples cost what 64 do
    small = choose.candidates(shape, 6, {"tables": 4, "bits": 4, "count_bits": 4})
    assert all(c.cfg.tables == 4 and c.cfg.bits == 4 and c.cfg.count_bits == 4 for c in small)
    flat_branch = 8 * 64 * 3 if len(shape) == 3 else 0             # the 2-D family's flat branch keeps its own size
    assert [c.table_bytes for c in small] == [4 * 16 * 3 + (flat_branch if c.cfg.windowed else 0) for c in small]


def test_the_geometry_follows_the_input_length():
    """stride ceil(T / 32), 9 taps with dilation stride // 2: mnist1d's 40 samples keep window 9 stride 2; digits' 8 x 8
    keeps 3 x 3 stride 1; longer inputs get longer strides, never more read-outs."""
    assert geometry((40, 1)) == dict(window=(9,), stride=(2,), dilation=(1,), padding="same")
    assert geometry((8, 8, 1)) == dict(window=(3, 3), stride=(1, 1), dilation=(1, 1), padding="same")
    assert geometry((1500, 1))["stride"] == (47,) and geometry((1500, 1))["dilation"] == (23,)
    assert geometry((64, 3), 8) == dict(window=(9,), stride=(8,), dilation=(4,), padding="same")
    assert geometry((64,)) == {} and geometry((1, 12)) == {}
    for T in (3, 16, 40, 64, 300, 1500, 4000):
        assert windows_of(api.config((T, 2)), (T, 2))[0].n_readouts <= 32


def test_geometry_options_skip_the_choice():
    for window, opts in [("flat", {}), ((9,), {}), ("auto", {"stride": (2,)}), ("auto", {"flat_branch": ()}),
                         ("auto", {"pool": (2,)}), ("auto", {"mode": "representer"})]:
        assert not isinstance(api.plan((64, 3), 6, window, **opts), list), (window, opts)
    assert api.plan((64, 3), 6, "auto", stride=(3,)).dilation == (1,)          # a stride of the caller's: no gaps
    assert isinstance(api.plan((64, 3), 6, "auto", tables=8), list)             # a size option: every candidate
    assert not isinstance(api.plan((64,), 10), list)                            # no time axis: the flat sketch only


def test_qualifying_rule():
    name, score, ok = choose._scorer("classification", True)
    assert name == "accuracy" and ok(0.990, 1.0, 1) and not ok(0.989, 1.0, 1) and ok(0.95, 0.96, 1)
    name, score, ok = choose._scorer("regression", True)
    assert name == "rmse" and ok(10.1, 10.0, 1) and not ok(10.2, 10.0, 1)
    assert score(np.array([[1.0], [3.0]]), np.array([2.0, 2.0])) == 1.0
    name, _, ok = choose._scorer("classification", False)
    assert name == "agreement" and ok(0.995, 1.0, 1) and not ok(0.98, 1.0, 1)
    assert choose._scorer("regression", False)[0] == "relative rmse"


def test_candidates_are_scored_with_the_shorter_recipe(monkeypatch):
    """Candidates train half their epochs and augmented samples on the fit split, with validation and early stopping;
    the kept one returns with its own full recipe (the final distil's) and its sketch, the final continuing from it;
    the table records the epochs early stopping kept."""
    import math
    import time
    from types import SimpleNamespace

    from edgesketch import distillation, sketch
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(6), 20)
    x = rng.normal(size=(len(y), 64 * 3)).astype(np.float32)
    x[:, 0] = y                                                   # the fake teacher reads its class from x[:, 0]
    teacher = SimpleNamespace(task="classification", outputs=lambda v: np.eye(6)[v[:, 0].round().astype(int)])
    seen = []

    geo = lambda cfg: (cfg.window, cfg.stride, cfg.dilation)

    stopped = []

    def fake_distill(t, xf, cfg, meta, cb, **kw):     # the second candidate reproduces the teacher, the others do not
        seen.append(dict(cfg=cfg, n=len(xf), **kw))
        good = geo(cfg) == geo(cands[1].cfg)
        if good:
            time.sleep(0.3)                           # the third has started by then, two at a time
        elif geo(cfg) == geo(cands[2].cfg):           # the third: epochs until the choice stops it
            try:
                for epoch in range(100):
                    cb("relax", epoch, 100, {})
                    time.sleep(0.05)
            except BaseException as e:
                stopped.append(type(e).__name__)
                raise
        return SimpleNamespace(meta={"epochs_kept": {"ste": 3, "refit": 2}}, good=good)
    monkeypatch.setattr(distillation, "distill", fake_distill)
    monkeypatch.setattr(sketch, "int_outputs", lambda sk, v: np.eye(6)[(v[:, 0].round().astype(int) + (not sk.good)) % 6])
    cands = choose.candidates((64, 3), 6, {})
    for workers in (2, 1):     # two at a time (the third starts while the second trains, and is not scored), or one
        seen.clear()
        c = choose.choose(teacher, x, y, cands, 1, workers=workers)
        assert len(seen) == 1 + workers and c.chosen.name == cands[1].name
        assert [r["score"] for r in c.rows] == [0, 1, None, None] and "not tried" in c.rows[2]["verdict"]
        assert stopped == ["_Stopped"]                # raised at its next epoch once the second qualified
    for s, cand in zip(seen, cands):
        assert s["n"] == 96 and len(s["validation"]) == 24 and s["patience"] == choose.PATIENCE
        assert s["cfg"].epochs == math.ceil(cand.cfg.epochs / 2) and s["cfg"].refit_epochs == math.ceil(cand.cfg.refit_epochs / 2)
        assert s["cfg"].aug_size == 20000 and cand.cfg.aug_size == 0       # half of max(40000, 10 x 96)
    assert c.chosen.cfg == cands[1].cfg and c.rows[1]["epochs_kept"] == {"ste": 3, "refit": 2}
    assert c.chosen.sketch.good and cands[1].sketch is None     # the final distil continues from the kept sketch
    assert not c.afresh and c.to_meta()["final"] == "continued" and c.qualified and c.to_meta()["qualified"] is True
    assert choose.shorter(cands[0].cfg, 1, 96) is cands[0].cfg


@pytest.mark.parametrize("max_loss", [0.5, 0])
def test_when_none_qualifies_the_best_is_kept_with_its_full_recipe(monkeypatch, max_loss):
    """No candidate within max_loss (or max_loss 0): every one is scored and the most accurate is kept, with its sketch
    (the final continues from it) and its full recipe."""
    from types import SimpleNamespace

    from edgesketch import distillation, sketch
    y = np.repeat(np.arange(6), 20)
    x = np.random.default_rng(0).normal(size=(len(y), 64 * 3)).astype(np.float32)
    x[:, 0] = y
    teacher = SimpleNamespace(task="classification", outputs=lambda v: np.eye(6)[v[:, 0].round().astype(int)])
    cands = choose.candidates((64, 3), 6, {})
    geo = lambda cfg: (cfg.window, cfg.stride, cfg.dilation)
    wrong = {geo(c.cfg): len(cands) - i for i, c in enumerate(cands)}   # classes missed: 4, 3, 2, 1, the costliest best
    monkeypatch.setattr(distillation, "distill", lambda t, xf, cfg, meta, cb, **kw: SimpleNamespace(
        meta={"epochs_kept": {"ste": 1}}, wrong=wrong[geo(cfg)]))
    monkeypatch.setattr(sketch, "int_outputs",
                        lambda sk, v: np.eye(6)[(v[:, 0].round().astype(int) + (v[:, 0].round() < sk.wrong)) % 6])
    c = choose.choose(teacher, x, y, cands, max_loss, workers=1)
    assert "best validation accuracy" in c.reason and c.chosen.sketch.wrong == 1
    assert not c.qualified and c.to_meta()["qualified"] is False
    assert c.chosen.name == cands[-1].name and c.chosen.cfg == cands[-1].cfg and None not in [r["score"] for r in c.rows]
    # one class of six missed: 17 points below the teacher, beyond FAR, so the final distils the geometry afresh
    assert c.afresh and "afresh" in c.reason and c.to_meta()["final"] == "afresh"


@pytest.mark.parametrize("gap, afresh", [(4.0, False), (6.0, True)])
def test_the_final_starts_afresh_only_far_from_the_teacher(monkeypatch, gap, afresh):
    """The kept candidate within FAR (5) points of the teacher: the final continues from its sketch; further: afresh
    (es.distill passes start=None), whether or not it qualified under max_loss."""
    from types import SimpleNamespace

    from edgesketch import distillation, sketch
    n = 1000
    y = np.arange(n) % 5
    x = np.zeros((n, 40), np.float32)
    x[:, 0] = y
    teacher = SimpleNamespace(task="classification", outputs=lambda v: np.eye(5)[v[:, 0].round().astype(int)])
    cands = choose.candidates((40, 1), 5, {})
    monkeypatch.setattr(distillation, "distill", lambda t, xf, cfg, meta, cb, **kw: SimpleNamespace(meta={}))
    miss = lambda v: np.arange(len(v)) < round(gap / 100 * len(v))     # every sketch misses gap% of the inputs
    monkeypatch.setattr(sketch, "int_outputs", lambda sk, v: np.eye(5)[(v[:, 0].round().astype(int) + miss(v)) % 5])
    for max_loss in (1, 10):                                   # none qualifies; every one qualifies (the flat is kept)
        c = choose.choose(teacher, x, y, cands, max_loss, workers=1)
        assert c.afresh is afresh and ("afresh" in c.reason) is afresh, (max_loss, c.reason)
        assert c.chosen.name == "flat" and c.to_meta()["final"] == ("afresh" if afresh else "continued")


def test_distill_prints_a_hint_when_no_candidate_qualifies():
    """After the choice, the CLI says what it kept and why; when no candidate came within --max-loss it also says what
    to try (more tables, or a larger --max-loss); not when one qualified or when --max-loss 0 asked for the best."""
    from edgesketch.cli import _choice_lines
    base = {"chosen": "window 9 stride 4 dilation 2 (16 read-outs)", "seconds": 50.0, "final_seconds": 30.0}
    best = dict(base, reason="kept window 9 ...: the best validation accuracy (0.9767) of the 4 candidates; none was "
                             "within 1 points of the teacher (0.9933)", max_loss=1.0, qualified=False)
    lines = _choice_lines(best)
    assert len(lines) == 2 and lines[0].startswith("chose window 9 stride 4 dilation 2 (16 read-outs) (the best")
    assert "--max-loss 1 of the teacher" in lines[1] and "--tables 25" in lines[1] and "larger --max-loss" in lines[1]
    ok = dict(base, reason="kept flat: the cheapest candidate within 1 points ...", max_loss=1.0, qualified=True)
    assert len(_choice_lines(ok)) == 1 and len(_choice_lines(dict(best, max_loss=0.0))) == 1


@pytest.mark.parametrize("bad", [-1, "abc", float("nan"), None, True])
def test_bad_max_loss_is_a_config_error(bad):
    import keras
    model = keras.Sequential([keras.Input((40, 1)), keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    with pytest.raises(ConfigError) as e:
        es.distill(model, np.zeros((10, 40)), progress=False, max_loss=bad)
    assert e.value.argument == "max_loss" and "\n" not in str(e.value)
    assert choose.check_max_loss(0) == 0.0 and choose.check_max_loss("2.5") == 2.5


@pytest.mark.parametrize("bad", ["-1", "abc", "inf"])
def test_bad_max_loss_is_one_line_on_the_command_line(bad, tmp_path):
    code, out, err = run_cli("distill", "t.keras", "--data", "mnist1d", "-o", tmp_path / "m.esk", "--max-loss", bad)
    assert_user_error(code, err, f"--max-loss {bad}:", "0 or more")


@pytest.mark.slow
def test_first_candidate_within_max_loss_is_kept(mnist1d_cnn_teacher, tmp_path):
    """max_loss 100: the flat sketch (cheapest) qualifies, nothing else is distilled; it is far more than choose.FAR
    below the teacher, so the final distils it afresh (relax phase included); max_loss 0: every candidate is distilled
    and the best validation score is kept. The table is in the sketch's meta and printed by the CLI."""
    ds = data.load("mnist1d")
    phases = []
    loose = es.distill(str(mnist1d_cnn_teacher), ds.x_train, ds.y_train, max_loss=100, **QUICK,
                       progress=lambda ph, *a: phases.append(ph))
    final = {p.split(": ")[-1] for p in phases if "(all training data)" in p}
    c = loose.sketch.meta["choice"]
    assert c["candidates"][0]["score"] < c["teacher_validation"] - choose.FAR / 100 and c["final"] == "afresh"
    assert final == {"relabel", "relax", "ste", "hash", "refit"}     # afresh: relax too (continuing has none)
    assert loose.sketch.is_flat and c["chosen"] == "flat" and c["max_loss"] == 100 and c["qualified"] is True
    assert [r["score"] is not None for r in c["candidates"]] == [True, False, False, False]
    assert "not tried" in c["candidates"][1]["verdict"] and c["split"] == {"fit": 3200, "validation": 800,
                                                                             "how": "choose.split (stratified, fixed seed)"}
    code, out, err = run_cli("distill", mnist1d_cnn_teacher, "--data", "mnist1d", "-o", tmp_path / "best.esk",
                             "--max-loss", "0", "--epochs", "2")
    assert code == 0, err
    text = " ".join((out + err).split())
    assert "candidates, cheapest first" in text and "max_loss 0 asks for the best one" in text and "s left" in text
    assert "hint:" not in text                                    # max_loss 0 asked for the best: nothing to suggest
    code, out, _ = run_cli("info", tmp_path / "best.esk", "--json")
    c = json.loads(out)["choice"]
    scores = [r["score"] for r in c["candidates"]]
    assert None not in scores and len(scores) == 4
    best = c["candidates"][int(np.argmax(scores))]
    assert c["chosen"] == best["name"] and c["teacher_validation"] > max(scores)
    sk = es.load(tmp_path / "best.esk").sketch
    assert sk.is_flat == (best["window"] == "flat")
    assert c["final_seconds"] > 0 and all(r["seconds"] > 0 for r in c["candidates"])


@pytest.mark.slow
def test_two_candidates_at_once_choose_what_one_at_a_time_does(mnist1d_cnn_teacher):
    """The choice distils two candidates at once (choose.WORKERS on 2 cores): every candidate's score and the kept
    sketch are the same, bit for bit, as one at a time."""
    from edgesketch.teacher import load
    ds, t = data.load("mnist1d"), load(str(mnist1d_cnn_teacher))
    cands = choose.candidates(t.input_shape, t.n_outputs, QUICK)[:3]
    runs = [choose.choose(t, ds.x_train[:1500], ds.y_train[:1500], cands, 0, workers=w) for w in (1, 2)]
    assert [r["score"] for r in runs[0].rows] == [r["score"] for r in runs[1].rows]
    assert None not in [r["score"] for r in runs[0].rows] and runs[0].chosen.name == runs[1].chosen.name
    a, b = runs[0].chosen.sketch, runs[1].chosen.sketch
    for x, y in zip(a.branches, b.branches):
        assert (x.counts == y.counts).all() and (x.tap_idx == y.tap_idx).all() and (x.threshold == y.threshold).all()


@pytest.mark.slow
def test_unlabelled_data_scores_agreement(mnist1d_cnn_teacher):
    ds = data.load("mnist1d")
    m = es.distill(str(mnist1d_cnn_teacher), ds.x_train[:1000], progress=False, max_loss=100, **QUICK)
    c = m.sketch.meta["choice"]
    assert c["metric"] == "agreement" and c["teacher_validation"] == 1.0 and c["chosen"] == "flat"


@pytest.mark.slow
def test_gru_teacher_loads_and_distils(tmp_path):
    """A recurrent teacher of 64 x 3 gesture windows (two GRU layers of 32, trained briefly): loads, runs as a traced
    graph with the eager model's outputs, and distils into the flat sketch and a windowed one, both agreeing with it
    far above chance (1/6)."""
    from gestures import teachers as gestures_teachers
    assert gestures_teachers.train("gru", str(tmp_path / "gru.keras"), epochs=6, samples=1500) > 0.5
    from edgesketch import teacher
    t = teacher.load(str(tmp_path / "gru.keras"))
    assert t.input_shape == (64, 3) and t.n_outputs == 6 and t.task == "classification"
    ds = data.load("synthetic:gestures")
    x = ds.x_test[:1500].astype(np.float32)             # the teacher runs traced (tf.function), as the eager model does
    assert hasattr(t._traced(), "get_concrete_function")
    assert np.allclose(t.outputs(x), np.asarray(t.model(x, training=False)), atol=1e-5)
    for window, opts in (("flat", {}), ((9,), {"stride": (8,)})):
        m = es.distill(t, ds.x_train, ds.y_train, x_test=ds.x_test, y_test=ds.y_test, window=window, progress=False,
                       **QUICK, **opts)
        assert m.sketch.is_flat == (window == "flat")
        assert m.evaluate().teacher_agreement > 0.45, window


@pytest.mark.parametrize("shape", [(64, 3), (8, 8, 1), (1500, 1), (64,)])
def test_tune_starts_from_distills_candidates(shape):
    """tune's first trials are distill's candidates, cheapest first: each, drawn back through tune.suggest, is the
    candidate's configuration (so a budget that holds distill's choice scores it on the same split and seeds)."""
    import optuna
    from dataclasses import asdict
    from edgesketch import tuning as tune
    fixed = {"epochs": 3}
    starts = tune.starts(shape, 10, fixed, {})
    cands = choose.candidates(shape, 10, fixed)
    assert len(starts) == len(cands) == {1: 1, 2: 4, 3: 3}[len(shape)]
    for p, c in zip(starts, cands):
        if p["window"] != "flat":                   # inside the space Optuna draws from (a long input's strides too)
            assert p["stride"] in tune._geometry_choices(shape, "stride", [1, 2, 3])
            assert p["dilation"] in tune._geometry_choices(shape, "dilation", [1, 2])
        q = tune.suggest(optuna.trial.FixedTrial(p), shape, fixed, {})
        q.pop("layout")
        window = q.pop("window")
        same = lambda cfg: {k: (v[:1] if isinstance(v, tuple) and len(set(v)) == 1 else v) for k, v in asdict(cfg).items()}
        assert same(api.config(shape, window, **q)) == same(c.cfg), c.name


def test_teacher_remembers_the_last_large_batch():
    """The windowed candidates relabel one augmented set: the teacher runs once for it, and answers copies."""
    from edgesketch.teacher import Teacher
    calls = []
    model = lambda v, training: calls.append(len(v)) or np.asarray(v).reshape(len(v), -1)[:, :2] * 2
    t = Teacher(path="m.keras", model=model, input_shape=(4, 1), n_outputs=2, task="regression", softmax_output=False)
    x = np.random.default_rng(0).normal(size=(3000, 4)).astype(np.float32)
    a = t.outputs(x)
    a[0, 0] = 99                                                  # the caller's copy: the memo stays as it was
    b = t.outputs(x.copy())
    assert calls == [1024, 1024, 952] and b[0, 0] == 2 * x[0, 0] and np.allclose(b, 2 * x[:, :2])
    x[5, 1] += 1                                                  # other content: the teacher runs again
    assert np.allclose(t.outputs(x), 2 * x[:, :2]) and len(calls) == 6
    t.outputs(x[:10]), t.outputs(x[:10])                          # small batches are not remembered
    assert len(calls) == 8


@pytest.mark.parametrize("afresh", [False, True])
def test_es_distill_continues_from_the_kept_sketch_unless_afresh(monkeypatch, afresh):
    """es.distill's final: start=the kept candidate's sketch, or None (from scratch) when the choice says afresh."""
    from dataclasses import replace

    import keras

    from edgesketch import distillation
    model = keras.Sequential([keras.Input((40, 1)), keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    kept, seen = object(), {}

    def fake_choose(t, x, y, cands, max_loss, **kw):
        return choose.Choice("accuracy", 1.0, max_loss, [], replace(cands[-1], sketch=kept), "why", 0.0,
                             afresh=afresh)

    class Final(Exception):
        pass

    def fake_distill(t, x, cfg, meta, cb, **kw):
        seen.update(kw, cfg=cfg)
        raise Final
    monkeypatch.setattr(choose, "choose", fake_choose)
    monkeypatch.setattr(distillation, "distill", fake_distill)
    with pytest.raises(Final):
        es.distill(model, np.random.default_rng(0).normal(size=(30, 40, 1)), np.arange(30) % 3, progress=False)
    assert seen["start"] is (None if afresh else kept) and seen["cfg"].windowed
