"""The builder: exact parameter counts, shapes, names, receptive field, budget errors."""

import keras
import numpy as np
import pytest

from app.config import ModelConfig, Recipe
from app.model import VIEW_SHIFTS, build_model, five_views, parameter_counts, receptive_fields

# Default model, layer by layer (3x3 convs have no bias; BatchNorm holds 4 numbers a channel:
# gamma and beta are trained, the moving mean and variance are not):
#   edges_conv1       3*3*1*8   =   72   + BN 4*8  = 32
#   transition1_conv  1*1*8*10  =   80   + BN 4*10 = 40
#   patterns_conv1    3*3*10*14 = 1260   + BN 4*14 = 56
#   patterns_conv2    3*3*14*16 = 2016   + BN 4*16 = 64
#   transition2_conv  1*1*16*10 =  160   + BN 4*10 = 40
#   object_conv1      3*3*10*16 = 1440   + BN 4*16 = 64
#   object_conv2      3*3*16*16 = 2304   + BN 4*16 = 64
#   head              16*10+10  =  170
# conv + head = 7,502; BN = 360, of which 180 moving statistics; total 7,862.
DEFAULT_TOTAL = 7862
DEFAULT_NON_TRAINABLE = 180


def test_default_parameter_count_is_exact_and_under_8000():
    model = build_model()
    assert parameter_counts(model) == {
        "total": DEFAULT_TOTAL,
        "trainable": DEFAULT_TOTAL - DEFAULT_NON_TRAINABLE,
        "non_trainable": DEFAULT_NON_TRAINABLE,
    }
    assert model.count_params() <= 8000


def test_fast_preset_model_count_is_exact_and_under_its_budget():
    from app.config import FAST_BUDGET, FAST_CONFIG, count_parameters

    # Wider blocks 2 and 3 than the default (see DEFAULT_TOTAL for the layer order):
    #   edges 72 + BN 32; transition1 80 + 40; patterns 3*3*10*16 = 1440 + 64, 3*3*16*16 = 2304 + 64;
    #   transition2 1*1*16*16 = 256 + 64; object 3*3*16*32 = 4608 + 128, 3*3*32*32 = 9216 + 128;
    #   head 32*10+10 = 330: conv + head 18,306 + BN 520 (of which 260 moving statistics) = 18,826.
    model = build_model(FAST_CONFIG)
    assert parameter_counts(model) == {"total": 18_826, "trainable": 18_566, "non_trainable": 260}
    assert count_parameters(FAST_CONFIG) == 18_826 <= FAST_BUDGET
    assert [layer.rate for layer in model.layers if layer.name.endswith("dropout")] == [0.0, 0.0, 0.0]


def test_outputs_are_probabilities_of_ten_classes():
    model = build_model()
    x = np.random.default_rng(0).uniform(0, 255, size=(2, 28, 28, 1)).astype("float32")
    y = np.asarray(model(x, training=False))
    assert y.shape == (2, 10)
    np.testing.assert_allclose(y.sum(axis=1), [1.0, 1.0], atol=1e-5)
    assert (y >= 0).all()


def moved(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """`images` `[n, 28, 28, 1]` moved dy rows down and dx columns right, zeros coming in."""
    out = np.zeros_like(images)
    out[:, max(dy, 0) : 28 + min(dy, 0), max(dx, 0) : 28 + min(dx, 0)] = \
        images[:, max(-dy, 0) : 28 + min(-dy, 0), max(-dx, 0) : 28 + min(-dx, 0)]
    return out


def test_moved_moves_a_pixel_the_way_it_says():
    image = np.zeros((1, 28, 28, 1), np.float32)
    image[0, 5, 7, 0] = 1.0
    assert np.argwhere(moved(image, 1, 0)[0, :, :, 0]).tolist() == [[6, 7]]  # down
    assert np.argwhere(moved(image, 0, -1)[0, :, :, 0]).tolist() == [[5, 6]]  # left
    image[0, 27, 0, 0] = 1.0  # moved off the edge, it is gone
    assert moved(image, 1, 0).sum() == 1.0


def test_five_views_classify_the_mean_of_five_shifted_logits():
    model = build_model()
    # Trained BatchNorm statistics are not needed, but non-trivial ones make the views differ.
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if layer.name.endswith("_bn"):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([gamma, beta, rng.normal(0, 1, mean.shape), rng.uniform(0.5, 2, variance.shape)])
    viewing = five_views(model)
    assert viewing.count_params() == DEFAULT_TOTAL  # the same weights, nothing new
    assert VIEW_SHIFTS == ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))
    x = rng.uniform(0, 255, size=(3, 28, 28, 1)).astype("float32")
    # The head is linear before its softmax, so averaging its input averages the logits,
    # and a probability's log is its logit less a constant per image.
    logs = np.mean([np.log(model.predict_on_batch(moved(x, dy, dx))) for dy, dx in VIEW_SHIFTS], axis=0)
    expected = np.exp(logs) / np.exp(logs).sum(axis=1, keepdims=True)
    out = viewing.predict_on_batch(x)
    assert out.shape == (3, 10)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-6)
    assert np.abs(out - model.predict_on_batch(x)).max() > 1e-5  # the views changed something


def test_architecture_follows_the_product_shape():
    model = build_model()
    names = [layer.name for layer in model.layers]
    assert model.get_layer("edges_conv1").filters == 8  # starts with 8 features
    for expected in ("normalize", "transition1_pool", "transition1_conv", "transition2_pool",
                     "transition2_conv", "edges_dropout", "patterns_dropout", "object_dropout",
                     "gap", "head"):
        assert expected in names
    assert model.get_layer("transition1_conv").kernel_size == (1, 1)
    assert model.get_layer("object_conv2").output.shape[1:] == (7, 7, 16)
    # Every layer is named on purpose: no Keras default names like "conv2d_3".
    assert not [n for n in names if n.split("_")[0] in {"conv2d", "dense", "re", "batch", "dropout"}]


def test_early_pool_moves_only_the_pooling():
    early, late = build_model(ModelConfig()), build_model(ModelConfig(early_pool=False))
    order = lambda model: [layer.name for layer in model.layers]
    # Pooled straight after the convolution, so BatchNorm, ReLU and Dropout run at 14x14.
    assert order(early)[2:7] == ["edges_conv1", "transition1_pool", "edges_conv1_bn", "edges_conv1_relu",
                                 "edges_dropout"]
    assert order(late)[2:7] == ["edges_conv1", "edges_conv1_bn", "edges_conv1_relu", "edges_dropout",
                                "transition1_pool"]
    assert early.get_layer("edges_dropout").output.shape[1:] == (14, 14, 8)
    assert late.get_layer("edges_dropout").output.shape[1:] == (28, 28, 8)
    assert early.get_layer("patterns_dropout").output.shape[1:] == (7, 7, 16)
    assert early.count_params() == late.count_params() == DEFAULT_TOTAL
    assert receptive_fields(early) == receptive_fields(late)


def test_receptive_field_of_the_last_convolution_covers_the_digit():
    fields = receptive_fields(build_model())
    assert list(fields.values()) == [3, 4, 4, 8, 12, 14, 14, 22, 30]  # the docstring table
    assert fields["object_conv2"] >= 28


def test_optional_second_edges_convolution():
    # edges=8 adds edges_conv2: 3*3*8*8 = 576 + BN 4*8 = 32, so 7,862 + 608 = 8,470; it widens
    # every later receptive field by 2 (object_conv2: 32).
    model = build_model(ModelConfig(edges=8, budget=9000))
    assert model.count_params() == 8470
    assert model.get_layer("edges_conv2").output.shape[1:] == (28, 28, 8)
    assert receptive_fields(model)["object_conv2"] == 32


def test_over_budget_config_raises_with_count_and_limit():
    with pytest.raises(ValueError, match=r"^model has 7,862 parameters, over the budget of 7,000$"):
        build_model(ModelConfig(budget=7000))


def test_bigger_config_counts_and_budget_is_inclusive():
    # Widening object_conv2 from 16 to 20: its conv grows 3*3*16*4 = 576, its BN 4*4 = 16,
    # and the head 4*10 = 40, so 7,862 + 632 = 8,494.
    config = ModelConfig(object=(16, 20), budget=8494)
    assert build_model(config).count_params() == 8494
    with pytest.raises(ValueError, match="8,494 parameters, over the budget of 8,493"):
        build_model(ModelConfig(object=(16, 20), budget=8493))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"stem": 0}, "stem must be at least 1 filter, got 0"),
        ({"edges": -1}, r"^edges must be filter counts of 0 \(none\) or more, got -1$"),
        ({"edges": (4, 4, 4)}, r"^edges must hold 0 to 2 convolutions, got \(4, 4, 4\)$"),
        ({"patterns": (0, 0)}, r"^patterns must hold 1 to 3 convolutions, got \(0, 0\)$"),
        ({"object": (8, 8, 8, 8)}, r"^object must hold 1 to 3 convolutions, got \(8, 8, 8, 8\)$"),
        ({"transition1": -2}, r"^transition1 must be 0 \(no 1x1 convolution\) or more filters, got -2$"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
    ],
)
def test_invalid_config_messages(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kwargs)


def test_config_round_trips_through_dict():
    config = ModelConfig(patterns=(10, 14), dropout=0.1)
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["patterns"] == [10, 14]


@pytest.mark.parametrize("field", ["epochs", "batch_size"])
def test_recipe_rejects_non_positive(field):
    with pytest.raises(ValueError, match="must be a positive whole number, got 0"):
        Recipe(**{field: 0})


def test_recipe_cleans_at_most_every_epoch():
    assert Recipe(epochs=3, clean_epochs=3).clean_epochs == 3
    with pytest.raises(ValueError, match=r"^clean epochs must be from 0 to the 3 epochs, got 4$"):
        Recipe(epochs=3, clean_epochs=4)
    with pytest.raises(ValueError, match=r"^clean epochs must be from 0 to the 20 epochs, got -1$"):
        Recipe(clean_epochs=-1)


def test_a_recorded_recipe_without_stroke_trained_without_it():
    assert Recipe.from_dict({"epochs": 3}).stroke == 0.0
    assert Recipe.from_dict(Recipe().to_dict()) == Recipe()
    assert Recipe().stroke == 0.4 and Recipe().rotation == 0.033


def test_property_arithmetic_count_matches_the_builder():
    from app.config import count_parameters

    rng = np.random.default_rng(0)
    configs = [ModelConfig(), ModelConfig(edges=4, early_pool=False, budget=10**9)]
    f = lambda least=1: int(rng.integers(least, 25))  # noqa: E731
    # Every option: one to three convolutions a block (0 removes one), optional transitions,
    # pooling early or late.
    convs = lambda: tuple(f(0) if i else f() for i in range(int(rng.integers(1, 4))))  # noqa: E731
    for _ in range(30):
        configs.append(ModelConfig(
            stem=f(), edges=tuple(f(0) for _ in range(int(rng.integers(0, 3)))), transition1=f(0) * rng.integers(0, 2),
            patterns=convs(), transition2=f(0) * rng.integers(0, 2), object=convs(),
            early_pool=bool(rng.integers(0, 2)), budget=10**9))
    for config in configs:
        model = build_model(config)
        assert count_parameters(config) == model.count_params(), config
        convolutions = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
        assert convolutions == [name for name, _, _ in config.convolutions()], config
    assert count_parameters(ModelConfig()) == DEFAULT_TOTAL


def test_plain_stack_of_three_convolutions_a_block_without_transitions():
    # Three 3x3 convolutions at each resolution, no 1x1 transitions (4, 4, 4 | 8, 8, 8 | 8, 8, 8):
    #   edges_conv1      3*3*1*4 =  36 + BN 16       patterns_conv1  3*3*4*8 = 288 + BN 32
    #   edges_conv2/3    3*3*4*4 = 144 + BN 16 each  patterns_conv2/3, object_conv1-3  3*3*8*8 = 576 + BN 32 each
    #   head             8*10+10 =  90
    # 52 + 2*160 + 320 + 5*608 + 90 = 3,822 in all; BN statistics 2*(3*4 + 6*8) = 120.
    config = ModelConfig(stem=4, edges=(4, 4), transition1=0, patterns=(8, 8, 8), transition2=0,
                         object=(8, 8, 8), dropout=0.01, budget=4000)
    model = build_model(config)
    assert parameter_counts(model) == {"total": 3822, "trainable": 3702, "non_trainable": 120}
    names = [layer.name for layer in model.layers]
    assert "transition1_conv" not in names and "transition2_conv" not in names
    assert [n for n in names if n.endswith("_pool")] == ["transition1_pool", "transition2_pool"]
    assert model.get_layer("object_conv3").output.shape[1:] == (7, 7, 8)
    assert model.get_layer("edges_dropout").rate == 0.01
    x = np.zeros((2, 28, 28, 1), "float32")
    assert model(x).shape == (2, 10)
    # 1 + three 3x3 convs (2 each) at jumps 1, 2, 4 and the two 2x2 pools (1 each) at jumps 1, 2:
    # 1 + 6 + 1 + 12 + 2 + 24 = 46 input pixels.
    assert receptive_fields(model)["object_conv3"] == 46


def test_zero_filters_remove_their_convolution_and_equal_configs_compare_equal():
    # A 0 anywhere in a block removes that convolution; an int edges (as older run folders
    # record it) is one convolution.
    assert ModelConfig(patterns=(14, 0, 16), object=(16, 16, 0)) == ModelConfig()
    assert ModelConfig(edges=0) == ModelConfig(edges=()) == ModelConfig(edges=(0, 0))
    assert ModelConfig(edges=8).edges == (8,)
    assert ModelConfig.from_dict(ModelConfig(edges=(4, 6)).to_dict()) == ModelConfig(edges=(4, 6))
    # One transition removed: the next block reads the pooled channels straight away.
    #   default 7,862 - transition2 (160 + 40) - object_conv1 3*3*10*16 + 3*3*16*16 = 7,662 + 864 = 8,526.
    assert build_model(ModelConfig(transition2=0, budget=10**9)).count_params() == 8526
