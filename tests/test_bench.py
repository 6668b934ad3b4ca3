"""The bench: FLOPs from the layers, time to accuracy, and a quick run of every measurement."""

import csv
import json

import numpy as np
import pytest

from app.bench import V1_CONFIG, forward_macs, time_to_accuracy, training_flops
from app.config import ModelConfig
from app.model import build_model

from conftest import last_line


def test_default_model_flops_match_the_hand_count():
    # Multiply-adds per image, H_out * W_out * k * k * C_in * C_out ('same' padding):
    #   edges_conv1       28*28*9*1*8   =  56,448
    #   transition1_conv  14*14*1*8*10  =  15,680
    #   patterns_conv1    14*14*9*10*14 = 246,960
    #   patterns_conv2    14*14*9*14*16 = 395,136
    #   transition2_conv  7*7*1*16*10   =   7,840
    #   object_conv1      7*7*9*10*16   =  70,560
    #   object_conv2      7*7*9*16*16   = 112,896
    #   head              16*10         =     160
    #   total                           = 905,680 multiply-adds = 1,811,360 forward FLOPs
    # A training step is 3 forward passes' worth: 5,434,080 FLOPs per image.
    model = build_model(ModelConfig())
    macs = forward_macs(model)
    assert macs["patterns_conv2"] == 395_136
    assert macs["head"] == 160
    assert sum(macs.values()) == 905_680
    assert training_flops(model) == 5_434_080


def test_v1_model_costs_more_at_full_resolution():
    # edges_conv2 of the v1 model: 28*28*9*8*12 = 677,376 multiply-adds.
    assert forward_macs(build_model(V1_CONFIG))["edges_conv2"] == 677_376


def fake_run(folder, accuracies, seconds):
    """A run folder with the history and metrics `time_to_accuracy` reads."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "history.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "test_accuracy", "wall_seconds"])
        for epoch, (accuracy, wall) in enumerate(zip(accuracies, seconds)):
            writer.writerow([epoch, accuracy, wall])
    from app.config import ModelConfig, Recipe

    metrics = {"final_test_accuracy": accuracies[-1], "wall_seconds": sum(seconds), "epochs": len(seconds),
               "config": ModelConfig().to_dict(), "recipe": Recipe().to_dict()}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_time_to_accuracy_sums_the_epochs_until_the_first_at_the_bar(tmp_path):
    run = fake_run(tmp_path / "run", [0.98, 0.9939, 0.9940, 0.9938, 0.9945], [12.0, 11.0, 10.5, 10.0, 10.0])
    result = time_to_accuracy(run)
    assert result["first_epoch_at_target"] == 3
    assert result["seconds_to_target"] == pytest.approx(33.5)
    assert result["run_seconds"] == pytest.approx(53.5)
    assert result["final_test_accuracy"] == 0.9945


def test_time_to_accuracy_when_the_bar_is_never_reached(tmp_path):
    result = time_to_accuracy(fake_run(tmp_path / "run", [0.98, 0.99], [10.0, 10.0]))
    assert result["first_epoch_at_target"] is None
    assert result["seconds_to_target"] is None


def test_quick_bench_writes_every_field(formats, tmp_path):
    from app import data
    from app.bench import bench

    model, exported = formats
    run = fake_run(tmp_path / "run", [0.99, 0.9941], [10.0, 10.0])
    model.save(run / "model.keras")
    result = bench(run, exported, compare=True, quick=True, images=data.load_split("train[:1024]"),
                   devset=tmp_path / "devset")

    written = json.loads((run / "bench.json").read_text())
    assert written == json.loads(json.dumps(result))
    assert [(r["pipeline"], r["batch_size"], r["steps_per_execution"]) for r in written["training"]] == [
        ("current", 256, 8), ("plain", 128, 1), ("plain", 128, 1)
    ]
    assert written["training"][0]["train_step_flops_per_image"] == 5_434_080
    for row in written["training"]:
        assert row["images_per_second"] > 0 and len(row["window_images_per_second"]) == 3
        assert row["gflops_per_second"] == pytest.approx(
            row["images_per_second"] * row["train_step_flops_per_image"] / 1e9)
    assert written["speedup_vs_plain_v1"] > 0
    assert written["matmul_reference_gflops_per_second"] > 1
    assert written["time_to_accuracy"]["first_epoch_at_target"] == 2
    for name in ("tflite_int8", "tflite_float32", "digit_classifier", "keras"):
        row = written["inference"][name]
        assert 0 < row["median_us"] <= row["p99_us"]
        assert row["batch"] == 16 and row["batch_images_per_second"] > 0
    assert 0 < written["inference"]["mediapipe"]["median_us"] <= written["inference"]["mediapipe"]["p99_us"]
    [predict] = written["predict"]  # 20 photos: too few to start workers
    assert predict["images"] == 20 and predict["jobs"] == 1 and predict["images_per_second"] > 0
    assert predict["errors"] == 0
    assert written["exported_bytes"]["model_int8.tflite"] == (exported / "model_int8.tflite").stat().st_size
    table = (run / "bench.md").read_text()
    assert "| training FLOPs per image (3 x forward) | 5,434,080 |" in table
    assert "| time to 99.40% test accuracy" in table


def test_bench_without_a_run_says_what_to_do(cli, tmp_path):
    result = cli("bench", "--run", tmp_path / "missing", "--quick")
    assert result.returncode == 3
    assert last_line(result.stderr) == (
        f"error: {tmp_path / 'missing' / 'metrics.json'} not found; run `make train` and `make export` first"
    )


def test_the_jax_row_says_how_to_get_jax_when_it_is_missing(monkeypatch):
    import importlib.util

    from app.bench import experiments
    from app.config import ModelConfig, Recipe

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "jax" else find_spec(name, *a))
    rows = experiments(ModelConfig(), Recipe(), quick=True, names=["no augmentation, Keras JAX backend"])
    assert rows == [{"name": "no augmentation, Keras JAX backend", "error": "jax is not installed (pip install jax)"}]


def test_speed_experiment_runs_in_its_own_process_and_is_tabled():
    from app.bench import EXPERIMENTS, experiments, markdown
    from app.config import ModelConfig, Recipe

    assert len(EXPERIMENTS) == 16 and list(EXPERIMENTS)[0] == "the run's recipe"
    onednn = "oneDNN off (TF_ENABLE_ONEDNN_OPTS=0)"
    rows = experiments(ModelConfig(), Recipe(), quick=True, names=["1 step per call", onednn])
    assert [row["name"] for row in rows] == ["1 step per call", onednn] and "error" not in rows[0], rows
    assert rows[0]["steps_per_execution"] == 1 and rows[0]["images_per_second"] > 0
    assert rows[0]["environment"] == {}
    # TensorFlow reads the variable once, as it loads: only a process of its own can set it.
    assert rows[1]["environment"] == {"TF_ENABLE_ONEDNN_OPTS": "0"} and rows[1]["steps_per_execution"] == 8

    fake = {"name": "x", "images_per_second": 1000.0, "fraction_of_matmul": 0.1}
    trials = [fake, {**fake, "name": "y", "images_per_second": 1500.0}, {"name": "z", "error": "boom"}]
    result = {"model": {"parameters": 1, "train_step_flops_per_image": 1}, "matmul_reference_gflops_per_second": 1,
              "training": [], "experiments": trials,
              "time_to_accuracy": {"seconds_to_target": None, "target_accuracy": 0.994, "run": "r", "epochs": 1,
                                   "final_test_accuracy": 0.9, "run_seconds": 1},
              "inference": {}, "predict": [{"images": 1000, "jobs": 1, "images_per_second": 250},
                          {"images": 1000, "jobs": 2, "images_per_second": 450}], "exported_bytes": {}}
    table = markdown(result)
    assert "| experiment: y | 1,500 images/s (10.0% of matmul, 1.50x) |" in table
    assert "| experiment: z | failed: boom |" in table
    assert "| predict (contract + int8 model), 1,000 development photos, 1 process | 250 images/s |" in table
    assert "| predict (contract + int8 model), 1,000 development photos, 2 worker processes | 450 images/s |" in table


@pytest.mark.parametrize("kind", ["fused", "hand_gradient"])
def test_batchnorm_swaps_train_the_same_numbers_as_keras_batchnorm(kind):
    import keras
    import tensorflow as tf

    from app.bench import swap_batchnorm

    model = build_model(ModelConfig(dropout=0.0))  # no random masks, so both see the same network
    swapped = swap_batchnorm(model, kind)
    swapped.set_weights(model.get_weights())
    images = tf.random.stateless_uniform([4, 28, 28, 1], seed=[1, 2], maxval=255.0)
    targets = tf.one_hot([0, 1, 2, 3], 10)

    def step(m):
        with tf.GradientTape() as tape:
            loss = keras.ops.mean(keras.losses.categorical_crossentropy(targets, m(images, training=True)))
        return float(loss), tape.gradient(loss, m.trainable_weights), [w.numpy() for w in m.non_trainable_weights]

    (loss, grads, stats), (swapped_loss, swapped_grads, swapped_stats) = step(model), step(swapped)
    assert swapped_loss == pytest.approx(loss, rel=1e-5)
    assert len(swapped_grads) == len(grads) == 7 + 7 * 2 + 2  # kernels, gammas and betas, the head
    for ours, keras_grad in zip(swapped_grads, grads):
        np.testing.assert_allclose(ours, keras_grad, rtol=1e-3, atol=1e-5)
    for ours, keras_stat in zip(swapped_stats, stats):  # the moving mean and variance after one step
        np.testing.assert_allclose(ours, keras_stat, rtol=1e-5, atol=1e-6)


def test_batchnorm_swaps_without_statistics_drop_their_weights():
    from app.bench import swap_batchnorm

    model = build_model(ModelConfig())
    # BatchNorm holds 4 numbers per channel over 8 + 10 + 14 + 16 + 10 + 16 + 16 = 90 channels;
    # a scale and shift keeps 2 of them.
    assert model.count_params() == 7_862
    assert swap_batchnorm(model, "none").count_params() == 7_862 - 4 * 90
    assert swap_batchnorm(model, "scale_shift").count_params() == 7_862 - 2 * 90
    with pytest.raises(ValueError, match="unknown BatchNorm swap 'folded'; choose from none, scale_shift, fused"):
        swap_batchnorm(model, "folded")
