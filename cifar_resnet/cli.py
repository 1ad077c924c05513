"""``python -m cifar_resnet {params,train,evaluate,predict,handin,search}``: the package for long runs outside Jupyter.

User errors print one line on stderr and exit with status 2, without a traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from .config import ADAPT_MODES, AMP_MODES, DEFAULT_PRESET, DOWNSAMPLING, STYLES, SUBMISSION_COLUMNS, TTA_MODES
from .errors import CifarResnetError


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model (a preset, optionally changed by the flags below)")
    g.add_argument("--preset", help=f"named configuration (default {DEFAULT_PRESET!r}); "
                                    "see `python -m cifar_resnet params --list`")
    g.add_argument("--blocks", type=int, nargs="+", metavar="B", help="BasicBlocks per stage, e.g. 3 4 3")
    g.add_argument("--channels", type=int, nargs="+", metavar="C", help="channels per stage, e.g. 66 132 264")
    g.add_argument("--kernel", type=int, nargs="+", metavar="F", help="conv kernel size, one or per stage")
    g.add_argument("--skip-kernel", type=int, nargs="+", metavar="K", help="shortcut kernel size, one or per stage")
    g.add_argument("--pool", type=int, metavar="P",
                   help="pool kernel before the classifier (average; max with --style airbench)")
    g.add_argument("--downsample", choices=DOWNSAMPLING,
                   help="how stages 2..N halve the map: a stride-2 conv, or a conv then a 2x2 max pool")
    g.add_argument("--style", choices=STYLES,
                   help="layer style: torchvision's ResNet, or airbench's residual network (2x2 patch stem, "
                        "each stage a max-pooled conv then BasicBlocks, GELU)")
    g.add_argument("--model", metavar="MODULE:BUILDER",
                   help="your own network instead: a function in MODULE (e.g. mynet.py in this folder) that "
                        "returns an nn.Module mapping (N, 3, 32, 32) images to (N, 10) logits")
    g.add_argument("--model-kwargs", metavar="JSON", help="keyword arguments for --model's builder, e.g. '{\"width\": 32}'")


def _add_tta_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tta", nargs="?", const="flip", default="off", choices=TTA_MODES,
                   help="test-time augmentation: --tta averages each image with its mirror image; "
                        "--tta flip-shift also with both moved one pixel (6 views)")


def model_config_from_args(args):
    """The network: --model's builder, or the ModelConfig named by --preset (default: course)
    with any explicit flags applied."""
    from .config import ConfigurationError, ModelConfig, get_preset
    from .network import Builder

    shape_flags = [name for name in ("preset", "blocks", "channels", "kernel", "skip_kernel", "pool", "downsample",
                                     "style") if getattr(args, name) is not None]
    if args.model:
        if shape_flags:
            raise ConfigurationError(f"--model names your own network: leave out --{shape_flags[0].replace('_', '-')}")
        return Builder.parse(args.model, args.model_kwargs)

    base = get_preset(args.preset or DEFAULT_PRESET).model.to_dict()
    for name in ("kernel", "skip_kernel"):  # a uniform per-stage value survives a change of N
        if len(set(base[name])) == 1:
            base[name] = base[name][0]
    for name in ("blocks", "channels", "kernel", "skip_kernel"):
        value = getattr(args, name)
        if value is not None:
            base[name] = value[0] if name in ("kernel", "skip_kernel") and len(value) == 1 else value
    for name in ("pool", "downsample", "style"):
        if getattr(args, name) is not None:
            base[name] = getattr(args, name)
    return ModelConfig(**base)


def _parse_setting(text: str) -> tuple[str, object]:
    """``NAME=VALUE`` for a TrainConfig field, VALUE converted to the field's type."""
    from .config import ConfigurationError, TrainConfig

    name, sep, raw = text.partition("=")
    name = name.strip().replace("-", "_")
    fields = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    if not sep or name not in fields:
        raise ConfigurationError(f"--set {text!r}: give NAME=VALUE with NAME one of {sorted(fields)}")
    kinds = [kind.strip() for kind in fields[name].split("|")]
    if raw.lower() == "none" and "None" in kinds:
        return name, None
    booleans = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    try:
        if kinds[0] == "bool":
            return name, booleans[raw.lower()]
        return name, {"int": int, "float": float, "str": str}[kinds[0]](raw)
    except (KeyError, ValueError):
        raise ConfigurationError(f"--set {name}={raw}: {name} takes a value of type {fields[name]}") from None


def train_config_from_args(args, config=None):
    """The TrainConfig ``config`` (default: --preset's, else the course's), changed by the explicit flags and every
    --set. --epochs without --minutes trains for those epochs, even where the recipe gives minutes."""
    from .config import get_preset

    config = config or get_preset(args.preset or DEFAULT_PRESET).train
    minutes = args.minutes if args.minutes is not None or args.epochs is None else "epochs"
    changes = {k: v for k, v in {"epochs": args.epochs, "minutes": minutes, "batch_size": args.batch_size,
                                 "lr": args.lr, "amp": args.amp, "seed": args.seed,
                                 "randaugment": args.randaugment or None, "compile": args.compile or None,
                                 }.items() if v is not None}
    if changes.get("minutes") == "epochs":
        changes["minutes"] = None
    changes.update(_parse_setting(text) for text in args.set)
    return dataclasses.replace(config, **changes)


def cmd_params(args) -> None:
    from .budget import count_parameters
    from .config import PRESETS

    if args.list:
        for name, preset in PRESETS.items():
            report = count_parameters(preset.model)
            print(f"{name:<12} {report.total:>10,}  {preset.description}")
        return
    report = count_parameters(model_config_from_args(args))
    if args.json:
        print(json.dumps({**report.to_dict(), "layers": [vars(layer) for layer in report.layers]}))
    else:
        print(report.config.code())
        print(report.table())
        print()
        print(report.layer_table())


def cmd_train(args) -> None:
    from .data import load_cifar10
    from .device import select_device
    from .network import Builder
    from .train import fit

    device = select_device(args.device)
    if args.from_study:
        model_config, config = best_of_study(args)
    else:
        model_config = model_config_from_args(args)
        if isinstance(model_config, Builder):
            model_config.build()  # a broken builder fails here, before the data is read
        config = train_config_from_args(args)
    data = load_cifar10(args.data, smoke=args.smoke or None, download=args.download)
    print(data, file=sys.stderr)
    result = fit(model_config, config, data, args.out, device=device, resume=args.resume)
    print(f"{result.summary()}; checkpoint {result.checkpoint_path}")


def best_of_study(args):
    """``train --from-study``: the best trial's network, and its recipe changed by the training flags."""
    from .config import ConfigurationError
    from .search import best_configuration, load_study

    shape_flags = [name for name in ("preset", "blocks", "channels", "kernel", "skip_kernel", "pool", "downsample",
                                     "style", "model") if getattr(args, name) is not None]
    if shape_flags:
        raise ConfigurationError(f"--from-study trains the study's best network: leave out "
                                 f"--{shape_flags[0].replace('_', '-')}")
    best, model, recipe = best_configuration(load_study(args.from_study, args.search_out, args.storage))
    print(f"study {args.from_study}: trial {best['number']}, val_acc {best['value']:.4f} in the search, "
          f"{best['parameters']:,} parameters: {model.code()}", file=sys.stderr)
    return model, train_config_from_args(args, recipe)


def cmd_search(args) -> None:
    from .data import load_cifar10
    from .device import select_device
    from .search import TrialBudget, leaderboard, leaderboard_table, load_study, open_search

    if args.show:
        board = leaderboard(load_study(args.study, args.out, args.storage))
        print(json.dumps(board) if args.json else leaderboard_table(board))
        return
    if args.trials is None or (args.minutes_per_trial is None) == (args.epochs_per_trial is None):
        raise CifarResnetError("search needs --trials N and one of --minutes-per-trial M or --epochs-per-trial E "
                               "(or --show for the leaderboard)")
    budget = TrialBudget(epochs=args.epochs_per_trial, minutes=args.minutes_per_trial)
    device = select_device(args.device)
    search = open_search(args.study, budget, space=args.space, objectives=tuple(args.objectives), out=args.out,
                         storage=args.storage, heartbeat_seconds=args.heartbeat)
    data = load_cifar10(args.data, smoke=args.smoke or None)
    print(data, file=sys.stderr)
    study = search.run(args.trials, data, device=device, seed=args.seed)
    print(leaderboard_table(leaderboard(study)))


def cmd_evaluate(args) -> None:
    from .checkpoint import load_model
    from .data import load_cifar10
    from .device import Compute
    from .evaluate import evaluate

    compute = Compute.choose(args.device)  # the GPU when there is one, as for training
    model, ckpt = load_model(args.checkpoint, compute.device)
    data = load_cifar10(args.data, smoke=args.smoke or None)
    result = evaluate(model, data.test_images, data.test_labels, ckpt.normalization, tta=args.tta, compute=compute)
    if args.json:
        print(json.dumps({**result.to_dict(), "checkpoint": str(args.checkpoint), "data": data.source,
                          "synthetic": data.synthetic, "tta": args.tta}))
    else:
        print(f"{data}\naccuracy {result.accuracy:.4f} on {len(data.test_labels):,} test images"
              f"{'' if args.tta == 'off' else f' (TTA {args.tta})'}")
        for name, acc in result.per_class.items():
            print(f"  {name:<11} {acc:.4f}")


def cmd_predict(args) -> None:
    import warnings

    from .device import select_device
    from .kaggle import DistributionShiftWarning, predict_submission, prediction_record, record_path

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DistributionShiftWarning)
        path = predict_submission(args.checkpoint, args.pkl, args.out, tta=args.tta, adapt=args.adapt,
                                  columns=tuple(args.columns), device=select_device(args.device))
    for warning in caught:  # the shift as one plain line; any other warning as it came
        if issubclass(warning.category, DistributionShiftWarning):
            print(f"warning: {warning.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    record = prediction_record(path)
    print(f"{record['test_time_adaptation']}\nwrote and validated {path} (what was done: {record_path(path)})")


def cmd_handin(args) -> None:
    from .data import load_cifar10
    from .handin import make_handin

    data = load_cifar10(args.data, smoke=args.smoke or None) if args.data or args.smoke else None
    manifest = make_handin(args.run_dir, args.submission, args.plots, args.out, data=data, labels_csv=args.labels)
    print(manifest.read_text())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cifar_resnet", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("params", help="parameter table, FLOPs and the 5M budget verdict")
    _add_model_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object (total, fits_budget, flops, ...)")
    p.add_argument("--list", action="store_true", help="list the presets and their sizes")
    p.set_defaults(run=cmd_params)

    p = sub.add_parser("train", help="train a model, checkpointing every epoch")
    _add_model_args(p)
    p.add_argument("--data", help="folder holding cifar-10-batches-py (default $CIFAR_RESNET_DATA or ./data)")
    p.add_argument("--out", required=True, help="run folder for checkpoint.pt, history.json, history.csv")
    p.add_argument("--epochs", type=int)
    p.add_argument("--minutes", type=float, help="train for this long; the LR schedule fits the time")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--amp", choices=AMP_MODES)
    p.add_argument("--randaugment", action="store_true", help="add torchvision's RandAugment (slower)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--seed", type=int)
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="any other training setting, e.g. --set weight_decay=1e-3 --set lookahead=true "
                        "(the fields of TrainConfig)")
    p.add_argument("--smoke", action="store_true", help="tiny subset (or synthetic data when none is found)")
    p.add_argument("--download", action="store_true", help="download CIFAR-10 if it is not found")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--device", help="cpu, cuda or mps (default: cuda, else mps, when available)")
    p.add_argument("--from-study", metavar="NAME", help="train the best configuration of a search's study "
                                                         "(its network and recipe; the flags above change the recipe)")
    p.add_argument("--storage", metavar="URL", help="the study's database, as for search (default: "
                                                    "$CIFAR_RESNET_STORAGE, a Colab or Kaggle secret, else embedded)")
    p.add_argument("--search-out", default="searches", metavar="DIR",
                   help="the search's --out, where an embedded study lives (default: searches)")
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("evaluate", help="accuracy of a checkpoint on the test batch")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", help="folder holding cifar-10-batches-py")
    _add_tta_arg(p)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--json", action="store_true", help="print one JSON object (accuracy, per_class, ...)")
    p.add_argument("--device", help="cpu, cuda or mps (default: cuda, else mps, when available)")
    p.set_defaults(run=cmd_evaluate)

    p = sub.add_parser("predict", help="write and validate a Kaggle submission.csv")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--pkl", required=True, help="the unlabeled test pickle")
    p.add_argument("--out", default="submission.csv")
    _add_tta_arg(p)
    p.add_argument("--adapt", choices=ADAPT_MODES, default="auto",
                   help="re-estimate BatchNorm's statistics on the test images: when the shift check fires (auto, "
                        "the default), never (off) or always")
    p.add_argument("--columns", nargs=2, default=list(SUBMISSION_COLUMNS), metavar=("ID", "LABEL"))
    p.add_argument("--device", help="cpu, cuda or mps (default: cuda, else mps, when available)")
    p.set_defaults(run=cmd_predict)
    _add_handin_parser(sub)
    _add_search_parser(sub)
    return parser


def _add_search_parser(sub) -> None:
    from .search import DEFAULT_OUT, OBJECTIVES
    from .study_storage import HEARTBEAT_SECONDS

    p = sub.add_parser("search", help="search the design space under the 5M budget with Optuna, alone or as a team")
    p.add_argument("--study", required=True, metavar="NAME", help="the study: every process that names it shares it")
    p.add_argument("--storage", metavar="URL",
                   help="a database the team shares, e.g. postgresql://user:password@host/db (default: "
                        "$CIFAR_RESNET_STORAGE, a Colab or Kaggle secret of that name, else OUT/NAME/study.journal)")
    p.add_argument("--trials", type=int, metavar="N", help="trials to run in this process")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes-per-trial", type=float, metavar="M")
    budget.add_argument("--epochs-per-trial", type=int, metavar="E")
    p.add_argument("--space", metavar="FILE.json", help="the space to search (default: search_space.DEFAULT_SPACE)")
    p.add_argument("--objectives", nargs="+", default=["accuracy"], choices=list(OBJECTIVES),
                   help="accuracy, or accuracy and parameters, or accuracy and seconds (a Pareto front)")
    p.add_argument("--data", help="folder holding cifar-10-batches-py (default $CIFAR_RESNET_DATA or ./data)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"OUT/NAME holds a folder per trial (default {DEFAULT_OUT})")
    p.add_argument("--smoke", action="store_true", help="tiny subset (or synthetic data when none is found)")
    p.add_argument("--seed", type=int, default=0, help="every trial's training seed")
    p.add_argument("--heartbeat", type=int, default=HEARTBEAT_SECONDS, metavar="S",
                   help=f"a database's heartbeat in seconds; a trial is stale after twice that (default {HEARTBEAT_SECONDS})")
    p.add_argument("--device", help="cpu, cuda or mps (default: cuda, else mps, when available)")
    p.add_argument("--show", action="store_true", help="print the study's leaderboard instead")
    p.add_argument("--json", action="store_true", help="with --show: the leaderboard as one JSON object")
    p.set_defaults(run=cmd_search)


def _add_handin_parser(sub) -> None:
    p = sub.add_parser("handin", help="the course hand-in: weights, parameter proof, figures, results, report draft")
    p.add_argument("--run", dest="run_dir", metavar="RUN", required=True, help="the run folder (checkpoint.pt, history.csv, run.json)")
    p.add_argument("--submission", required=True, help="the validated submission.csv")
    p.add_argument("--out", required=True, help="the hand-in folder (one your git repository tracks)")
    p.add_argument("--plots", default="plots", help="where notebook 04 saved the run's figures (default: plots)")
    p.add_argument("--data", help="CIFAR-10 with labelled test images: their accuracy goes into the results")
    p.add_argument("--smoke", action="store_true", help="the smoke subset as --data")
    p.add_argument("--labels", help="true labels of the submission's ids (ID,Labels), where a local copy has them")
    p.set_defaults(run=cmd_handin)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except KeyboardInterrupt as e:  # training's says what it kept (it is a CifarResnetError too)
        print(str(e) or "interrupted; `train --resume` continues from the last checkpoint", file=sys.stderr)
        return 130
    except CifarResnetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
