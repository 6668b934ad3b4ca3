"""Running a budgeted search and retraining its winner: what `python -m tuner` does.

`searched` runs (or resumes) one search in its folder and writes its report; `retrain`
trains a search's best configuration with the full recipe into a run folder. The search
command and `tuner.frontier` both call them; `tuner.cli` only parses and dispatches.

A search folder remembers what it searches (`search_config.json`: budget, floor, epochs,
seed, data slices and the search space) and refuses a command that asks for another; each
role holds a lock in it, so the same role cannot run twice on one folder. Rerunning a
finished search reprints its report and changes no file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from app.errors import DamagedStateError, Refused, UsageError, command_line

# The settings a search folder is tied to (--trials may grow between runs), and the value a
# folder written before a setting existed stands for.
TIED = {"budget": None, "floor": None, "epochs": None, "seed": None, "quick": None, "space": None,
        "strategy": "random", "factor": 3, "iterations": 1, "candidates": None, "rungs": None, "top_seeds": None}


def search_settings(args) -> dict:
    """What the search folder is tied to, as JSON-ready values."""
    import keras_tuner as kt

    from tuner.space import declare

    space = kt.HyperParameters()
    declare(space)
    return {
        # A halving search's epochs are its rungs; --epochs does not apply to it.
        "budget": args.budget, "floor": args.floor, "epochs": None if args.strategy == "halving" else args.epochs,
        "seed": args.seed,
        "quick": args.quick, "space": [hp.get_config() for hp in space.space],
        "strategy": args.strategy, "factor": args.factor, "iterations": args.iterations,
        # Only a halving search has rungs; other folders keep recording none.
        **{key: getattr(args, key) if args.strategy == "halving" else None
           for key in ("candidates", "rungs", "top_seeds")},
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
    for key, missing in TIED.items():
        if before.get(key, missing) != settings[key]:
            shown = "the search space" if key == "space" else f"--{key} {before.get(key, missing)}"
            raise UsageError(
                f"{out} holds a search with {shown} ({before.get('command')}); "
                "rerun that command to resume it, or choose another --dir")


def search(args) -> int:
    """`python -m tuner search`: the search, its report, then the best config retrained."""
    from app.config import ModelConfig
    from app.files import write_json

    check_budget(args.budget)  # arithmetic: refused at once, before TensorFlow's import
    check_rungs(args.rungs)
    start_tensorflow(args)
    summary = searched(args)
    if summary is None or args.no_retrain:
        return 0
    out = Path(args.dir)
    config = ModelConfig.from_dict(summary["best_config"])
    metrics = retrain(config, retrain_recipe(summary, args.seed, args.retrain_epochs), out / "best",
                      args.quick, summary)
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


def start_tensorflow(args) -> None:
    """Imports TensorFlow quietly (its C++ log only with --verbose)."""
    from app.tflog import import_tensorflow

    if args.verbose:
        os.environ["TINYMNIST_VERBOSE"] = "1"
    import_tensorflow()


def check_budget(budget: int) -> None:
    """Raises `UsageError` when `budget` is below the smallest model of the search space."""
    from tuner.space import parameter_count, smallest_values

    smallest = parameter_count(smallest_values())
    if budget < smallest:
        raise UsageError(f"budget {budget:,} is below the smallest model of the search space ({smallest:,} parameters)")


def searched(args) -> dict | None:
    """Runs (or resumes) the search in `args.dir` and writes its report.

    Returns:
        The search's summary (also in `search.json`), or None in a worker (the chief reports).

    Raises:
        UsageError: a budget under the smallest model, or a folder holding another search.
        Refused: no trial finished.
    """
    from app.files import folder_lock, make_folder

    check_budget(args.budget)
    out = Path(args.dir)
    role = os.environ.get("KERASTUNER_TUNER_ID", "tuner0")
    command = command_line(args.argv, "python -m tuner")
    make_folder(out, "--dir")
    with folder_lock(out, f"{role}: {command}", name=f".{role}.lock"):
        claim_folder(out, search_settings(args), command)
        return run_search(args, out, role, command)


def run_search(args, out: Path, role: str, command: str) -> dict | None:
    """Runs (or resumes) the search, then reports it and returns its summary."""
    from app import data
    from app.config import Recipe
    from app.files import write_json
    from app.runfolder import split_names
    from app.train import one_hot
    from tuner.report import plot_trials, write_tables
    from tuner.search import make_tuner, trial_row

    halving = args.strategy == "halving"
    recipe = Recipe(epochs=args.rungs[-1] if halving else args.epochs, seed=args.seed)
    # The objective's validation images are carved from the train split; test is never read.
    fit_split, val_split = split_names(quick=args.quick, validation=True)
    train_raw = data.load_split(fit_split)
    images = int(train_raw.cardinality())
    train = data.train_pipeline(
        train_raw, recipe.batch_size, recipe.seed, recipe.shift, recipe.rotation, stroke=recipe.stroke,
        blur=recipe.blur)
    validation = data.eval_pipeline(data.load_split(val_split))
    steps = -(-images // recipe.batch_size)
    tuner = make_tuner(args.budget, args.trials, recipe, out, seed=args.seed, floor=args.floor,
                       strategy=args.strategy, factor=args.factor, iterations=args.iterations,
                       **({"candidates": args.candidates, "rungs": tuple(args.rungs), "top_seeds": args.top_seeds}
                          if halving else {}))
    if halving:
        sizes = tuner.oracle.sizes
        plan = (f"successive halving of {args.candidates} candidates over rungs of "
                + ", ".join(f"{n} x {e} epochs" for n, e in zip(sizes, args.rungs))
                + f" (each top candidate on {args.top_seeds} seeds; {tuner.oracle.max_trials} trials)")
    elif args.strategy == "random":
        plan = f"{args.trials} trials of {args.epochs} epochs"
    else:
        plan = (f"Hyperband trials of up to {args.epochs} epochs (factor {args.factor}, "
                f"{args.iterations} iteration{'s' if args.iterations > 1 else ''})")
    print(f"{role}: searching under {args.budget:,} parameters, {plan} on {fit_split}, "
          f"validating on {val_split}", flush=True)
    # verbose=0 quiets KerasTuner's own multi-line trial reports; BudgetTuner prints one line.
    tuner.search(train.map(one_hot), validation.map(one_hot), steps, verbose=0)

    if role.startswith("tuner") and "KERASTUNER_ORACLE_IP" in os.environ:
        print(f"{role}: no more trials", flush=True)
        return None  # a worker: the chief reports

    oracle = tuner.oracle
    rows = [trial_row(t) for t in oracle.trials.values()]
    write_tables(rows, out)
    done = [r for r in rows if r["val_accuracy"] is not None]
    best = best_row(done) if done else None
    plot_trials(rows, args.budget, out / "val_accuracy_vs_parameters.png", best)
    if best is None:
        raise Refused(f"no trial of the search in {out} finished; see the trial lines above")
    best_trial = oracle.trials[best["trial"]]
    config = tuner.model_maker.config(best_trial.hyperparameters)
    best_recipe = tuner.model_maker.trial_recipe(best_trial.hyperparameters)
    summary = {
        "budget": args.budget,
        "strategy": args.strategy,
        "trials": len(rows),
        "finished_trials": len(done),
        "rejected_for_budget": oracle.rejected,
        "floor": args.floor,
        "skipped_under_floor": oracle.under_floor,
        "largest_trained_parameters": max(r["parameters"] for r in done),
        "trial_epochs": sum(r["epochs"] for r in done),
        "trial_seconds": round(sum(r["seconds"] for r in done), 1),
        "best_trial": best,
        "best_config": config.to_dict(),
        "best_max_lr": best_recipe.max_lr,
        "command": command,
        "search_dir": str(out),
    }
    print(f"search done: {len(done)} trials trained ({summary['trial_epochs']} epochs, "
          f"{summary['trial_seconds']:.0f} s), {oracle.rejected} candidates rejected for the "
          f"budget, {oracle.under_floor} under the floor, largest trained model "
          f"{summary['largest_trained_parameters']:,} parameters; best trial {best['trial']}: "
          f"{best['parameters']:,} params, val_accuracy {100 * best['val_accuracy']:.2f}% "
          f"after {best['epochs']} epochs", flush=True)
    write_json(out / "best_config.json", config.to_dict())
    write_json(out / "search.json", summary)
    return summary


def retrain_recipe(summary: dict, seed: int, epochs: int | None = None):
    """The full recipe with the search's best peak learning rate, for one seed.

    Args:
        summary: the search's summary (`searched`).
        seed: the seed of the retraining.
        epochs: the retraining's epochs; None keeps the recipe's.
    """
    from app.config import Recipe

    recipe = dataclasses.replace(Recipe(seed=seed), max_lr=summary["best_max_lr"])
    return dataclasses.replace(recipe, epochs=epochs) if epochs else recipe


def best_row(done: list[dict]) -> dict:
    """The best finished trial: highest `val_accuracy` among the longest-trained trials.

    Hyperband and halving scores come from trainings of different lengths, so only the longest
    compete. A halving search's top rung trains each candidate on several seeds: a candidate
    then scores the mean of its seeds, and its row (its first seed's trial) carries that mean
    as `val_accuracy` and each seed's score in `val_accuracies`. A tie goes to the smaller
    model, then to the earlier trial, so a reloaded search (whose trials come back in another
    order) names the same best.
    """
    longest = max(r["epochs"] for r in done)
    groups = {}
    for r in sorted((r for r in done if r["epochs"] == longest), key=lambda r: r["trial"]):
        groups.setdefault(r.get("candidate", r["trial"]), []).append(r)
    rows = [{**rows[0], "val_accuracy": sum(r["val_accuracy"] for r in rows) / len(rows),
             **({"val_accuracies": [r["val_accuracy"] for r in rows]} if "candidate" in rows[0] else {})}
            for rows in groups.values()]
    return min(rows, key=lambda r: (-r["val_accuracy"], r["parameters"], r["trial"]))


def check_rungs(rungs: list[int]) -> None:
    """Raises `UsageError` unless a halving search's rungs grow longer, each after the one before."""
    if any(b <= a for a, b in zip(rungs, rungs[1:])):
        raise UsageError(f"--rungs must grow longer rung by rung, got {' '.join(map(str, rungs))}")


def retrain(config, recipe, run: Path, quick: bool, summary: dict) -> dict:
    """Retrains a search's best configuration into `run`, or reads it when already finished.

    Args:
        config: the best trial's `ModelConfig`.
        recipe: the full recipe, with the trial's learning rate and the run's seed.
        run: the run folder (an unfinished one resumes).
        quick: small slices of the splits (a smoke test).
        summary: the search's summary (`searched`), for the run's provenance.
    """
    from app.config import ModelConfig
    from app.files import read_json
    from app.runfolder import RunFolderError
    from app.train import train

    trial, command = summary["best_trial"]["trial"], summary["command"]
    if (run / "metrics.json").exists():
        metrics = read_json(str(run / "metrics.json"), "metrics")
        if ModelConfig.from_dict(metrics.get("config") or {}) != config:
            raise RunFolderError(f"{run} holds a finished run of another config than the best trial {trial}; "
                                 "move it away to retrain that trial")
        return metrics
    origin = {"kind": "search", "search_command": command, "search_dir": summary["search_dir"], "trial": trial}
    retrain_command = f"{command}  # retraining trial {trial} with seed {recipe.seed} into {run}"
    return train(config, recipe, out=run, quick=quick, command=retrain_command, origin=origin)


