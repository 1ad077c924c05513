"""Side-by-side experiments: each variant of a recipe trained for the same minutes, scored on one split.

``compare`` trains a list of ``Variant``s one after another, each for the same time budget on the same
validation split (the default 5,000 images held out), and returns a row per variant. The lists defined here are
the ones the notebooks and README discuss:

- ``trick_variants``: airbench94's recipe built up from a plain one, one trick at a time (notebook 03);
- ``batch_variants``: that recipe in batches of 1,024 (airbench94's), 512 and 256, two seeds (03);
- ``optimizer_variants``: cpu-fast's recipe with SGD on every parameter and with Muon on the conv filters, two seeds (03);
- ``stem_bias_variants``: cpu-fast's recipe with its stem bias learning throughout and frozen after 30% (as it is),
  two seeds (README's B6);
- ``muon_rate_variants``: cpu-fast's recipe as it is and with Muon's peak rate halved, doubled, or its momentum
  raised, two seeds (README's B6);
- ``hiverge_variants``: cpu-fast as it is, with SiLU instead of GELU in its stages (``silu_resnet``), with brightness
  and contrast augmentation, and in batches of 1,024, two seeds (README's B6);
- ``augmentation_variants``: airbench94's recipe without augmentation, with flips only, with flips and crops (01);
- ``preset_variants``: each preset's network and recipe for the same minutes (02);
- ``technique_variants``: the course's recipe on airbench's residual network for the same epochs, less one
  technique at a time (01 and 03).

Every list trains airbench's residual network (``AIRBENCH_RESNET``, C = (64, 192, 256)) or the presets' own, as
the committed measurements did; cpu-fast's network is that one with a narrower second stage.

``benchmarks/experiments.py`` runs them on the full training set and saves the rows, stamped with
the machine and the date, in ``cifar_resnet/measured/experiments.json``; ``measured`` reads them back,
so a notebook shows measured numbers without training for an hour.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from importlib import resources

import torch
from torch import nn

from .budget import count_parameters
from .config import (AIRBENCH_RECIPE, AIRBENCH_RESNET, COURSE_RECIPE, ModelConfig, TrainConfig, get_preset,
                     with_batch_size)
from .data import CifarData
from .errors import CifarResnetError
from .evaluate import evaluate
from .model import ResNet, build_model
from .network import Builder, Network
from .train import fit
from .training_state import TrainingDivergedError

MEASURED_FILE = "experiments.json"
TTA = "flip-shift"  # the test-time augmentation scored beside the plain accuracy

# airbench94's tricks, added one at a time to a plain recipe (each row keeps the rows above it)
TRICKS: tuple[tuple[str, dict], ...] = (
    ("plain: SGD, cosine schedule, random flips and crops",
     dict(whiten_stem=False, label_smoothing=0.0, bias_lr_scale=1.0, lookahead=False, alternate_flip=False,
          schedule="cosine")),
    ("+ whitened, frozen stem", dict(whiten_stem=True)),
    ("+ label smoothing 0.2", dict(label_smoothing=0.2)),
    ("+ biases learn 64x faster", dict(bias_lr_scale=64.0)),
    ("+ lookahead (weight averaging)", dict(lookahead=True)),
    ("+ alternating flips", dict(alternate_flip=True)),
    ("+ linear schedule: airbench94's recipe", dict(schedule="linear")),
)
BATCH_SIZES = (1024, 512, 256)  # each at airbench94's learning rate per image: the rate halves with the batch
MUON_CHANGES = (dict(muon_lr=0.06), dict(muon_lr=0.24), dict(muon_momentum=0.8))  # around cpu-fast's 0.12 and 0.6
HIVERGE_BRIGHTNESS_CONTRAST = 0.135  # hiverge's colour jitter: brightness 0.14 and contrast 0.13
SEEDS = (0, 1)  # the lists of close variants (batch sizes, optimizers) run once per seed
AUGMENTATIONS: tuple[tuple[str, dict], ...] = (
    ("no augmentation", dict(flip=False, alternate_flip=False, crop_padding=0)),
    ("flips only", dict(crop_padding=0)),
    ("flips and crops: airbench94's recipe", {}),
)
PRESET_NAMES = ("tiny", "small", "cpu-fast", "four-stage", "reference")
TECHNIQUE_EPOCHS = 20  # about what airbench's residual network trains in 15 minutes on a 2-core CPU
# the course's techniques, each taken out of (or changed in) its recipe in turn
TECHNIQUES: tuple[tuple[str, dict], ...] = (
    ("course's recipe: RandAugment, erasing, LS 0.05", {}),
    ("without RandAugment", dict(randaugment=False)),
    ("without random erasing", dict(erasing=0.0)),
    ("label smoothing 0", dict(label_smoothing=0.0)),
    ("linear schedule instead of warmup + cosine", dict(schedule="linear")),
    ("label smoothing 0.1", dict(label_smoothing=0.1)),
    ("label smoothing 0.2", dict(label_smoothing=0.2)),
    ("crop and flip only (no RandAugment, no erasing)", dict(randaugment=False, erasing=0.0)),
)


@dataclass(frozen=True)
class Variant:
    """One arm of an experiment: a name, a network and its recipe."""

    label: str
    model: Network
    train: TrainConfig


def _timed(train: TrainConfig, minutes: float) -> TrainConfig:
    """The recipe for ``minutes`` on the default validation split, so every variant is scored alike."""
    return dataclasses.replace(train, minutes=minutes, val_size=None)


def trick_variants(minutes: float) -> list[Variant]:
    """airbench94's recipe built up from a plain one, one trick per variant, on airbench's residual network."""
    recipe, variants = {}, []
    for label, changes in TRICKS:
        recipe.update(changes)
        recipe_now = dataclasses.replace(AIRBENCH_RECIPE, **recipe)
        variants.append(Variant(label, AIRBENCH_RESNET, _timed(recipe_now, minutes)))
    return variants


def batch_variants(minutes: float) -> list[Variant]:
    """airbench94's recipe in each of BATCH_SIZES, once per seed of SEEDS."""
    recipes = [dataclasses.replace(with_batch_size(AIRBENCH_RECIPE, batch), seed=seed)
               for seed in SEEDS for batch in BATCH_SIZES]
    return [Variant(f"batches of {r.batch_size:,} (lr {r.lr:g}), seed {r.seed}", AIRBENCH_RESNET, _timed(r, minutes))
            for r in recipes]


def optimizer_variants(minutes: float) -> list[Variant]:
    """cpu-fast's recipe with airbench94's optimizer (SGD on every parameter) and as it is (Muon on the conv
    filters), once per seed of SEEDS; both with airbench's whitening epsilon and a stem bias that never freezes, as
    the committed table measured them (before cpu-fast's became 0.02 and 0.3), so the SGD arm is the batch variant
    of the same batch size."""
    recipe = dataclasses.replace(get_preset("cpu-fast").train, whiten_eps=AIRBENCH_RECIPE.whiten_eps,
                                 stem_bias_until=AIRBENCH_RECIPE.stem_bias_until)
    arms = (("SGD on every parameter", dataclasses.replace(recipe, optimizer="sgd")),
            ("Muon on the conv filters: cpu-fast's recipe", recipe))
    return _seeded_arms(arms, minutes)


def stem_bias_variants(minutes: float) -> list[Variant]:
    """cpu-fast's recipe with its whitened stem's bias learning throughout, and as it is (frozen after 30% of
    training, as airbench94's), once per seed of SEEDS."""
    recipe = get_preset("cpu-fast").train
    arms = (("stem bias learns throughout", dataclasses.replace(recipe, stem_bias_until=1.0)),
            (f"stem bias frozen after {recipe.stem_bias_until:.0%}: cpu-fast's recipe", recipe))
    return _seeded_arms(arms, minutes)


def muon_rate_variants(minutes: float) -> list[Variant]:
    """cpu-fast's recipe as it is and with each change of MUON_CHANGES to Muon's rate or momentum, once per seed
    of SEEDS."""
    recipe = get_preset("cpu-fast").train
    arms = ((f"Muon rate {recipe.muon_lr:g}, momentum {recipe.muon_momentum:g}: cpu-fast's recipe", recipe),
            *((f"Muon rate {changed.muon_lr:g}, momentum {changed.muon_momentum:g}", changed)
              for changed in (dataclasses.replace(recipe, **change) for change in MUON_CHANGES)))
    return _seeded_arms(arms, minutes)


def silu_resnet() -> ResNet:
    """airbench's residual network with SiLU instead of GELU after every conv of its stages (the stem keeps GELU), as
    hiverge's fork of airbench94_muon has it."""
    model = build_model(AIRBENCH_RESNET)
    for parent in model.stages.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.GELU):
                setattr(parent, name, nn.SiLU())
    return model


def hiverge_variants(minutes: float) -> list[Variant]:
    """cpu-fast as it is, with SiLU in its stages, with brightness and contrast augmentation (two of hiverge's
    changes to airbench94_muon), and in batches of 1,024 at the same rate per image (which larger matrix products
    might run faster), once per seed of SEEDS."""
    recipe = get_preset("cpu-fast").train
    arms = (("cpu-fast's recipe", AIRBENCH_RESNET, recipe),
            ("SiLU in the stages", Builder.parse("cifar_resnet.experiments:silu_resnet"), recipe),
            (f"brightness and contrast {HIVERGE_BRIGHTNESS_CONTRAST:g}", AIRBENCH_RESNET,
             dataclasses.replace(recipe, brightness_contrast=HIVERGE_BRIGHTNESS_CONTRAST)),
            ("batches of 1,024", AIRBENCH_RESNET, with_batch_size(recipe, 1024)))
    return [Variant(f"{label}, seed {seed}", network, _timed(dataclasses.replace(train, seed=seed), minutes))
            for seed in SEEDS for label, network, train in arms]


def _seeded_arms(arms: tuple[tuple[str, TrainConfig], ...], minutes: float) -> list[Variant]:
    """Each (label, recipe) arm on airbench's residual network for ``minutes``, once per seed of SEEDS, the arms side
    by side."""
    return [Variant(f"{label}, seed {seed}", AIRBENCH_RESNET, _timed(dataclasses.replace(train, seed=seed), minutes))
            for seed in SEEDS for label, train in arms]


def augmentation_variants(minutes: float) -> list[Variant]:
    """airbench94's recipe without augmentation, with flips only, and as it is."""
    return [Variant(label, AIRBENCH_RESNET, _timed(dataclasses.replace(AIRBENCH_RECIPE, **changes), minutes))
            for label, changes in AUGMENTATIONS]


def preset_variants(minutes: float, names: tuple[str, ...] = PRESET_NAMES) -> list[Variant]:
    """Each preset's network with its own recipe, for the same minutes."""
    return [Variant(name, get_preset(name).model, _timed(get_preset(name).train, minutes)) for name in names]


def technique_variants(epochs: int = TECHNIQUE_EPOCHS, seed: int = 0) -> list[Variant]:
    """The course's recipe in batches of 512 on airbench's residual network (a network that trains enough epochs on a
    CPU for the techniques to show), for ``epochs`` epochs, and each of TECHNIQUES' changes to it."""
    recipe = dataclasses.replace(with_batch_size(COURSE_RECIPE, 512), epochs=epochs, val_size=None, seed=seed)
    return [Variant(f"{label}, seed {seed}", AIRBENCH_RESNET, dataclasses.replace(recipe, **changes))
            for label, changes in TECHNIQUES]


def run_variant(variant: Variant, data: CifarData, device: torch.device | str | None = None) -> dict:
    """Train one variant and score it on its validation split, plain and with test-time augmentation."""
    row = {"label": variant.label, "parameters": count_parameters(variant.model).total,
           "recipe": variant.train.to_dict()}
    try:
        result = fit(variant.model, variant.train, data, device=device, progress=False)
    except TrainingDivergedError as error:
        return {**row, "diverged": str(error)}
    plan = result.plan  # the split and the batch size the run used
    images, labels = data.train_images[plan.val_indices], data.train_labels[plan.val_indices]
    last = result.history[-1]
    trained = last["step"] * plan.batch_size
    return {**row, "epochs": round(last["step"] / plan.steps_per_epoch, 2),
            "minutes": round(last["elapsed"] / 60, 2), "images_per_s": round(trained / last["elapsed"], 1),
            "val_acc": last["val_acc"],
            "val_acc_tta": evaluate(result.model, images, labels, result.normalization, tta=TTA).accuracy}


def compare(variants: list[Variant], data: CifarData, device: torch.device | str | None = None,
            show: bool = True, done: dict | None = None) -> list[dict]:
    """Train each variant in turn and return its row; ``show`` prints each row as it finishes.

    ``done`` maps (network, recipe) to a row already measured on the same data: such a variant is not
    trained again (airbench94's recipe itself closes the tricks, opens the batches and closes the augmentations)."""
    rows, done = [], {} if done is None else done
    for variant in variants:
        key = (variant.model, variant.train)
        if key not in done:
            done[key] = run_variant(variant, data, device)
        rows.append({**done[key], "label": variant.label})
        if show:
            print(format_row(rows[-1]))
    return rows


def format_row(row: dict) -> str:
    if "diverged" in row:
        return f"{row['label']:<52} diverged: {row['diverged']}"
    return (f"{row['label']:<52} {row['parameters']:>10,} {row['epochs']:>6.2f} {row['minutes']:>6.2f} "
            f"{row['val_acc']:>8.2%} {row['val_acc_tta']:>8.2%}")


HEADER = f"{'variant':<52} {'parameters':>10} {'epochs':>6} {'min':>6} {'val':>8} {'val+TTA':>8}"  # of format_row


def table(rows: list[dict]) -> str:
    """The rows as an aligned text table."""
    return "\n".join([HEADER, *map(format_row, rows)])


def measured(name: str) -> dict:
    """The committed measurement ``name`` ('tricks', 'batches', 'optimizers', 'augmentations' or 'presets'): its rows and
    where, when and how long each variant was trained (and a ``note``, where one applies)."""
    text = resources.files("cifar_resnet").joinpath("measured", MEASURED_FILE).read_text()
    runs = json.loads(text)
    if name not in runs:
        raise CifarResnetError(f"no measurement {name!r} in {MEASURED_FILE}: it holds {sorted(runs)}")
    return runs[name]


def show_measured(name: str) -> list[dict]:
    """Print a committed measurement with its machine and date, and return its rows."""
    run = measured(name)
    length = f"{run['minutes']:g} minutes" if "minutes" in run else f"{run['epochs']} epochs"
    print(f"Measured on {run['machine']}, {run['date']}: each variant trained {length} on "
          f"{run['train_images']:,} training images, scored on {run['val_images']:,} held out "
          f"(val+TTA: {TTA} test-time augmentation).")
    if "note" in run:
        print(f"Note: {run['note']}.")
    print(table(run["rows"]))
    return run["rows"]
