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


def test_bad_config_is_refused_before_tensorflow_is_imported(tmp_path):
    import subprocess
    import sys

    config = tmp_path / "config.json"
    config.write_text('{"stem": 0}')
    check = ("import sys; from app.cli import main; "
             f"code = main(['train', '--config', {str(config)!r}, '--out', {str(tmp_path / 'run')!r}]); "
             "print(code, 'tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["2", "False"], result.stderr
    assert last_line(result.stderr) == "error: stem must be at least 1 filter, got 0"


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
