"""The frozen configuration of the model and of its training recipe.

Nothing here imports Keras or TensorFlow: a command checks its config (the budget
included, by arithmetic) before it pays for their import.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# The default model stays at or under this many parameters (model.count_params()).
DEFAULT_BUDGET = 8000
# The model's input (raw 28x28 gray pixels) and its classes, the digits 0-9.
INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


# The most 3x3 convolutions a block may hold (the edges block counts its stem).
MAX_BLOCK_CONVS = 3


def _filters(name: str, value, least: int) -> tuple[int, ...]:
    """A block's filter counts as a tuple without its zeros (a 0 removes that convolution).

    An int stands for one convolution (0: none); a list comes from a JSON round trip. The
    edges block's stem is its first convolution, so `edges` holds one fewer.
    """
    counts = tuple(value) if isinstance(value, (tuple, list)) else ((value,) if value else ())
    if any(not isinstance(f, int) or f < 0 for f in counts):
        raise ValueError(f"{name} must be filter counts of 0 (none) or more, got {value}")
    counts = tuple(f for f in counts if f)
    most = MAX_BLOCK_CONVS - (name == "edges")
    if not least <= len(counts) <= most:
        raise ValueError(f"{name} must hold {least} to {most} convolutions, got {value}")
    return counts


@dataclass(frozen=True)
class ModelConfig:
    """Everything `build_model` needs; the defaults are the shipped model.

    A filter count of 0 removes its convolution: a block holds one to three 3x3
    convolutions and each 1x1 transition is optional, so one builder spans the shipped
    design and the plainer ones (three convolutions a block, no transitions) the search
    compares it with.

    Attributes:
        stem: filters of the first 3x3 convolution (the product starts with 8 features).
        edges: filters of up to two more 3x3 convolutions of block 1 (28x28, edges); the
            default, none, leaves the stem alone in that block: full-resolution layers are
            the most expensive per parameter, so the parameters go to blocks 2 and 3.
        transition1: filters of the 1x1 convolution after the first MaxPooling; 0 keeps
            the pooling alone.
        patterns: filters of the one to three 3x3 convolutions of block 2 (14x14, patterns).
        transition2: filters of the 1x1 convolution after the second MaxPooling; 0 keeps
            the pooling alone.
        object: filters of the one to three 3x3 convolutions of block 3 (7x7, the object).
        dropout: rate of the Dropout after each block.
        early_pool: max-pool the last convolution of blocks 1 and 2 straight away, before
            its BatchNorm, ReLU and Dropout, which then touch a quarter of the pixels. Max
            pooling commutes with ReLU and with BatchNorm's per-channel scale when it is
            positive, so the function barely changes while a training step gets cheaper.
            False puts each MaxPooling after the block.
        budget: the most parameters (trainable plus BatchNorm statistics) a model may have.
    """

    stem: int = 8
    edges: tuple[int, ...] = ()
    transition1: int = 10
    patterns: tuple[int, ...] = (14, 16)
    transition2: int = 10
    object: tuple[int, ...] = (16, 16)
    dropout: float = 0.05
    early_pool: bool = True
    budget: int = DEFAULT_BUDGET

    def __post_init__(self):
        # Stored as tuples without zeros, so two configs of one model are equal and hash alike.
        object.__setattr__(self, "edges", _filters("edges", self.edges, least=0))
        object.__setattr__(self, "patterns", _filters("patterns", self.patterns, least=1))
        object.__setattr__(self, "object", _filters("object", self.object, least=1))
        if self.stem < 1:
            raise ValueError(f"stem must be at least 1 filter, got {self.stem}")
        for name in ("transition1", "transition2"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (no 1x1 convolution) or more filters, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        """Returns the config as plain JSON-ready values."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        """Builds a config from `to_dict` output (unknown keys are an error)."""
        return cls(**values)

    def convolutions(self) -> list[tuple[str, int, int]]:
        """Every convolution in order, as (layer name, filters, kernel side)."""
        layers = [(f"edges_conv{i}", f, 3) for i, f in enumerate((self.stem, *self.edges), start=1)]
        if self.transition1:
            layers.append(("transition1_conv", self.transition1, 1))
        layers += [(f"patterns_conv{i}", f, 3) for i, f in enumerate(self.patterns, start=1)]
        if self.transition2:
            layers.append(("transition2_conv", self.transition2, 1))
        return layers + [(f"object_conv{i}", f, 3) for i, f in enumerate(self.object, start=1)]

    def check_budget(self, parameters: int) -> None:
        """Raises ValueError when a model of `parameters` parameters is over `budget`."""
        if parameters > self.budget:
            raise ValueError(f"model has {parameters:,} parameters, over the budget of {self.budget:,}")


def count_parameters(config: ModelConfig) -> int:
    """`build_model(config).count_params()`, by arithmetic: no model is built.

    A search draws thousands of candidates to find the few under a small budget, and a
    command checks its config's budget before importing TensorFlow; building each model to
    count it would cost far more. Every bias-free k x k convolution has k*k*in*out weights
    and its BatchNorm 4*out (gamma, beta, moving mean and variance); the head has
    (in + 1) * 10. The tests check it against the builder on random configs.

    Args:
        config: the model configuration (its budget is not checked).
    """
    total, channels = 0, INPUT_SHAPE[-1]
    for _, filters, kernel in config.convolutions():
        total += kernel * kernel * channels * filters + 4 * filters
        channels = filters
    return total + (channels + 1) * NUM_CLASSES


@dataclass(frozen=True)
class Recipe:
    """How the model is trained; the defaults are the shipped recipe.

    Attributes:
        epochs: number of passes over the 60,000 training images.
        batch_size: images per optimizer step.
        optimizer: "adamw", or "sgd" (Nesterov momentum 0.9).
        max_lr: the peak learning rate of the one-cycle schedule.
        weight_decay: decoupled weight decay of the optimizer.
        label_smoothing: smoothing of the one-hot targets.
        shift: largest random translation of the augmentation, as a fraction of 28 pixels.
        rotation: largest random rotation of the augmentation, as a fraction of a full turn.
        stroke: the largest fraction of the way each image moves towards its 3x3 grey
            dilation or erosion (wider or narrower strokes, as other pens draw them).
        blur: the share of training images shown at a low resolution (blurred strokes, as
            small scans and pen-tablet digits are).
        seed: seeds weights, shuffling, dropout and augmentation.
        steps_per_execution: optimizer steps per call into the compiled training function;
            more than 1 saves Python and callback overhead per step without changing the
            maths (progress bars and callbacks then update once per call).
        clean_epochs: the last this many epochs show the training images unaugmented, so a
            short run ends on the images it is judged by; 0 augments every epoch.
    """

    epochs: int = 20
    batch_size: int = 256
    optimizer: str = "adamw"
    max_lr: float = 0.04
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    shift: float = 0.08
    rotation: float = 0.033
    stroke: float = 0.4
    blur: float = 0.0
    seed: int = 0
    steps_per_execution: int = 8
    clean_epochs: int = 0

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"epochs must be a positive whole number, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be a positive whole number, got {self.batch_size}")
        if self.steps_per_execution < 1:
            raise ValueError(f"steps per execution must be a positive whole number, got {self.steps_per_execution}")
        if not 0 <= self.clean_epochs <= self.epochs:
            raise ValueError(f"clean epochs must be from 0 to the {self.epochs} epochs, got {self.clean_epochs}")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}")

    def to_dict(self) -> dict:
        """Returns the recipe as plain JSON-ready values."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Recipe:
        """Builds the recipe a run folder records (unknown keys are an error).

        A recorded recipe without `stroke` or `blur` trained without that augmentation.
        """
        return cls(**{"stroke": 0.0, "blur": 0.0, **values})


# The fast preset (`--recipe fast`): under a third of the default recipe's training time.
# Six epochs are too few for the default model, whatever the schedule, to reach 99.40% (see
# docs/performance.md), so the preset trains a wider one: a wider layer costs little extra
# time here, where a training step's time goes mostly to BatchNorm and memory traffic rather
# than to multiply-adds. Without Dropout, ending on one unaugmented epoch, and with smoothed
# targets, it scored best on validation among the six-epoch recipes tried. 32 steps a call
# change no maths and spread each call's fixed cost over more images.
FAST_BUDGET = 20_000
FAST_CONFIG = ModelConfig(patterns=(16, 16), transition2=16, object=(32, 32), dropout=0.0, budget=FAST_BUDGET)
FAST_RECIPE = Recipe(epochs=6, clean_epochs=1, label_smoothing=0.1, steps_per_execution=32)
# Recipe presets by name: the model each trains unless told another, and the recipe.
PRESETS = {"fast": (FAST_CONFIG, FAST_RECIPE)}
