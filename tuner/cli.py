"""`python -m tuner search`: search filter counts under a parameter budget, then retrain.

Runs alone, or as KerasTuner's chief or worker when KERASTUNER_TUNER_ID,
KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT are set (the chief serves the oracle and
writes the report; workers run trials).

What a command does lives in `tuner.workflow` (a search and its retraining) and
`tuner.frontier` (searches over several budgets); this module parses and dispatches.
"""

from __future__ import annotations

import sys

from app.cli import Parser, add_verbose, fraction, positive_int
from app.errors import command_line, handle
from tuner.frontier import FRONTIER_BUDGETS


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
    search.add_argument("--strategy", choices=("random", "hyperband", "halving"), default="random",
                        help="random: every trial trains --epochs; hyperband: most trials train a few "
                             "epochs and the best of each round train longer, up to --epochs; halving: "
                             "--candidates short trials, the best promoted rung by rung (--rungs) (default random)")
    add_hyperband(search)
    add_halving(search)
    search.add_argument("--quick", action="store_true", help="small slices of the train split: a smoke test")
    add_verbose(search)

    frontier = commands.add_parser(
        "frontier", help="halving searches over several budgets, the best of each retrained on seeds")
    frontier.add_argument("--budgets", type=positive_int, nargs="+", default=list(FRONTIER_BUDGETS),
                          help="parameter budgets, one search each (default "
                               + " ".join(map(str, FRONTIER_BUDGETS)) + ")")
    frontier.add_argument("--seeds", type=positive_int, default=5,
                          help="retrain each budget's best on seeds 0..N-1 (default 5)")
    frontier.add_argument("--floor", type=fraction, default=0.8,
                          help="skip candidates under this fraction of each budget (default 0.8)")
    frontier.add_argument("--factor", type=positive_int, default=6,
                          help="keep the best 1/N of each rung (default 6)")
    add_halving(frontier)
    frontier.add_argument("--retrain-epochs", type=positive_int, default=None,
                          help="epochs of the retraining (default: the recipe's)")
    frontier.add_argument("--dir", default="tuning/frontier",
                          help="searches and retrained runs, one folder per budget (default tuning/frontier/)")
    frontier.add_argument("--out", default="results",
                          help="where frontier.md, frontier.csv and frontier.png go (default results/)")
    frontier.add_argument("--default-runs", default="results/seeds",
                          help="the default model's seed runs from `make results` (seedN/history.csv), "
                               "drawn beside the front; skipped when absent (default results/seeds/)")
    frontier.add_argument("--quick", action="store_true", help="small slices of the splits: a smoke test")
    add_verbose(frontier)
    return parser


def add_hyperband(parser) -> None:
    parser.add_argument("--factor", type=positive_int, default=3,
                        help="hyperband: keep about 1/N of each round, train them N times longer (default 3)")
    parser.add_argument("--iterations", type=positive_int, default=1,
                        help="hyperband: sweeps over all of its brackets (default 1)")


def add_halving(parser) -> None:
    parser.add_argument("--candidates", type=positive_int, default=100,
                        help="halving: fresh candidates of the first rung (default 100)")
    parser.add_argument("--rungs", type=positive_int, nargs="+", default=[1, 4, 20],
                        help="halving: epochs of each rung, shortest first; the last is the full "
                             "training (default 1 4 20)")
    parser.add_argument("--top-seeds", type=positive_int, default=2,
                        help="halving: seeds of each top-rung candidate, ranked on their mean (default 2)")


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)

    def command(argv):
        args = build_parser().parse_args(argv)
        args.argv = argv
        from tuner import workflow

        if args.command == "frontier":
            from tuner.frontier import frontier

            workflow.check_budget(min(args.budgets))  # arithmetic: refused at once, before TensorFlow's import
            workflow.start_tensorflow(args)
            return frontier(args)
        return workflow.search(args)

    return handle(command, argv, resume_hint=command_line(argv, "python -m tuner"))
