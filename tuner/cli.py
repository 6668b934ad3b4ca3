"""`python -m tuner search`: search filter counts under a parameter budget, then retrain.

Runs alone, or as KerasTuner's chief or worker when KERASTUNER_TUNER_ID,
KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT are set (the chief serves the oracle and
writes the report; workers run trials).

A search folder remembers what it searches (`search_config.json`: budget, floor, epochs,
seed, data slices and the search space) and refuses a command that asks for another; each
role holds a lock in it, so the same role cannot run twice on one folder. Rerunning a
finished search reprints its report and changes no file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

from app.cli import Parser, add_verbose, fraction, positive_int
from app.errors import DamagedStateError, Refused, UsageError, command_line, handle

# The settings a search folder is tied to; --trials may grow between runs.
TIED = ("budget", "floor", "epochs", "seed", "quick", "space")


def build_parser() -> Parser:
    """Returns the parser of `python -m tuner`."""
    parser = Parser(prog="python -m tuner", description="Budget-aware KerasTuner search.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    search = commands.add_parser("search", help="search filter counts under a parameter budget")
    search.add_argument("--budget", type=positive_int, default=8000, help="most total parameters (default 8000)")
    search.add_argument("--trials", type=positive_int, default=30, help="candidates to train (default 30)")
    search.add_argument("--floor", type=fraction, default=0.0,
                        help="skip candidates under this fraction of the budget (default 0: none)")
    search.add_argument("--epochs", type=positive_int, default=4, help="epochs per trial (default 4)")
    search.add_argument("--retrain-epochs", type=positive_int, default=None,
                        help="epochs of the final retraining (default: the recipe's)")
    search.add_argument("--no-retrain", action="store_true", help="stop after the search and report")
    search.add_argument("--dir", default="tuning", help="search state and report folder (default tuning/)")
    search.add_argument("--seed", type=int, default=0, help="seeds sampling and training (default 0)")
    search.add_argument("--quick", action="store_true", help="small slices of the train split: a smoke test")
    add_verbose(search)
    return parser


def search_settings(args) -> dict:
    """What the search folder is tied to, as JSON-ready values."""
    import keras_tuner as kt

    from tuner.hypermodel import declare

    space = kt.HyperParameters()
    declare(space)
    return {
        "budget": args.budget, "floor": args.floor, "epochs": args.epochs, "seed": args.seed,
        "quick": args.quick, "space": [hp.get_config() for hp in space.space],
    }


def claim_folder(out: Path, settings: dict, command: str) -> None:
    """Writes `search_config.json` on the first run; later runs must ask for the same search.

    Raises:
        UsageError: when the folder holds a search with other settings.
        DamagedStateError: when its `search_config.json` cannot be read.
    """
    from app.files import write_json

    path = out / "search_config.json"
    if not path.exists():
        write_json(path, {**settings, "command": command})
        return
    try:
        before = json.loads(path.read_text())
    except ValueError:
        raise DamagedStateError(f"{path} is damaged; remove {out} to search again from the start") from None
    for key in TIED:
        if before.get(key) != settings[key]:
            shown = "the search space" if key == "space" else f"--{key} {before.get(key)}"
            raise UsageError(
                f"{out} holds a search with {shown} ({before.get('command')}); "
                "rerun that command to resume it, or choose another --dir")


def search(args) -> int:
    from app.tflog import import_tensorflow

    if args.verbose:
        os.environ["TINYMNIST_VERBOSE"] = "1"
    import_tensorflow()
    from app.files import folder_lock, make_folder
    from tuner.hypermodel import parameter_count, smallest_values

    smallest = parameter_count(smallest_values())
    if args.budget < smallest:
        raise UsageError(
            f"budget {args.budget:,} is below the smallest model of the search space ({smallest:,} parameters)"
        )
    out = Path(args.dir)
    role = os.environ.get("KERASTUNER_TUNER_ID", "tuner0")
    command = command_line(args.argv, "python -m tuner")
    make_folder(out, "--dir")
    with folder_lock(out, f"{role}: {command}", name=f".{role}.lock"):
        claim_folder(out, search_settings(args), command)
        return run_search(args, out, role, command)


def run_search(args, out: Path, role: str, command: str) -> int:
    """Runs (or resumes) the search, then reports and retrains the best configuration."""
    from app import data
    from app.config import Recipe
    from app.files import write_json
    from app.train import one_hot
    from tuner.report import plot_trials, write_tables
    from tuner.search import make_tuner, trial_row

    recipe = Recipe(epochs=args.epochs, seed=args.seed)
    # The objective's validation images are carved from the train split; test is never read.
    fit_split, val_split = data.split_names(quick=args.quick, validation=True)
    train_raw = data.load_split(fit_split)
    images = int(train_raw.cardinality())
    train = data.train_pipeline(
        train_raw, recipe.batch_size, recipe.seed, recipe.shift, recipe.rotation, stroke=recipe.stroke)
    validation = data.eval_pipeline(data.load_split(val_split))
    steps = -(-images // recipe.batch_size)
    tuner = make_tuner(args.budget, args.trials, recipe, out, seed=args.seed, floor=args.floor)
    print(f"{role}: searching under {args.budget:,} parameters, {args.trials} trials of "
          f"{args.epochs} epochs on {fit_split}, validating on {val_split}", flush=True)
    # verbose=0 quiets KerasTuner's own multi-line trial reports; BudgetTuner prints one line.
    tuner.search(train.map(one_hot), validation.map(one_hot), steps, verbose=0)

    if role.startswith("tuner") and "KERASTUNER_ORACLE_IP" in os.environ:
        print(f"{role}: no more trials", flush=True)
        return 0  # a worker: the chief reports

    oracle = tuner.oracle
    rows = [trial_row(t) for t in oracle.trials.values()]
    write_tables(rows, out)
    plot_trials(rows, args.budget, out / "val_accuracy_vs_parameters.png")
    done = [r for r in rows if r["val_accuracy"] is not None]
    if not done:
        raise Refused(f"no trial of the search in {out} finished; see the trial lines above")
    best = max(done, key=lambda r: r["val_accuracy"])
    best_trial = oracle.trials[best["trial"]]
    config = tuner.model_maker.config(best_trial.hyperparameters)
    best_recipe = tuner.model_maker.trial_recipe(best_trial.hyperparameters)
    summary = {
        "budget": args.budget,
        "trials": len(rows),
        "finished_trials": len(done),
        "rejected_for_budget": oracle.rejected,
        "floor": args.floor,
        "skipped_under_floor": oracle.under_floor,
        "largest_trained_parameters": max(r["parameters"] for r in done),
        "best_trial": best,
        "best_config": config.to_dict(),
        "best_max_lr": best_recipe.max_lr,
        "command": command,
    }
    print(f"search done: {len(done)} trials trained, {oracle.rejected} candidates rejected for the "
          f"budget, {oracle.under_floor} under the floor, largest trained model "
          f"{summary['largest_trained_parameters']:,} parameters; best trial {best['trial']}: "
          f"{best['parameters']:,} params, val_accuracy {100 * best['val_accuracy']:.2f}%")
    write_json(out / "best_config.json", config.to_dict())
    if args.no_retrain:
        write_json(out / "search.json", summary)
        return 0

    final_recipe = dataclasses.replace(Recipe(seed=args.seed), max_lr=best_recipe.max_lr)
    if args.retrain_epochs:
        final_recipe = dataclasses.replace(final_recipe, epochs=args.retrain_epochs)
    metrics = retrain(config, final_recipe, out, args.quick, command, best["trial"])
    summary["retrained"] = {
        "run": str(out / "best"),
        "parameters": metrics["parameters"]["total"],
        "epochs": metrics["epochs"],
        "final_test_accuracy": metrics["final_test_accuracy"],
    }
    write_json(out / "search.json", summary)
    print(f"retrained best config on the full train split: {metrics['parameters']['total']:,} parameters, "
          f"final test accuracy {100 * metrics['final_test_accuracy']:.2f}% after {metrics['epochs']} epochs "
          f"(export with: make export RUN={out / 'best'})")
    return 0


def retrain(config, recipe, out: Path, quick: bool, command: str, trial: str) -> dict:
    """Retrains the best configuration into `out/best`, or reads it when already finished."""
    from app.train import train

    best = out / "best"
    if (best / "metrics.json").exists():
        return json.loads((best / "metrics.json").read_text())
    origin = {"kind": "search", "search_command": command, "search_dir": str(out), "trial": trial}
    retrain_command = f"{command}  # retraining trial {trial} into {best}"
    return train(config, recipe, out=best, quick=quick, command=retrain_command, origin=origin)


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)

    def command(argv):
        args = build_parser().parse_args(argv)
        args.argv = argv
        return search(args)

    return handle(command, argv, resume_hint=command_line(argv, "python -m tuner"))
