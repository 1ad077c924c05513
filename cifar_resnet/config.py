"""Configurations as plain data: the model (N, B_i, C_i, F_i, K_i, P), the training run, presets.

Both dataclasses round-trip through JSON (``to_dict`` / ``from_dict``), so they travel inside
checkpoints and run folders and nothing downstream has to guess how a model was built.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import CifarResnetError

IMAGE_SIZE = 32
PARAMETER_BUDGET = 5_000_000
DOWNSAMPLING = ("stride", "maxpool")
SCHEDULES = ("cosine", "linear")
OPTIMIZERS = ("sgd", "muon")
LINEAR_END_SHARE = 0.07  # where the 'linear' schedule ends, as a share of the peak (airbench's)
AMP_MODES = ("auto", "bf16", "fp16", "off")
EXECUTION_FIELDS = ("amp", "channels_last", "compile", "eval_batch_size")  # how a run computes, not what it learns
ADAPT_MODES = ("auto", "off", "always")  # re-estimate BatchNorm on the test images: when they look shifted, never, always
TTA_MODES = ("off", "flip", "flip-shift")  # test-time augmentation: none, with the mirror image, also shifted
SUBMISSION_COLUMNS = ("ID", "Labels")  # the course's Kaggle submission header
DEFAULT_PRESET = "course"  # the course's network and recipe: what the command line trains unless told otherwise


class ConfigurationError(CifarResnetError, ValueError):
    """A configuration value is impossible; the message names the value."""


@dataclass(frozen=True)
class Geometry:
    """How a network layout shapes its feature maps: what checking and sizing a configuration needs, apart
    from the builder that makes the layers (``model.LAYOUTS``), so that this module needs no model code.

    stem_size:          side of the stem's output map
    stem_channels:      the stem's width (None: C_1, the first stage's)
    halves_first_stage: whether stage 1 halves the map too (every later stage does)
    rounds_up:          halving rounds up (a stride-2 'same' conv, a ceil-mode pool) or down (an unpadded 2x2 pool)
    downsample:         the one ``downsample`` the layout allows (None: either)
    """

    stem_size: int
    stem_channels: int | None
    halves_first_stage: bool
    rounds_up: bool
    downsample: str | None = None

    def halves(self, stage: int) -> bool:
        """Whether stage ``stage`` (0-based) halves the map."""
        return stage > 0 or self.halves_first_stage

    def halve(self, size: int) -> int:
        return (size + 1) // 2 if self.rounds_up else size // 2


GEOMETRIES = {  # ModelConfig.style -> its geometry; model.LAYOUTS builds each style's layers
    "torchvision": Geometry(stem_size=IMAGE_SIZE, stem_channels=None, halves_first_stage=False, rounds_up=True),
    "airbench": Geometry(stem_size=IMAGE_SIZE - 1, stem_channels=24, halves_first_stage=True, rounds_up=False,
                         downsample="maxpool"),  # an unpadded 2x2 stem of 12 patch directions and their negatives
}
STYLES = tuple(GEOMETRIES)


def _per_stage(name: str, value, stages: int) -> tuple[int, ...]:
    """Broadcast an int to every stage, or check that a sequence has one value per stage."""
    if isinstance(value, int):
        return (value,) * stages
    value = tuple(value)
    if len(value) != stages:
        raise ConfigurationError(
            f"{name} has {len(value)} values {value} but there are {stages} stages "
            f"(one per entry of blocks): give one value per stage or a single int")
    return value


def _check_ints(name: str, values: tuple, minimum: int) -> None:
    for i, v in enumerate(values, start=1):
        if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
            raise ConfigurationError(f"{name}[stage {i}] = {v!r}: must be an integer >= {minimum}")


@dataclass(frozen=True)
class ModelConfig:
    """A ResNet of BasicBlocks for 32x32 images, in the course's letters.

    blocks:      B_i, BasicBlocks in stage i (the number of stages N is ``len(blocks)``)
    channels:    C_i, output channels of stage i
    kernel:      F_i, kernel size of the 3x3-style convolutions in stage i (odd)
    skip_kernel: K_i, kernel size of the projection shortcut entering stage i (odd)
    pool:        P, kernel (and stride) of the pool before the classifier
    downsample:  how stages halve the map in their first block: 'stride' (a stride-2 conv1 and
                 shortcut, as torchvision's ResNet) or 'maxpool' (conv1 at the full size, then a
                 2x2 max pool; the shortcut pools first)
    style:       the network's layout: 'torchvision' or 'airbench', each shaped by its ``Geometry`` and
                 built by its builder (``model.TorchvisionLayout``, ``model.AirbenchLayout``)
    An int for ``kernel`` or ``skip_kernel`` applies to every stage.
    """

    blocks: tuple[int, ...] = (3, 4, 3)
    channels: tuple[int, ...] = (66, 132, 264)
    kernel: tuple[int, ...] | int = 3
    skip_kernel: tuple[int, ...] | int = 1
    pool: int = 8
    num_classes: int = 10
    downsample: str = "stride"
    style: str = "torchvision"

    def __post_init__(self):
        blocks, channels = tuple(self.blocks), tuple(self.channels)
        if not blocks:
            raise ConfigurationError("blocks is empty: a ResNet needs at least one stage")
        stages = len(blocks)
        set_ = object.__setattr__  # frozen dataclass: normalise once, here
        set_(self, "blocks", blocks)
        set_(self, "channels", _per_stage("channels", channels, stages))
        set_(self, "kernel", _per_stage("kernel", self.kernel, stages))
        set_(self, "skip_kernel", _per_stage("skip_kernel", self.skip_kernel, stages))
        self._validate()

    def _validate(self) -> None:
        _check_ints("blocks", self.blocks, 1)
        _check_ints("channels", self.channels, 1)
        _check_ints("kernel", self.kernel, 1)
        _check_ints("skip_kernel", self.skip_kernel, 1)
        for name in ("kernel", "skip_kernel"):
            for i, k in enumerate(getattr(self, name), start=1):
                if k % 2 == 0:
                    raise ConfigurationError(
                        f"{name}[stage {i}] = {k}: must be odd, so that 'same' padding keeps "
                        f"the feature map's size")
        if self.style not in STYLES:
            raise ConfigurationError(f"style = {self.style!r}: use one of {STYLES}")
        if self.downsample not in DOWNSAMPLING:
            raise ConfigurationError(f"downsample = {self.downsample!r}: use one of {DOWNSAMPLING}")
        if self.geometry.downsample not in (None, self.downsample):
            raise ConfigurationError(f"style = {self.style!r} halves every stage with a 2x2 max pool: "
                                     f"set downsample = {self.geometry.downsample!r}")
        size = self.feature_sizes[-1]
        if not isinstance(self.pool, int) or isinstance(self.pool, bool) or self.pool < 1:
            raise ConfigurationError(f"pool = {self.pool!r}: must be an integer >= 1")
        if self.pool > size:
            raise ConfigurationError(
                f"pool = {self.pool} is larger than the last feature map ({size}x{size} after "
                f"{self.stages} stages): use pool <= {size}")
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise ConfigurationError(f"num_classes = {self.num_classes!r}: must be an integer >= 1")

    @property
    def geometry(self) -> Geometry:
        """How this configuration's style shapes the feature maps."""
        return GEOMETRIES[self.style]

    @property
    def stem_channels(self) -> int:
        """The stem's output channels."""
        return self.geometry.stem_channels or self.channels[0]

    @property
    def stages(self) -> int:
        """N, the number of residual stages."""
        return len(self.blocks)

    @property
    def feature_sizes(self) -> tuple[int, ...]:
        """Side of each stage's output map, from the stem's map halved by the stages that halve it."""
        geometry, sizes = self.geometry, []
        size = geometry.stem_size
        for i in range(self.stages):
            if geometry.halves(i):
                if size < 2:
                    raise ConfigurationError(f"stage {i + 1} would halve a {size}x{size} feature map, which "
                                             f"vanishes: use at most {i} stages")
                size = geometry.halve(size)
            sizes.append(size)
        return tuple(sizes)

    @property
    def pooled_size(self) -> int:
        """Side of the map after the pool of kernel and stride P."""
        return self.feature_sizes[-1] // self.pool

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        return _from_dict(cls, data)

    def code(self) -> str:
        """The Python line that builds this configuration."""
        def short(v):
            return v[0] if len(set(v)) == 1 else v
        rest = "".join(f", {name}={getattr(self, name)!r}" for name in ("num_classes", "downsample", "style")
                       if getattr(self, name) != getattr(ModelConfig, name))  # each only when not the default
        return (f"ModelConfig(blocks={self.blocks}, channels={self.channels}, "
                f"kernel={short(self.kernel)}, skip_kernel={short(self.skip_kernel)}, pool={self.pool}{rest})")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run, in one visible place.

    ``minutes``, when set, replaces ``epochs``: the run trains for that long and the warmup and
    decay of the learning rate are laid out over that time.
    ``amp`` is 'auto' (bf16 autocast where the hardware computes bf16 natively: GPUs of compute
    capability 8.0+, CPUs with AVX512-BF16 or AMX; fp16 with a gradient scaler on older GPUs such as
    the T4 and P100), 'bf16', 'fp16' (CUDA only) or 'off'. ``val_size`` None holds out 10% of the training images.
    ``bias_lr_scale`` multiplies the learning rate of every bias (BatchNorm's and the classifier's);
    ``whiten_stem`` starts the stem from whitening filters of the training images and freezes it; ``whiten_eps``
    is added to each patch direction's variance before its filter is divided by the square root, which caps
    the gain of the faint directions (where pixel noise lives). ``stem_bias_until`` is the share of training after
    which a whitened stem's bias (after a bias-free conv, its BatchNorm's scale and shift) freezes too: from then
    on nothing before the first stage learns, so the backward pass stops there (airbench94 freezes it after 3 of
    its 9.9 epochs; 1.0 never freezes it; without ``whiten_stem`` it does nothing).
    ``blur`` and ``noise`` blur, or add Gaussian pixel noise to, that share of the training images
    (``augment.random_blur``, ``augment.random_noise``). ``brightness_contrast`` shifts each training image's
    brightness and scales its contrast by up to that fraction (``augment.random_brightness_contrast``; 0 is off).
    ``alternate_flip`` mirrors a fixed random half of the images in even epochs and the other half in
    odd epochs, instead of tossing a coin per image and epoch: every image is seen both ways in any
    two epochs in a row (airbench's alternating flip).
    ``crop_reflect`` pads the random crop by mirroring the border instead of with black pixels.
    ``schedule`` shapes the learning rate over training: 'cosine' rises linearly from 0 to ``lr``
    over the ``warmup`` fraction, then falls along a cosine to 0; 'linear' (airbench's triangle)
    rises linearly from a fifth of ``lr`` and then falls linearly to 7% of it.
    ``lookahead`` pulls the weights towards a running average of themselves every few steps, more
    strongly as training ends, and leaves the model on the average at the end of every epoch.
    ``optimizer`` 'muon' steps the filters of bias-free convolutions (each followed by a BatchNorm) with Muon
    (``muon.Muon``: orthogonalized momentum ``muon_momentum``, a peak rate of ``muon_lr`` on the same schedule,
    filters kept at a fixed norm instead of weight decay) and everything else with SGD as above; 'sgd' steps
    everything with SGD.
    ``amp``, ``channels_last``, ``compile`` and ``eval_batch_size`` (EXECUTION_FIELDS) say how a run computes,
    not what it learns: a resumed run may change them; every other field is the recipe, which it may not.
    """

    epochs: int = 30
    minutes: float | None = None
    batch_size: int = 256
    lr: float = 0.2
    momentum: float = 0.9
    nesterov: bool = True
    optimizer: str = "sgd"
    muon_lr: float = 0.12
    muon_momentum: float = 0.6
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    bias_lr_scale: float = 1.0
    whiten_stem: bool = False
    lookahead: bool = False
    warmup: float = 0.05
    schedule: str = "cosine"
    crop_padding: int = 4
    crop_reflect: bool = False
    flip: bool = True
    alternate_flip: bool = False
    erasing: float = 0.5
    randaugment: bool = False
    blur: float = 0.0
    noise: float = 0.0
    brightness_contrast: float = 0.0
    whiten_eps: float = 5e-4
    stem_bias_until: float = 1.0
    val_size: int | None = None
    amp: str = "auto"
    channels_last: bool = True
    compile: bool = False
    seed: int = 0
    eval_batch_size: int = 1024

    def __post_init__(self):
        if self.minutes is None and self.epochs < 1:
            raise ConfigurationError(f"epochs = {self.epochs}: must be >= 1")
        if self.minutes is not None and self.minutes <= 0:
            raise ConfigurationError(f"minutes = {self.minutes}: must be > 0")
        if self.batch_size < 1:
            raise ConfigurationError(f"batch_size = {self.batch_size}: must be >= 1")
        if not 0 <= self.warmup < 1:
            raise ConfigurationError(f"warmup = {self.warmup}: a fraction of training in [0, 1)")
        if self.schedule not in SCHEDULES:
            raise ConfigurationError(f"schedule = {self.schedule!r}: use one of {SCHEDULES}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigurationError(f"optimizer = {self.optimizer!r}: use one of {OPTIMIZERS}")
        if self.muon_lr <= 0 or not 0 <= self.muon_momentum < 1:
            raise ConfigurationError(f"muon_lr = {self.muon_lr}, muon_momentum = {self.muon_momentum}: the rate must "
                                     f"be > 0 and the momentum in [0, 1)")
        for name in ("erasing", "blur", "noise"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigurationError(f"{name} = {getattr(self, name)}: a probability in [0, 1]")
        if not 0 <= self.brightness_contrast < 1:
            raise ConfigurationError(f"brightness_contrast = {self.brightness_contrast}: a fraction in [0, 1)")
        if self.whiten_eps <= 0:
            raise ConfigurationError(f"whiten_eps = {self.whiten_eps}: must be > 0 (it keeps the whitening finite)")
        if not 0 <= self.stem_bias_until <= 1:
            raise ConfigurationError(f"stem_bias_until = {self.stem_bias_until}: a share of training in [0, 1]")
        if self.alternate_flip and not self.flip:
            raise ConfigurationError("alternate_flip = True needs flip = True: it decides how images are mirrored")
        if self.amp not in AMP_MODES:
            raise ConfigurationError(f"amp = {self.amp!r}: use one of {AMP_MODES}")

    def describe(self) -> str:
        """The recipe in words, from its own settings (so prose about a run always matches it)."""
        length = f"{self.minutes:g} minutes" if self.minutes else f"{self.epochs} epochs"
        decay = ("a cosine decay to 0" if self.schedule == "cosine"
                 else f"a straight line down to {LINEAR_END_SHARE:.0%} of it")
        crop = (f"random crops with {self.crop_padding}-pixel {'mirrored' if self.crop_reflect else 'zero'} padding"
                if self.crop_padding else "no crops")
        flips = "alternating flips" if self.alternate_flip else "random flips" if self.flip else "no flips"
        stem_bias = (f"; its bias frozen after {self.stem_bias_until:.0%} of training" if self.stem_bias_until < 1
                     else "")
        extras = [name for name, on in (("random erasing", self.erasing > 0), ("RandAugment", self.randaugment),
                                        (f"blur on {self.blur:.0%} of the images", self.blur > 0),
                                        (f"pixel noise on {self.noise:.0%} of the images", self.noise > 0),
                                        (f"brightness and contrast changed by up to {self.brightness_contrast:.0%}",
                                         self.brightness_contrast > 0),
                                        (f"a whitened, frozen stem (epsilon {self.whiten_eps:g}{stem_bias})",
                                         self.whiten_stem),
                                        ("lookahead", self.lookahead))
                  if on]
        split = ("no validation split (all training images)" if self.val_size == 0 else
                 f"a validation split of {'10%' if self.val_size is None else f'{self.val_size:,} images'}")
        muon = (f"Muon (momentum {self.muon_momentum:g}, peak rate {self.muon_lr:g}) on the convolution filters and "
                if self.optimizer == "muon" else "")
        decayed = "the other weights" if muon else "weights only"
        return (f"{length} in batches of {self.batch_size}: {muon}SGD with {'Nesterov ' if self.nesterov else ''}"
                f"momentum {self.momentum:g}, a peak learning rate of {self.lr:g} reached over the first "
                f"{self.warmup:.0%} and then {decay}, weight decay {self.weight_decay:g} on {decayed}, label smoothing "
                f"{self.label_smoothing:g}, {crop}, {flips}" + "".join(f", {e}" for e in extras) + f"; {split}.")

    def changes(self, new: "TrainConfig") -> dict[str, tuple[Any, Any]]:
        """{field: (value here, value in ``new``)} for every field that ``new`` changes."""
        return {f.name: (getattr(self, f.name), getattr(new, f.name)) for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(new, f.name)}

    def __repr__(self) -> str:  # ``epochs`` is left out when ``minutes`` replaces it
        shown = [f.name for f in dataclasses.fields(self) if f.name != "epochs" or self.minutes is None]
        return f"TrainConfig({', '.join(f'{name}={getattr(self, name)!r}' for name in shown)})"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        return _from_dict(cls, data)


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def _from_dict(cls, data: dict[str, Any]):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigurationError(f"unknown {cls.__name__} fields {unknown}; known: {sorted(known)}")
    return cls(**data)


@dataclass(frozen=True)
class Preset:
    """A named model with the training recipe it was designed for."""

    model: ModelConfig
    description: str
    train: TrainConfig = field(default_factory=TrainConfig)


def with_batch_size(recipe: TrainConfig, batch_size: int) -> TrainConfig:
    """``recipe`` in batches of ``batch_size`` at the same learning rate per image (the rate scales with the batch)."""
    return dataclasses.replace(recipe, batch_size=batch_size, lr=recipe.lr * batch_size / recipe.batch_size)


AIRBENCH_RESNET = ModelConfig(blocks=(1, 1, 1), channels=(64, 192, 256), kernel=3, skip_kernel=1, pool=3,
                              downsample="maxpool", style="airbench")
CPU_FAST_RESNET = dataclasses.replace(AIRBENCH_RESNET, channels=(64, 160, 256))  # 15% fewer FLOPs: README's B6
AIRBENCH_RECIPE = TrainConfig(batch_size=1024, lr=1.5, momentum=0.85, weight_decay=1.33e-3, label_smoothing=0.2,
                              bias_lr_scale=64, whiten_stem=True, lookahead=True, warmup=0.23, schedule="linear",
                              crop_padding=2, crop_reflect=True, alternate_flip=True, erasing=0.0, val_size=0)

COURSE_RECIPE = TrainConfig(epochs=30, batch_size=256, lr=0.2, momentum=0.9, nesterov=False, weight_decay=5e-4,
                            label_smoothing=0.05, warmup=0.05, schedule="cosine", crop_padding=4, flip=True,
                            erasing=0.5, randaugment=True)  # the course project's: SGD, warmup + cosine, smoothing 0.05
COURSE_TECHNIQUES = ("SGD with momentum", "warmup + cosine schedule", "label smoothing 0.05", "random crop",
                     "random flip", "RandAugment", "random erasing")


def techniques_used(config: TrainConfig) -> dict[str, bool]:
    """Which of the course's techniques (COURSE_TECHNIQUES) the recipe ``config`` uses."""
    return {"SGD with momentum": config.optimizer == "sgd" and config.momentum > 0,
            "warmup + cosine schedule": config.schedule == "cosine" and config.warmup > 0,
            "label smoothing 0.05": config.label_smoothing == 0.05,
            "random crop": config.crop_padding > 0, "random flip": config.flip,
            "RandAugment": config.randaugment, "random erasing": config.erasing > 0}


PRESETS: dict[str, Preset] = {
    "course": Preset(
        ModelConfig(blocks=(3, 4, 3), channels=(66, 132, 264), kernel=3, skip_kernel=1, pool=8),
        "the course project's network and recipe: SGD with momentum 0.9, warmup + cosine, label smoothing 0.05, "
        "crop, flip, RandAugment and random erasing, 30 epochs (hours on a CPU: a GPU's recipe)",
        COURSE_RECIPE),
    "reference": Preset(
        ModelConfig(blocks=(3, 4, 3), channels=(66, 132, 264), kernel=3, skip_kernel=1, pool=8),
        "the 3-stage ResNet of the reference course project (4,916,284 parameters, 95.56% reported)"),
    "four-stage": Preset(
        ModelConfig(blocks=(2, 2, 2, 2), channels=(48, 96, 192, 288), kernel=3, skip_kernel=1, pool=4),
        "a ResNet-18-shaped 4-stage network, narrowed to fit the budget"),
    "small": Preset(
        ModelConfig(blocks=(1, 1, 1), channels=(32, 64, 128), kernel=3, skip_kernel=1, pool=8),
        "a small fast 3-stage network for quick experiments",
        TrainConfig(epochs=15, batch_size=256, lr=0.2)),
    "cpu-fast": Preset(
        CPU_FAST_RESNET, "airbench's residual network with 160 channels in its second stage (192 in airbench's), "
                         "airbench94's recipe in batches of 512 (twice its steps per epoch), Muon on the conv "
                         "filters, a whitening that amplifies pixel noise less (epsilon 0.02) and a stem bias that "
                         "freezes after 30% of training, as airbench94's does, for 15 minutes on a 2-core CPU on all "
                         "50,000 training images",
        dataclasses.replace(with_batch_size(AIRBENCH_RECIPE, 512), minutes=15, optimizer="muon", whiten_eps=0.02,
                            stem_bias_until=0.3)),
    "gpu-94": Preset(
        AIRBENCH_RESNET, "airbench's residual network with airbench94's recipe as it is (batches of 1,024) for 10 "
                         "epochs, aimed at 94% on the official test set (accuracy not yet measured on a GPU)",
        dataclasses.replace(AIRBENCH_RECIPE, epochs=10)),
    "gpu-95": Preset(
        ModelConfig(blocks=(1, 1, 1, 1), channels=(32, 128, 256, 512), kernel=3, skip_kernel=1, pool=4,
                    downsample="maxpool"),
        "a GPU recipe aimed at 95% on the official test set within 1.5 PFLOPs (not yet measured on a GPU)",
        TrainConfig(epochs=15, batch_size=512, lr=0.4, weight_decay=2.5e-3, label_smoothing=0.2,
                    bias_lr_scale=16, whiten_stem=True, warmup=0.1, crop_padding=4, erasing=0.0, val_size=0)),
    "tiny": Preset(
        ModelConfig(blocks=(1, 1, 1), channels=(16, 32, 64), kernel=3, skip_kernel=1, pool=8),
        "a minute-scale network for smoke runs and tests on the CPU",
        TrainConfig(epochs=2, batch_size=64, lr=0.1, erasing=0.0)),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigurationError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
