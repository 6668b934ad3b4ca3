"""The budget-aware search: oracles that never propose an over-budget model.

Stock KerasTuner is the wrong tool for a *total* parameter budget on its own: its
`max_model_size` counts trainable weights only (not BatchNorm statistics), and it rejects an
oversized model by failing the trial, which uses up `max_trials` and, after
`max_consecutive_failed_trials` in a row, stops the search. `BudgetRandomSearchOracle` and
`BudgetHyperbandOracle` instead redraw a candidate until it fits, so over-budget models are
never built for training, never counted as trials, and never end the search; they count how
many they redrew.
"""

from __future__ import annotations

import copy

import keras_tuner as kt

from tuner.hypermodel import TinyHyperModel
from tuner.space import declare, parameter_count

# Redraws allowed in a row before the oracle decides no unseen candidate fits the budget.
MAX_REDRAWS = 2000


class BudgetMixin:
    """The budget check shared by the oracles: does a drawn candidate fit?

    Args:
        budget: the most total parameters (`model.count_params()`) a candidate may have.
        floor: the least a candidate may have, as a fraction of `budget` (0 allows all).
            Most of a filter-count space is far under any budget, and a short trial cannot
            tell a small model's promise from its noise; a floor spends the trials on
            models that use the budget. Candidates under it are redrawn and counted apart.
    """

    def __init__(self, budget: int, floor: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.budget = budget
        self.floor = floor
        self.rejected = 0
        self.under_floor = 0

    def fits(self, values: dict) -> bool:
        """Whether `values` build a model within [floor * budget, budget]; counts misses."""
        params = parameter_count(values)
        if params > self.budget:
            self.rejected += 1
        elif params < self.floor * self.budget:
            self.under_floor += 1
        else:
            return True
        return False

    def get_state(self):
        state = super().get_state()
        state.update(budget=self.budget, floor=self.floor, rejected=self.rejected, under_floor=self.under_floor)
        return state

    def set_state(self, state):
        super().set_state(state)
        self.rejected = state.get("rejected", 0)
        self.under_floor = state.get("under_floor", 0)


class BudgetRandomSearchOracle(BudgetMixin, kt.oracles.RandomSearchOracle):
    """Random search that only ever proposes candidates within a parameter budget.

    Built on KerasTuner's public extension point: `populate_space(trial_id)` draws from the
    stock random search until a candidate fits, and returns it as the trial's values.

    Args:
        budget: see `BudgetMixin`.
        floor: see `BudgetMixin`.
        **kwargs: passed to `keras_tuner.oracles.RandomSearchOracle`.
    """

    def populate_space(self, trial_id):
        for _ in range(MAX_REDRAWS):
            response = super().populate_space(trial_id)
            if response["status"] != kt.engine.trial.TrialStatus.RUNNING:  # the space is exhausted
                return response
            if self.fits(response["values"]):
                return response
        return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}


class BudgetHyperbandOracle(BudgetMixin, kt.oracles.HyperbandOracle):
    """Hyperband (successive halving over several brackets) within a parameter budget.

    Most candidates train a few epochs; the best of each round train longer. Every new
    candidate of a bracket is drawn until it fits, like `BudgetRandomSearchOracle`;
    promoted candidates fitted when they were drawn. Hyperband books a draw into its
    bracket as it makes it, so a rejected draw is rolled back with the oracle's public
    `get_state` / `set_state`, keeping only the advanced random state and the counts:
    rejections never take a bracket's place and never end the search.

    Args:
        budget: see `BudgetMixin`.
        floor: see `BudgetMixin`.
        **kwargs: passed to `keras_tuner.oracles.HyperbandOracle` (`max_epochs`, `factor`,
            `hyperband_iterations`, ...).
    """

    def populate_space(self, trial_id):
        for _ in range(MAX_REDRAWS):
            before = copy.deepcopy(self.get_state())
            response = super().populate_space(trial_id)
            values = response.get("values")
            if response["status"] != kt.engine.trial.TrialStatus.RUNNING or values.get("tuner/round", 0) > 0:
                return response
            if self.fits(values):
                return response
            after = self.get_state()
            before.update({key: after[key] for key in ("seed_state", "rejected", "under_floor")})
            self.set_state(before)
        return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}


class BudgetHalvingOracle(BudgetRandomSearchOracle):
    """Successive halving within a parameter budget: many short trials, a few full ones.

    Rung 0 trains `candidates` fresh draws (each fits the budget and the floor, as in
    `BudgetRandomSearchOracle`) for `rungs[0]` epochs; each later rung retrains, from
    scratch, the best 1/`factor` of the rung before for `rungs[i]` epochs. The top rung
    trains each of its candidates on `top_seeds` seeds, and a candidate's score there is
    the mean over them: at 99.4% one seed's noise (about +-0.05 points) would otherwise
    pick the winner. Rungs are formed from the finished trials alone (their values carry
    `tuner/rung`, `tuner/candidate` and `tuner/seed`), so a search resumed after a kill
    forms the same rungs; a rung waits (IDLE) while its trials still run on other workers.

    Args:
        budget: see `BudgetMixin`.
        floor: see `BudgetMixin`.
        candidates: how many fresh candidates rung 0 trains.
        rungs: the epochs of each rung, shortest first; the last is the full training.
        factor: each rung keeps the best 1/factor of the one before (at least one).
        top_seeds: seeds of each top-rung candidate.
        **kwargs: passed to `BudgetRandomSearchOracle` (not `max_trials`: the plan sets it).
    """

    def __init__(self, budget: int, floor: float = 0.0, candidates: int = 100, rungs=(1, 3, 7, 20),
                 factor: int = 3, top_seeds: int = 2, **kwargs):
        self.sizes = halving_sizes(candidates, len(rungs), factor)
        self.rungs, self.top_seeds = tuple(rungs), top_seeds
        super().__init__(budget=budget, floor=floor, max_trials=planned_trials(self.sizes, top_seeds), **kwargs)

    def populate_space(self, trial_id):
        done = lambda t: t.status in ("COMPLETED", "FAILED", "INVALID")  # noqa: E731
        by_rung = [[t for t in self.trials.values() if t.hyperparameters.values.get("tuner/rung") == r]
                   for r in range(len(self.rungs))]
        if len(by_rung[0]) < self.sizes[0]:
            return self.draw(trial_id)
        for rung in range(1, len(self.rungs)):
            before = by_rung[rung - 1]
            if not all(done(t) for t in before):
                return {"status": kt.engine.trial.TrialStatus.IDLE}
            seeds = self.top_seeds if rung == len(self.rungs) - 1 else 1
            started = {(t.hyperparameters.values["tuner/candidate"], t.hyperparameters.values["tuner/seed"])
                       for t in by_rung[rung]}
            for candidate, values in promoted(before, self.sizes[rung]):
                for seed in range(seeds):
                    if (candidate, seed) not in started:
                        return {"status": kt.engine.trial.TrialStatus.RUNNING,
                                "values": {**values, "tuner/rung": rung, "tuner/epochs": self.rungs[rung],
                                           "tuner/candidate": candidate, "tuner/seed": seed}}
        if not all(done(t) for t in by_rung[-1]):
            return {"status": kt.engine.trial.TrialStatus.IDLE}
        return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}

    def draw(self, trial_id):
        """A fresh rung-0 candidate within the budget and the floor (the random search's draw)."""
        response = super().populate_space(trial_id)
        if response["status"] != kt.engine.trial.TrialStatus.RUNNING:
            return response
        values = {**response["values"], "tuner/rung": 0, "tuner/epochs": self.rungs[0],
                  "tuner/candidate": trial_id, "tuner/seed": 0}
        return {"status": kt.engine.trial.TrialStatus.RUNNING, "values": values}


def halving_sizes(candidates: int, rungs: int, factor: int) -> list[int]:
    """How many candidates each rung trains: `candidates`, then 1/factor of the rung before."""
    sizes = [candidates]
    for _ in range(rungs - 1):
        sizes.append(max(1, sizes[-1] // factor))
    return sizes


def planned_trials(sizes: list[int], top_seeds: int) -> int:
    """The trials a halving search trains: each rung's candidates, the top rung's on each seed."""
    return sum(sizes[:-1]) + sizes[-1] * top_seeds


def promoted(trials, count: int) -> list[tuple[str, dict]]:
    """The `count` best candidates of a finished rung, as (candidate id, searched values).

    A candidate's score is its mean `val_accuracy` over its trials of the rung (its seeds);
    ties go to the smaller model, then to the earlier candidate, so a resumed search
    promotes the same ones. Failed trials have no score and are never promoted.
    """
    scores, values = {}, {}
    for trial in trials:
        if trial.status != "COMPLETED" or not trial.metrics.exists("val_accuracy"):
            continue
        candidate = trial.hyperparameters.values["tuner/candidate"]
        scores.setdefault(candidate, []).append(trial.metrics.get_last_value("val_accuracy"))
        values[candidate] = {k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")}
    ranked = sorted(scores, key=lambda c: (-sum(scores[c]) / len(scores[c]), parameter_count(values[c]), c))
    return [(c, values[c]) for c in ranked[:count]]


class BudgetTuner(kt.Tuner):
    """A KerasTuner `Tuner` that trains each trial through the thin HyperModel.

    KerasTuner's own hypermodel hook would build the default model to discover the search
    space, and the default model may be over a small budget; so the space is declared up
    front on the oracle (its public `hyperparameters` argument), the tuner gets no
    hypermodel, and `run_trial` (the documented override) builds and fits each candidate.

    Args:
        model_maker: the `TinyHyperModel` that builds and fits candidates.
        **kwargs: passed to `keras_tuner.Tuner`.
    """

    def __init__(self, model_maker: TinyHyperModel, **kwargs):
        super().__init__(hypermodel=None, **kwargs)
        self.model_maker = model_maker

    def run_trial(self, trial, train, validation, steps_per_epoch, **kwargs):
        # No per-epoch checkpoints: the best configuration is retrained from scratch anyway,
        # and a Hyperband candidate promoted to a longer round trains from scratch with a
        # one-cycle schedule of that length, so every score is that of a real short recipe.
        hp = trial.hyperparameters
        model = self.model_maker.build(hp)
        return self.model_maker.fit(hp, model, train, validation, steps_per_epoch)

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        trial = self.oracle.get_trial(trial.trial_id)
        print(trial_line(trial), flush=True)


def trial_row(trial) -> dict:
    """One row of the trials table: the trial's values and metrics."""
    metrics = trial.metrics
    get = lambda name: metrics.get_last_value(name) if metrics.exists(name) else None  # noqa: E731
    values = trial.hyperparameters.values
    promoted = {"promoted_from": values["tuner/trial_id"]} if "tuner/trial_id" in values else {}
    if "tuner/candidate" in values:  # a halving search: the rung, the candidate and its seed
        promoted = {key: values[f"tuner/{key}"] for key in ("rung", "candidate", "seed")}
    return {
        "trial": trial.trial_id,
        "status": trial.status,
        **{name: value for name, value in values.items() if not name.startswith("tuner/")},
        **promoted,
        "parameters": int(get("parameters")) if get("parameters") is not None else None,
        "val_accuracy": get("val_accuracy"),
        "epochs": int(get("epochs")) if get("epochs") is not None else None,
        "seconds": get("seconds"),
    }


def trial_line(trial) -> str:
    """The progress line printed when a trial ends."""
    row = trial_row(trial)
    values = " ".join(f"{k}={v}" for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/"))
    if row["val_accuracy"] is None:
        return f"trial {row['trial']}: {row['status']} {values}"
    return (
        f"trial {row['trial']}: {row['parameters']:,} params, val_accuracy "
        f"{100 * row['val_accuracy']:.2f}% after {row['epochs']} epochs, {row['seconds']:.0f}s | {values}"
    )


def make_tuner(budget, trials, recipe, directory, project="search", seed=0, floor=0.0,
               strategy="random", factor=3, iterations=1, candidates=100, rungs=(1, 3, 7, 20),
               top_seeds=2) -> BudgetTuner:
    """Builds (or reloads, with KerasTuner's `overwrite=False`) the budget-aware tuner.

    Args:
        budget: the parameter budget.
        trials: how many candidates to train (`max_trials`) in a random search; rejected
            ones do not count. Hyperband's trial count follows from its brackets instead.
        recipe: the training recipe of each trial; for Hyperband, `recipe.epochs` is the
            longest training a candidate gets (`max_epochs`).
        directory: where KerasTuner keeps its state (the search resumes from it).
        project: the project folder name under `directory`.
        seed: seeds the oracle's sampling.
        floor: the least parameters a candidate may have, as a fraction of `budget`.
        strategy: "random" (every trial trains `recipe.epochs`), "hyperband", or "halving"
            (`BudgetHalvingOracle`: `candidates` short trials, the best promoted rung by rung).
        factor: Hyperband's or halving's reduction factor: each round keeps about 1/factor
            of the candidates (Hyperband also trains them factor times longer).
        iterations: how many times Hyperband sweeps all of its brackets.
        candidates: halving: the fresh candidates of the first rung.
        rungs: halving: each rung's epochs, the last the full training.
        top_seeds: halving: seeds of each candidate at the top rung, its score their mean.
    """
    space = kt.HyperParameters()
    declare(space)
    common = dict(budget=budget, floor=floor, objective=kt.Objective("val_accuracy", direction="max"),
                  seed=seed, hyperparameters=space)
    if strategy == "hyperband":
        oracle = BudgetHyperbandOracle(max_epochs=recipe.epochs, factor=factor,
                                       hyperband_iterations=iterations, **common)
    elif strategy == "halving":
        oracle = BudgetHalvingOracle(candidates=candidates, rungs=rungs, factor=factor, top_seeds=top_seeds,
                                     **common)
    elif strategy == "random":
        oracle = BudgetRandomSearchOracle(max_trials=trials, **common)
    else:
        raise ValueError(f"strategy must be 'random', 'hyperband' or 'halving', got {strategy!r}")
    return BudgetTuner(
        TinyHyperModel(budget, recipe),
        oracle=oracle,
        directory=str(directory),
        project_name=project,
        overwrite=False,
    )
