"""Command-line error paths: one line, the right exit code, no traceback."""

import pytest

from conftest import ROOT, last_line


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--bogus"], "error: unrecognized arguments: --bogus"),
        (["train", "--epochs", "0"], "error: argument --epochs: must be a positive whole number, got 0"),
        (["train", "--epochs", "-3"], "error: argument --epochs: must be a positive whole number, got -3"),
        (["train", "--batch-size", "0"], "error: argument --batch-size: must be a positive whole number, got 0"),
        (["train", "--epochs", "ten"], "error: argument --epochs: expected a whole number, got 'ten'"),
        (["fly"], "error: argument command: invalid choice: 'fly' (choose from"),
    ],
)
def test_usage_errors_are_one_line_with_exit_code_2(cli, args, message):
    result = cli(*args)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_over_budget_config_is_one_line_with_exit_code_2(cli, tmp_path):
    result = cli("train", "--budget", "5000", "--out", tmp_path / "run")
    assert result.returncode == 2
    assert last_line(result.stderr) == "error: model has 7,862 parameters, over the budget of 5,000"
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_bad_config_file_is_one_line(cli, tmp_path):
    config = tmp_path / "config.json"
    config.write_text('{"stem": 8, "wings": 2}')
    result = cli("train", "--config", config, "--out", tmp_path / "run")
    assert result.returncode == 2
    assert last_line(result.stderr).startswith(f"error: bad config {config}:")
    assert "wings" in last_line(result.stderr)


SMALLEST = "below the smallest model of the search space (846 parameters)"


@pytest.mark.parametrize("module, args, code, message", [
    ("app", ["train", "--config", "{tmp}/config.json", "--out", "{tmp}/run"], 2,
     "error: stem must be at least 1 filter, got 0"),
    ("app", ["train", "--budget", "5000", "--out", "{tmp}/run"], 2,
     "error: model has 7,862 parameters, over the budget of 5,000"),
    ("app", ["train", "--recipe", "fast", "--budget", "18825", "--out", "{tmp}/run"], 2,
     "error: model has 18,826 parameters, over the budget of 18,825"),
    ("app", ["train", "--recipe", "fast", "--epochs", "1", "--config", "{tmp}/wide.json", "--out", "{tmp}/run"], 2,
     "error: model has 8,470 parameters, over the budget of 8,000"),
    ("app", ["train", "--recipe", "fast", "--epochs", "0", "--out", "{tmp}/run"], 2,
     "error: argument --epochs: must be a positive whole number, got 0"),
    ("app", ["train", "--quick", "--out", "{tmp}/config.json"], 2,
     "error: cannot use {tmp}/config.json as a folder, it is a file; choose another --out"),
    ("app", ["train", "--quick", "--out", "{tmp}/done"], 2,
     "error: {tmp}/done already holds a finished run; choose another --out"),
    ("app", ["export", "--model", "{tmp}/nope.keras", "--out", "{tmp}/out"], 3,
     "error: no such model file: {tmp}/nope.keras; give the model.keras of a finished run"),
    ("app", ["bench", "--run", "{tmp}/run", "--exported", "{tmp}/out"], 3,
     "error: {tmp}/run/metrics.json not found; run `make train` and `make export` first"),
    ("app", ["realworld", "--model", "{tmp}/nope.tflite", "--devset", "{tmp}/set"], 3,
     "error: no model at {tmp}/nope.tflite; run `make export` or pass --model"),
    ("app", ["realworld", "--run", "{tmp}/run", "--devset", "{tmp}/set"], 3,
     "error: cannot read the metrics file, {tmp}/run/metrics.json (No such file or directory); check the path"),
    ("app", ["cases", "--out", "{tmp}/config.json"], 2,
     "error: --out {tmp}/config.json is a file; give a folder for the cases"),
    ("tuner", ["search", "--budget", "800", "--dir", "{tmp}/out"], 2, f"error: budget 800 is {SMALLEST}"),
    ("tuner", ["frontier", "--budgets", "5000", "800", "--dir", "{tmp}/out"], 2, f"error: budget 800 is {SMALLEST}"),
])
def test_bad_input_is_refused_before_tensorflow_is_imported(tmp_path, module, args, code, message):
    import subprocess
    import sys

    (tmp_path / "config.json").write_text('{"stem": 0}')
    # A config file replaces the preset's model, budget included.
    (tmp_path / "wide.json").write_text('{"edges": 8}')
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "metrics.json").write_text("{}")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    check = (f"import sys; from {module}.cli import main; code = main({args!r}); "
             "print(code, 'tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == [str(code), "False"], result.stderr
    assert result.stderr == message.replace("{tmp}", str(tmp_path)) + "\n"
    assert not (tmp_path / "run").exists() and not (tmp_path / "out").exists() and not (tmp_path / "set").exists()


def test_missing_mnist_names_where_tfds_looked(cli, tmp_path):
    from app.data import _download_host_reachable

    if _download_host_reachable(timeout=2):
        pytest.skip("online: TFDS would download MNIST instead of failing")
    result = cli("train", "--quick", "--out", tmp_path / "run", env={"TFDS_DATA_DIR": str(tmp_path / "tfds")})
    assert result.returncode == 6
    line = last_line(result.stderr)
    assert line.startswith(f"error: MNIST is not in {tmp_path / 'tfds'} and cannot be downloaded")
    assert "TFDS_DATA_DIR" in line and "Traceback" not in result.stderr


def test_bad_recipe_file_is_one_line(cli, tmp_path):
    recipe = tmp_path / "recipe.json"
    recipe.write_text('{"max_lr": 0.004, "optimizer": "adam"}')
    result = cli("train", "--recipe", recipe, "--out", tmp_path / "run")
    assert result.returncode == 2
    assert last_line(result.stderr) == "error: optimizer must be 'adamw' or 'sgd', got 'adam'"
