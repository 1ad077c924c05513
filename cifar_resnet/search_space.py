"""The design space a search samples from, as plain data a student can read, narrow or fix.

A space is a dict (or a JSON file) of three parts::

    {"base": "cpu-fast",                        # the preset whose recipe every trial starts from
     "model": {"style": "airbench",             # the course family's letters: N, B_i, C_i, F, K, P
               "stages": [3, 4],
               "blocks": [1, 2],
               "channels": [[32, 64, 96], [64, 128, 192, 256], [128, 256, 384], [256, 384, 512]],
               "kernel": 3, "skip_kernel": 1, "pool": "global"},
     "train": {"lr": {"low": 0.5, "high": 3.0, "log": true},   # any TrainConfig field
               "label_smoothing": [0.0, 0.1, 0.2]}}

Every value says how it is searched: a scalar is fixed, a list is a choice among its items, a dict
``{"low", "high", "log"}`` is a range (integers when both ends are). For the per-stage letters (blocks,
channels, kernel, skip_kernel) a list of lists gives each stage its own choices; a plain list is the same
choice for every stage, and each stage draws its own. ``pool`` may be "global": the whole last feature map.
Optuna names the parameters ``stages``, ``blocks_1``, ``channels_2``, ..., ``lr``.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any

from .budget import count_parameters
from .config import PARAMETER_BUDGET, STYLES, ConfigurationError, ModelConfig, TrainConfig, get_preset

PER_STAGE = ("blocks", "channels", "kernel", "skip_kernel")
MODEL_KEYS = ("style", "stages", *PER_STAGE, "pool")
SET_BY_THE_SEARCH = {"epochs": "--epochs-per-trial", "minutes": "--minutes-per-trial",
                     "val_size": "the search (it always scores on the 10% validation split)",
                     "seed": "--seed"}
GLOBAL_POOL = "global"

DEFAULT_SPACE: dict[str, Any] = {
    "base": "cpu-fast",
    "model": {
        "style": "airbench",
        "stages": [3, 4],
        "blocks": [1, 2],
        "channels": [[32, 64, 96], [64, 128, 192, 256], [128, 256, 384], [256, 384, 512]],
        "kernel": 3,
        "skip_kernel": 1,
        "pool": GLOBAL_POOL,
    },
    "train": {
        "lr": {"low": 0.5, "high": 3.0, "log": True},
        "weight_decay": {"low": 2e-4, "high": 2e-3, "log": True},
        "label_smoothing": [0.0, 0.1, 0.2],
        "erasing": [0.0, 0.25, 0.5],
        "randaugment": [False, True],
        "batch_size": [256, 512, 1024],
        "optimizer": ["sgd", "muon"],
    },
}


def is_range(value) -> bool:
    return isinstance(value, dict)


def is_choice(value) -> bool:
    return isinstance(value, list)


def load_space(source: str | Path | dict | None) -> dict:
    """The space in ``source`` (a dict, a JSON file, or None for DEFAULT_SPACE), checked."""
    if source is None:
        space = json.loads(json.dumps(DEFAULT_SPACE))
    elif isinstance(source, dict):
        space = json.loads(json.dumps(source))  # a plain, private copy
    else:
        path = Path(source)
        try:
            space = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigurationError(f"space file {path} does not exist: give a JSON file like "
                                     f"cifar_resnet.search_space.DEFAULT_SPACE") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigurationError(f"space file {path} is not valid JSON ({e}): fix it, or leave --space out "
                                     f"for the default space") from None
    check_space(space)
    return space


def check_space(space: dict) -> None:
    """Raise ConfigurationError naming the first key or value that no search could use."""
    if not isinstance(space, dict):
        raise ConfigurationError(f"a space is a JSON object with 'base', 'model' and 'train'; "
                                 f"got {type(space).__name__}")
    unknown = sorted(set(space) - {"base", "model", "train"})
    if unknown:
        raise ConfigurationError(f"unknown space keys {unknown}: a space has 'base', 'model' and 'train'")
    base = base_recipe(space)
    model = space.get("model", {})
    unknown = sorted(set(model) - set(MODEL_KEYS))
    if unknown:
        raise ConfigurationError(f"unknown model keys {unknown} in the space; known: {list(MODEL_KEYS)}")
    for key, value in model.items():
        _check_values(f"model.{key}", value, per_stage=key in PER_STAGE)
    for style in _options(model.get("style", "torchvision")):
        if style not in STYLES:
            raise ConfigurationError(f"model.style {style!r} in the space: use one of {STYLES}")
    for stages in _options(model.get("stages", 3)):
        if not isinstance(stages, int) or isinstance(stages, bool) or stages < 1:
            raise ConfigurationError(f"model.stages {stages!r} in the space: a stage count is an integer >= 1")
        for key in PER_STAGE:
            if key in model:
                stage_options(model[key], stages - 1, stages, key)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for key, value in space.get("train", {}).items():
        if key in SET_BY_THE_SEARCH:
            raise ConfigurationError(f"train.{key} is set by {SET_BY_THE_SEARCH[key]}: leave it out of the space")
        if key not in fields:
            raise ConfigurationError(f"train.{key} in the space is not a training setting; known: {sorted(fields)}")
        _check_values(f"train.{key}", value, per_stage=False)
        for option in _options(value):  # each value must make a valid recipe
            dataclasses.replace(base, **{key: option})


def _check_values(name: str, value, per_stage: bool) -> None:
    if is_range(value):
        if sorted(value) not in (["high", "low"], ["high", "log", "low"]):
            raise ConfigurationError(f"{name} = {value}: a range is {{\"low\": ..., \"high\": ..., \"log\": false}}")
        low, high = value["low"], value["high"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or low >= high:
            raise ConfigurationError(f"{name} = {value}: a range needs numbers with low < high")
        if value.get("log") and low <= 0:
            raise ConfigurationError(f"{name} = {value}: a log range needs low > 0")
    elif is_choice(value):
        if not value:
            raise ConfigurationError(f"{name} = []: give at least one choice")
        if per_stage and any(is_choice(v) for v in value):
            for i, stage in enumerate(value, start=1):
                _check_values(f"{name}[stage {i}]", stage if is_choice(stage) else [stage], per_stage=False)
        elif any(isinstance(v, (list, dict)) for v in value):
            raise ConfigurationError(f"{name} = {value}: choices are plain values")


def _options(value) -> list:
    """The values a fixed value or a choice allows (a range's ends)."""
    if is_range(value):
        return [value["low"], value["high"]]
    return value if is_choice(value) else [value]


def base_recipe(space: dict) -> TrainConfig:
    """The recipe of the space's base preset, scored on the 10% validation split."""
    return dataclasses.replace(get_preset(space.get("base", "cpu-fast")).train, val_size=None)


def stage_options(value, stage: int, stages: int, name: str) -> list:
    """The values stage ``stage`` (0-based) of a network of ``stages`` may take under ``value``."""
    if is_choice(value) and any(is_choice(v) for v in value):
        if len(value) < stages:
            raise ConfigurationError(f"model.{name} gives choices for {len(value)} stages, but the space allows "
                                     f"{stages}: give one list per stage, up to the most stages")
        per_stage = value[stage]
        return per_stage if is_choice(per_stage) else [per_stage]
    return _options(value)


class Sampler:
    """Draws one configuration from a space through a ``suggest`` callable: ``suggest(name, value)`` returns a
    value for a choice or a range (an Optuna trial's suggest_* behind it) and is never called for fixed values."""

    def __init__(self, space: dict, suggest):
        self.space, self.suggest = space, suggest

    def draw(self, name: str, value):
        if is_range(value) or (is_choice(value) and len(value) > 1):
            return self.suggest(name, value)
        return value[0] if is_choice(value) else value

    def model(self) -> ModelConfig:
        model = self.space.get("model", {})
        stages = self.draw("stages", model.get("stages", 3))
        style = self.draw("style", model.get("style", "torchvision"))
        per_stage = {}
        for key in PER_STAGE:
            value = model.get(key, getattr(ModelConfig, key) if key in ("kernel", "skip_kernel") else None)
            if value is None:
                raise ConfigurationError(f"the space's model needs {key!r}")
            per_stage[key] = tuple(self.draw(f"{key}_{i + 1}", _stage_value(value, i, stages, key))
                                   for i in range(stages))
        downsample = "maxpool" if style == "airbench" else "stride"
        pool = self.draw("pool", model.get("pool", GLOBAL_POOL))
        if pool == GLOBAL_POOL:
            probe = ModelConfig(**per_stage, pool=1, downsample=downsample, style=style)
            pool = probe.feature_sizes[-1]
        return ModelConfig(**per_stage, pool=pool, downsample=downsample, style=style)

    def recipe(self, base: TrainConfig) -> TrainConfig:
        changes = {key: self.draw(key, value) for key, value in self.space.get("train", {}).items()}
        return dataclasses.replace(base, **changes)


def _stage_value(value, stage: int, stages: int, name: str):
    """A per-stage letter's value for one stage, as fixed or choice data for ``Sampler.draw``."""
    options = stage_options(value, stage, stages, name)
    return options if len(options) > 1 else options[0]


def _cheapest(name: str, value):
    """The option of ``value`` with the fewest parameters: every letter's smallest, and the widest pool."""
    if name == "pool":
        return GLOBAL_POOL if GLOBAL_POOL in value else max(value)
    return value["low"] if is_range(value) else min(value)


def smallest_model(space: dict) -> ModelConfig:
    """The space's cheapest network: the fewest parameters over its stage counts and styles, each letter at its
    cheapest (the count grows with every one of B_i, C_i, F and K, and shrinks as P grows)."""
    model = space.get("model", {})
    shapes = itertools.product(_options(model.get("stages", 3)), _options(model.get("style", "torchvision")))
    candidates = [Sampler({"model": {**model, "stages": stages, "style": style}}, _cheapest).model()
                  for stages, style in shapes]
    return min(candidates, key=lambda config: count_parameters(config).total)


def check_budget(space: dict, budget: int = PARAMETER_BUDGET) -> int:
    """The smallest network's parameter count; ConfigurationError when even it is over ``budget``."""
    config = smallest_model(space)
    total = count_parameters(config).total
    if total > budget:
        raise ConfigurationError(f"no configuration in the space fits the {budget:,}-parameter budget: the smallest, "
                                 f"{config.code()}, has {total:,}; allow fewer blocks or channels")
    return total
