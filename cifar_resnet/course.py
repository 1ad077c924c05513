"""What the notebooks share: the run's settings and where its files live.

Notebook 03 trains into ``settings().run_dir``; notebooks 04 and 05 read from there. In smoke mode
everything goes under ``runs/smoke`` (figures too), so a smoke run never overwrites the figures of
a real run in ``plots/``. On Colab with Google Drive mounted, runs, figures and hand-in live on
Drive (``/content/drive/MyDrive/cifar-resnet/``), and in a Kaggle notebook under /kaggle/working,
so they outlast the session (see ``runtime``).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import DEFAULT_PRESET, ModelConfig, TrainConfig, get_preset
from .data import CifarData, data_root, find_under, smoke_mode, write_kaggle_pickle
from .device import select_device
from .errors import CifarResnetError
from .run_folder import CHECKPOINT_FILE
from .runtime import output_root
from .train import fit

KAGGLE_PICKLE = "cifar_test_nolabel.pkl"
SMOKE_PRESET = "tiny"
GPU_PRESET = DEFAULT_PRESET  # the course's network and recipe: minutes on a GPU
CPU_PRESET = "cpu-fast"  # 15 minutes on a laptop's CPU (the course's recipe would take hours there)


def default_preset(smoke: bool = False) -> str:
    """The preset the notebooks train unless told otherwise: 'tiny' in smoke mode, else chosen by
    the hardware ('course' on a GPU, 'cpu-fast' on a CPU)."""
    if smoke:
        return SMOKE_PRESET
    return GPU_PRESET if select_device().type == "cuda" else CPU_PRESET


def project_dir(start: str | os.PathLike | None = None) -> Path:
    """The repository root (the folder with notebooks/ and cifar_resnet/), else the working folder."""
    start = Path(start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "notebooks").is_dir() and (folder / "cifar_resnet").is_dir():
            return folder
    return start


@dataclass(frozen=True)
class CourseSettings:
    """The notebooks' run: smoke mode, the preset, an optional time budget, and the folders."""

    smoke: bool
    preset: str
    minutes: float | None
    project: Path
    home: Path  # where runs/, plots/ and hand-ins go: the project, Google Drive on Colab, /kaggle/working

    @property
    def run_dir(self) -> Path:
        return self.home / "runs" / ("smoke" if self.smoke else "course")

    @property
    def plots_dir(self) -> Path:
        return self.run_dir / "plots" if self.smoke else self.home / "plots"

    @property
    def handin_dir(self) -> Path:
        """handin/ beside the notebooks' folder, which git tracks so a student's repository carries it
        (under the smoke run's folder in smoke mode)."""
        return self.run_dir / "handin" if self.smoke else self.home / "handin"

    @property
    def model_config(self) -> ModelConfig:
        return get_preset(self.preset).model

    @property
    def train_config(self) -> TrainConfig:
        """The preset's recipe, with the time budget if one is set. Notebook runs always hold the default
        validation split out, so notebook 03 draws a validation curve: presets that train on all 50,000
        images (val_size=0, as cpu-fast) train on 45,000 here, which made no measurable difference to
        their test accuracy (README, B4)."""
        config = get_preset(self.preset).train
        changes = {"minutes": self.minutes} if self.minutes else {}
        if config.val_size == 0:
            changes["val_size"] = None
        return dataclasses.replace(config, **changes)


def settings(smoke: bool | None = None, preset: str | None = None, minutes: float | None = None) -> CourseSettings:
    """The settings the notebooks share.

    ``preset`` (as notebook 03 passes it), else $CIFAR_RESNET_PRESET (for CI and scripts), else
    ``default_preset``: 'tiny' in smoke mode, 'course' on a GPU, 'cpu-fast' on a CPU.
    ``minutes``, else $CIFAR_RESNET_MINUTES, sets a time budget instead of the preset's length.
    """
    smoke = smoke_mode(smoke)
    preset = preset or os.environ.get("CIFAR_RESNET_PRESET") or default_preset(smoke)
    get_preset(preset)  # fail early on a misspelt name
    minutes = minutes or (float(os.environ["CIFAR_RESNET_MINUTES"]) if os.environ.get("CIFAR_RESNET_MINUTES") else None)
    project = project_dir()
    return CourseSettings(smoke, preset, minutes, project, output_root(project))


def find_or_train_run(course: CourseSettings, data: CifarData) -> Path:
    """The run folder of notebook 03. In smoke mode a missing run is trained here (briefly)."""
    if (course.run_dir / CHECKPOINT_FILE).is_file():
        return course.run_dir
    if not course.smoke:
        raise CifarResnetError(
            f"no trained run in {course.run_dir}: run notebook 03 first, or train one with "
            f"`python -m cifar_resnet train --preset {course.preset} --out {course.run_dir}`")
    print(f"No run from notebook 03 in {course.run_dir}; training a small smoke run there now.")
    fit(course.model_config, course.train_config, data, course.run_dir, progress=False)
    return course.run_dir


def find_or_write_kaggle_pickle(course: CourseSettings, data: CifarData, root: str | os.PathLike | None = None) -> Path:
    """The course's unlabeled test pickle under the data folder (in a Kaggle notebook, wherever it
    sits under /kaggle/input), or in the run folder.

    In smoke mode, when there is none, one is written from the smoke test images (shuffled), so
    that notebook 05 runs anywhere.
    """
    root = data_root(root)
    for path in [*find_under(root, KAGGLE_PICKLE), course.run_dir / KAGGLE_PICKLE]:
        if path.is_file():
            return path
    if not course.smoke:
        raise CifarResnetError(f"no {KAGGLE_PICKLE} under {root.resolve()}: download it from the course's "
                               f"Kaggle competition into that folder")
    order = torch.randperm(len(data.test_labels), generator=torch.Generator().manual_seed(0), device="cpu")
    path = write_kaggle_pickle(course.run_dir / KAGGLE_PICKLE, data.test_images[order], np.arange(len(order)))
    print(f"No {KAGGLE_PICKLE} found; wrote a stand-in from the {len(order)} smoke test images to {path}.")
    return path
