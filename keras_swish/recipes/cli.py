"""The recipe commands of `keras-swish`: recipes, train, evaluate, compare, launch, search,
translate.

```
keras-swish recipes [RECIPE | EXPERIMENT]
keras-swish train RECIPE|EXPERIMENT [--activation NAME] [--data SPEC] [--data-dir DIR] ...
keras-swish evaluate RUN_DIR [--data SPEC] [--data-dir DIR] [--batch-size N]
keras-swish compare EXPERIMENT --activations LIST|paper --seeds N [train flags]
keras-swish launch --workers N RECIPE|EXPERIMENT [train flags]
keras-swish search [EXPERIMENT] [--strategy exhaustive|random|rnn] [--units N] ... [--workers N]
keras-swish search --retrain K EXPERIMENT --output SEARCH_DIR [--seeds N]
keras-swish translate RUN_DIR < sentences.txt
```
Also runnable as `python -m keras_swish.recipes ...`.
"""

import argparse
import json
import sys

from keras_swish.recipes.core.config import parse_set, to_dict
from keras_swish.recipes.core.strategy import PRECISIONS, STRATEGIES
from keras_swish.recipes.models.activations import ACTIVATIONS

# Flags every recipe takes: name → (argparse kwargs). Recipes list the ones
# they use in `Recipe.flags`; `--image-size` is for image recipes only.
COMMON_FLAGS = {
    "activation": {
        "metavar": "NAME",
        "help": f"one of: {', '.join(ACTIVATIONS)}, or expr:FORMULA (a searched activation)",
    },
    "data": {
        "metavar": "SPEC",
        "help": (
            "tfds:NAME[:SPLIT], folder:PATH (image recipes) or text:SRC,TGT "
            "(translation); default: the recipe's embedded dataset"
        ),
    },
    "data_dir": {"metavar": "DIR", "help": "where prepared TFDS data lives"},
    "epochs": {"type": int, "metavar": "N"},
    "steps_per_epoch": {
        "type": int,
        "metavar": "N",
        "help": (
            "optimizer steps per epoch: the run trains epochs × N steps and validates, saves "
            "and logs every N (default: the experiment's; most: one pass over the data)"
        ),
    },
    "batch_size": {"type": int, "metavar": "N", "help": "global batch size (all replicas)"},
    "image_size": {"type": int, "metavar": "PX", "help": "input side (image recipes)"},
    "output": {
        "metavar": "DIR",
        "help": "run folder (default: runs/EXPERIMENT-ACTIVATION, '/' as '-')",
    },
    "strategy": {"metavar": "NAME", "help": f"one of: {', '.join(STRATEGIES)} (default auto)"},
    "tpu": {
        "metavar": "ADDRESS",
        "help": "TPU name or address: TPUStrategy (with --strategy auto or tpu)",
    },
    "precision": {
        "metavar": "NAME",
        "help": f"one of: {', '.join(PRECISIONS)} (auto: bf16 on TPU, fp16 on GPU, fp32 on CPU)",
    },
    "seed": {"type": int, "metavar": "N"},
}


def _all_flags():
    """The common flags, then those of each recipe (`Recipe.extra_flags`)."""
    from keras_swish.recipes.core.registry import list_recipes

    flags = dict(COMMON_FLAGS)
    for recipe in list_recipes():
        for name, kwargs in recipe.extra_flags.items():
            flags.setdefault(name, dict(kwargs, help=f"{kwargs.get('help', '')} ({recipe.name})"))
    return flags


def _recipes(args):
    from keras_swish.recipes.core.registry import list_experiments, list_recipes

    if args.name is None:
        for recipe in list_recipes():
            print(f"{recipe.name}: {recipe.summary}")
            for experiment in list_experiments(recipe.name):
                default = " (default)" if experiment.default else ""
                print(f"  {experiment.name}{default}: {experiment.summary}")
        print("Details, defaults and the learning-rate schedule: keras-swish recipes NAME")
        return 0
    from keras_swish.recipes.core import runner

    recipe, experiment, config = runner.resolve(args.name, require_data=False)
    print(f"{experiment.name}: {experiment.summary}")
    print(f"  recipe {recipe.name}: {recipe.summary}")
    if experiment.reference:
        print(f"  reference: {experiment.reference}")
    print(f"  reads --data {' or '.join(experiment.data)}")
    for section, values in to_dict(config).items():
        print(f"  {section}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
    steps_per_pass = recipe_steps_per_pass(recipe, experiment, config)
    known = steps_per_pass is not None or (
        not recipe.schedule_needs_data and config.train.steps_per_epoch
    )
    if not known:
        print(
            "  Learning rate: needs the data's size; `keras-swish train` prints it "
            "before the first step."
        )
        return 0
    steps = config.train.steps_per_epoch or steps_per_pass
    for line in runner.schedule_lines(recipe, config, steps_per_pass, steps):
        print("  " + line)
    return 0


def recipe_steps_per_pass(recipe, experiment, config):
    """Steps of one pass over the experiment's training data, if known without reading it."""
    if experiment.train_examples is None:
        return None
    return max(1, experiment.train_examples // config.train.batch_size)


def _train(args):
    from keras_swish.recipes.core import runner

    flags = {name: getattr(args, name) for name in _all_flags()}
    flags = {name: value for name, value in flags.items() if value is not None}
    recipe, experiment, config = runner.resolve(
        args.recipe, config_file=args.config, flags=flags, overrides=parse_set(args.set)
    )
    runner.train(recipe, experiment, config, verbose=_progress_verbosity(args.verbose))
    return 0


def _progress_verbosity(flag):
    """`--verbose` as Keras's `fit(verbose=...)`: "auto" is 1 on a terminal, else 2.

    Keras's own "auto" is 1 everywhere; a progress bar redrawn with carriage
    returns makes a log file (a `launch` worker's, a batch job's, `| tee`) one
    line per step, so output that is not a terminal gets a line per epoch.
    """
    if flag == "auto":
        return 1 if sys.stdout.isatty() else 2
    return int(flag)


def _evaluate(args):
    import dataclasses

    from keras_swish.recipes.core import runner

    recipe, config = runner.load_run_config(args.run_dir)
    data = config.data
    if args.data is not None:
        data = dataclasses.replace(data, source=args.data)
    if args.data_dir is not None:
        data = dataclasses.replace(data, data_dir=args.data_dir)
    # The run's own folder, wherever the command runs from (it holds the
    # run's files, e.g. the NMT recipe's SentencePiece model).
    train = dataclasses.replace(config.train, output=args.run_dir)
    if args.batch_size is not None:
        train = dataclasses.replace(train, batch_size=args.batch_size)
    config = dataclasses.replace(config, data=data, train=train)
    recipe.validate(config)
    report = runner.evaluate(recipe, config, args.run_dir)
    print(f"{report['model']} on {report['data']}:")
    print(json.dumps(report["metrics"], indent=2))
    return 0


def _compare(args):
    import os

    from keras_swish.recipes.compare import parse_activations, parse_learning_rates

    experiments = [e.strip() for e in args.experiments.split(",") if e.strip()]
    output = args.output or os.path.join(
        "runs", "compare-" + "+".join(e.replace("/", "-") for e in experiments)
    )
    return _run_compare(
        args,
        experiments,
        parse_activations(args.activations),
        output,
        learning_rates=parse_learning_rates(args.learning_rates),
        baseline=args.baseline,
    )


def _run_compare(args, experiments, activations, output, learning_rates=(None,), baseline="relu"):
    """Runs `compare` with the train flags, --config and --set of `args`; prints results.md."""
    import os

    from keras_swish.recipes.compare import compare

    # compare's own flags (and a search's --strategy, which is not the runs') are left out.
    own = (*_COMPARE_OWN, "strategy") if args.command == "search" else _COMPARE_OWN
    flags = {name: getattr(args, name, None) for name in _all_flags() if name not in own}
    flags = {name: value for name, value in flags.items() if value is not None}
    results = compare(
        experiments,
        activations,
        args.seeds,
        output,
        learning_rates=learning_rates,
        baseline=baseline,
        parallel=args.parallel,
        train_flags=flags,
        train_args=_train_args(flags, args.config, args.set),
        overrides=parse_set(args.set),
        config_file=args.config,
    )
    print(open(os.path.join(output, "results.md"), encoding="utf-8").read())
    print(
        f"Results: {output}/results.md, results.csv, results.json and PNG plots; "
        f"HParams: tensorboard --logdir {output}/hparams"
    )
    return 1 if results["failed"] else 0


def _train_args(flags, config, sets):
    """`keras-swish train` arguments for {flag: value}, a --config file and --set items."""
    args = []
    for name, value in flags.items():
        args += ["--" + name.replace("_", "-"), str(value)]
    if config:
        args += ["--config", config]
    for item in sets or ():
        args += ["--set", item]
    return args


# compare's own flags: it sets these per run itself.
_COMPARE_OWN = ("activation", "seed", "output")


def _launch(args):
    from keras_swish.recipes.launch import launch

    return launch(args.workers, args.train_args)


def _search(args):
    import os

    from keras_swish.errors import UsageError
    from keras_swish.recipes import search

    if args.retrain is not None:
        for name in _SEARCH_ONLY:
            if getattr(args, name) is not None:
                flag = "--" + name.replace("_", "-")
                raise UsageError(
                    f"{flag} is for a search; --retrain K trains the top K formulas of "
                    "--output with --seeds, --parallel and the runs' flags. "
                    f"Received: {flag} {getattr(args, name)}"
                )
        return _retrain(args)
    budget = "--steps and --validations (a child's budget)"
    instead = {"seeds": "--seed", "parallel": "--workers N"}
    for name in (*_RETRAIN_ONLY, *instead):
        if getattr(args, name) is not None:
            flag = "--" + name.replace("_", "-")
            raise UsageError(
                f"{flag} is for --retrain runs; a search takes {instead.get(name, budget)}. "
                f"Received: {flag} {getattr(args, name)}"
            )
    flags = {name: getattr(args, name) for name in _all_flags() if name not in _SEARCH_OWN}
    flags = {name: value for name, value in flags.items() if value is not None}
    space, settings = search.plan(
        experiment=args.experiment or "resnet20",
        strategy=args.strategy or "exhaustive",
        units=1 if args.units is None else args.units,
        unary=_names(args.unary),
        binary=_names(args.binary),
        max_trials=args.max_trials,
        steps=args.steps,
        validations=args.validations,
        seed=0 if args.seed is None else args.seed,
        train_flags=flags,
        overrides=parse_set(args.set),
        config_file=args.config,
    )
    output = args.output or search.default_output(settings)
    if args.workers is not None:
        if args.workers < 1:
            raise UsageError(f"--workers must be at least 1. Received: --workers {args.workers}")
        if "KERASTUNER_TUNER_ID" in os.environ:
            raise UsageError(
                "--workers starts a chief and workers itself; leave it out where "
                "KERASTUNER_TUNER_ID is set (a process of a distributed search)."
            )
        # The same command for each process, less --workers and --output (argparse
        # takes no abbreviations of search's flags, so these are all their spellings).
        argv = args.argv[args.argv.index("search") + 1 :]
        argv = _without(argv, ("--workers", "--output"))
        return search.run_workers(args.workers, argv, output)
    record = search.search(space, settings, output)
    if record is None:  # a distributed worker
        return 0
    print(open(os.path.join(output, "leaderboard.md"), encoding="utf-8").read())
    print(
        f"Leaderboard: {output}/leaderboard.md, .csv, .json; plots: {output}/curves.png, "
        f"{output}/rewards.png"
    )
    return 0


def _names(text):
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]


def _without(argv, options):
    """`argv` without `options` and their values (`--opt V` or `--opt=V`)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in options:
            skip = True
        elif not any(arg.startswith(o + "=") for o in options):
            out.append(arg)
    return out


def _retrain(args):
    import os

    from keras_swish.errors import UsageError
    from keras_swish.recipes import search

    args.seeds = 3 if args.seeds is None else args.seeds  # compare's defaults
    args.parallel = 1 if args.parallel is None else args.parallel

    if args.output is None or args.experiment is None:
        raise UsageError(
            "--retrain K needs the EXPERIMENT to train and the search's --output folder, "
            "e.g. search --retrain 8 preact_resnet164/cifar10 --output runs/search-..."
        )
    if args.retrain < 1:
        raise UsageError(f"--retrain must be at least 1. Received: --retrain {args.retrain}")
    formulas = search.top_formulas(args.output, args.retrain)
    activations = ("relu", *(f"expr:{f}" for f in formulas))
    if args.precision is None:
        from keras_swish.recipes.core import runner

        _, _, probe = runner.resolve(
            args.experiment, config_file=args.config, overrides=parse_set(args.set)
        )
        if probe.train.precision == "auto":
            # As the search trained them (`search.plan`): float32, not float16 on a
            # GPU, where a formula checked finite in float64 can overflow.
            args.precision = "float32"
    output = os.path.join(args.output, "retrain-" + args.experiment.replace("/", "-"))
    print(f"Retraining the top {len(formulas)} of {args.output} against relu: {output}")
    return _run_compare(args, [args.experiment], activations, output)


# search's own flags: it sets these per child itself (`--strategy` is the
# search's; a child's tf.distribute strategy is `--set train.strategy=...`).
_SEARCH_OWN = ("activation", "seed", "output", "epochs", "steps_per_epoch", "strategy")
_RETRAIN_ONLY = ("epochs", "steps_per_epoch")  # --retrain's compare runs take them
# A search's own settings: --retrain refuses them (it would drop them unread).
_SEARCH_ONLY = (
    "strategy",
    "units",
    "unary",
    "binary",
    "max_trials",
    "steps",
    "validations",
    "seed",
    "workers",
)


def _translate(args):
    import sys

    from keras_swish.recipes.tasks.translation import translator

    translate = translator(args.run_dir, args.beam_size, args.length_penalty)
    for line in translate(sys.stdin.read().splitlines()):
        print(line)
    return 0


def add_subcommands(subparsers):
    """Adds `recipes`, `train`, `evaluate`, `compare`, `launch`, `search` and `translate`
    to `keras-swish`'s subparsers."""
    recipes = subparsers.add_parser(
        "recipes",
        help="list the recipes and experiments; one's settings and schedule",
        description=(
            "Without NAME: every recipe and its named experiments. With a recipe or "
            "experiment NAME: its reference, resolved settings and learning rate at "
            "0/25/50/75/100 % of training."
        ),
    )
    recipes.add_argument("name", metavar="NAME", nargs="?", help="a recipe or experiment")
    recipes.set_defaults(handler=_recipes)

    train = subparsers.add_parser(
        "train",
        help="train a recipe (embedded data by default)",
        description=(
            "Trains an experiment (mobilenet/imagenet, ...) or a recipe (mobilenet: its "
            "experiment for --data, else its embedded one). Settings: the recipe's "
            "reference defaults, then the experiment's, then --config, then flags and "
            "--set (null for None). Re-running the same command resumes an interrupted "
            "run where it stopped; a larger --epochs continues a finished one."
        ),
    )
    train.add_argument("recipe", metavar="RECIPE|EXPERIMENT", help="see `keras-swish recipes`")
    for name, kwargs in _all_flags().items():
        train.add_argument("--" + name.replace("_", "-"), dest=name, **kwargs)
    train.add_argument("--config", metavar="YAML", help="a YAML file of config sections")
    train.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override one config key, e.g. optimizer.learning_rate=0.2 (repeatable)",
    )
    train.add_argument(
        "--verbose",
        default="auto",
        choices=("auto", "0", "1", "2"),
        help=(
            "Keras progress output: 1 a progress bar, 2 one line per epoch, 0 none; "
            "auto (default) is 1 on a terminal and 2 when the output goes to a file or pipe"
        ),
    )
    train.set_defaults(handler=_train)

    evaluate = subparsers.add_parser(
        "evaluate",
        help="evaluate the model a run reports",
        description=(
            "Evaluates the model RUN_DIR's metrics.json reports (averaged.keras for a run "
            "with train.average_last, else best.keras; final.keras if there is none) on "
            "validation and test data."
        ),
    )
    evaluate.add_argument("run_dir", metavar="RUN_DIR")
    evaluate.add_argument("--data", metavar="SPEC", help="default: the run's own data")
    evaluate.add_argument("--data-dir", dest="data_dir", metavar="DIR")
    evaluate.add_argument("--batch-size", dest="batch_size", type=int, metavar="N")
    evaluate.set_defaults(handler=_evaluate)

    compare = subparsers.add_parser(
        "compare",
        help="activations × seeds (× learning rates) of an experiment: the paper's tables",
        description=(
            "Trains EXPERIMENT (or several, comma-separated) once per activation and seed "
            "(and learning rate), each an ordinary run in its own folder under --output, "
            "and writes results.md (the paper's layout: median, mean ± std, every run, a "
            "paired comparison with --baseline: Student-t 95 % interval and sign test), "
            "results.csv, results.json, PNG plots and a TensorBoard HParams dashboard. "
            "Finished runs are reused and interrupted ones resume: re-running the same "
            "command after a kill only trains what is left; a larger --epochs continues "
            "finished runs, other changed settings are refused (exit 2)."
        ),
    )
    compare.add_argument("experiments", metavar="EXPERIMENT[,EXPERIMENT...]")
    compare.add_argument(
        "--activations",
        required=True,
        metavar="LIST",
        help="comma-separated names, or 'paper' for "
        "relu,leaky_relu,prelu,softplus,elu,selu,gelu,swish,swish_beta",
    )
    compare.add_argument("--seeds", type=int, default=3, metavar="N", help="seeds 0..N-1 (3)")
    compare.add_argument(
        "--learning-rates",
        dest="learning_rates",
        metavar="A,B,...",
        help=(
            "try each (optimizer.learning_rate; the Transformer's optimizer.scale, a multiple "
            "of Vaswani's rate); keep the best per activation on validation "
            "(default: the experiment's)"
        ),
    )
    compare.add_argument(
        "--baseline", default="relu", metavar="NAME", help="one of --activations (default relu)"
    )
    compare.add_argument(
        "--parallel",
        type=int,
        default=1,
        metavar="K",
        help="runs at a time, each on its own GPU (or share of CPU cores)",
    )
    for name, kwargs in _all_flags().items():
        if name not in _COMPARE_OWN:
            compare.add_argument("--" + name.replace("_", "-"), dest=name, **kwargs)
    compare.add_argument(
        "--output", metavar="DIR", help="default runs/compare-EXPERIMENT[+EXPERIMENT...]"
    )
    compare.add_argument("--config", metavar="YAML", help="a YAML file of config sections")
    compare.add_argument("--set", action="append", metavar="KEY=VALUE", help="for every run")
    compare.set_defaults(handler=_compare)

    launch = subparsers.add_parser(
        "launch",
        help="train with N worker processes on this machine (multi-worker on loopback)",
        description=(
            "Starts N `keras-swish train EXPERIMENT [train flags]` workers, each with a "
            "TF_CONFIG naming all of them on free 127.0.0.1 ports, so that they train "
            "together under MultiWorkerMirroredStrategy (worker 0 is the chief and writes "
            "the run folder). Streams the chief's output; stops every worker when one "
            "fails or when this command is stopped (even by kill -9). Re-running the same "
            "command resumes the run."
        ),
    )
    launch.add_argument("--workers", type=int, required=True, metavar="N", help="at least 2")
    launch.add_argument(
        "train_args",
        nargs=argparse.REMAINDER,
        metavar="EXPERIMENT [train flags]",
        help="what `keras-swish train` takes",
    )
    launch.set_defaults(handler=_launch)

    search = subparsers.add_parser(
        "search",
        allow_abbrev=False,  # --workers re-runs the command without --workers: no prefixes
        help="the paper's activation search (KerasTuner): exhaustive, random or RNN + PPO",
        description=(
            "Searches the paper's space of activations built from core units "
            "b(u1(x1), u2(x2)): each candidate (a formula) is checked (constant, not finite "
            "or flat ones are rejected; equivalent ones collapse into one), then trained as "
            "the child EXPERIMENT (default resnet20: the embedded digits, or --data "
            "tfds:cifar10 as in the paper) for a fixed step budget; reward = best validation "
            "accuracy. Writes leaderboard.md/.csv/.json, curves.png and rewards.png in "
            "--output. Re-running the same command resumes a killed search. With "
            "KERASTUNER_TUNER_ID/KERASTUNER_ORACLE_IP/KERASTUNER_ORACLE_PORT set it runs as "
            "the chief or a worker of a distributed search; --workers N starts both here. "
            "--retrain K EXPERIMENT hands the top K formulas to `compare` against relu."
        ),
    )
    search.add_argument(
        "experiment",
        metavar="EXPERIMENT",
        nargs="?",
        help="the child (default resnet20); with --retrain, the experiment to retrain on",
    )
    search.add_argument("--strategy", metavar="NAME", help="exhaustive (default), random, rnn")
    search.add_argument("--units", type=int, metavar="N", help="core units, 1-3 (1)")
    from keras_swish.expressions.space import BINARY, UNARY

    search.add_argument(
        "--unary",
        metavar="LIST",
        help=f"unary functions, comma-separated (default: the paper's 25: {','.join(UNARY)})",
    )
    search.add_argument(
        "--binary",
        metavar="LIST",
        help=f"binary functions, comma-separated (default: the paper's 10: {','.join(BINARY)})",
    )
    search.add_argument(
        "--max-trials",
        dest="max_trials",
        type=int,
        metavar="N",
        help="children to train at most (needed by random and rnn)",
    )
    search.add_argument(
        "--steps",
        type=int,
        metavar="N",
        help="child training steps (default 10000 as in the paper; 40 on the embedded digits)",
    )
    search.add_argument(
        "--validations",
        type=int,
        metavar="N",
        help="validations (and checkpoints) per child (default 10; 1 on the embedded digits)",
    )
    search.add_argument("--seed", type=int, metavar="N", help="strategy and child seed (0)")
    search.add_argument(
        "--workers", type=int, metavar="N", help="start a chief oracle and N workers here"
    )
    search.add_argument(
        "--retrain", type=int, metavar="K", help="compare the top K with relu on EXPERIMENT"
    )
    search.add_argument("--seeds", type=int, metavar="N", help="with --retrain (3)")
    search.add_argument(
        "--parallel", type=int, metavar="K", help="with --retrain: runs at a time (1)"
    )
    for name, kwargs in _all_flags().items():
        if name not in _SEARCH_OWN or name in _RETRAIN_ONLY:
            if name in _RETRAIN_ONLY:
                kwargs = dict(
                    kwargs, help="with --retrain: the runs' (a child's budget is --steps)"
                )
            search.add_argument("--" + name.replace("_", "-"), dest=name, **kwargs)
    search.add_argument(
        "--output",
        metavar="DIR",
        help="the search folder (default runs/search-EXPERIMENT-STRATEGY)",
    )
    search.add_argument("--config", metavar="YAML", help="a YAML file of config sections")
    search.add_argument("--set", action="append", metavar="KEY=VALUE", help="for every child")
    search.set_defaults(handler=_search)

    translate = subparsers.add_parser(
        "translate",
        help="translate stdin with a transformer_nmt run",
        description=(
            "Reads one sentence a line on stdin and prints one translation a line, "
            "with the model RUN_DIR's metrics.json reports (averaged.keras, else "
            "best.keras) and its SentencePiece model."
        ),
    )
    translate.add_argument("run_dir", metavar="RUN_DIR")
    translate.add_argument(
        "--beam-size", dest="beam_size", type=int, metavar="N", help="default: the run's"
    )
    translate.add_argument(
        "--length-penalty",
        dest="length_penalty",
        type=float,
        metavar="A",
        help="default: the run's",
    )
    translate.set_defaults(handler=_translate)


__all__ = ["add_subcommands"]
