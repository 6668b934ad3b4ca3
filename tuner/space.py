"""The search space: each hyperparameter's choices and default, and its arithmetic.

Every default is the default `ModelConfig` / `Recipe`, so an empty `HyperParameters()`
builds exactly the model `make train` trains. Nothing here imports KerasTuner, Keras or
TensorFlow: `declare` only calls methods of the `HyperParameters` it is given, so a command
can check a budget against the space before paying for those imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.config import ModelConfig, Recipe, count_parameters

if TYPE_CHECKING:
    import keras_tuner as kt

DEFAULT_CONFIG = ModelConfig()
DEFAULT_RECIPE = Recipe()

# name -> (choices, default). A filter count of 0 removes its layer: blocks hold one to three
# 3x3 convolutions and each 1x1 transition is optional, so plain stacks of three
# convolutions a block (no transitions) are in the space beside the shipped design.
FILTER_CHOICES = {
    "stem": ([4, 6, 8], DEFAULT_CONFIG.stem),
    "edges2": ([0, 4, 6, 8], 0),  # 0: the stem alone at 28x28
    "edges3": ([0, 4, 6, 8], 0),
    "transition1": ([0, 4, 6, 8, 10, 12], DEFAULT_CONFIG.transition1),
    "patterns1": ([6, 8, 10, 12, 14, 16], DEFAULT_CONFIG.patterns[0]),
    "patterns2": ([0, 8, 10, 12, 16, 20], DEFAULT_CONFIG.patterns[1]),
    "patterns3": ([0, 8, 10, 12, 16], 0),
    "transition2": ([0, 4, 6, 8, 10, 12], DEFAULT_CONFIG.transition2),
    "object1": ([8, 10, 12, 16, 20], DEFAULT_CONFIG.object[0]),
    "object2": ([0, 8, 10, 12, 16, 20, 24], DEFAULT_CONFIG.object[1]),
    "object3": ([0, 8, 10, 12, 16], 0),
}
DROPOUT_CHOICES = [0.0, 0.01, 0.02, 0.05, 0.1]
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
        stem=get("stem"),
        edges=(get("edges2"), get("edges3")),
        transition1=get("transition1"),
        patterns=(get("patterns1"), get("patterns2"), get("patterns3")),
        transition2=get("transition2"),
        object=(get("object1"), get("object2"), get("object3")),
        dropout=values.get("dropout", DEFAULT_CONFIG.dropout),
        budget=budget,
    )


def parameter_count(values: dict) -> int:
    """The total parameters (`model.count_params()`) of the model the values describe."""
    return count_parameters(config_from_values(values, budget=10**9))


def smallest_values() -> dict:
    """The values that build the smallest model of the space: every filter count at its least.

    Removing a layer (0) is the least here: the least stem (4 filters) is no wider than the
    least transition, so no layer then reads more channels than it would otherwise.
    """
    return {name: min(choices) for name, (choices, _) in FILTER_CHOICES.items()}
