"""The search space: a thin HyperModel that samples values and calls `app.model.build_model`.

Every hyperparameter's default is the default `ModelConfig` / `Recipe`, so an empty
`HyperParameters()` builds exactly the model `make train` trains.
"""

from __future__ import annotations

import dataclasses
import time

import keras_tuner as kt

from app.config import ModelConfig, Recipe
from app.model import build_model, count_parameters

DEFAULT_CONFIG = ModelConfig()
DEFAULT_RECIPE = Recipe()

# name -> (choices, default). The stem stays at 8: the product starts with 8 features.
FILTER_CHOICES = {
    "edges": ([0, 4, 8, 12], DEFAULT_CONFIG.edges),  # 0: no second 28x28 convolution
    "transition1": ([4, 6, 8, 10, 12], DEFAULT_CONFIG.transition1),
    "patterns1": ([6, 8, 10, 12, 14, 16], DEFAULT_CONFIG.patterns[0]),
    "patterns2": ([8, 10, 12, 16, 20], DEFAULT_CONFIG.patterns[1]),
    "transition2": ([4, 6, 8, 10, 12], DEFAULT_CONFIG.transition2),
    "object1": ([8, 10, 12, 16, 20], DEFAULT_CONFIG.object[0]),
    "object2": ([8, 10, 12, 16, 20, 24], DEFAULT_CONFIG.object[1]),
}
DROPOUT_CHOICES = [0.0, 0.05, 0.1]
LR_CHOICES = [0.005, 0.01, 0.02, 0.04]


def declare(hp: kt.HyperParameters) -> None:
    """Registers the whole search space on `hp`, each with its default."""
    for name, (choices, default) in FILTER_CHOICES.items():
        hp.Choice(name, choices, default=default)
    hp.Choice("dropout", DROPOUT_CHOICES, default=DEFAULT_CONFIG.dropout)
    hp.Choice("max_lr", LR_CHOICES, default=DEFAULT_RECIPE.max_lr)


def config_from_values(values: dict, budget: int) -> ModelConfig:
    """Turns sampled values (missing ones take their defaults) into a `ModelConfig`.

    Args:
        values: hyperparameter name -> value, e.g. `HyperParameters().values`.
        budget: the parameter budget the config carries into `build_model`.
    """
    get = lambda name: values.get(name, FILTER_CHOICES[name][1])  # noqa: E731
    return ModelConfig(
        stem=DEFAULT_CONFIG.stem,
        edges=get("edges"),
        transition1=get("transition1"),
        patterns=(get("patterns1"), get("patterns2")),
        transition2=get("transition2"),
        object=(get("object1"), get("object2")),
        dropout=values.get("dropout", DEFAULT_CONFIG.dropout),
        budget=budget,
    )


def parameter_count(values: dict) -> int:
    """The total parameters (`model.count_params()`) of the model the values describe."""
    return count_parameters(config_from_values(values, budget=10**9))


def smallest_values() -> dict:
    """The values that build the smallest model of the space (every filter count at its least)."""
    return {name: min(choices) for name, (choices, _) in FILTER_CHOICES.items()}


class TinyHyperModel(kt.HyperModel):
    """Samples the search space and builds the model with `app.model.build_model`.

    Args:
        budget: the most parameters a model may have; `build_model` enforces it.
        recipe: the training recipe of one trial (epochs, batch size, seed).
    """

    def __init__(self, budget: int, recipe: Recipe = DEFAULT_RECIPE):
        super().__init__(name="tinymnist")
        self.budget = budget
        self.recipe = recipe

    def declare_hyperparameters(self, hp):
        declare(hp)

    def config(self, hp: kt.HyperParameters) -> ModelConfig:
        """The `ModelConfig` of `hp`'s values (an empty `hp` gives the default config)."""
        declare(hp)
        return config_from_values(hp.values, self.budget)

    def trial_recipe(self, hp: kt.HyperParameters) -> Recipe:
        """The recipe of `hp`'s values; a Hyperband round sets its length (`tuner/epochs`)."""
        declare(hp)
        epochs = hp.values.get("tuner/epochs", self.recipe.epochs)
        return dataclasses.replace(self.recipe, max_lr=hp.get("max_lr"), epochs=epochs)

    def build(self, hp):
        # Raises for an over-budget config. `fit` compiles: the schedule needs the step count.
        return build_model(self.config(hp))

    def fit(self, hp, model, train, validation, steps_per_epoch, **kwargs):
        """Trains one candidate and returns its metrics (the objective is `val_accuracy`).

        Args:
            hp: the trial's hyperparameters.
            model: the model `build` made.
            train: batched training data (the train split less the validation images).
            validation: batched validation data carved from the train split.
            steps_per_epoch: optimizer steps per epoch, for the learning-rate schedule.
        """
        from app.train import compile_model

        recipe = self.trial_recipe(hp)
        compile_model(model, recipe, steps_per_epoch)
        start = time.perf_counter()
        # shuffle=False: the pipeline already orders each epoch (see `app.data.train_pipeline`).
        model.fit(train, epochs=recipe.epochs, verbose=kwargs.get("verbose", 0),
                  callbacks=kwargs.get("callbacks"), shuffle=False)
        _, val_accuracy = model.evaluate(validation, verbose=0)
        return {
            "val_accuracy": val_accuracy,
            "parameters": model.count_params(),
            "epochs": recipe.epochs,
            "seconds": time.perf_counter() - start,
        }
