"""What the model costs: training throughput and FLOPs, time to accuracy, inference latency.

`python -m app bench` (and `make bench`) prints one table and writes it as `bench.json` and
`bench.md` into the run folder whose metrics it reads.

FLOPs are counted from the layers: a Conv2D costs `H_out * W_out * k_h * k_w * C_in * C_out`
multiply-adds per image and a Dense layer `inputs * outputs`; one multiply-add is 2 FLOPs.
A training step costs 3x the forward FLOPs (the forward pass, the gradient with respect to
the activations and the gradient with respect to the weights, each about one forward pass).
BatchNorm, ReLU, pooling, Dropout and the optimizer update are element-wise and not counted.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from app.config import ModelConfig, Recipe
from app.errors import InputFileError
from app.files import read_history, write_json, write_text
from app.litert import TFLiteClassifier, quantize

# The accuracy bar whose wall time "time to accuracy" measures.
TARGET_ACCURACY = 0.994
# The previous default model and recipe (v1): a second 28x28 edges convolution, pooling after
# each block, batch 128, one step per call. Only the bench's `--compare` rows use them.
V1_CONFIG = ModelConfig(
    stem=8, edges=12, transition1=8, patterns=(12, 16), transition2=8, object=(16, 16), dropout=0.05,
    early_pool=False,
)
V1_RECIPE = Recipe(batch_size=128, max_lr=0.01, shift=0.08, rotation=0.02, stroke=0.0, steps_per_execution=1)


def forward_macs(model) -> dict[str, int]:
    """Multiply-adds per image of every Conv2D and Dense layer of `model`, by layer name."""
    import keras

    macs = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, out_channels = layer.output.shape
            kh, kw = layer.kernel_size
            macs[layer.name] = height * width * kh * kw * layer.input.shape[-1] * out_channels
        elif isinstance(layer, keras.layers.Dense):
            macs[layer.name] = layer.input.shape[-1] * layer.units
    return macs


def training_flops(model) -> int:
    """FLOPs of one training step per image: 3 x 2 x the forward multiply-adds."""
    return 3 * 2 * sum(forward_macs(model).values())


def plain_pipeline(ds, batch_size: int, seed: int, shift: float, rotation: float):
    """A plain tfds + `model.fit` pipeline, the bench's baseline.

    `cache`, a 60,000-image shuffle buffer, and two Keras preprocessing layers (rotation,
    then translation) on float batches: what the Keras examples do.
    """
    import keras
    import tensorflow as tf

    ds = ds.cache().shuffle(60_000, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
    augment = keras.Sequential([
        keras.layers.RandomRotation(rotation, fill_mode="constant", seed=seed),
        keras.layers.RandomTranslation(shift, shift, fill_mode="constant", seed=seed + 1),
    ])
    ds = ds.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def training_throughput(config: ModelConfig, recipe: Recipe, pipeline: str, warmup: int,
                        windows: int, window: int, images=None, jit_compile: bool = False,
                        batchnorm: str | None = None) -> dict:
    """Times the full training step (forward, backward, update) fed by a real pipeline.

    Args:
        config: the model to train.
        recipe: batch size, augmentation and schedule.
        pipeline: "current" (`data.train_pipeline`) or "plain" (`plain_pipeline`).
        warmup: untimed steps first (tracing, caches, autotuning).
        windows: timed windows; the median is reported.
        window: steps per window.
        images: the `(image, label)` dataset to train on (default: the MNIST train split).
        jit_compile: compile the whole training step with XLA.
        batchnorm: a `swap_batchnorm` kind to time instead of Keras's BatchNormalization.

    Returns:
        images per second (median and every window), batch size, steps timed.
    """
    import keras

    from app import data
    from app.model import build_model
    from app.train import compile_model, one_hot

    keras.utils.set_random_seed(recipe.seed)
    if images is None:
        images = data.load_split("train")
    if pipeline == "current":
        ds = data.train_pipeline(images, recipe.batch_size, recipe.seed, shift=recipe.shift,
                                 rotation=recipe.rotation, stroke=recipe.stroke, blur=recipe.blur)
    else:
        ds = plain_pipeline(images, recipe.batch_size, recipe.seed, shift=recipe.shift, rotation=recipe.rotation)
    ds = ds.map(one_hot).repeat()
    model = build_model(config)
    if batchnorm:
        model = swap_batchnorm(model, batchnorm)
    model = compile_model(model, recipe, steps_per_epoch=500)
    model.jit_compile = jit_compile
    # Callbacks run once per `steps_per_execution` steps, so round the counts up to whole calls.
    spe = recipe.steps_per_execution
    warmup, window = -(-warmup // spe) * spe, -(-window // spe) * spe
    stamps = {}
    timer = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: stamps.setdefault(batch + 1, time.perf_counter()))
    model.fit(ds, epochs=1, steps_per_epoch=warmup + windows * window, callbacks=[timer], verbose=0, shuffle=False)
    rates = [
        window * recipe.batch_size / (stamps[warmup + (i + 1) * window] - stamps[warmup + i * window])
        for i in range(windows)
    ]
    return {
        "pipeline": pipeline,
        "config": config.to_dict(),
        "batch_size": recipe.batch_size,
        "steps_per_execution": recipe.steps_per_execution,
        "images_per_second": statistics.median(rates),
        "window_images_per_second": rates,
        "timed_steps": windows * window,
    }


# Training-speed experiments, each in a fresh process (thread counts, the mixed-precision
# policy, the Keras backend and TensorFlow's environment must be set before anything runs):
# name, then the changes it makes. The JAX row compares with the TensorFlow row without
# augmentation: the augmentation runs Keras ops inside tf.data, which only the TensorFlow
# backend can.
EXPERIMENTS = {
    "the run's recipe": {},
    "no augmentation (shift, rotation, stroke 0)": {"recipe": {"shift": 0.0, "rotation": 0.0, "stroke": 0.0}},
    "1 step per call": {"recipe": {"steps_per_execution": 1}},
    "32 steps per call": {"recipe": {"steps_per_execution": 32}},
    "batch 512": {"recipe": {"batch_size": 512}},
    "mixed_bfloat16 policy": {"policy": "mixed_bfloat16"},
    "1 intra-op thread": {"intra_op": 1},
    "1 inter-op thread": {"inter_op": 1},
    "4 intra-op threads": {"intra_op": 4},
    "whole-model XLA (jit_compile=True)": {"jit_compile": True},
    "oneDNN off (TF_ENABLE_ONEDNN_OPTS=0)": {"env": {"TF_ENABLE_ONEDNN_OPTS": "0"}},
    "no augmentation, Keras JAX backend": {"backend": "jax", "recipe": {"shift": 0.0, "rotation": 0.0, "stroke": 0.0}},
    "BatchNorm removed (what its layers cost)": {"batchnorm": "none"},
    "BatchNorm as a per-channel scale and shift (no batch statistics)": {"batchnorm": "scale_shift"},
    "BatchNorm as TensorFlow's fused_batch_norm kernel": {"batchnorm": "fused"},
    "BatchNorm with its gradient written out": {"batchnorm": "hand_gradient"},
}


def swap_batchnorm(model, kind: str):
    """Clones `model` with every BatchNormalization layer replaced, to time the difference.

    For speed measurements only (TensorFlow backend): without batch statistics the model
    trains differently, and a clone with swapped layers is never saved or exported.

    Args:
        model: a model built by `build_model`.
        kind: "none" (an identity: what BatchNorm's layers cost in a step), "scale_shift"
            (a trainable per-channel scale and shift: BatchNorm without its statistics),
            "fused" (the same BatchNorm computed by `tf.nn.fused_batch_norm`, one kernel
            forward and one backward) or "hand_gradient" (the same BatchNorm with its
            gradient as the three-term formula instead of differentiated op by op).

    Returns:
        The clone, with the original's other layers and no weights copied.
    """
    import keras
    import tensorflow as tf

    # The model's graph calls each BatchNorm layer with `mask=None`, so its stand-ins take it.
    class Skip(keras.layers.Layer):
        def call(self, x, mask=None):
            return x

    class ScaleShift(keras.layers.Layer):
        def build(self, input_shape):
            self.scale = self.add_weight(shape=input_shape[-1:], initializer="ones")
            self.shift = self.add_weight(shape=input_shape[-1:], initializer="zeros")

        def call(self, x, mask=None):
            return x * self.scale + self.shift

    class TrainingStatistics(keras.layers.BatchNormalization):
        """Keras's BatchNorm with `normalize(x, gamma, beta) -> (y, mean, variance)` in training."""

        def call(self, inputs, training=None, mask=None):
            if not (training and self.trainable):
                return super().call(inputs, training=training, mask=mask)
            gamma, beta = tf.convert_to_tensor(self.gamma), tf.convert_to_tensor(self.beta)
            y, mean, variance = self.normalize(inputs, gamma, beta)
            for stat, value in ((self.moving_mean, mean), (self.moving_variance, variance)):
                stat.assign(stat * self.momentum + value * (1.0 - self.momentum))
            return y

    class Fused(TrainingStatistics):
        def normalize(self, x, gamma, beta):
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, epsilon=self.epsilon, is_training=True)
            count = tf.cast(tf.size(x) // tf.shape(x)[-1], x.dtype)
            return y, mean, variance * (count - 1.0) / count  # the kernel returns the unbiased variance

    class HandGradient(TrainingStatistics):
        def normalize(self, x, gamma, beta):
            epsilon = self.epsilon

            @tf.custom_gradient
            def forward(x, gamma, beta):
                mean, variance = tf.nn.moments(x, [0, 1, 2])
                inv_std = tf.math.rsqrt(variance + epsilon)
                x_hat = (x - mean) * inv_std
                count = tf.cast(tf.size(x) // tf.shape(x)[-1], x.dtype)

                def gradient(dy, _dmean, _dvariance):
                    dbeta = tf.reduce_sum(dy, [0, 1, 2])
                    dgamma = tf.reduce_sum(dy * x_hat, [0, 1, 2])
                    dx = gamma * inv_std / count * (count * dy - dbeta - x_hat * dgamma)
                    return dx, dgamma, dbeta

                return (x_hat * gamma + beta, tf.stop_gradient(mean), tf.stop_gradient(variance)), gradient

            return forward(x, gamma, beta)

    replacements = {
        "none": lambda layer: Skip(name=layer.name),
        "scale_shift": lambda layer: ScaleShift(name=layer.name),
        "fused": lambda layer: Fused.from_config(layer.get_config()),
        "hand_gradient": lambda layer: HandGradient.from_config(layer.get_config()),
    }
    if kind not in replacements:
        raise ValueError(f"unknown BatchNorm swap {kind!r}; choose from {', '.join(replacements)}")

    def clone(layer):
        if isinstance(layer, keras.layers.BatchNormalization):
            return replacements[kind](layer)
        return layer.__class__.from_config(layer.get_config())

    return keras.models.clone_model(model, clone_function=clone)


def experiment(config: dict, recipe: dict, changes: dict, steps: dict) -> dict:
    """One training-throughput measurement with `changes`; run it in a fresh process."""
    import keras
    import tensorflow as tf

    backend = changes.get("backend", "tensorflow")
    if keras.backend.backend() != backend:
        raise RuntimeError(f"Keras runs on {keras.backend.backend()}, not {backend}")
    if "intra_op" in changes:
        tf.config.threading.set_intra_op_parallelism_threads(changes["intra_op"])
    if "inter_op" in changes:
        tf.config.threading.set_inter_op_parallelism_threads(changes["inter_op"])
    if "policy" in changes:
        keras.mixed_precision.set_global_policy(changes["policy"])
    recipe = Recipe.from_dict({**recipe, **changes.get("recipe", {})})
    # JAX runs a training step only as one XLA program; eagerly it would time Python.
    jit_compile = changes.get("jit_compile", backend == "jax")
    result = training_throughput(ModelConfig.from_dict(config), recipe, "current", jit_compile=jit_compile,
                                 batchnorm=changes.get("batchnorm"), **steps)
    return {**result, "environment": {name: os.environ.get(name) for name in changes.get("env", {})}}


def experiments(config: ModelConfig, recipe: Recipe, quick: bool = False, names=None) -> list[dict]:
    """Runs every entry of `EXPERIMENTS` (or those in `names`) in its own Python process."""
    import importlib.util
    import subprocess
    import sys

    steps = {"warmup": 2, "windows": 1, "window": 2} if quick else {"warmup": 24, "windows": 3, "window": 32}
    rows = []
    for name in names or EXPERIMENTS:
        backend = EXPERIMENTS[name].get("backend", "tensorflow")
        if importlib.util.find_spec(backend) is None:  # JAX is not among the pinned requirements
            rows.append({"name": name, "error": f"{backend} is not installed (pip install {backend})"})
            print(f"  {name}: {rows[-1]['error']}", flush=True)
            continue
        spec = json.dumps([config.to_dict(), recipe.to_dict(), EXPERIMENTS[name], steps])
        code = ("import json, sys; from app.tflog import import_tensorflow; import_tensorflow(); "
                "from app.bench import experiment; print(json.dumps(experiment(*json.loads(sys.argv[1]))))")
        done = subprocess.run([sys.executable, "-c", code, spec], capture_output=True, text=True,
                              env={**os.environ, "KERAS_BACKEND": backend, **EXPERIMENTS[name].get("env", {})})
        if done.returncode:
            reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
            rows.append({"name": name, "error": reason})
        else:
            rows.append({"name": name, **json.loads(done.stdout.strip().splitlines()[-1])})
        print(f"  {name}: " + (f"{rows[-1]['images_per_second']:,.0f} images/s" if "error" not in rows[-1]
                                else rows[-1]["error"]), flush=True)
    return rows


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """The machine's reference GFLOP/s: the median of `repeats` float32 `n x n` products."""
    import tensorflow as tf

    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n])
    tf.linalg.matmul(a, b).numpy()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        tf.linalg.matmul(a, b).numpy()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def time_to_accuracy(run: Path, target: float = TARGET_ACCURACY) -> dict:
    """Wall time of a finished run until its first epoch at or over `target` test accuracy.

    Args:
        run: a run folder of `make train` (with `history.csv` and `metrics.json`).
        target: the test accuracy to reach, as a fraction.
    """
    history = read_history(run / "history.csv")
    metrics = json.loads((run / "metrics.json").read_text())
    if "final_test_accuracy" not in metrics:
        raise ValueError(f"{run} is a validation run; time to accuracy needs test accuracy")
    elapsed, reached = 0.0, None
    for row in history:
        elapsed += row["wall_seconds"]
        # Keras logs float32 accuracies: 9,940/10,000 may read as 0.99399999.
        if row["test_accuracy"] >= target - 1e-6:
            reached = {"epoch": row["epoch"], "seconds": elapsed}
            break
    return {
        "run": str(run),
        "target_accuracy": target,
        "first_epoch_at_target": reached and reached["epoch"],
        "seconds_to_target": reached and reached["seconds"],
        "run_seconds": metrics["wall_seconds"],
        "epochs": metrics["epochs"],
        "final_test_accuracy": metrics["final_test_accuracy"],
    }


def _latencies(call, repeats: int) -> dict:
    call()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    micros = np.array(times) * 1e6
    return {"median_us": float(np.median(micros)), "p99_us": float(np.percentile(micros, 99))}


def tflite_inference(path: Path, image: np.ndarray, repeats: int, batch: int) -> dict:
    """One-thread LiteRT latency of one image, and throughput of `batch` images per invoke.

    Args:
        path: the `.tflite` file.
        image: one raw image `[28, 28, channels]` (0..255) of the model's input shape.
        repeats: timed single-image invocations (and a tenth as many batched ones).
        batch: images per batched invocation.
    """
    single = TFLiteClassifier(path, threads=1)
    interpreter = single.interpreter
    interpreter.set_tensor(single.input["index"], quantize(image[None], single.input))
    result = _latencies(interpreter.invoke, repeats)

    batched = TFLiteClassifier(path, threads=1)
    batched.interpreter.resize_tensor_input(batched.input["index"], [batch, *image.shape])
    batched.interpreter.allocate_tensors()
    images = np.repeat(image[None], batch, axis=0)
    batched.interpreter.set_tensor(batched.input["index"], quantize(images, batched.input))
    timing = _latencies(batched.interpreter.invoke, max(3, repeats // 10))
    result["batch"] = batch
    result["batch_images_per_second"] = batch / (timing["median_us"] / 1e6)
    return result


def mediapipe_inference(path: Path, image: np.ndarray, repeats: int) -> dict:
    """MediaPipe Tasks' `ImageClassifier` latency of one image (an SRGB `mp.Image`)."""
    from app.export import mediapipe_classifier, mediapipe_image

    rgb = mediapipe_image(image)
    with mediapipe_classifier(path) as classifier:
        return _latencies(lambda: classifier.classify(rgb), repeats)


def reader_inference(path: Path, repeats: int) -> dict:
    """One-thread LiteRT latency of the reader on one stretched picture (its input is batch 1)."""
    from app.reader import SIDE

    single = TFLiteClassifier(path, threads=1)
    picture = np.full((1, SIDE, SIDE, 3), 230, np.uint8)
    picture[0, 20:76, 44:52] = 30  # a dark "1" on paper; the graph's work does not depend on it
    single.interpreter.set_tensor(single.input["index"], picture)
    return _latencies(single.interpreter.invoke, repeats)


def keras_inference(model, image: np.ndarray, repeats: int, batch: int) -> dict:
    """The same measurements for the Keras model's `predict_on_batch` (TensorFlow's threads)."""
    one = image[None].astype(np.float32)
    result = _latencies(lambda: model.predict_on_batch(one), repeats)
    many = np.repeat(one, batch, axis=0)
    timing = _latencies(lambda: model.predict_on_batch(many), max(3, repeats // 10))
    result["batch"] = batch
    result["batch_images_per_second"] = batch / (timing["median_us"] / 1e6)
    return result


def predict_throughput(model: Path, devset: Path, count: int) -> list[dict]:
    """Images per second of `predict` (contract and int8 model) over `count` development photos,
    the contract run in one process and then in `predict`'s default worker processes.

    The development set's `dev` part is written first if it is not there (`app.devset`). The
    timing runs in a fresh process without TensorFlow, as `python -m app predict` does: its
    workers start the way they do there (`app.predict.start_method`).
    """
    import subprocess
    import sys

    from app import devset as dev

    if not (devset / "dev" / "labels.csv").exists():
        dev.write(devset, "dev", limit=None if count >= 1000 else count)
    code = ("import json, sys; from app.bench import time_predict; "
            "print(json.dumps(time_predict(sys.argv[1], sys.argv[2], int(sys.argv[3]))))")
    done = subprocess.run([sys.executable, "-c", code, str(model), str(devset), str(count)],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"timing predict failed: {(done.stderr.strip().splitlines() or ['no output'])[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def time_predict(model: str, devset: str, count: int) -> list[dict]:
    """`predict_throughput`'s measurement, in this process: one row per number of processes."""
    from app import devset as dev
    from app.predict import PARALLEL_FROM, default_jobs, predict_files

    photos = [path for path, _, kind, _ in dev.read_labels(Path(devset) / "dev") if kind == "photo"][:count]
    rows = []
    # Fewer photos than PARALLEL_FROM never start workers: one row then.
    for jobs in sorted({1, default_jobs() if len(photos) >= PARALLEL_FROM else 1}):
        start = time.perf_counter()  # worker start-up included: a user waits for it too
        results = list(predict_files(photos, model, jobs=jobs))
        seconds = time.perf_counter() - start
        rows.append({"images": len(photos), "jobs": jobs, "seconds": seconds,
                     "images_per_second": len(photos) / seconds, "errors": sum("error" in r for r in results)})
    return rows


def file_sizes(exported: Path) -> dict[str, int]:
    """Bytes of every exported file (the SavedModel folder summed)."""
    sizes = {}
    for path in sorted(exported.iterdir()):
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        sizes[path.name] = sum(p.stat().st_size for p in files)
    return sizes


def check_inputs(run: str | Path, exported: str | Path) -> None:
    """Raises `InputFileError` naming the first file `bench` needs that is missing.

    It reads no model, so a command checks it before paying for TensorFlow's import.
    """
    run, exported = Path(run), Path(exported)
    for needed in (run / "metrics.json", exported / "model_int8.tflite", exported / "model_float32.tflite",
                   exported / "digit_classifier.tflite"):
        if not needed.exists():
            raise InputFileError(f"{needed} not found; run `make train` and `make export` first")


def bench(run: Path, exported: Path, compare: bool = False, quick: bool = False, images=None,
          devset: str | Path = "devset", speed: bool = False) -> dict:
    """Measures everything and writes `bench.json` and `bench.md` into `run`.

    Args:
        run: the finished default run (`make train`) whose time to accuracy is reported.
        exported: the folder `make export` wrote (the `.tflite` files and `model.keras`' twin).
        compare: also time the plain pipeline with this model and with the v1 model.
        quick: tiny windows, for the test suite; the numbers are not meaningful.
        images: the training `(image, label)` dataset (default: the MNIST train split).
        devset: the development set whose photos time `predict` (written when missing).
        speed: also run the training-speed `EXPERIMENTS`, each in its own process.
    """
    import keras

    from app.model import build_model

    run, exported = Path(run), Path(exported)
    check_inputs(run, exported)
    steps = {"warmup": 3, "windows": 3, "window": 2} if quick else {"warmup": 30, "windows": 7, "window": 40}
    repeats, batch = (20, 16) if quick else (2000, 256)

    made = json.loads((run / "metrics.json").read_text())
    config, recipe = ModelConfig.from_dict(made["config"]), Recipe.from_dict(made["recipe"])
    model = build_model(config)
    training = [training_throughput(config, recipe, "current", images=images, **steps)]
    if compare:
        training.append(training_throughput(config, V1_RECIPE, "plain", images=images, **steps))
        training.append(training_throughput(V1_CONFIG, V1_RECIPE, "plain", images=images, **steps))
    trials = experiments(config, recipe, quick) if speed else []
    reference = matmul_gflops(1024 if quick else 2048)
    for row in training + [t for t in trials if "error" not in t]:
        row["train_step_flops_per_image"] = training_flops(build_model(ModelConfig(**row["config"])))
        row["gflops_per_second"] = row["images_per_second"] * row["train_step_flops_per_image"] / 1e9
        row["fraction_of_matmul"] = row["gflops_per_second"] / reference

    trained = keras.saving.load_model(run / "model.keras")
    image = np.zeros((28, 28, 1), np.float32)
    image[6:22, 12:16] = 255.0  # a plain "1"; latency does not depend on the content
    result = {
        "quick": quick,
        "model": {"parameters": model.count_params(),
                  "train_step_flops_per_image": training[0]["train_step_flops_per_image"],
                  "forward_macs": forward_macs(model)},
        "training": training,
        "matmul_reference_gflops_per_second": reference,
        "time_to_accuracy": time_to_accuracy(run),
        "inference": {
            "tflite_int8": tflite_inference(exported / "model_int8.tflite", image, repeats, batch),
            "tflite_float32": tflite_inference(exported / "model_float32.tflite", image, repeats, batch),
            "digit_classifier": tflite_inference(exported / "digit_classifier.tflite", np.repeat(image, 3, axis=-1),
                                                 repeats, batch),
            "mediapipe": mediapipe_inference(exported / "digit_classifier.tflite", image, repeats // 2),
            "keras": keras_inference(trained, image, max(10, repeats // 10), batch),
        },
        **({"reader": {"digit_reader": reader_inference(exported / "digit_reader.tflite", repeats // 2)}}
           if (exported / "digit_reader.tflite").exists() else {}),
        "predict": predict_throughput(exported / "model_int8.tflite", Path(devset), 20 if quick else 1000),
        "exported_bytes": file_sizes(exported),
    }
    if speed:
        result["experiments"] = trials
    if compare:
        result["speedup_vs_plain_v1"] = training[0]["images_per_second"] / training[-1]["images_per_second"]
    write_json(run / "bench.json", result)
    write_text(run / "bench.md", markdown(result))
    return result


def markdown(result: dict) -> str:
    """Renders a bench result as the Markdown table `make bench` prints."""
    lines = ["| measure | value |", "|---|---:|"]
    model = result["model"]
    lines.append(f"| parameters | {model['parameters']:,} |")
    lines.append(f"| training FLOPs per image (3 x forward) | {model['train_step_flops_per_image']:,} |")
    lines.append(f"| reference float32 matmul | {result['matmul_reference_gflops_per_second']:.1f} GFLOP/s |")
    for row in result["training"]:
        what = (f"{row['pipeline']} pipeline, batch {row['batch_size']}, {row['steps_per_execution']} step(s) a call, "
                f"{model_label(row['config'])}")
        lines.append(f"| training: {what} | {row['images_per_second']:,.0f} images/s "
                     f"({row['gflops_per_second']:.2f} GFLOP/s, {100 * row['fraction_of_matmul']:.1f}% of matmul) |")
    if "speedup_vs_plain_v1" in result:
        lines.append(f"| training speed-up vs the plain pipeline and v1 model | {result['speedup_vs_plain_v1']:.2f}x |")
    trials = result.get("experiments", [])
    base = next((t["images_per_second"] for t in trials if "error" not in t), None)
    for t in trials:
        value = (f"failed: {t['error']}" if "error" in t else
                 f"{t['images_per_second']:,.0f} images/s ({100 * t['fraction_of_matmul']:.1f}% of matmul, "
                 f"{t['images_per_second'] / base:.2f}x)")
        lines.append(f"| experiment: {t['name']} | {value} |")
    tta = result["time_to_accuracy"]
    reached = (f"{tta['seconds_to_target']:.0f} s (epoch {tta['first_epoch_at_target']})"
               if tta["seconds_to_target"] is not None else "not reached")
    lines.append(f"| time to {100 * tta['target_accuracy']:.2f}% test accuracy ({tta['run']}) | {reached} |")
    lines.append(f"| whole run ({tta['epochs']} epochs, final {100 * tta['final_test_accuracy']:.2f}%) "
                 f"| {tta['run_seconds']:.0f} s |")
    for name, row in result["inference"].items():
        threads = {"keras": "TF threads", "mediapipe": "ImageClassifier.classify"}.get(name, "LiteRT, 1 thread")
        lines.append(f"| {name} latency, 1 image, {threads} | median {row['median_us']:,.0f} us, "
                     f"p99 {row['p99_us']:,.0f} us |")
        if "batch" in row:
            lines.append(f"| {name} throughput, batch {row['batch']} | "
                         f"{row['batch_images_per_second']:,.0f} images/s |")
    for name, row in result.get("reader", {}).items():
        lines.append(f"| {name} latency, 1 stretched picture, LiteRT, 1 thread | "
                     f"median {row['median_us']:,.0f} us, p99 {row['p99_us']:,.0f} us |")
    for p in result["predict"]:
        processes = "1 process" if p["jobs"] == 1 else f"{p['jobs']} worker processes"
        lines.append(f"| predict (contract + int8 model), {p['images']:,} development photos, {processes} "
                     f"| {p['images_per_second']:,.0f} images/s |")
    for name, size in result["exported_bytes"].items():
        lines.append(f"| size of exported/{name} | {size:,} B |")
    return "\n".join(lines) + "\n"


def model_label(config: dict) -> str:
    """A short name of a model config for the table."""
    return "v1 model" if ModelConfig(**config) == V1_CONFIG else "this run's model"
