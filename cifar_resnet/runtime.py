"""Where the code runs (Colab, Kaggle notebooks, anywhere else) and where that puts its files.

On Colab every notebook runs in its own VM whose files vanish when the runtime disconnects, so
with Google Drive mounted the runs, figures and hand-in go to Drive. Kaggle notebooks read the
competition's files under /kaggle/input and keep what they write under /kaggle/working.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

COLAB_DRIVE = Path("/content/drive/MyDrive")  # where Colab mounts Google Drive
DRIVE_FOLDER = "cifar-resnet"  # this project's folder on Drive
KAGGLE_INPUT = Path("/kaggle/input")  # the competition's and the notebook's data sets, read-only
KAGGLE_WORKING = Path("/kaggle/working")  # kept with the notebook's output


def on_colab() -> bool:
    return "google.colab" in sys.modules


def on_kaggle() -> bool:
    return "KAGGLE_KERNEL_RUN_TYPE" in os.environ


def drive_mounted() -> bool:
    """Whether this is Colab with Google Drive mounted."""
    return on_colab() and COLAB_DRIVE.is_dir()


def default_data_root() -> Path:
    """Where data is looked for when neither an argument nor $CIFAR_RESNET_DATA says: /kaggle/input
    in a Kaggle notebook, else ./data."""
    return KAGGLE_INPUT if on_kaggle() else Path("data")


def output_root(project: Path) -> Path:
    """The folder that runs/, plots/ and hand-ins go under: Drive on Colab (when mounted),
    /kaggle/working on Kaggle, else the project."""
    if drive_mounted():
        return COLAB_DRIVE / DRIVE_FOLDER
    if on_kaggle():
        return KAGGLE_WORKING
    return project
