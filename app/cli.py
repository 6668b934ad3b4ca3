"""The command line: `python -m app {train,export,predict,results,bench}`.

Errors a user can fix (bad flags, an over-budget config, missing data) print one line and
exit non-zero; heavy modules are imported only by the command that needs them, so
`predict` runs without TensorFlow.
"""

from __future__ import annotations

import argparse
import os
import sys

# Exit code of a usage error (argparse's convention).
USAGE_ERROR = 2


class UsageError(Exception):
    """A problem with the command line, reported in one line with exit code 2."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, not usage plus message."""

    def error(self, message):
        raise UsageError(message)


def positive_int(text: str) -> int:
    """Parses a whole number greater than zero (for epochs, batch size, trials)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {value}")
    return value


def fraction(text: str) -> float:
    """Parses a number from 0 up to, but not including, 1 (for --floor)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {value}")
    return value


def build_parser() -> Parser:
    """Returns the parser of all subcommands."""
    parser = Parser(prog="python -m app", description="tinymnist: a tiny MNIST CNN for mobile.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    train = commands.add_parser("train", help="train the default model and write a run folder")
    train.add_argument("--epochs", type=positive_int, default=None, help="epochs (default: the recipe's)")
    train.add_argument("--batch-size", type=positive_int, default=None, help="batch size (default: the recipe's)")
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    train.add_argument("--out", default=None, help="run folder (default runs/seedN)")
    train.add_argument("--quick", action="store_true", help="small slices of the splits: a smoke test")
    train.add_argument("--validation", action="store_true",
                       help="hold out the last 10,000 train images and evaluate on them, never on test")
    train.add_argument("--budget", type=positive_int, default=None, help="parameter budget of the config")
    train.add_argument("--config", default=None, help="a JSON file of ModelConfig fields (e.g. from the tuner)")
    train.add_argument("--recipe", default=None, help="a JSON file of Recipe fields (e.g. {\"max_lr\": 0.004})")

    export = commands.add_parser("export", help="export SavedModel + TFLite float32/int8, verified")
    export.add_argument("--model", default="runs/seed0/model.keras", help="the trained .keras file")
    export.add_argument("--out", default="exported", help="destination folder, replaced whole")

    predict = commands.add_parser("predict", help="classify image files with the int8 TFLite model")
    predict.add_argument("files", nargs="+", metavar="FILE", help="PNG/JPEG images")
    predict.add_argument("--model", default=None, help="the .tflite model (default exported/model_int8.tflite)")
    predict.add_argument("--dark-on-light", action="store_true", help="dark ink on a light background")
    predict.add_argument("--json", action="store_true", help="print a JSON list instead of lines")

    results = commands.add_parser("results", help="print a Markdown table of finished runs")
    results.add_argument("runs", nargs="+", metavar="RUN", help="run folders (with metrics.json)")

    bench = commands.add_parser("bench", help="measure training throughput, time to accuracy, latency")
    bench.add_argument("--run", default="runs/seed0", help="a finished default run; bench.json/md go here")
    bench.add_argument("--exported", default="exported", help="the folder `make export` wrote")
    bench.add_argument("--compare", action="store_true",
                       help="also time the pipeline and model as the foundation issue first landed them")
    bench.add_argument("--quick", action="store_true", help="tiny timing windows: a smoke test")
    return parser


def run_train(args) -> int:
    import json

    from app.config import ModelConfig, Recipe
    from app.train import train

    def read(path, kind):
        if not path:
            return {}
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError) as error:
            raise UsageError(f"cannot read {kind} {path}: {error}") from None

    values = read(args.config, "config")
    if args.budget is not None:
        values["budget"] = args.budget
    try:
        config = ModelConfig.from_dict(values)
    except TypeError as error:
        raise UsageError(f"bad config {args.config}: {error}") from None
    recipe_values = {**read(args.recipe, "recipe"), "seed": args.seed}
    if args.epochs is not None:
        recipe_values["epochs"] = args.epochs
    if args.batch_size is not None:
        recipe_values["batch_size"] = args.batch_size
    try:
        recipe = Recipe(**recipe_values)
    except TypeError as error:
        raise UsageError(f"bad recipe {args.recipe}: {error}") from None
    out = args.out or f"runs/seed{args.seed}"
    metrics = train(config, recipe, out=out, quick=args.quick, validation=args.validation)
    held_out = "val" if args.validation else "test"
    print(
        f"{out}: {metrics['parameters']['total']:,} parameters, final {held_out} accuracy "
        f"{100 * metrics[f'final_{held_out}_accuracy']:.2f}% after {metrics['epochs']} epochs "
        f"({metrics['wall_seconds']:.0f}s)"
    )
    return 0


def run_export(args) -> int:
    import shlex

    from app.export import export

    command = "python -m app " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None
    metadata = export(args.model, args.out, command=command)
    for name, accuracy in metadata["accuracy"].items():
        print(f"{name:>15}: {100 * accuracy:.2f}% on {metadata['test_images']:,} test images")
    sizes = {k: v["bytes"] for k, v in metadata["files"].items() if k.endswith(".tflite")}
    print(f"wrote {args.out}/ ({', '.join(f'{k} {v:,} B' for k, v in sizes.items())})")
    return 0


def run_predict(args) -> int:
    import json

    from app.predict import DEFAULT_MODEL, predict_files

    results = predict_files(args.files, args.model or DEFAULT_MODEL, args.dark_on_light)
    if args.json:
        print(json.dumps(results, indent=2))
    for r in results:
        if "error" in r:
            print(f"error: {r['file']}: {r['error']}", file=sys.stderr)
        elif not args.json:
            print(f"{r['file']}\t{r['digit']}\t{r['probability']:.4f}")
    return 1 if any("error" in r for r in results) else 0


def run_results(args) -> int:
    import json
    from pathlib import Path

    print("| seed | parameters | epochs | final test accuracy | best-epoch test accuracy (info only) "
          "| wall time | command |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    for run in args.runs:
        path = Path(run) / "metrics.json"
        try:
            m = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise UsageError(f"cannot read {path}: {error}") from None
        if "final_test_accuracy" not in m:
            raise UsageError(f"{run} is a validation run; it has no test accuracy")
        print(f"| {m['seed']} | {m['parameters']['total']:,} | {m['epochs']} | "
              f"{100 * m['final_test_accuracy']:.2f}% | {100 * m['best_epoch_test_accuracy']:.2f}% | "
              f"{m['wall_seconds'] / 60:.1f} min | `make train SEED={m['seed']}` |")
    return 0


def run_bench(args) -> int:
    from app.bench import bench, markdown

    print(markdown(bench(args.run, args.exported, compare=args.compare, quick=args.quick)), end="")
    print(f"wrote {args.run}/bench.json and {args.run}/bench.md")
    return 0


COMMANDS = {
    "train": run_train,
    "export": run_export,
    "predict": run_predict,
    "results": run_results,
    "bench": run_bench,
}


def run(command, parser: Parser, argv: list[str] | None, interrupted: str = "interrupted") -> int:
    """Parses `argv` and runs `command(args)`, turning the errors a user can fix into one line.

    Shared by `python -m app` and `python -m tuner`.

    Args:
        command: the function that runs the parsed arguments and returns the exit code.
        parser: the command line's parser.
        argv: the arguments (default: `sys.argv[1:]`).
        interrupted: what to print on Ctrl-C.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's C++ start-up chatter out
    try:
        return command(parser.parse_args(argv))
    except (UsageError, ValueError) as error:  # bad flags, over-budget configs, bad recipes
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
    except (RuntimeError, FileNotFoundError) as error:  # missing data or model, refused export
        print(f"error: {error}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns the exit code."""
    return run(lambda args: COMMANDS[args.command](args), build_parser(), argv)
