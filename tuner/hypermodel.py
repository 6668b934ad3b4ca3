"""A thin HyperModel: samples the search space (`tuner.space`) and calls `app.model.build_model`.

Every hyperparameter's default is the default `ModelConfig` / `Recipe`, so an empty
`HyperParameters()` builds exactly the model `make train` trains.
"""

from __future__ import annotations

import dataclasses
import time

import keras
import keras_tuner as kt

from app.config import ModelConfig, Recipe
from app.model import build_model
from tuner.space import DEFAULT_RECIPE, config_from_values, declare


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
        """The recipe of `hp`'s values.

        A Hyperband round or a halving rung sets its length (`tuner/epochs`); a halving
        search's top rung trains each candidate on several seeds (`tuner/seed`, added to
        the search's own seed).
        """
        declare(hp)
        epochs = hp.values.get("tuner/epochs", self.recipe.epochs)
        seed = self.recipe.seed + hp.values.get("tuner/seed", 0)
        return dataclasses.replace(self.recipe, max_lr=hp.get("max_lr"), epochs=epochs, seed=seed)

    def build(self, hp):
        # The trial's seed draws its weights and Dropout, so a rerun trial trains the same model.
        keras.utils.set_random_seed(self.trial_recipe(hp).seed)
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
