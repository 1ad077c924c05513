"""Checkpoints: weights plus everything needed to rebuild, normalize and resume, as plain data.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(weights_only=True)`` (which runs no code). It is written atomically and carries a
SHA-256 of its whole content, so a file damaged on disk (a flipped byte, a truncated sync) is
refused with a clear message instead of loading different weights.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .config import TrainConfig
from .data import Normalization
from .device import select_device
from .errors import CifarResnetError
from .files import atomic_write
from .network import Network, build_network, network_from_dict

FORMAT = "cifar_resnet.checkpoint/2"  # /2 adds the checksum
UNCHECKED_FORMAT = "cifar_resnet.checkpoint/1"  # written before checksums: still read, without a check
DAMAGED = "restore it from a copy, or train again (a run folder resumes from its checkpoint)"


class ArchitectureMismatchError(CifarResnetError):
    """A checkpoint does not belong to the model configuration it is loaded into."""


@dataclass(kw_only=True)
class Checkpoint:
    """The contents of a checkpoint file, built from keywords. ``model_config`` is the network: the course's
    ResNet as a ModelConfig, or a student's own as a ``network.Builder``."""

    model_config: Network
    normalization: Normalization
    state_dict: dict
    train_config: TrainConfig | None = None
    epoch: int = 0  # completed epochs
    step: int = 0  # completed optimizer steps
    elapsed: float = 0.0  # seconds of training so far
    history: list[dict] = field(default_factory=list)
    optimizer_state: dict | None = None
    scaler_state: dict | None = None
    finished: bool = False
    within_epoch: dict | None = None  # where an unfinished epoch stands (see train.TrainingState)
    class_shares: list[float] | None = None  # the trained model's predicted class shares on training images

    def to_dict(self) -> dict:
        return {"format": FORMAT, "model_config": self.model_config.to_dict(),
                "normalization": self.normalization.to_dict(), "state_dict": self.state_dict,
                "train_config": self.train_config.to_dict() if self.train_config else None,
                "epoch": self.epoch, "step": self.step, "elapsed": self.elapsed,
                "history": self.history, "optimizer_state": self.optimizer_state,
                "scaler_state": self.scaler_state, "finished": self.finished,
                "within_epoch": self.within_epoch, "class_shares": self.class_shares}

    def build_model(self, device: torch.device | str | None = None, network: nn.Module | None = None) -> nn.Module:
        """The network of this checkpoint with its weights, in eval mode: built afresh, or ``network``
        (an instance of the same architecture) filled with them."""
        model = build_network(self.model_config, device) if network is None else network.to(device or "cpu")
        model.load_state_dict(self.state_dict)
        return model.eval()


def content_digest(value) -> str:
    """SHA-256 of nested dicts, lists, tensors and plain values: every key, number and tensor byte."""
    digest = hashlib.sha256()

    def feed(v) -> None:
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu().contiguous()
            digest.update(f"tensor {v.dtype} {tuple(v.shape)};".encode())
            digest.update(v.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(v, dict):
            digest.update(f"dict {len(v)};".encode())
            for key in sorted(v, key=repr):
                digest.update(f"{key!r}:".encode())
                feed(v[key])
        elif isinstance(v, (list, tuple)):
            digest.update(f"{type(v).__name__} {len(v)};".encode())
            for item in v:
                feed(item)
        else:
            digest.update(f"{type(v).__name__} {v!r};".encode())

    feed(value)
    return digest.hexdigest()


def save_checkpoint(checkpoint: Checkpoint, path: str | os.PathLike) -> Path:
    """Write ``checkpoint`` atomically, with its checksum: ``path`` is always a complete checkpoint, old or new."""
    path = Path(path)
    content = checkpoint.to_dict()
    content["sha256"] = content_digest(content)
    with atomic_write(path, "wb") as f:
        torch.save(content, f)
    return path


def _read_verified(path: Path) -> dict:
    """The checkpoint's content, after checking that it is one and that its checksum matches."""
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged file can fail anywhere in the unpickler, with any exception
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CifarResnetError(f"checkpoint {path} could not be loaded safely ({type(e).__name__}: {first[:200]}); "
                               f"it is damaged or not a cifar_resnet checkpoint: {DAMAGED}") from None
    if not isinstance(raw, dict) or raw.get("format") not in (FORMAT, UNCHECKED_FORMAT):
        raise CifarResnetError(f"{path} is not a cifar_resnet checkpoint (format {FORMAT!r} expected); "
                               f"a bare state_dict lacks the configuration and normalization")
    stored = raw.pop("sha256", None)
    if (stored is not None or raw["format"] == FORMAT) and stored != content_digest(raw):
        raise CifarResnetError(f"checkpoint {path} is damaged: its content does not match the checksum "
                               f"stored when it was saved; {DAMAGED}")
    return raw


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint`` (safely: weights_only=True; checksum verified)."""
    path = Path(path)
    if not path.is_file():
        raise CifarResnetError(f"checkpoint {path} does not exist: train first "
                               f"(python -m cifar_resnet train --out RUN_DIR) or give the right path")
    raw = _read_verified(path)
    try:
        return Checkpoint(
            model_config=network_from_dict(raw["model_config"]),
            normalization=Normalization.from_dict(raw["normalization"]),
            state_dict=raw["state_dict"],
            train_config=TrainConfig.from_dict(raw["train_config"]) if raw.get("train_config") else None,
            epoch=raw["epoch"], step=raw["step"], elapsed=raw["elapsed"], history=raw["history"],
            optimizer_state=raw.get("optimizer_state"), scaler_state=raw.get("scaler_state"),
            finished=raw.get("finished", False), within_epoch=raw.get("within_epoch"),
            class_shares=raw.get("class_shares"))
    except (KeyError, TypeError) as e:
        raise CifarResnetError(f"checkpoint {path} is incomplete (missing or bad entry {e})") from None


def config_differences(expected: Network, found: Network) -> list[str]:
    """'field: expected vs found' for each field that differs."""
    a, b = expected.to_dict(), found.to_dict()
    return [f"{k}: {a.get(k)} vs {b.get(k)}" for k in [*a, *(k for k in b if k not in a)] if a.get(k) != b.get(k)]


def check_architecture(checkpoint: Checkpoint, expected: Network, path: str | os.PathLike = "checkpoint") -> None:
    """Raise ArchitectureMismatchError listing the fields where the checkpoint's model differs."""
    differences = config_differences(expected, checkpoint.model_config)
    if differences:
        raise ArchitectureMismatchError(
            f"{path} holds another architecture (expected vs checkpoint: {'; '.join(differences)}): "
            f"use a checkpoint of this configuration, or the checkpoint's own configuration")


def load_model(path: str | os.PathLike, device: torch.device | str | None = None,
               expected: Network | None = None, network: nn.Module | None = None) -> tuple[nn.Module, Checkpoint]:
    """The trained model of a checkpoint (eval mode, on ``device``: by default the GPU when there
    is one, as for training) and the checkpoint itself.

    With ``expected``, a checkpoint of another architecture is refused with the differences.
    A student's own network is rebuilt by importing its builder, or filled into ``network`` if given.
    """
    checkpoint = load_checkpoint(path)
    if expected is not None:
        check_architecture(checkpoint, expected, path)
    try:
        model = checkpoint.build_model(select_device(device), network)
    except RuntimeError as e:
        raise CifarResnetError(f"checkpoint {path}: its weights do not fit its own configuration "
                               f"({str(e).splitlines()[0]}); the file was altered") from None
    return model, checkpoint
