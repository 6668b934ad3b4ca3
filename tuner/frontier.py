"""`python -m tuner frontier`: the smallest model that holds 99.40%, budget by budget.

For each parameter budget, a halving search (`tuner.search.BudgetHalvingOracle`, scored
on the validation images carved from the train split) picks its best configuration; that
configuration is retrained with the full recipe on seeds 0..N-1 and scored on the test set
once, at its final epoch. The front (total parameters against final test accuracy, min-max
over seeds) is written as a table and a plot beside published reference points.

Everything resumes: a finished search reprints its report, a finished seed run is kept and
an unfinished one resumes from its last finished epoch.
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
from pathlib import Path

from app.results import BAR, seeds_held

FRONTIER_BUDGETS = (3000, 4000, 5000, 6000, 7000, 8000)

# Drawn beside the front. Published tiny MNIST CNNs of this family count trainable weights
# only and report their best epoch on the test set, so they sit a little high against a
# front of total parameters and final epochs.
REFERENCES = {
    "seed reference": {"parameters": 8000, "accuracy": (99.40, 99.40)},
    "published (trainable weights, best epoch)": {"parameters": (5900, 8500), "accuracy": (99.40, 99.49)},
}
# Public single-seed runs of smaller models (last epoch, test split guiding their design),
# as (total parameters counted as Keras counts them, test accuracy).
SINGLE_SEED_REFERENCES = ((3822, 99.52), (4838, 99.41))


def search_argv(args: argparse.Namespace, budget: int) -> list[str]:
    """The `python -m tuner search` arguments of one budget's search (workers can join it)."""
    argv = ["search", "--strategy", "halving", "--budget", str(budget), "--candidates", str(args.candidates),
            "--rungs", *map(str, args.rungs), "--factor", str(args.factor), "--top-seeds", str(args.top_seeds),
            "--floor", str(args.floor), "--dir", str(budget_dir(args.dir, budget)), "--no-retrain"]
    return argv + (["--quick"] if args.quick else [])


def search_namespace(args: argparse.Namespace, budget: int) -> argparse.Namespace:
    """The parsed `search_argv`: what `tuner.workflow.searched` reads of one budget's search."""
    return argparse.Namespace(
        command="search", strategy="halving", budget=budget, candidates=args.candidates, rungs=list(args.rungs),
        factor=args.factor, top_seeds=args.top_seeds, floor=args.floor, dir=str(budget_dir(args.dir, budget)),
        no_retrain=True, quick=args.quick, verbose=args.verbose, seed=0, trials=None, epochs=args.rungs[-1],
        iterations=1, retrain_epochs=None, argv=search_argv(args, budget))


def budget_dir(root: str | Path, budget: int) -> Path:
    """Where one budget's search and its seed runs live: `root/budgetN`."""
    return Path(root) / f"budget{budget}"


def frontier(args: argparse.Namespace) -> int:
    """Searches every budget, retrains each best on the seeds, and writes the front.

    Args:
        args: the parsed `python -m tuner frontier` arguments.
    """
    from app.config import ModelConfig
    from tuner.workflow import check_budget, check_rungs, retrain, retrain_recipe, searched

    check_budget(min(args.budgets))  # refused before any search, not after the first ones
    check_rungs(args.rungs)
    rows = []
    for budget in args.budgets:
        summary = searched(search_namespace(args, budget))
        if summary is None:
            return 0  # a worker: the chief retrains and reports
        config = ModelConfig.from_dict(summary["best_config"])
        runs = []
        for seed in range(args.seeds):
            run = budget_dir(args.dir, budget) / f"seed{seed}"
            metrics = retrain(config, retrain_recipe(summary, seed, args.retrain_epochs), run, args.quick, summary)
            print(f"budget {budget:,}: {run}: {metrics['parameters']['total']:,} parameters, final test "
                  f"accuracy {100 * metrics['final_test_accuracy']:.2f}% after {metrics['epochs']} epochs "
                  f"({metrics['train_seconds']:.0f} s of training)", flush=True)
            runs.append(metrics)
        rows.append(front_row(budget, summary, runs))

    out = Path(args.out)
    write_front(rows, out, args, default_point(args.default_runs))
    holding = [r for r in rows if r["holds"]]
    if holding:
        smallest = min(holding, key=lambda r: r["parameters"])
        print(f"smallest model holding {100 * BAR:.2f}% on {args.seeds}/{args.seeds} seeds: "
              f"{smallest['parameters']:,} parameters (budget {smallest['budget']:,}, "
              f"{smallest['search_dir']}, trial {smallest['trial']})", flush=True)
    else:
        print(f"no budget's best held {100 * BAR:.2f}% on every seed", flush=True)
    print(f"front written to {out / 'frontier.md'} and {out / 'frontier.png'}", flush=True)
    return 0


def layout(config: dict) -> str:
    """A short name of a config's filter counts, e.g. `8-t10-14/16-t10-16/16`.

    Each block's 3x3 convolutions are joined by `/` (the stem opens block 1), a transition
    is `tN`, and a transition of 0 filters is left out: `4/4/4-8/8/8-8/8/8`.
    """
    from app.config import ModelConfig

    c = ModelConfig.from_dict({**config, "budget": 10**9})
    join = lambda filters: "/".join(map(str, filters))  # noqa: E731
    parts = [join((c.stem, *c.edges)), f"t{c.transition1}" if c.transition1 else None, join(c.patterns),
             f"t{c.transition2}" if c.transition2 else None, join(c.object)]
    return "-".join(p for p in parts if p)


def spread(finals: list[float]) -> dict:
    """The min / mean / max of final accuracies (in %), rounded as the front reports them."""
    return {"min": round(min(finals), 2), "mean": round(statistics.mean(finals), 3), "max": round(max(finals), 2)}


def default_point(root: str | Path) -> dict | None:
    """The default model's final test accuracies over the seed runs of `make results`.

    Drawn beside the front, it answers the front's question for the model that ships.

    Args:
        root: the folder holding `seedN/history.csv` (`results/seeds` after `make results`).

    Returns:
        Its parameters, layout and per-seed statistics, or None when there are no runs.

    Raises:
        InputFileError: a history without a final test accuracy.
    """
    from app.config import ModelConfig, count_parameters
    from app.errors import InputFileError

    histories = sorted(Path(root).glob("seed*/history.csv"))
    if not histories:
        return None
    finals = []
    for path in histories:
        try:
            with path.open(newline="") as f:
                finals.append(100 * float(list(csv.DictReader(f))[-1]["test_accuracy"]))
        except (OSError, KeyError, IndexError, ValueError):
            raise InputFileError(f"{path}: no final test accuracy (a finished test run's history.csv)") from None
    config = ModelConfig()
    return {
        "parameters": count_parameters(config),
        "layout": layout(config.to_dict()),
        "seeds": len(finals),
        **spread(finals),
        "held": seeds_held(finals),
        "runs": str(root),
    }


def front_row(budget: int, summary: dict, runs: list[dict]) -> dict:
    """One budget's line of the front: the search's best and its retrained seeds."""
    finals = [100 * m["final_test_accuracy"] for m in runs]
    best = summary["best_trial"]
    return {
        "budget": budget,
        "parameters": runs[0]["parameters"]["total"],
        "trainable": runs[0]["parameters"]["trainable"],
        "layout": layout(summary["best_config"]),
        "dropout": summary["best_config"]["dropout"],
        "max_lr": summary["best_max_lr"],
        "trial": best["trial"],
        "val_accuracy": round(100 * best["val_accuracy"], 2),
        "seeds": len(runs),
        "test_accuracies": " ".join(f"{a:.2f}" for a in finals),
        **spread(finals),
        "holds": seeds_held(finals) == len(finals),
        "search_trials": summary["finished_trials"],
        "search_seconds": round(summary["trial_seconds"]),
        "retrain_seconds": round(sum(m["train_seconds"] for m in runs)),
        "search_dir": summary["search_dir"],
    }


def write_front(rows: list[dict], out: Path, args: argparse.Namespace, default: dict | None = None) -> None:
    """Writes `frontier.csv`, `frontier.md` and `frontier.png` into `out`, the default beside the front."""
    from app.errors import command_line
    from app.files import make_folder, write_text

    make_folder(out, "--out")
    text = io.StringIO()
    writer = csv.DictWriter(text, list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "frontier.csv", text.getvalue())
    write_text(out / "frontier.md", markdown(rows, command_line(args.argv, "python -m tuner"), default))
    plot_front(rows, out / "frontier.png", default)


def markdown(rows: list[dict], command: str, default: dict | None = None) -> str:
    """The front as a Markdown table, with how it was made and the default beside it."""
    seeds = rows[0]["seeds"]
    lines = [
        f"`{command}`", "",
        f"Each budget: a halving search on 50,000 train images, scored on the 10,000 validation "
        f"images carved from the train split; its best trial retrained with the full recipe on "
        f"seeds 0-{seeds - 1} and scored once on the 10,000 test images at the final epoch.", "",
        "| budget | parameters (trainable) | layout | dropout | max lr | search trial (val) "
        "| final test accuracy per seed | min | mean | max | holds 99.40% | search | retraining |",
        "|---:|---:|---|---:|---:|---|---|---:|---:|---:|---|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: r["budget"]):
        lines.append(
            f"| {r['budget']:,} | {r['parameters']:,} ({r['trainable']:,}) | `{r['layout']}` | {r['dropout']} "
            f"| {r['max_lr']} | {r['trial']} ({r['val_accuracy']:.2f}%) | {r['test_accuracies']} "
            f"| {r['min']:.2f}% | {r['mean']:.2f}% | {r['max']:.2f}% | {'yes' if r['holds'] else 'no'} "
            f"| {r['search_trials']} trials, {r['search_seconds']} s | {r['retrain_seconds']} s |")
    total = sum(r["search_seconds"] + r["retrain_seconds"] for r in rows)
    lines += ["", f"Training time of the whole front (trials plus retraining, without start-up and "
                  f"evaluation): {total / 60:.0f} min."]
    holding = [r for r in rows if r["holds"]]
    if holding:
        s = min(holding, key=lambda r: r["parameters"])
        lines.append(f"Smallest model holding 99.40% on {seeds}/{seeds} seeds: {s['parameters']:,} parameters "
                     f"(`{s['layout']}`, {s['search_dir']}, trial {s['trial']}).")
    else:
        lines.append(f"No budget's best held 99.40% on {seeds}/{seeds} seeds.")
    if default:
        lines += ["", f"Beside it, the default model (`{default['layout']}`, {default['parameters']:,} parameters) "
                      f"over the {default['seeds']} seed runs of `make results` ({default['runs']}): final test "
                      f"accuracy min {default['min']:.2f}%, mean {default['mean']:.2f}%, max {default['max']:.2f}%; "
                      f"{default['held']} of {default['seeds']} seeds at or above 99.40%."]
    return "\n".join(lines) + "\n"


def plot_front(rows: list[dict], path: Path, default: dict | None = None) -> None:
    """Draws final test accuracy (mean, min-max bars) against total parameters, with references."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from app.files import atomic_path

    rows = sorted(rows, key=lambda r: r["parameters"])
    x = [r["parameters"] for r in rows]
    mean = [r["mean"] for r in rows]
    low = [r["mean"] - r["min"] for r in rows]
    high = [r["max"] - r["mean"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    published = REFERENCES["published (trainable weights, best epoch)"]
    (x0, x1), (y0, y1) = published["parameters"], published["accuracy"]
    ax.fill_between([x0, x1], y0, y1, color="tab:orange", alpha=0.25,
                    label="published 5.9K-8.5K (trainable weights, best epoch)")
    seed_ref = REFERENCES["seed reference"]
    ax.scatter([seed_ref["parameters"]], [seed_ref["accuracy"][0]], marker="s", color="tab:gray",
               label="seed reference (~8K)", zorder=3)
    ax.scatter(*zip(*SINGLE_SEED_REFERENCES), marker="D", color="tab:purple", zorder=3,
               label="public single-seed runs (3,822 and 4,838)")
    ax.errorbar(x, mean, yerr=[low, high], fmt="o-", color="tab:blue", capsize=4, zorder=4,
                label=f"this front: mean, min-max over {rows[0]['seeds']} seeds")
    if default:
        ax.errorbar([default["parameters"]], [default["mean"]],
                    yerr=[[default["mean"] - default["min"]], [default["max"] - default["mean"]]],
                    fmt="*", markersize=12, color="tab:green", capsize=4, zorder=5,
                    label=f"the default ({default['parameters']:,}): mean, min-max over {default['seeds']} seeds")
    for r in rows:
        ax.annotate(f"{r['budget'] // 1000}K", (r["parameters"], r["max"]), textcoords="offset points",
                    xytext=(0, 6), ha="center", fontsize=8)
    ax.axhline(100 * BAR, color="tab:red", linestyle="--", linewidth=1, label="99.40%")
    ax.set_xlabel("total parameters (trainable + BatchNorm statistics)")
    ax.set_ylabel("final-epoch test accuracy (%)")
    ax.set_title("Smallest model for the accuracy: the tuner's front")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
