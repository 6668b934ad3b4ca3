"""The command line: `python -m app {train,export,predict,results,realworld,cases,bench,pictures,reader,export-reader}`.

Every error a user can fix prints one line and exits with the code of its kind (see
`app.errors`); heavy modules are imported only by the command that needs them, so `predict`
runs without TensorFlow, and the others check their files and values before importing it
(a missing file or a bad value is reported at once, not after a ten-second import);
TensorFlow's own start-up log stays hidden unless `--verbose`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from app.devset import PARTS
from app.errors import InputFileError, UsageError, command_line, handle
from app.files import read_json
from app.tflog import import_tensorflow


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


def add_verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's own log lines")


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
    train.add_argument("--recipe", default=None,
                       help="'fast' (a wider model in 6 epochs, see the README; out runs/fast-seedN), "
                            "or a JSON file of Recipe fields (e.g. {\"max_lr\": 0.004})")
    train.add_argument("--restart", action="store_true",
                       help="discard the run folder's unfinished epochs and train from epoch 1")
    train.add_argument("--deterministic", action="store_true",
                       help="bit-identical runs for a seed (deterministic ops, one thread; slower)")
    add_verbose(train)

    export = commands.add_parser(
        "export", help="export SavedModel, TFLite float32/int8 and MediaPipe's classifier, verified")
    export.add_argument("--model", default="runs/seed0/model.keras", help="the trained .keras file")
    export.add_argument("--out", default="exported", help="destination folder, replaced whole")
    add_verbose(export)

    predict = commands.add_parser("predict", help="classify image files with the int8 TFLite model")
    predict.add_argument("files", nargs="+", metavar="FILE", help="PNG/JPEG images")
    predict.add_argument("--model", default=None, help="the .tflite model (default exported/model_int8.tflite)")
    predict.add_argument("--polarity", choices=("auto", "light-on-dark", "dark-on-light"), default="auto",
                         help="ink against paper (default auto: detected per image, see the README)")
    predict.add_argument("--dark-on-light", action="store_true", help=argparse.SUPPRESS)
    predict.add_argument("--json", action="store_true", help="print one JSON object per file")
    predict.add_argument("--top", type=positive_int, default=1, metavar="K", help="show the K likeliest digits")
    predict.add_argument("--save-preprocessed", metavar="DIR", default=None,
                         help="write the 28x28 image the model saw, as DIR/<file>.png")
    predict.add_argument("--jobs", type=positive_int, default=None, metavar="N",
                         help="processes that preprocess the images (default: one per CPU core)")

    results = commands.add_parser(
        "results", help="train a recipe on seeds 0-9 (resumable) and write their table")
    results.add_argument("runs", nargs="*", metavar="RUN",
                         help="only print the table of these finished run folders (trains nothing)")
    results.add_argument("--recipe", choices=("default", "fast"), default="default",
                         help="the shipped recipe and model, or the fast preset (default: default)")
    results.add_argument("--root", default=None,
                         help="where the seed runs go (default runs/results, or runs/results-fast)")
    results.add_argument("--seeds", type=positive_int, default=10, help="seeds 0 to N-1 (default 10)")
    results.add_argument("--out", default=None,
                         help="the table (default results/seeds.md, or results/seeds-fast.md)")
    results.add_argument("--against", default=None, metavar="ROOT",
                         help="finished seed runs (ROOT/seedN) whose mean training time this table's "
                              "is given as a share of, e.g. runs/results for the fast preset")
    add_verbose(results)

    realworld = commands.add_parser("realworld", help="score predict on the development set and on MNIST files")
    realworld.add_argument("--devset", default="devset", help="the development set's folder (written if missing)")
    realworld.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    realworld.add_argument("--seed", type=int, default=0, help="the set's seed (default 0)")
    which = realworld.add_mutually_exclusive_group()
    which.add_argument("--model", default=None, help="the .tflite model (default exported/model_int8.tflite)")
    which.add_argument("--run", default=None,
                       help="a run folder: its model converted to int8 as export does, unverified (for recipe choices)")
    realworld.add_argument("--no-mnist", action="store_true", help="skip the MNIST-unchanged check")
    realworld.add_argument("--out", default="results/realworld.md", help="where the report goes")
    add_verbose(realworld)

    cases = commands.add_parser(
        "cases", help="write the preprocessing contract's conformance cases: pictures and their 28x28s")
    cases.add_argument("--out", default="tests/contract", help="the cases' folder (default tests/contract)")

    pictures = commands.add_parser("pictures", help="draw the shipped model's parameter chart and accuracy curve")
    pictures.add_argument("--exported", default="exported", help="the folder `make export` wrote")
    pictures.add_argument("--out", default="results", help="where parameters.png and accuracy.png go")
    add_verbose(pictures)

    read = commands.add_parser("reader", help="train the reader's ink net and classifier on rendered pictures")
    read.add_argument("--out", default="runs/reader", help="the run folder (resumed when it holds finished stages)")
    read.add_argument("--exported", default="exported", help="the exported set whose classifier is fine-tuned")
    read.add_argument("--quick", action="store_true", help="a tiny recipe: a smoke test")
    add_verbose(read)

    read_export = commands.add_parser("export-reader", help="export and verify exported/digit_reader.tflite")
    read_export.add_argument("--run", default="runs/reader", help="a finished `reader` run")
    read_export.add_argument("--out", default="exported", help="the exported set to add the reader to")
    read_export.add_argument("--devset", default="devset", help="the development set's folder (written if missing)")
    add_verbose(read_export)

    bench = commands.add_parser("bench", help="measure training throughput, time to accuracy, latency")
    bench.add_argument("--run", default="runs/seed0", help="a finished default run; bench.json/md go here")
    bench.add_argument("--exported", default="exported", help="the folder `make export` wrote")
    bench.add_argument("--compare", action="store_true",
                       help="also time a plain tfds + model.fit pipeline and the previous model (v1)")
    bench.add_argument("--experiments", action="store_true",
                       help="also time training under each speed experiment (threads, bf16, XLA, ...)")
    bench.add_argument("--quick", action="store_true", help="tiny timing windows: a smoke test")
    add_verbose(bench)
    return parser


def run_train(args) -> int:
    from app.config import PRESETS, ModelConfig, Recipe, count_parameters
    from app.runfolder import claimed

    preset = PRESETS.get(args.recipe)
    values = read_json(args.config, "config") if args.config or not preset else preset[0].to_dict()
    if args.budget is not None:
        values["budget"] = args.budget
    try:
        config = ModelConfig.from_dict(values)
    except TypeError as error:
        raise UsageError(f"bad config {args.config}: {error}") from None
    recipe_values = {**(preset[1].to_dict() if preset else read_json(args.recipe, "recipe")), "seed": args.seed}
    if args.epochs is not None:
        recipe_values["epochs"] = args.epochs
    if args.batch_size is not None:
        recipe_values["batch_size"] = args.batch_size
    try:
        recipe = Recipe(**recipe_values)
    except TypeError as error:
        raise UsageError(f"bad recipe {args.recipe}: {error}") from None
    config.check_budget(count_parameters(config))
    default_out = f"runs/{args.recipe}-seed{args.seed}" if preset else f"runs/seed{args.seed}"
    out, command = Path(args.out or default_out), command_line(args.argv)
    with claimed(out, config, recipe, command, quick=args.quick, validation=args.validation, restart=args.restart):
        pass  # a busy, finished, another run's or damaged folder is refused now; `train` claims it again
    # TensorFlow only now: every check above answers at once, not after its import.
    import_tensorflow()
    from app.train import make_deterministic, train

    if args.deterministic:
        make_deterministic()
    metrics = train(config, recipe, out=out, quick=args.quick, validation=args.validation, command=command,
                    restart=args.restart)
    held_out = "val" if args.validation else "test"
    print(
        f"{out}: {metrics['parameters']['total']:,} parameters, final {held_out} accuracy "
        f"{100 * metrics[f'final_{held_out}_accuracy']:.2f}% after {metrics['epochs']} epochs "
        f"({metrics['wall_seconds']:.0f}s)"
    )
    return 0


def run_export(args) -> int:
    from app.export import check_model_file, export

    check_model_file(args.model)
    import_tensorflow()
    metadata = export(args.model, args.out, command=command_line(args.argv))
    for name, accuracy in metadata["accuracy"].items():
        print(f"{name:>15}: {100 * accuracy:.2f}% on {metadata['test_images']:,} test images")
    sizes = {k: v["bytes"] for k, v in metadata["files"].items() if k.endswith(".tflite")}
    print(f"wrote {args.out}/ ({', '.join(f'{k} {v:,} B' for k, v in sizes.items())})")
    return 0


def run_predict(args) -> int:
    from app.files import make_folder
    from app.predict import DEFAULT_MODEL, default_jobs, predict_files

    polarity = args.polarity
    if args.dark_on_light:
        print("note: --dark-on-light is deprecated; use --polarity dark-on-light", file=sys.stderr)
        polarity = "dark-on-light"
    save = make_folder(args.save_preprocessed, "--save-preprocessed") if args.save_preprocessed else None
    failed = 0
    jobs = args.jobs or default_jobs()
    for result in predict_files(args.files, args.model or DEFAULT_MODEL, polarity, top=args.top, save=save,
                                jobs=jobs):
        # Each result is printed as soon as it is known: a later bad file cannot lose it.
        if "error" in result:
            failed += 1
            print(f"error: {result['file']}: {result['error']}", file=sys.stderr, flush=True)
        if args.json:
            print(json.dumps(result), flush=True)
        elif "error" not in result:
            others = "".join(f"\t{t['digit']}:{t['probability']:.4f}" for t in result["top"][1:])
            unsure = "\tunsure" if result["unsure"] else ""
            print(f"{result['file']}\t{result['digit']}\t{result['probability']:.4f}{unsure}{others}", flush=True)
    return InputFileError.exit_code if failed else 0


def run_results(args) -> int:
    from app import results

    if args.runs:
        print(results.table([Path(run) for run in args.runs]), end="")
        return 0
    preset = None if args.recipe == "default" else args.recipe
    suffix = f"-{preset}" if preset else ""
    root, out = args.root or f"runs/results{suffix}", args.out or f"results/seeds{suffix}.md"
    against = results.seed_runs(args.against, range(args.seeds)) if args.against else None
    missing = [str(run) for run in against or [] if not (run / "metrics.json").exists()]
    if missing:  # refused before training anything: the ratio could not be written after
        raise UsageError(f"--against {args.against}: no finished run in {', '.join(missing)}")
    import_tensorflow()
    runs = results.seed_runs(root, range(args.seeds))
    results.train_missing(runs, preset)
    print(results.write(runs, out, command_line(args.argv), against), end="")
    print(f"wrote {out} and {Path(out).with_suffix('')}/seedN/history.csv")
    return 0


def run_realworld(args) -> int:
    import tempfile

    from app.files import write_text
    from app.litert import TFLiteClassifier
    from app.predict import DEFAULT_MODEL
    from app.realworld import examples_picture, markdown, realworld

    model = args.model or DEFAULT_MODEL
    if args.run:
        metrics = run_metrics(args.run, mnist=not args.no_mnist)
    else:
        TFLiteClassifier(model)  # a missing or unusable model is reported before TensorFlow's import
    # Scoring written parts needs only LiteRT and the contract; TensorFlow reads MNIST (for its
    # check, or to write a missing part) and converts a run's model.
    unwritten = [part for part in args.parts if not (Path(args.devset) / part / "labels.csv").exists()]
    if args.run or unwritten or not args.no_mnist:
        import_tensorflow()
    with tempfile.TemporaryDirectory(prefix="tinymnist-") as tmp:
        if args.run:
            model = int8_of_run(args.run, metrics, Path(tmp))
        result = realworld(model, args.devset, args.parts, args.seed, mnist=not args.no_mnist)
        report = markdown(result)
        print(report, end="")
        write_text(args.out, f"`{command_line(args.argv)}`\n\n{report}")
        pictures = Path(args.out).with_name("examples.png")
        examples_picture([Path(args.devset) / part for part in args.parts], TFLiteClassifier(model), pictures)
    print(f"wrote {args.out} and {pictures}")
    return 0


def run_cases(args) -> int:
    from app.conformance import write

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the cases")
    cases = write(out)
    refused = sum("refusal" in case for case in cases)
    print(f"wrote {len(cases)} cases ({len(cases) - refused} digits, {refused} refusals) into {out}")
    return 0


def run_metrics(run: str, mnist: bool) -> dict:
    """A run folder's `metrics.json`, refusing a validation run when the MNIST check would
    read the test split for it."""
    metrics = read_json(str(Path(run) / "metrics.json"), "metrics")
    if mnist and "final_val_accuracy" in metrics:
        raise UsageError(f"{run} is a validation run and the MNIST check reads the test split; add --no-mnist")
    return metrics


def int8_of_run(run: str, metrics: dict, folder: Path) -> Path:
    """Converts a run's model to int8 in `folder`, as `export` would but unverified: for
    scoring validation runs on the development set, where the test split must stay unread."""
    import keras

    from app.export import write_files

    try:
        model = keras.saving.load_model(Path(run) / "model.keras")
    except (OSError, ValueError) as error:
        raise InputFileError(f"cannot load {run}/model.keras as a Keras model ({error})") from None
    write_files(model, folder, metrics["config"])
    return folder / "model_int8.tflite"


def run_bench(args) -> int:
    from app.bench import bench, check_inputs, markdown

    check_inputs(args.run, args.exported)
    import_tensorflow()
    print(markdown(bench(args.run, args.exported, compare=args.compare, quick=args.quick, speed=args.experiments)),
          end="")
    print(f"wrote {args.run}/bench.json and {args.run}/bench.md")
    return 0


def run_pictures(args) -> int:
    from app.files import make_folder

    if not (Path(args.exported) / "metadata.json").is_file():
        raise InputFileError(f"no {args.exported}/metadata.json; run `make export` first")
    make_folder(args.out)
    import_tensorflow()
    from app.plots import shipped

    print("wrote " + " and ".join(str(p) for p in shipped(Path(args.exported), Path(args.out))))
    return 0


def run_reader(args) -> int:
    from app.files import make_folder

    if not (Path(args.exported) / "saved_model").is_dir():
        raise InputFileError(f"no exported classifier in {args.exported}; run `make export` first")
    make_folder(args.out)
    import_tensorflow()
    from app.files import folder_lock
    from app.reader_train import train_reader

    command = command_line(args.argv)
    with folder_lock(args.out, command):  # a second run into the same folder is refused (exit 4)
        record = train_reader(args.out, args.exported, quick=args.quick, command=command)
    print(f"{args.out}: validation {100 * record['validation_accuracy']:.2f}% of "
          f"{record['validation_pictures']:,} rendered pictures; blank refused "
          f"{100 * (record['blank_refused'] or 0):.1f}%, digits refused {100 * record['digits_refused']:.1f}%")
    return 0


def run_export_reader(args) -> int:
    if not (Path(args.run) / "reader.json").is_file():
        raise InputFileError(
            f"{args.run} holds no finished reader run; run `python -m app reader --out {args.run}` first")
    import_tensorflow()
    from app.reader_export import export_reader

    record = export_reader(args.run, args.out, args.devset, command=command_line(args.argv))
    mnist = record["mnist_test"]
    print(f"MNIST test as pictures: LiteRT {100 * mnist['litert']:.2f}%, MediaPipe {100 * mnist['mediapipe']:.2f}%")
    for part, scores in record["parts"].items():
        for kind, entry in scores["kinds"].items():
            print(f"{part:>8} {kind:>8}: MediaPipe {100 * entry['mediapipe']:.2f}% of {entry['pictures']:,}")
    print(f"wrote {args.out}/{record['file']} ({record['bytes']:,} B) and {args.out}/reader.json")
    return 0


COMMANDS = {
    "train": run_train,
    "export": run_export,
    "predict": run_predict,
    "results": run_results,
    "realworld": run_realworld,
    "cases": run_cases,
    "bench": run_bench,
    "pictures": run_pictures,
    "reader": run_reader,
    "export-reader": run_export_reader,
}


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # Ctrl-C during training: the same command resumes from the last finished epoch.
    resume = command_line(argv, "python -m app") if argv[:1] == ["train"] else None

    def command(argv):
        args = build_parser().parse_args(argv)
        args.argv = argv
        if getattr(args, "verbose", False):
            os.environ["TINYMNIST_VERBOSE"] = "1"
        return COMMANDS[args.command](args)

    return handle(command, argv, resume_hint=resume)
