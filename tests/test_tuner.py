"""The budget-aware KerasTuner search: defaults, the budget property, resume, distribution."""

import csv
import os
import signal
import socket
import subprocess
import sys
import time

import keras_tuner as kt
import numpy as np
import pytest
import tensorflow as tf

from app.config import ModelConfig, Recipe
from app.model import build_model
from tuner import hypermodel as hm
from tuner import space as search_space
from tuner.search import BudgetRandomSearchOracle, make_tuner

from conftest import ROOT, last_line


def test_empty_hyperparameters_resolve_to_the_default_config():
    model_maker = hm.TinyHyperModel(budget=8000)
    hp = kt.HyperParameters()
    assert model_maker.config(kt.HyperParameters()) == ModelConfig()
    assert model_maker.trial_recipe(hp) == Recipe()
    assert model_maker.build(kt.HyperParameters()).count_params() == 7862  # see test_model.py


def test_smallest_model_of_the_space():
    # Every block at its least: stem 4, no edges convolutions, no 1x1 transitions, patterns
    # (6), object (8). Convolutions have no bias; BatchNorm holds 4 numbers per channel:
    # stem 3*3*1*4 + 4*4 = 52, patterns 3*3*4*6 + 4*6 = 240, object 3*3*6*8 + 4*8 = 464,
    # head 8*10 + 10 = 90: 846 in total.
    assert search_space.parameter_count(search_space.smallest_values()) == 846


def declared_oracle(budget, seed=0, floor=0.0):
    space = kt.HyperParameters()
    search_space.declare(space)
    return BudgetRandomSearchOracle(budget=budget, floor=floor, objective="val_accuracy", max_trials=1000,
                                    seed=seed, hyperparameters=space)


def draw(oracle, i=0):
    """One candidate through the oracle's public `populate_space`."""
    response = oracle.populate_space(str(i))
    assert response["status"] == "RUNNING"
    return response["values"]


def test_property_proposed_candidates_fit_and_rejected_ones_do_not(monkeypatch):
    budget = 6000
    oracle = declared_oracle(budget)
    seen = []
    real_count = search_space.parameter_count
    monkeypatch.setattr("tuner.search.parameter_count", lambda v: seen.append(dict(v)) or real_count(v))
    proposed = [draw(oracle, i) for i in range(80)]
    rejected = [v for v in seen if v not in proposed]
    assert oracle.rejected == len(seen) - len(proposed) == len(rejected) > 20
    for values in proposed:  # the builder itself agrees: each one builds within the budget
        model = hm.TinyHyperModel(budget).build(kt.HyperParameters.from_config(
            {"space": [], "values": values}))
        assert model.count_params() <= budget
    for values in rejected[:40]:
        with pytest.raises(ValueError, match=f"over the budget of {budget:,}"):
            build_model(search_space.config_from_values(values, budget))


def test_property_a_floor_keeps_candidates_between_it_and_the_budget():
    oracle = declared_oracle(6000, floor=0.9)
    counts = [search_space.parameter_count(draw(oracle, i)) for i in range(40)]
    assert 5400 <= min(counts) and max(counts) <= 6000
    # About 15% of the space lies in [5,400, 6,000] and about half under 5,400.
    assert oracle.under_floor > 40 and oracle.rejected > 40
    state = oracle.get_state()
    assert (state["floor"], state["under_floor"], state["rejected"]) == (0.9, oracle.under_floor, oracle.rejected)


def synthetic(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (n, 28, 28, 1)).astype("float32")
    y = tf.one_hot(rng.integers(0, 10, n), 10)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(32)


def test_tight_budget_search_finishes_every_trial_within_budget(tmp_path, capsys):
    budget = 3500  # most of the space is over it
    tuner = make_tuner(budget, trials=4, recipe=Recipe(epochs=1), directory=tmp_path)
    tuner.search(synthetic(), synthetic(seed=1), 3, verbose=0)
    trials = list(tuner.oracle.trials.values())
    assert [t.status for t in trials] == ["COMPLETED"] * 4
    counts = [t.metrics.get_last_value("parameters") for t in trials]
    assert all(c <= budget for c in counts)
    assert tuner.oracle.rejected > 4
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("trial ")]
    assert len(lines) == 4 and all(" params, val_accuracy " in l for l in lines)


class StopAfterFirstTrial(Exception):
    pass


def test_search_stopped_after_first_trial_resumes_without_rerunning_it(tmp_path, monkeypatch):
    ran = []
    real_fit = hm.TinyHyperModel.fit

    def counting_fit(self, hp, *args, **kwargs):
        ran.append(dict(hp.values))
        return real_fit(self, hp, *args, **kwargs)

    monkeypatch.setattr(hm.TinyHyperModel, "fit", counting_fit)
    first = make_tuner(6000, trials=3, recipe=Recipe(epochs=1), directory=tmp_path)
    assert first.hypermodel is None  # the space is declared on the oracle; no default model is built
    original_end = type(first).on_trial_end

    def end_then_stop(self, trial):
        original_end(self, trial)
        raise StopAfterFirstTrial

    monkeypatch.setattr(type(first), "on_trial_end", end_then_stop)
    with pytest.raises(StopAfterFirstTrial):
        first.search(synthetic(), synthetic(seed=1), 3, verbose=0)
    assert len(ran) == 1
    monkeypatch.setattr(type(first), "on_trial_end", original_end)

    again = make_tuner(6000, trials=3, recipe=Recipe(epochs=1), directory=tmp_path)
    again.search(synthetic(), synthetic(seed=1), 3, verbose=0)
    assert len(ran) == 3 and ran[0] not in ran[1:]  # the finished trial was not run again
    assert sorted(t.status for t in again.oracle.trials.values()) == ["COMPLETED"] * 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["--budget", "800"],
         "error: budget 800 is below the smallest model of the search space (846 parameters)"),
        (["--trials", "0"], "error: argument --trials: must be a positive whole number, got 0"),
        (["--epochs", "-1"], "error: argument --epochs: must be a positive whole number, got -1"),
        (["--floor", "1"], "error: argument --floor: must be at least 0 and below 1, got 1.0"),
    ],
)
def test_bad_search_input_is_one_line_with_exit_code_2(cli, tmp_path, args, message):
    result = cli("search", *args, "--dir", tmp_path / "t", module="tuner")
    assert result.returncode == 2
    assert last_line(result.stderr) == message
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "t").exists()  # nothing was trained or written


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_chief_and_two_workers_finish_a_search_together(tmp_path):
    port = str(free_port())
    args = [sys.executable, "-m", "tuner", "search", "--quick", "--no-retrain", "--budget", "6000",
            "--trials", "4", "--epochs", "1", "--dir", str(tmp_path / "search")]
    procs = {}
    try:
        for role in ("chief", "tuner0", "tuner1"):
            env = {**os.environ, "KERASTUNER_TUNER_ID": role, "KERASTUNER_ORACLE_IP": "127.0.0.1",
                   "KERASTUNER_ORACLE_PORT": port}
            procs[role] = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT, text=True)
            if role == "chief":
                time.sleep(3)  # let the chief's oracle server come up first
        outputs = {role: p.communicate(timeout=400)[0] for role, p in procs.items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
    assert all(p.returncode == 0 for p in procs.values()), {r: o[-1500:] for r, o in outputs.items()}
    with open(tmp_path / "search" / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"COMPLETED"}
    assert all(int(r["parameters"]) <= 6000 for r in rows)
    run_by = {line.split(":")[0].split()[1] for role in ("tuner0", "tuner1")
              for line in outputs[role].splitlines() if line.startswith("trial ")}
    assert run_by == {r["trial"] for r in rows}  # every trial was run by a worker
    assert not [l for l in outputs["chief"].splitlines() if l.startswith("trial ")]
    assert "search done: 4 trials trained" in outputs["chief"]
