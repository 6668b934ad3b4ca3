"""The Pareto front: Hyperband under a budget, the per-budget retraining, the table and plot."""

import json

import keras_tuner as kt
import pytest
from test_tuner import synthetic

from app.config import ModelConfig, Recipe
from app.errors import InputFileError, UsageError
from tuner import frontier as fr
from tuner import hypermodel as hm
from tuner import space as search_space
from tuner import workflow
from tuner.cli import build_parser
from tuner.search import BudgetHyperbandOracle, make_tuner

from conftest import last_line


def rounds(oracle, n=9):
    """Trials created through the oracle's public `create_trial`, one per tuner id, none finished.

    Returns:
        (the epochs and values of each trial proposed, the status that ended the proposals).
    """
    proposed = []
    for i in range(n):
        trial = oracle.create_trial(f"tuner{i}")
        if trial.status != "RUNNING":
            return proposed, trial.status
        proposed.append((trial.hyperparameters.values["tuner/epochs"], trial.hyperparameters.values))
    return proposed, "RUNNING"


def test_budget_hyperband_keeps_stock_brackets_and_only_fitting_candidates(tmp_path):
    # Stock Hyperband with max_epochs 6, factor 3: bracket 1 draws 5 candidates of 2 epochs,
    # bracket 0 draws 3 of 6 epochs; promotions wait for finished trials (none finish here).
    space = kt.HyperParameters()
    search_space.declare(space)
    stock = kt.oracles.HyperbandOracle(objective="val_accuracy", max_epochs=6, factor=3, seed=0,
                                       hyperparameters=space)
    kt.Tuner(oracle=stock, hypermodel=lambda hp: None, directory=tmp_path, project_name="stock")
    stock_trials, stock_end = rounds(stock)
    oracle = make_tuner(3000, 1, Recipe(epochs=6), tmp_path, floor=0.8, strategy="hyperband").oracle
    assert isinstance(oracle, BudgetHyperbandOracle)
    budgeted, end = rounds(oracle)
    assert [e for e, _ in stock_trials] == [e for e, _ in budgeted] == [2, 2, 2, 2, 2, 6, 6, 6]
    assert stock_end == end == "IDLE"  # waiting for trials to finish, not stopped
    counts = [search_space.parameter_count(v) for _, v in budgeted]
    assert all(2400 <= c <= 3000 for c in counts), counts
    # Most of the space is over 3,000: every rejection was redrawn, none took a bracket's place.
    assert oracle.rejected > 100
    state = oracle.get_state()
    # Bracket 1 holds its 5 first-round places and waits to promote; bracket 0's only round is
    # full, so Hyperband no longer lists it among the open brackets.
    assert [[len(r) for r in b["rounds"]] for b in state["brackets"]] == [[5, 0]]
    assert (state["rejected"], state["under_floor"]) == (oracle.rejected, oracle.under_floor)


def test_hyperband_search_promotes_the_best_and_trains_each_round_from_scratch(tmp_path, monkeypatch):
    epochs_run = []
    real_fit = hm.TinyHyperModel.fit

    def recording_fit(self, hp, *args, **kwargs):
        epochs_run.append(self.trial_recipe(hp).epochs)
        return real_fit(self, hp, *args, **kwargs)

    monkeypatch.setattr(hm.TinyHyperModel, "fit", recording_fit)
    tuner = make_tuner(3500, trials=1, recipe=Recipe(epochs=3), directory=tmp_path, strategy="hyperband")
    tuner.search(synthetic(), synthetic(seed=1), 3, verbose=0)
    trials = sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id)
    # max_epochs 3, factor 3: three 1-epoch candidates, the best of them again for 3, two more of 3.
    assert sorted(epochs_run) == [1, 1, 1, 3, 3, 3]
    assert [t.status for t in trials] == ["COMPLETED"] * 6
    assert all(t.metrics.get_last_value("parameters") <= 3500 for t in trials)
    promoted = [t for t in trials if "tuner/trial_id" in t.hyperparameters.values]
    assert len(promoted) == 1
    first_round = [t for t in trials if t.hyperparameters.values["tuner/epochs"] == 1]
    best_first = max(first_round, key=lambda t: t.score)
    assert promoted[0].hyperparameters.values["tuner/trial_id"] == best_first.trial_id
    declared = [hp.name for hp in tuner.oracle.hyperparameters.space if not hp.name.startswith("tuner/")]
    assert all(promoted[0].hyperparameters.values[n] == best_first.hyperparameters.values[n] for n in declared)


def test_a_search_folder_from_before_the_strategy_option_still_resumes(tmp_path):
    args = build_parser().parse_args(["search", "--budget", "6000", "--dir", str(tmp_path)])
    settings = workflow.search_settings(args)
    old = {k: v for k, v in settings.items() if k not in ("strategy", "factor", "iterations")}
    (tmp_path / "search_config.json").write_text(json.dumps({**old, "command": "python -m tuner search"}))
    workflow.claim_folder(tmp_path, settings, "python -m tuner search --budget 6000")  # random: the same search
    hyper = build_parser().parse_args(["search", "--budget", "6000", "--strategy", "hyperband"])
    with pytest.raises(Exception, match="holds a search with --strategy random"):
        workflow.claim_folder(tmp_path, workflow.search_settings(hyper), "python -m tuner search --strategy hyperband")


def test_each_budget_search_is_a_halving_search_command_a_worker_can_join():
    args = build_parser().parse_args(["frontier", "--budgets", "4000", "--candidates", "30", "--rungs", "2", "9",
                                      "--factor", "2", "--top-seeds", "3", "--floor", "0.7", "--dir", "t/f"])
    argv = fr.search_argv(args, 4000)
    search = build_parser().parse_args(argv)
    assert (search.strategy, search.budget, search.candidates, search.rungs, search.factor, search.top_seeds) == (
        "halving", 4000, 30, [2, 9], 2, 3)
    assert (search.floor, search.dir, search.no_retrain, search.quick) == (0.7, "t/f/budget4000", True, False)
    # What the frontier hands to the search is what the parsed command says, so the folder it
    # claims is the one `python -m tuner <argv>` resumes.
    namespace = fr.search_namespace(args, 4000)
    assert workflow.search_settings(namespace) == workflow.search_settings(search)
    assert namespace.argv == argv


def fake_search(budget, config, val=0.99):
    return {"best_trial": {"trial": "0007", "val_accuracy": val}, "best_config": config.to_dict(),
            "best_max_lr": 0.02, "finished_trials": 10, "trial_seconds": 300.0,
            "search_dir": f"tuning/frontier/budget{budget}", "command": f"python -m tuner search --budget {budget}"}


def fake_metrics(config, accuracy, seconds=200.0):
    from app.model import build_model, parameter_counts

    return {"parameters": parameter_counts(build_model(config)), "final_test_accuracy": accuracy,
            "train_seconds": seconds, "epochs": 20}


def test_frontier_retrains_each_best_on_every_seed_and_writes_the_front(tmp_path, monkeypatch, capsys):

    small = ModelConfig(transition1=6, patterns=(8, 10), transition2=6, object=(12, 12), budget=5000)
    accuracies = {3000: [0.9921, 0.9934, 0.9929], 5000: [0.9940, 0.9944, 0.9941]}
    configs = {3000: ModelConfig(transition1=4, patterns=(8, 8), transition2=4, object=(8, 12), budget=3000),
               5000: small}
    searched, retrained = [], []
    monkeypatch.setattr(workflow, "searched",
                        lambda a: searched.append(a.budget) or fake_search(a.budget, configs[a.budget]))

    def fake_retrain(config, recipe, run, quick, summary):
        retrained.append((summary["search_dir"], run.name, recipe.seed, recipe.max_lr, recipe.epochs))
        budget = int(summary["search_dir"].removeprefix("tuning/frontier/budget"))
        return fake_metrics(config, accuracies[budget][recipe.seed])

    monkeypatch.setattr(workflow, "retrain", fake_retrain)
    default_runs = histories(tmp_path / "seeds", [0.9949, 0.9941, 0.9939])
    argv = ["frontier", "--budgets", "5000", "3000", "--seeds", "3", "--dir", "tuning/frontier", "--out", str(tmp_path),
            "--default-runs", str(default_runs)]
    args = build_parser().parse_args(argv)
    args.argv = argv
    assert fr.frontier(args) == 0
    assert searched == [5000, 3000]
    assert [r[1:] for r in retrained[:3]] == [(f"seed{s}", s, 0.02, 20) for s in range(3)]
    rows = {int(r.split(",")[0]): r for r in (tmp_path / "frontier.csv").read_text().splitlines()[1:]}
    # small: convs 72+48+432+720+60+648+1,296 = 3,276, BN 4*(8+6+8+10+6+12+12) = 248,
    # head 12*10+10 = 130: 3,654 parameters, 124 of them BatchNorm statistics.
    params = 3654
    assert rows[5000].startswith(f"5000,{params},")
    table = (tmp_path / "frontier.md").read_text()
    assert "| 5,000 |" in table and "| 99.40% | 99.42% | 99.44% | yes |" in table
    assert "| 99.21% | 99.28% | 99.34% | no |" in table
    assert table.index("| 3,000 |") < table.index("| 5,000 |")  # by budget
    assert f"Smallest model holding 99.40% on 3/3 seeds: {params:,} parameters" in table
    assert ("the default model (`8-t10-14/16-t10-16/16`, 7,862 parameters) over the 3 seed runs of `make results` "
            f"({default_runs}): final test accuracy min 99.39%, mean 99.43%, max 99.49%; 2 of 3 seeds at or above "
            "99.40%.") in table
    assert (tmp_path / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"smallest model holding 99.40% on 3/3 seeds: {params:,} parameters (budget 5,000" in capsys.readouterr().out


def histories(root, finals):
    """`seedN/history.csv` files whose last epoch has each final test accuracy, as `make results` writes."""
    for seed, final in enumerate(finals):
        (root / f"seed{seed}").mkdir(parents=True)
        (root / f"seed{seed}" / "history.csv").write_text(
            f"epoch,accuracy,test_accuracy\n0,0.95,0.9812\n1,0.99,{final}\n")
    return root


def test_the_default_point_reads_final_epochs_and_refuses_a_history_without_test_accuracy(tmp_path):
    assert fr.default_point(tmp_path / "none") is None
    point = fr.default_point(histories(tmp_path / "ok", [0.9946, 0.9950]))
    assert (point["parameters"], point["seeds"], point["min"], point["mean"], point["max"], point["held"]) == (
        7862, 2, 99.46, 99.48, 99.5, 2)
    bad = tmp_path / "bad" / "seed0"
    bad.mkdir(parents=True)
    (bad / "history.csv").write_text("epoch,accuracy,val_accuracy\n0,0.95,0.97\n")
    with pytest.raises(InputFileError, match=r"seed0/history.csv: no final test accuracy \(a finished test run"):
        fr.default_point(tmp_path / "bad")


def test_frontier_row_holds_only_when_every_seed_reaches_the_bar():
    config = ModelConfig()
    row = fr.front_row(8000, fake_search(8000, config), [fake_metrics(config, a) for a in (0.9951, 0.9940, 0.9946)])
    assert (row["min"], row["mean"], row["max"], row["holds"]) == (99.4, 99.457, 99.51, True)
    assert (row["parameters"], row["trainable"]) == (7862, 7682)  # 180 BatchNorm statistics
    row = fr.front_row(8000, fake_search(8000, config), [fake_metrics(config, a) for a in (0.9951, 0.9939)])
    assert (row["holds"], row["min"], row["test_accuracies"]) == (False, 99.39, "99.51 99.39")
    assert fr.layout(config.to_dict()) == "8-t10-14/16-t10-16/16"
    assert fr.layout(ModelConfig(edges=4).to_dict()) == "8/4-t10-14/16-t10-16/16"


def test_frontier_refuses_a_budget_under_the_smallest_model_before_searching(cli, tmp_path):
    result = cli("frontier", "--budgets", "5000", "800", "--dir", tmp_path / "f", module="tuner")
    assert result.returncode == 2
    assert last_line(result.stderr) == (
        "error: budget 800 is below the smallest model of the search space (846 parameters)")
    assert not (tmp_path / "f").exists()


def test_the_best_trial_is_the_same_in_any_order_ties_going_to_the_smaller_model():
    rows = [
        {"trial": "0001", "epochs": 2, "val_accuracy": 0.99, "parameters": 3000},  # short: cannot win
        {"trial": "0005", "epochs": 6, "val_accuracy": 0.9832, "parameters": 3766},
        {"trial": "0006", "epochs": 6, "val_accuracy": 0.9832, "parameters": 3922},
        {"trial": "0007", "epochs": 6, "val_accuracy": 0.9786, "parameters": 3500},
        {"trial": "0008", "epochs": 6, "val_accuracy": 0.9832, "parameters": 3766},
    ]
    assert workflow.best_row(rows)["trial"] == "0005"
    assert workflow.best_row(rows[::-1])["trial"] == "0005"


def test_the_trials_plot_is_the_same_in_any_order_and_marks_best_row(tmp_path):
    """A reloaded search returns its trials in another order: rerun, the plot must not change."""
    from tuner.report import plot_trials

    rows = [{"trial": "0000", "epochs": 1, "val_accuracy": 0.0986328125, "parameters": 5578},
            {"trial": "0001", "epochs": 1, "val_accuracy": 0.0986328125, "parameters": 5506}]
    pictures = []
    for i, order in enumerate((rows, rows[::-1])):
        plot_trials(order, 6000, tmp_path / f"{i}.png", workflow.best_row(order))
        pictures.append((tmp_path / f"{i}.png").read_bytes())
    plot_trials(rows, 6000, tmp_path / "other.png", rows[0])  # the other trial marked instead
    assert pictures[0] == pictures[1] != (tmp_path / "other.png").read_bytes()


def test_a_finished_seed_run_of_another_config_is_refused_not_reported(tmp_path):
    run = tmp_path / "seed0"
    run.mkdir()
    metrics = {"final_test_accuracy": 0.9903, "config": json.loads(json.dumps(ModelConfig().to_dict()))}
    (run / "metrics.json").write_text(json.dumps(metrics))
    summary = fake_search(8000, ModelConfig())
    assert workflow.retrain(ModelConfig(), Recipe(), run, False, summary) == metrics
    other = ModelConfig(transition1=6, patterns=(8, 10), transition2=6, object=(12, 12))
    with pytest.raises(UsageError, match=rf"^{run} holds a finished run of another config than the best trial "):
        workflow.retrain(other, Recipe(), run, False, summary)


def finish(oracle, trial, score, status="COMPLETED"):
    """Ends a trial through the oracle's public API with a fake score, as a worker would."""
    if status == "COMPLETED":
        oracle.update_trial(trial.trial_id, {"val_accuracy": score,
                                             "parameters": search_space.parameter_count(trial.hyperparameters.values)})
    trial.status = status
    oracle.end_trial(trial)


def halving(tmp_path, budget=3000):
    # 6 candidates of 1 epoch, the best 3 for 2 epochs, the best one for 4 epochs on 2 seeds:
    # 6 + 3 + 1 * 2 = 11 trials.
    return make_tuner(budget, None, Recipe(epochs=4), tmp_path, floor=0.8, strategy="halving",
                      candidates=6, rungs=(1, 2, 4), factor=2, top_seeds=2)


def test_halving_promotes_the_best_of_each_finished_rung_within_the_budget(tmp_path):
    oracle = halving(tmp_path).oracle
    assert (oracle.sizes, oracle.max_trials) == ([6, 3, 1], 11)
    first = [oracle.create_trial(f"tuner{i}") for i in range(6)]
    assert [t.status for t in first] == ["RUNNING"] * 6
    counts = [search_space.parameter_count(t.hyperparameters.values) for t in first]
    assert all(2400 <= c <= 3000 for c in counts), counts  # the wider space mostly lies over 3,000
    assert oracle.rejected > 6
    assert {(t.hyperparameters.values["tuner/rung"], t.hyperparameters.values["tuner/epochs"]) for t in first} == {
        (0, 1)}
    assert oracle.create_trial("tuner6").status == "IDLE"  # rung 1 waits for all of rung 0
    scores = [0.90, 0.95, 0.97, 0.91, 0.96, 0.99]
    for trial, score in zip(first[:5], scores):
        finish(oracle, trial, score)
    assert oracle.create_trial("tuner6").status == "IDLE"
    finish(oracle, first[5], None, status="FAILED")  # the best score would have been its: never promoted

    second = [oracle.create_trial(f"tuner{i}") for i in range(3)]
    ids = [t.hyperparameters.values["tuner/candidate"] for t in second]
    assert ids == [first[2].trial_id, first[4].trial_id, first[1].trial_id]  # 0.97, 0.96, 0.95
    declared = [hp.name for hp in oracle.hyperparameters.space if not hp.name.startswith("tuner/")]
    for trial, source in zip(second, (first[2], first[4], first[1])):
        assert [trial.hyperparameters.values[n] for n in declared] == [
            source.hyperparameters.values[n] for n in declared]
        assert (trial.hyperparameters.values["tuner/rung"], trial.hyperparameters.values["tuner/epochs"]) == (1, 2)
    for trial, score in zip(second, (0.980, 0.985, 0.975)):
        finish(oracle, trial, score)

    top = [oracle.create_trial(f"tuner{i}") for i in range(3)]
    assert [t.status for t in top] == ["RUNNING", "RUNNING", "STOPPED"]  # all 11 planned trials are out
    assert [(t.hyperparameters.values["tuner/candidate"], t.hyperparameters.values["tuner/seed"],
             t.hyperparameters.values["tuner/epochs"]) for t in top[:2]] == [
        (first[4].trial_id, 0, 4), (first[4].trial_id, 1, 4)]
    for trial in top[:2]:
        finish(oracle, trial, 0.99)
    assert oracle.create_trial("tuner9").status == "STOPPED"
    assert len(oracle.trials) == 11


def test_a_reloaded_halving_search_forms_the_same_rungs(tmp_path):
    tuner = halving(tmp_path)
    oracle = tuner.oracle
    first = [oracle.create_trial(f"tuner{i}") for i in range(6)]
    for trial, score in zip(first, (0.90, 0.95, 0.97, 0.91, 0.96, 0.93)):
        finish(oracle, trial, score)
    tuner.save()  # what the tuner writes after each trial: a search killed now reloads from it
    again = halving(tmp_path).oracle
    assert len(again.trials) == 6
    promoted = [again.create_trial(f"tuner{i}").hyperparameters.values["tuner/candidate"] for i in range(3)]
    assert promoted == [first[2].trial_id, first[4].trial_id, first[1].trial_id]


def test_the_top_rung_ranks_candidates_on_the_mean_of_their_seeds():
    rows = [
        {"trial": "0010", "epochs": 20, "val_accuracy": 0.9935, "parameters": 4500, "candidate": "0002", "seed": 0},
        {"trial": "0011", "epochs": 20, "val_accuracy": 0.9905, "parameters": 4500, "candidate": "0002", "seed": 1},
        {"trial": "0012", "epochs": 20, "val_accuracy": 0.9925, "parameters": 4900, "candidate": "0004", "seed": 0},
        {"trial": "0013", "epochs": 20, "val_accuracy": 0.9921, "parameters": 4900, "candidate": "0004", "seed": 1},
        {"trial": "0007", "epochs": 4, "val_accuracy": 0.9950, "parameters": 3000, "candidate": "0007", "seed": 0},
    ]
    best = workflow.best_row(rows)
    # 0002's best seed is the best single score, but its mean (99.20%) is under 0004's (99.23%).
    assert (best["trial"], best["candidate"], best["val_accuracies"]) == ("0012", "0004", [0.9925, 0.9921])
    assert best["val_accuracy"] == pytest.approx(0.9923)


def test_halving_rungs_must_grow(cli, tmp_path):
    result = cli("search", "--strategy", "halving", "--rungs", "1", "4", "4", "--dir", tmp_path / "s", module="tuner")
    assert result.returncode == 2
    assert last_line(result.stderr) == "error: --rungs must grow longer rung by rung, got 1 4 4"
    assert not (tmp_path / "s").exists()
