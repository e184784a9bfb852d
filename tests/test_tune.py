"""edgesketch tune (issue 21): honest validation, measured budgets, resume, errors, and the Ray path on a real local
cluster. Small on purpose: the digits teacher, a narrow space, 2-3 trials of one seed and a few epochs."""
import json
from dataclasses import asdict

import numpy as np
import pytest

from edgesketch import data, tuning as T
from test_esk_cli import assert_user_error, run_cli

pytest.importorskip("optuna")
QUICK = dict(epochs=2, refit_epochs=1, aug_size=2000, augment="mixup", codebook=0, mode="learned", noise=0.1,
             temperature=1.0, table_dropout=0.0, lr=0.01, weights=1, signs="free", selectors="random", thresholds=1,
             layout="unrolled", count_bits=8)
SPACE = dict(tables=[4, 8], bits=[4, 5], hyperplanes=[16, 24], taps=[4, 6])
M0 = dict(board="qemu-m0", flash=16384, ram=4096)


@pytest.fixture(scope="module")
def digits():
    return data.load("sklearn:digits")


def run(teacher, ds, storage, trials, **kw):
    return T.tune(str(teacher), ds.x_train, ds.y_train, ds.x_test, ds.y_test, trials=trials, seeds=[0], fixed=QUICK,
                  space=SPACE, storage=storage, progress=False, jobs=1, samples=4, **{**M0, **kw})


def test_validation_split_is_carved_from_training_data(digits):
    fit, val = T.split(digits.x_train, digits.y_train, "classification")
    assert len(set(fit) & set(val)) == 0 and len(fit) + len(val) == len(digits.x_train)
    assert abs(len(val) / len(digits.x_train) - 0.2) < 0.01
    test_rows = {r.tobytes() for r in digits.x_test}
    assert not any(digits.x_train[i].tobytes() in test_rows for i in val)          # no test sample validates
    for c in range(10):                                                           # stratified
        share = np.mean(digits.y_train[val] == c) - np.mean(digits.y_train == c)
        assert abs(share) < 0.01
    assert np.array_equal(val, T.split(digits.x_train, digits.y_train, "classification")[1])   # fixed seed


@pytest.fixture(scope="module")
def local_study(digits_teacher, digits, tmp_path_factory):
    """Two trials in this process against a SQLite study, then resumed to three."""
    d = tmp_path_factory.mktemp("tune")
    first = run(digits_teacher, digits, d / "study.db", 2)
    import optuna                       # an interrupted run: a trial asked for and never told
    stale = optuna.load_study(study_name=T.STUDY, storage=f"sqlite:///{d / 'study.db'}").ask()
    T.suggest(stale, (64,), QUICK, SPACE)
    resumed = run(digits_teacher, digits, d / "study.db", 3, resume=True)
    return d, first, resumed, stale.params


def test_chosen_sketch_fits_the_budget_as_measured(local_study):
    d, r, _, _ = local_study
    assert len(r.trials) == 2 and r.budget.flash == 16384 and r.budget.ram == 4096 and r.budget.measured_on == "qemu-m0"
    assert r.best["state"] == "complete" and r.objectives == ["accuracy"]
    c = r.final["cost"]
    assert r.final["fits"] and c["flash"] <= 16384 and c["ram"] <= 4096 and c["instructions"] > 0
    assert c["how"] == "measured on qemu-m0"
    assert 0.3 < r.final["test_mean"] <= 1 and len(r.final["test"]) == 1 and r.final["validation"] == r.best["accs"]
    files = r.save(d / "best.esk")
    rows = json.loads(files["json"].read_text())
    assert len(rows["trials"]) == 2 and files["png"].stat().st_size > 1000 and rows["model_id"] == r.model.model_id
    with pytest.raises(T.UserError):                                             # never overwritten without force
        r.save(d / "best.esk")
    assert r.pareto and r.best["number"] in [p["number"] for p in r.pareto]


def test_resume_continues_the_same_study(local_study, digits_teacher, digits):
    d, first, resumed, stale = local_study
    assert len(resumed.trials) == 3
    assert [t["config"] for t in resumed.trials[:2]] == [t["config"] for t in first.trials]
    assert resumed.trials[2]["number"] == 3                    # #2 was left running: failed, and its configuration rerun
    assert all(resumed.trials[2]["config"][k] == v for k, v in stale.items())
    with pytest.raises(T.ConfigError) as e:                                      # a study exists: resume or elsewhere
        run(digits_teacher, digits, d / "study.db", 3)
    assert e.value.argument == "resume"


def test_impossible_budget_is_one_line_naming_the_smallest_sketch(digits_teacher, tmp_path):
    code, out, err = run_cli("tune", digits_teacher, "--data", "sklearn:digits", "--board", "qemu-m0", "--flash", "300",
                             "--ram", "4096", "--trials", "2", "--seeds", "0", "--epochs", "1", "-o", tmp_path / "x.esk")
    assert_user_error(code, err, "no sketch fits 300 bytes of flash", "the smallest of 3 tried", "bytes of flash for its tables alone")
    assert not (tmp_path / "x.esk").exists()


def test_unknown_board_lists_the_boards(tmp_path):
    code, out, err = run_cli("tune", "t.keras", "--data", "sklearn:digits", "--board", "nope", "-o", tmp_path / "x.esk")
    assert_user_error(code, err, "unknown board 'nope'", "qemu-m0", "uno")


def test_ray_picks_the_same_best_as_local(local_study, digits_teacher, digits, tmp_path):
    """A real local Ray cluster (ray.init starts a head here); one trial at a time and the same sampler seed: the
    same trials, the same numbers, the same choice as the local run."""
    ray = pytest.importorskip("ray")
    import os
    from pathlib import Path
    src = str(Path(T.__file__).resolve().parents[1])
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}})
    try:
        r = run(digits_teacher, digits, tmp_path / "ray.db", 2, ray="auto")
    finally:
        ray.shutdown()
    local = local_study[1]
    assert all(int(t["worker"].rsplit(":", 1)[1]) != os.getpid() for t in r.trials)      # run by Ray's workers
    assert all(int(t["worker"].rsplit(":", 1)[1]) == os.getpid() for t in local.trials)
    assert [t["config"] for t in r.trials] == [t["config"] for t in local.trials]
    assert [t["accs"] for t in r.trials] == [t["accs"] for t in local.trials]
    assert r.best["config"] == local.best["config"] and r.final["cost"] == local.final["cost"]


@pytest.mark.parametrize("shape", [(64,), (40, 1), (8, 8, 1)])
def test_trial_zero_is_distills_default_and_the_space_is_mostly_valid(shape):
    """Trial 0 of a study is the configuration distill picks with no options (flat, or the windowed family of a time or
    image input); configurations drawn from the whole space are mostly valid (no training: api.config checks them)."""
    import optuna
    from edgesketch import api
    p = T.suggest(optuna.trial.FixedTrial(T.defaults(shape, {})), shape, {}, {})
    layout, window = p.pop("layout"), p.pop("window")
    same = lambda c: {k: (v[:1] if isinstance(v, tuple) and len(set(v)) == 1 else v) for k, v in asdict(c).items()}
    assert layout == "unrolled" and same(api.config(shape, window, **p)) == same(api.config(shape))   # (2,) = (2, 2)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    ok, windowed = 0, 0
    for _ in range(60):
        p = T.suggest(study.ask(), shape, {}, {})
        p.pop("layout")
        window = p.pop("window")
        windowed += window != "flat"
        try:
            api.config(shape, window, **p)
            ok += 1
        except T.ConfigError:
            pass
    assert ok >= 36 and (windowed > 10 if len(shape) > 1 else windowed == 0)


def test_pareto_front_and_pruning_rule():
    row = lambda n, acc, flash, instr, state="complete": {"number": n, "state": state, "mean": acc,
                                                         "cost": {"flash": flash, "instructions": instr}}
    rows = [row(0, 0.90, 1000, 500), row(1, 0.95, 3000, 900), row(2, 0.89, 1200, 600), row(3, 0.99, 500, 100, "infeasible")]
    assert [r["number"] for r in T.pareto(rows, False)] == [0, 1]                 # 2 is dominated by 0; 3 does not fit
    ref = [{"acc": 0.95, "flash": 3000, "instructions": 900}]
    job = {"reference": ref, "margin": 0.03, "hard": False}
    assert T._behind(0.90, T.Cost(4000, 0, 1000, ""), job)                       # worse and bigger: pruned
    assert not T._behind(0.90, T.Cost(1000, 0, 500, ""), job)                    # worse but smaller: a front candidate
    assert T._behind(0.90, T.Cost(1000, 0, 500, ""), dict(job, hard=True))       # a hard budget: accuracy alone
    assert not T._behind(0.93, T.Cost(4000, 0, 1000, ""), job)                   # within the margin


@pytest.mark.slow
def test_cost_is_measured_on_the_emulated_board_of_the_core():
    from edgesketch import boards
    twin = lambda name: getattr(T.twin(boards.load(name)), "name", None)
    assert [twin(b) for b in ("uno", "qemu-m0", "nucleo_f401re", "bluepill_f103c8", "pico", "esp32c3", "esp8266", "esp32")] \
        == ["qemu-uno", "qemu-m0", "qemu-m4", "qemu-m3", "qemu-m0", "qemu-rv32", "qemu-lx106", None]
    b = T.budget("esp32", 64, 10)                    # nothing to build it on: the board less export's firmware allowance
    assert b.measured_on is None and b.flash == boards.load("esp32").flash_bytes - boards.load("esp32").footprint.firmware_flash
    from edgesketch.sketch import random_sketch
    c = T.measure(random_sketch(D=64, C=10, L=4, K=4, seed=1), "unrolled", b, None)      # the model object's size
    assert c.how.startswith("model object built with xtensa-lx106-elf-gcc") and c.flash > 4 * 16 * 10 and c.instructions is None
    with pytest.raises(T.ConfigError) as e:
        T.budget("qemu-m0", 64, 10, flash=0, ram=100)
    assert e.value.argument == "flash"


def test_trial_options_shorten_the_search_only(digits_teacher, digits, tmp_path, monkeypatch):
    """trial_options train the trials shorter (here 1 epoch on 1,000 samples); the finalists are distilled again on the
    same split with their own options (QUICK's 2 epochs on 2,000) and chosen on those scores; the final too; the trials'
    configurations do not hold the shortened options."""
    from edgesketch import api
    calls, real = [], api.distill
    monkeypatch.setattr(api, "distill", lambda *a, **kw: calls.append((kw, len(a[1]))) or real(*a, **kw))
    r = run(digits_teacher, digits, tmp_path / "s.db", 1, trial_options={"epochs": 1, "aug_size": 1000})
    n_fit = len(T.split(digits.x_train, digits.y_train, "classification")[0])
    assert [(c["epochs"], c["aug_size"], n) for c, n in calls] == [(1, 1000, n_fit), (2, 2000, n_fit),   # trial, finalist
                                                                    (2, 2000, len(digits.x_train))]    # the final
    assert r.trials[0]["config"]["epochs"] == 2 and r.final["trial_options"] == {"epochs": 1, "aug_size": 1000}
    (f,) = r.final["finalists"]
    assert f["number"] == 0 and f["shortened_mean"] == r.trials[0]["mean"] and f["mean"] == r.best["mean"] == r.final["validation_mean"]
    assert f["mean"] != f["shortened_mean"]                                     # full training scored, not copied
    with pytest.raises(T.ConfigError) as e:
        run(digits_teacher, digits, tmp_path / "t.db", 1, trial_options={"epoch": 1})
    assert e.value.argument == "epoch"


def test_bad_trial_epochs_is_one_line(tmp_path):
    code, out, err = run_cli("tune", "t.keras", "--data", "sklearn:digits", "--board", "uno", "--trial-epochs", "0",
                             "-o", tmp_path / "x.esk")
    assert_user_error(code, err, "--trial-epochs 0: must be at least 1")


def test_invalid_configurations_are_not_counted_but_bounded(digits_teacher, digits, tmp_path):
    """A configuration distill refuses costs no training and does not use up a trial; a space of nothing else ends
    with one error naming the argument, not a study of zero trials."""
    with pytest.raises(T.ConfigError) as e:
        T.tune(str(digits_teacher), digits.x_train, digits.y_train, trials=1, seeds=[0], progress=False, jobs=1,
               fixed=dict(QUICK, selectors="window", hyperplanes=96), space=dict(tables=[2, 2], bits=[4, 4]),
               storage=tmp_path / "s.db", **M0)
    assert e.value.argument == "space" and "6 configurations drawn were invalid" in str(e.value)
