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
               strategy="random", factor=3, iterations=1) -> BudgetTuner:
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
        strategy: "random" (every trial trains `recipe.epochs`) or "hyperband".
        factor: Hyperband's reduction factor: each round keeps about 1/factor of the
            candidates and trains them factor times longer.
        iterations: how many times Hyperband sweeps all of its brackets.
    """
    space = kt.HyperParameters()
    declare(space)
    common = dict(budget=budget, floor=floor, objective=kt.Objective("val_accuracy", direction="max"),
                  seed=seed, hyperparameters=space)
    if strategy == "hyperband":
        oracle = BudgetHyperbandOracle(max_epochs=recipe.epochs, factor=factor,
                                       hyperband_iterations=iterations, **common)
    elif strategy == "random":
        oracle = BudgetRandomSearchOracle(max_trials=trials, **common)
    else:
        raise ValueError(f"strategy must be 'random' or 'hyperband', got {strategy!r}")
    return BudgetTuner(
        TinyHyperModel(budget, recipe),
        oracle=oracle,
        directory=str(directory),
        project_name=project,
        overwrite=False,
    )
