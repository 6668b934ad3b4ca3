"""`python -m tuner search`: search filter counts under a parameter budget, then retrain.

Runs alone, or as KerasTuner's chief or worker when KERASTUNER_TUNER_ID,
KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT are set (the chief serves the oracle and
writes the report; workers run trials).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

from app.cli import Parser, UsageError, fraction, positive_int, run


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
    return parser


def search(args) -> int:
    import keras_tuner as kt  # noqa: F401  (fail early if missing)

    from app import data
    from app.config import Recipe
    from app.train import one_hot
    from tuner.hypermodel import parameter_count, smallest_values
    from tuner.report import plot_trials, write_tables
    from tuner.search import make_tuner, trial_row

    smallest = parameter_count(smallest_values())
    if args.budget < smallest:
        raise UsageError(
            f"budget {args.budget:,} is below the smallest model of the search space ({smallest:,} parameters)"
        )
    out = Path(args.dir)
    role = os.environ.get("KERASTUNER_TUNER_ID", "tuner0")
    recipe = Recipe(epochs=args.epochs, seed=args.seed)
    # The objective's validation images are carved from the train split; test is never read.
    fit_split, val_split = data.split_names(quick=args.quick, validation=True)
    train_raw = data.load_split(fit_split)
    images = int(train_raw.cardinality())
    train = data.train_pipeline(train_raw, recipe.batch_size, recipe.seed, recipe.shift, recipe.rotation)
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
        print("error: no trial finished", file=sys.stderr)
        return 1
    best = max(done, key=lambda r: r["val_accuracy"])
    best_trial = oracle.trials[best["trial"]]
    config = tuner.hypermodel.config(best_trial.hyperparameters)
    best_recipe = tuner.hypermodel.trial_recipe(best_trial.hyperparameters)
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
    }
    print(f"search done: {len(done)} trials trained, {oracle.rejected} candidates rejected for the "
          f"budget, {oracle.under_floor} under the floor, largest trained model "
          f"{summary['largest_trained_parameters']:,} parameters; best trial {best['trial']}: "
          f"{best['parameters']:,} params, val_accuracy {100 * best['val_accuracy']:.2f}%")
    from app.files import write_json

    write_json(out / "best_config.json", config.to_dict())
    write_json(out / "search.json", summary)
    if args.no_retrain:
        return 0

    from app.train import train

    final_recipe = dataclasses.replace(Recipe(seed=args.seed), max_lr=best_recipe.max_lr)
    if args.retrain_epochs:
        final_recipe = dataclasses.replace(final_recipe, epochs=args.retrain_epochs)
    metrics = train(config, final_recipe, out=out / "best", quick=args.quick)
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


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns the exit code."""
    return run(search, build_parser(), argv, interrupted="interrupted (run the same command again to resume)")
