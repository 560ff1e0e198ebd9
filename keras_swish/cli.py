"""The `keras-swish` command line.

```
keras-swish beta-report PATH [--out-dir DIR]
keras-swish recipes | train | evaluate | translate | compare | search | launch ...
```

`beta-report` is added by `_add_beta_report(subparsers)`, the recipes'
commands by `keras_swish.recipes.cli.add_subcommands`; each sets a
`handler(args) -> int`; what only a handler needs (matplotlib, model
loading, training) is imported inside it. Bad input (a
`keras_swish.errors.UsageError` from a handler: a config value, a path, a
data spec) ends with exit status 2 and one line on stderr; any other
exception keeps its traceback.

The `keras-swish` console script enters through `keras_swish_cli`, which
hides TensorFlow's C++ start-up lines (oneDNN, CUDA probing, "failed call to
cuInit" on a machine without a GPU) unless `keras-swish --verbose` is given
or the user sets `TF_CPP_MIN_LOG_LEVEL`.
"""

import argparse
import os
import sys

from keras_swish.errors import UsageError

PROG = "keras-swish"


def _version():
    from importlib import metadata

    try:
        return metadata.version("keras-swish")
    except metadata.PackageNotFoundError:
        return "unknown"


def _beta_report(args):
    from keras_swish.callbacks.report import beta_report

    out_dir = args.out_dir
    if out_dir is None:
        out_dir = args.path if os.path.isdir(args.path) else os.path.dirname(args.path)
    report = beta_report(args.path, out_dir or os.curdir)
    step = "" if report.step is None else f" at step {report.step}"
    print(f"β of {report.source}{step}:")
    print(report.table())
    print(f"Wrote {report.distribution_png}")
    print(f"Wrote {report.curves_png}")
    return 0


def _add_beta_report(subparsers):
    parser = subparsers.add_parser(
        "beta-report",
        help="pictures and a per-layer table of a model's learned β",
        description=(
            "Draws the distribution of every learned β (like Fig. 7 of "
            "'Searching for Activation Functions') and the learned curves "
            "(x·σ(βx), or a searched activation's own formula) for the β "
            "quantiles, writes them as beta_distribution.png "
            "and beta_curves.png, and prints a table: layer, channels, mean, "
            "min, max."
        ),
    )
    parser.add_argument(
        "path",
        metavar="PATH",
        help=(
            "a .keras model file, a run's log directory written by BetaMonitor "
            "(its latest β), or the betas.json snapshot in it"
        ),
    )
    parser.add_argument(
        "-o",
        "--out-dir",
        metavar="DIR",
        help="where to write the PNGs (default: PATH if a directory, else its folder)",
    )
    parser.set_defaults(handler=_beta_report)


def build_parser():
    """The argument parser of `keras-swish`, with every subcommand."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Swish with a trainable β for Keras 3: tools.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument(
        "--verbose",
        dest="tf_logs",
        action="store_true",
        help="show TensorFlow's C++ start-up and runtime log lines (hidden by default)",
    )
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, title="commands"
    )
    _add_beta_report(subparsers)
    from keras_swish.recipes.cli import add_subcommands

    add_subcommands(subparsers)
    return parser


def main(argv=None):
    """Runs `keras-swish` with `argv` (default: `sys.argv[1:]`).

    Args:
        argv: The arguments, without the program name.

    Returns:
        The exit status: 0 on success, 2 on bad input.

    Example:

    >>> from keras_swish.cli import main
    >>> main(["beta-report", "no/such/run"])
    2
    """
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser.parse_args(argv)
        args.argv = argv  # what a command that starts copies of itself (search --workers) passes on
    except SystemExit as exit_:  # --help, --version and usage errors.
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        return args.handler(args)
    except UsageError as error:
        print(f"{PROG} {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
