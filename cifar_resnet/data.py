"""CIFAR-10 as uint8 tensors: the official on-disk layout, the Kaggle test pickle, splits,
normalization, and smoke mode (a small subset, or synthetic data when no real data is found).

Images are uint8 tensors of shape (N, 3, 32, 32) throughout; they become floats only in
``Normalization.__call__``, the one place where normalization happens.
"""
from __future__ import annotations

import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .errors import CifarResnetError
from .files import atomic_write
from .runtime import default_data_root
from .safe_pickle import load_pickle

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
BATCHES_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
DOWNLOAD_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
DOWNLOAD_MD5 = "c58f30108f718f92721af3b95e74349a"
SMOKE_TRAIN_PER_CLASS = 100
SMOKE_TEST_PER_CLASS = 50
SEARCH_DEPTH = 3  # folders below the data folder searched for the data (Kaggle: input/competition/cifar-10-python/)


class SyntheticDataWarning(UserWarning):
    """Raised (as a warning) whenever synthetic stand-in data is used instead of CIFAR-10."""


@dataclass(frozen=True)
class Normalization:
    """Per-channel mean and std (of pixel values in [0, 1]), stored with every checkpoint."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_images(cls, images: Tensor) -> "Normalization":
        """Statistics of uint8 images (N, 3, H, W), computed in float64."""
        x = images.double().div_(255)
        return cls(tuple(x.mean(dim=(0, 2, 3)).tolist()), tuple(x.std(dim=(0, 2, 3)).tolist()))

    def __call__(self, images: Tensor) -> Tensor:
        """uint8 (N, 3, H, W) -> normalized float32 on the same device, in the same memory format.

        (x / 255 - mean) / std as one multiply and one add, in place on the float copy.
        """
        mean = torch.tensor(self.mean, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=images.device).view(1, 3, 1, 1)
        return images.float().mul_(1 / (255 * std)).add_(-mean / std)

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict) -> "Normalization":
        return cls(tuple(data["mean"]), tuple(data["std"]))


@dataclass
class CifarData:
    """Train and test images (uint8, N x 3 x 32 x 32) with labels, and where they came from."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    source: str
    synthetic: bool = False
    smoke: bool = False
    classes: tuple[str, ...] = CLASSES

    def __repr__(self) -> str:
        kind = "SYNTHETIC stand-in data" if self.synthetic else "CIFAR-10"
        mode = ", smoke subset" if self.smoke else ""
        return (f"CifarData({kind}{mode}: {len(self.train_labels):,} train and "
                f"{len(self.test_labels):,} test images from {self.source})")


def smoke_mode(smoke: bool | None = None) -> bool:
    """``smoke`` if given, else whether the environment variable CIFAR_RESNET_SMOKE is set to 1."""
    if smoke is not None:
        return smoke
    return os.environ.get("CIFAR_RESNET_SMOKE", "").strip().lower() in ("1", "true", "yes", "on")


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: ``root`` if given, else $CIFAR_RESNET_DATA, else /kaggle/input in a Kaggle
    notebook, else ./data."""
    if root is None:
        root = os.environ.get("CIFAR_RESNET_DATA") or default_data_root()
    return Path(root).expanduser()


def find_under(root: str | os.PathLike, name: str, depth: int = SEARCH_DEPTH) -> list[Path]:
    """Every file or folder called ``name`` at or up to ``depth`` folders below ``root``, nearest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [root / name] if (root / name).exists() else []
    for level in range(1, depth + 1):
        found += sorted(root.glob("*/" * level + name))
    return found


def find_batches_dir(root: str | os.PathLike) -> Path | None:
    """The ``cifar-10-batches-py`` folder at or under ``root`` (torchvision's or Kaggle's layout)."""
    for folder in [Path(root), *find_under(root, BATCHES_DIR)]:
        if (folder / TEST_BATCH).is_file() or (folder / TRAIN_BATCHES[0]).is_file():
            return folder
    return None


def _get(d: dict, key: str):
    """d[key] for pickles written with str keys or (like the official ones) bytes keys."""
    return d[key] if key in d else d.get(key.encode())


def read_batch(path: str | os.PathLike) -> tuple[Tensor, Tensor]:
    """One official batch file -> (uint8 images (N, 3, 32, 32), int64 labels (N,))."""
    path = Path(path)
    d = load_pickle(path, "CIFAR-10 batch")
    if not isinstance(d, dict):
        raise CifarResnetError(f"CIFAR-10 batch {path} holds a {type(d).__name__}, not a dict with 'data' and 'labels'")
    data, labels = _get(d, "data"), _get(d, "labels")
    if data is None or labels is None:
        keys = sorted(k.decode() if isinstance(k, bytes) else str(k) for k in d)
        raise CifarResnetError(f"CIFAR-10 batch {path} has keys {keys}; it needs 'data' and 'labels'")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise CifarResnetError(f"CIFAR-10 batch {path}: 'data' is {desc}, expected uint8 (N, 3072)")
    labels = np.asarray(labels)
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise CifarResnetError(f"CIFAR-10 batch {path}: {labels.shape} labels of type {labels.dtype} "
                               f"for {len(data)} images; expected one integer label per image")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        bad = labels[(labels < 0) | (labels >= len(CLASSES))][0]
        raise CifarResnetError(f"CIFAR-10 batch {path}: label {bad} is outside 0-{len(CLASSES) - 1}")
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return images, torch.from_numpy(labels.astype(np.int64))


def _read_split(folder: Path, names: tuple[str, ...]) -> tuple[Tensor, Tensor]:
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise CifarResnetError(f"{folder} lacks {', '.join(missing)}: the CIFAR-10 copy is incomplete; "
                               f"re-extract cifar-10-python.tar.gz there")
    parts = [read_batch(folder / n) for n in names]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def first_per_class(labels: Tensor, per_class: int) -> Tensor:
    """Indices of the first ``per_class`` images of each class, in file order."""
    keep = torch.zeros(len(labels), dtype=torch.bool, device=labels.device)
    for c in labels.unique():
        keep[torch.nonzero(labels == c).flatten()[:per_class]] = True
    return torch.nonzero(keep).flatten()


def load_cifar10(root: str | os.PathLike | None = None, *, smoke: bool | None = None,
                 download: bool = False, train_per_class: int = SMOKE_TRAIN_PER_CLASS,
                 test_per_class: int = SMOKE_TEST_PER_CLASS) -> CifarData:
    """Read CIFAR-10 from the official layout found under ``root`` (see ``data_root``).

    Smoke mode keeps the first ``train_per_class`` / ``test_per_class`` images of each class and,
    when no data is found, falls back to a synthetic dataset (with a SyntheticDataWarning).
    ``download=True`` fetches the official archive with torchvision when nothing is found.
    """
    smoke = smoke_mode(smoke)
    root = data_root(root)
    folder = find_batches_dir(root)
    if folder is None and download:
        from torchvision.datasets.utils import download_and_extract_archive
        download_and_extract_archive(DOWNLOAD_URL, str(root), md5=DOWNLOAD_MD5)
        folder = find_batches_dir(root)
    synthetic = False
    if folder is None:
        if not smoke:
            raise CifarResnetError(
                f"no CIFAR-10 found under {root.resolve()} (looked for {BATCHES_DIR}/ with data_batch_1..5 "
                f"and test_batch): pass the folder that holds it (or set CIFAR_RESNET_DATA), download it "
                f"with download=True / --download, or use smoke mode for a synthetic stand-in")
        folder = write_synthetic_cifar(synthetic_cache_dir(), train_per_class, test_per_class)
        synthetic = True
        warnings.warn(f"SYNTHETIC DATA: no CIFAR-10 found under {root.resolve()}, so smoke mode uses "
                      f"generated stand-in images from {folder}. Accuracies on them say nothing about "
                      f"CIFAR-10.", SyntheticDataWarning, stacklevel=2)
    train_images, train_labels = _read_split(folder, TRAIN_BATCHES)
    test_images, test_labels = _read_split(folder, (TEST_BATCH,))
    if smoke:
        keep = first_per_class(train_labels, train_per_class)
        train_images, train_labels = train_images[keep], train_labels[keep]
        keep = first_per_class(test_labels, test_per_class)
        test_images, test_labels = test_images[keep], test_labels[keep]
    return CifarData(train_images, train_labels, test_images, test_labels, str(folder), synthetic, smoke)


def train_val_split(labels: Tensor, val_size: int | None = None, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Stratified, seeded split of indices into (train, validation).

    ``val_size`` None holds out 10% (5,000 of the 50,000 CIFAR-10 training images). Each class
    gives its share, rounded so that the sizes add up exactly.
    """
    n = len(labels)
    val_size = n // 10 if val_size is None else val_size
    if not 0 <= val_size < n:
        raise CifarResnetError(f"val_size = {val_size}: must be in [0, {n}) for {n} training images")
    classes, counts = labels.unique(return_counts=True)
    exact = counts.double() * val_size / n
    quota = exact.floor().long()
    remainder = val_size - int(quota.sum())
    quota[torch.argsort(exact - quota, descending=True, stable=True)[:remainder]] += 1
    labels = labels.cpu()  # the split is drawn on the CPU, whatever the default device
    generator = torch.Generator().manual_seed(seed)
    is_val = torch.zeros(n, dtype=torch.bool, device="cpu")
    for c, q in zip(classes, quota):
        members = torch.nonzero(labels == c).flatten()
        is_val[members[torch.randperm(len(members), generator=generator, device="cpu")[:q]]] = True
    return torch.nonzero(~is_val).flatten(), torch.nonzero(is_val).flatten()


def load_kaggle_pickle(path: str | os.PathLike) -> tuple[Tensor, np.ndarray]:
    """The course's unlabeled test pickle -> (uint8 images (N, 3, 32, 32), ids (N,)).

    Expects {b'data': uint8 (N, 32, 32, 3), b'ids': (N,)}; str keys work too, a missing ids key
    means ids 0..N-1, and channel-first data (N, 3, 32, 32) is accepted with a notice.
    """
    path = Path(path)
    d = load_pickle(path, "Kaggle test pickle")
    if not isinstance(d, dict) or _get(d, "data") is None:
        raise CifarResnetError(f"Kaggle test pickle {path} has no 'data' entry; expected a dict "
                               f"{{'data': uint8 (N, 32, 32, 3), 'ids': (N,)}}")
    data = _get(d, "data")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        desc = f"{data.dtype} array" if isinstance(data, np.ndarray) else type(data).__name__
        raise CifarResnetError(f"Kaggle test pickle {path}: 'data' is a {desc}, expected uint8 pixels")
    if data.ndim == 4 and data.shape[1:] == (32, 32, 3):
        images = torch.from_numpy(np.ascontiguousarray(data.transpose(0, 3, 1, 2)))
    elif data.ndim == 4 and data.shape[1:] == (3, 32, 32):
        warnings.warn(f"{path}: 'data' is channel-first (N, 3, 32, 32); reading it as such", stacklevel=2)
        images = torch.from_numpy(np.ascontiguousarray(data))
    else:
        raise CifarResnetError(f"Kaggle test pickle {path}: 'data' has shape {data.shape}, "
                               f"expected (N, 32, 32, 3)")
    ids = _get(d, "ids")
    ids = np.arange(len(images)) if ids is None else np.asarray(ids)
    if ids.shape != (len(images),):
        raise CifarResnetError(f"Kaggle test pickle {path}: {ids.size} ids for {len(images)} images")
    if len(np.unique(ids)) != len(ids):
        raise CifarResnetError(f"Kaggle test pickle {path}: ids are not unique")
    return images, ids


def write_kaggle_pickle(path: str | os.PathLike, images: Tensor, ids=None) -> Path:
    """Write uint8 images (N, 3, 32, 32) in the course's test-pickle form, atomically.

    {b'data': uint8 (N, 32, 32, 3), b'ids': (N,)}; ``ids`` None leaves the ids out (then readers
    number the images 0..N-1).
    """
    content = {b"data": images.permute(0, 2, 3, 1).contiguous().numpy()}
    if ids is not None:
        content[b"ids"] = np.asarray(ids)
    with atomic_write(path, "wb") as f:
        pickle.dump(content, f, protocol=4)
    return Path(path)


def synthetic_cache_dir() -> Path:
    """Where synthetic smoke data is written: $CIFAR_RESNET_CACHE, else ~/.cache/cifar_resnet."""
    base = os.environ.get("CIFAR_RESNET_CACHE") or Path.home() / ".cache" / "cifar_resnet"
    return Path(base) / "synthetic"


def synthetic_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 (N, 32, 32, 3) images whose class shows in colour and stripe orientation, plus noise.

    Hard enough that a network must learn (random shifts, noisy colours) but learnable in a
    few hundred steps, so smoke runs show falling losses.
    """
    n = len(labels)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    angle = labels * np.pi / len(CLASSES)
    phase = rng.uniform(0, 2 * np.pi, n)
    stripes = np.sin((np.cos(angle)[:, None, None] * xx + np.sin(angle)[:, None, None] * yy) * 0.8
                     + phase[:, None, None])
    hue = np.stack([np.cos(2 * np.pi * labels / 10 + k * 2.1) for k in range(3)], axis=1)  # (N, 3)
    colour = 0.5 + 0.25 * (hue + rng.normal(0, 0.35, (n, 3)))
    images = colour[:, None, None, :] + 0.25 * stripes[..., None] + rng.normal(0, 0.08, (n, 32, 32, 3))
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8)


def _write_batch(path: Path, label: str, images: np.ndarray, labels: np.ndarray) -> None:
    batch = {b"batch_label": label.encode(), b"labels": [int(v) for v in labels],
             b"data": images.transpose(0, 3, 1, 2).reshape(len(images), -1).copy(),
             b"filenames": [f"synthetic_{i:05d}.png".encode() for i in range(len(images))]}
    with atomic_write(path, "wb") as f:
        pickle.dump(batch, f, protocol=4)


def write_synthetic_cifar(root: str | os.PathLike, train_per_class: int = SMOKE_TRAIN_PER_CLASS,
                          test_per_class: int = SMOKE_TEST_PER_CLASS, seed: int = 0) -> Path:
    """Write a synthetic dataset in the official layout under ``root``; return its batches folder.

    Reuses an earlier copy of the same size. Files are written atomically, ``batches.meta`` last,
    so a half-written copy is never taken for a complete one.
    """
    folder = Path(root) / f"{train_per_class}x{test_per_class}-seed{seed}" / BATCHES_DIR
    if (folder / "batches.meta").is_file():
        return folder
    rng = np.random.default_rng(seed)
    train_labels = rng.permutation(np.repeat(np.arange(len(CLASSES)), train_per_class))
    test_labels = rng.permutation(np.repeat(np.arange(len(CLASSES)), test_per_class))
    train_images = synthetic_images(train_labels, rng)
    for k, part in enumerate(np.array_split(np.arange(len(train_labels)), len(TRAIN_BATCHES))):
        _write_batch(folder / TRAIN_BATCHES[k], f"synthetic training batch {k + 1} of 5",
                     train_images[part], train_labels[part])
    _write_batch(folder / TEST_BATCH, "synthetic testing batch", synthetic_images(test_labels, rng), test_labels)
    meta = {b"label_names": [c.encode() for c in CLASSES], b"synthetic": True}
    with atomic_write(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=4)
    return folder
