"""``fit``: the one training loop for the notebooks, the command line and the benchmarks.

The training images stay on the device as uint8 and are augmented there a few batches at a time;
each step normalizes a batch, runs forward and backward under autocast and takes a Nesterov SGD
step whose learning rate follows a linear warmup and a cosine decay computed per step (optionally
with lookahead weight averaging). Each epoch ends with a validation pass, a history row and an
atomic checkpoint from which ``resume=True`` continues the same run.
"""
from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from .augment import augment
from .checkpoint import Checkpoint, check_architecture, load_checkpoint, save_checkpoint
from .config import ModelConfig, TrainConfig
from .data import CifarData, Normalization, train_val_split
from .device import autocast_dtype, device_description, select_device
from .errors import CifarResnetError
from .evaluate import predict_logits
from .files import atomic_write
from .model import ResNet, build_model, whiten_stem

CHECKPOINT_FILE = "checkpoint.pt"
LOOKAHEAD_EVERY, LOOKAHEAD_PEAK = 5, 0.95 ** 5  # steps between lookahead updates, their final decay
LINEAR_START, LINEAR_END = 0.2, 0.07  # the 'linear' schedule's first and last rate, as fractions of the peak
AUGMENT_CHUNK = 4096  # images augmented per call (uint8: 12 MB), whole batches of them
HISTORY_FIELDS = ("epoch", "step", "lr", "train_loss", "train_acc", "val_loss", "val_acc",
                  "images_per_s", "seconds", "elapsed")


class TrainingDivergedError(CifarResnetError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    model: ResNet  # the trained model, in eval mode
    history: list[dict]
    normalization: Normalization
    run_dir: Path | None
    device: torch.device

    @property
    def checkpoint_path(self) -> Path | None:
        return self.run_dir / CHECKPOINT_FILE if self.run_dir else None

    def summary(self) -> str:
        """One line on how the run ended: its validation accuracy (if it held out a split), time and speed."""
        if not self.history:
            return "no epoch was trained"
        last = self.history[-1]
        scored = ("no validation split (val_size=0): score it on the test images with `evaluate`"
                  if math.isnan(last["val_acc"]) else f"validation accuracy {last['val_acc']:.2%}")
        return (f"epoch {last['epoch']}: {scored}; {last['elapsed'] / 60:.1f} minutes, "
                f"{last['images_per_s']:,.0f} images/s in the last epoch")


def lr_at(progress: float, peak: float, warmup: float, schedule: str = "cosine") -> float:
    """Learning rate at ``progress`` in [0, 1], continuous everywhere.

    'cosine': linear from 0 to ``peak`` over the first ``warmup`` fraction, then a cosine down to 0.
    'linear': linear from LINEAR_START * peak to ``peak`` over the warmup, then linear down to
    LINEAR_END * peak (airbench's triangle).
    """
    progress = min(max(progress, 0.0), 1.0)
    start, end = (LINEAR_START, LINEAR_END) if schedule == "linear" else (0.0, 0.0)
    if progress < warmup:
        return peak * (start + (1 - start) * progress / warmup)
    decayed = (progress - warmup) / (1 - warmup)
    if schedule == "linear":
        return peak * (1 + (end - 1) * decayed)
    return peak * 0.5 * (1 + math.cos(math.pi * decayed))


def parameter_groups(model: nn.Module, weight_decay: float, bias_lr_scale: float = 1.0) -> list[dict]:
    """Weight decay on conv and linear weights only. BatchNorm weights and all biases get none, and
    the biases of BatchNorm and the classifier learn ``bias_lr_scale`` times faster than the schedule
    says (a conv's bias, as in the airbench style's stem, does not). Frozen parameters are left out."""
    conv_biases = {id(m.bias) for m in model.modules() if isinstance(m, nn.Conv2d) and m.bias is not None}
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    fast = [p for n, p in named if n.endswith("bias") and id(p) not in conv_biases]
    fast_ids = {id(p) for p in fast}
    return [{"params": [p for _, p in named if p.ndim > 1], "weight_decay": weight_decay, "lr_scale": 1.0},
            {"params": [p for _, p in named if p.ndim <= 1 and id(p) not in fast_ids], "weight_decay": 0.0,
             "lr_scale": 1.0},
            {"params": fast, "weight_decay": 0.0, "lr_scale": bias_lr_scale}]


class Lookahead:
    """Slow weights that follow the model, which restarts from them (airbench's lookahead).

    ``update(progress)`` moves every float tensor of the model's state (weights and BatchNorm
    statistics) and its slow copy to ``decay * slow + (1 - decay) * model``, with ``decay`` growing
    as ``peak * progress ** 3``: no averaging early on, a long average at the end.
    """

    def __init__(self, model: nn.Module, peak: float = LOOKAHEAD_PEAK):
        self.tensors = [t for t in model.state_dict().values() if t.is_floating_point()]
        self.slow = [t.detach().clone() for t in self.tensors]
        self.peak = peak

    @torch.no_grad()
    def update(self, progress: float) -> None:
        weight = 1 - self.peak * min(max(progress, 0.0), 1.0) ** 3
        for slow, tensor in zip(self.slow, self.tensors):
            slow.lerp_(tensor, weight)
            tensor.copy_(slow)


def write_history(history: list[dict], run_dir: Path) -> None:
    """history.json and history.csv in ``run_dir``, each written atomically."""
    with atomic_write(run_dir / "history.json") as f:
        json.dump(history, f, indent=1)
    with atomic_write(run_dir / "history.csv", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows(history)


def read_history(run_dir: str | Path) -> list[dict]:
    """The per-epoch history a run wrote (history.json)."""
    path = Path(run_dir) / "history.json"
    if not path.is_file():
        raise CifarResnetError(f"{path} does not exist: train a run into {run_dir} first")
    return json.loads(path.read_text())


def _resume_state(path: Path, model_config: ModelConfig, train_config: TrainConfig) -> Checkpoint:
    previous = load_checkpoint(path)
    check_architecture(previous, model_config, path)
    if previous.train_config != train_config:
        old, new = previous.train_config.to_dict(), train_config.to_dict()
        diff = "; ".join(f"{k}: {old[k]} vs {new[k]}" for k in new if old.get(k) != new[k])
        raise CifarResnetError(f"cannot resume {path}: it was trained with other settings (checkpoint vs now: "
                               f"{diff}); resume with the same settings or train into a new folder")
    return previous


def fit(model_config: ModelConfig, train_config: TrainConfig | None, data: CifarData,
        run_dir: str | Path | None = None, *, device: torch.device | str | None = None,
        resume: bool = False, progress: bool = True,
        on_epoch: Callable[[list[dict]], None] | None = None) -> TrainResult:
    """Train a ResNet for ``model_config`` on ``data`` and return it with its history.

    run_dir:  where checkpoint.pt, history.json and history.csv are written after every epoch
              (None keeps everything in memory).
    resume:   continue from run_dir/checkpoint.pt with the same schedule, if it exists.
    on_epoch: called with the history after each epoch (the notebooks draw live curves with it).
    """
    cfg = train_config or TrainConfig()
    device = select_device(device)
    dtype = autocast_dtype(cfg.amp, device)
    run_dir = Path(run_dir) if run_dir is not None else None
    checkpoint_path = run_dir / CHECKPOINT_FILE if run_dir else None

    train_idx, val_idx = train_val_split(data.train_labels, cfg.val_size, cfg.seed)
    normalization = Normalization.from_images(data.train_images[train_idx])
    torch.manual_seed(cfg.seed)
    model = build_model(model_config).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.whiten_stem:
        whiten_stem(model, normalization(data.train_images[train_idx[:5000]]))
    optimizer = torch.optim.SGD(parameter_groups(model, cfg.weight_decay, cfg.bias_lr_scale), lr=cfg.lr,
                                momentum=cfg.momentum, nesterov=cfg.nesterov)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    state = Checkpoint(model_config, normalization, {}, cfg)
    if resume and checkpoint_path and checkpoint_path.is_file():
        state = _resume_state(checkpoint_path, model_config, cfg)
        model.load_state_dict(state.state_dict)
        optimizer.load_state_dict(state.optimizer_state)
        if state.scaler_state:
            scaler.load_state_dict(state.scaler_state)
        normalization = state.normalization

    lookahead = Lookahead(model) if cfg.lookahead else None  # after a resume: the averaged weights
    train_x, train_y = data.train_images[train_idx].to(device), data.train_labels[train_idx].to(device)
    val_x, val_y = data.train_images[val_idx], data.train_labels[val_idx]
    mirrored_half = (torch.rand(len(train_x), device=device, generator=torch.Generator(device).manual_seed(cfg.seed))
                     < 0.5 if cfg.alternate_flip else None)  # the images mirrored in even epochs
    batch_size = min(cfg.batch_size, len(train_x))
    steps_per_epoch = len(train_x) // batch_size
    batches_per_chunk = max(1, AUGMENT_CHUNK // batch_size)
    total_steps = None if cfg.minutes else steps_per_epoch * cfg.epochs
    budget = cfg.minutes * 60 if cfg.minutes else None
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    fill = tuple(round(m * 255) for m in normalization.mean)  # erased pixels become 0 after normalizing
    net = torch.compile(model) if cfg.compile else model

    if run_dir:
        run_dir.mkdir(parents=True, exist_ok=True)
        for leftover in run_dir.glob(f".{CHECKPOINT_FILE}.*.tmp"):  # from a write cut short by a kill
            leftover.unlink()
        with atomic_write(run_dir / "run.json") as f:
            json.dump({"model_config": model_config.to_dict(), "train_config": cfg.to_dict(),
                       "normalization": normalization.to_dict(), "data": repr(data),
                       "device": device_description(device)}, f, indent=1)

    clock_start = time.perf_counter() - state.elapsed  # the clock continues across resumes

    def elapsed() -> float:
        return time.perf_counter() - clock_start

    def progress_at() -> float:
        """The fraction of training done: of the time budget, else of the steps."""
        return elapsed() / budget if budget else (state.step + 0.5) / total_steps

    def finished() -> bool:
        return progress_at() >= 1 if budget else state.epoch >= cfg.epochs

    bar = tqdm(total=total_steps, initial=state.step, disable=not progress, unit="step",
               desc=f"training on {device.type}", dynamic_ncols=True)
    lr = lr_at(progress_at(), cfg.lr, cfg.warmup, cfg.schedule)
    while not finished():
        model.train()
        generator = torch.Generator(device).manual_seed(cfg.seed * 1000 + state.epoch)
        order = torch.randperm(len(train_x), device=device, generator=generator)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen, epoch_start = 0, time.perf_counter()
        for i in range(steps_per_epoch):
            if budget and progress_at() >= 1:
                break
            lr = lr_at(progress_at(), cfg.lr, cfg.warmup, cfg.schedule)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
            if i % batches_per_chunk == 0:  # augment the next few batches in one go: far fewer, larger calls
                idx = order[i * batch_size:(i + batches_per_chunk) * batch_size]
                flip = mirrored_half[idx] ^ (state.epoch % 2 == 1) if cfg.alternate_flip else cfg.flip
                chunk_x = augment(train_x[idx], crop_padding=cfg.crop_padding, flip=flip, erasing=cfg.erasing,
                                  randaugment=cfg.randaugment, fill=fill, generator=generator,
                                  crop_reflect=cfg.crop_reflect)
                chunk_y = train_y[idx]
            in_chunk = slice((i % batches_per_chunk) * batch_size, (i % batches_per_chunk + 1) * batch_size)
            x, y = chunk_x[in_chunk], chunk_y[in_chunk]
            if cfg.channels_last:  # while still uint8: a quarter of the bytes to move
                x = x.contiguous(memory_format=torch.channels_last)
            x = normalization(x)
            try:
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    logits = net(x)
                    loss = criterion(logits, y)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
            except torch.OutOfMemoryError:
                raise CifarResnetError(
                    f"out of memory on {device_description(device)} at batch size {batch_size}: use a smaller "
                    f"batch (--batch-size {max(1, batch_size // 2)}); resume keeps the finished epochs") from None
            scaler.step(optimizer)
            scaler.update()
            state.step += 1
            if lookahead and state.step % LOOKAHEAD_EVERY == 0:
                lookahead.update(progress_at())
            loss_sum += loss.detach() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(y)
            if state.step % 25 == 0 or i == steps_per_epoch - 1:
                _check_finite(loss_sum, state.step, lr, checkpoint_path)
                bar.set_postfix(epoch=state.epoch + 1, loss=f"{loss_sum.item() / seen:.3f}", lr=f"{lr:.3g}")
            bar.update(1)
        if seen == 0:  # the time budget ran out at the start of an epoch
            break
        _check_finite(loss_sum, state.step, lr, checkpoint_path)
        if lookahead:  # validate and checkpoint the averaged weights
            lookahead.update(progress_at())
        train_seconds = time.perf_counter() - epoch_start
        val_logits = predict_logits(net, val_x, normalization, batch_size=cfg.eval_batch_size, amp=cfg.amp)
        state.epoch += 1
        state.elapsed = elapsed()
        state.history.append({
            "epoch": state.epoch, "step": state.step, "lr": lr,
            "train_loss": loss_sum.item() / seen, "train_acc": correct.item() / seen,
            "val_loss": criterion(val_logits, val_y).item() if len(val_y) else float("nan"),
            "val_acc": (val_logits.argmax(1) == val_y).float().mean().item() if len(val_y) else float("nan"),
            "images_per_s": seen / train_seconds, "seconds": time.perf_counter() - epoch_start,
            "elapsed": state.elapsed})
        row = state.history[-1]
        bar.set_postfix(epoch=state.epoch, loss=f"{row['train_loss']:.3f}", val_acc=f"{row['val_acc']:.3f}")
        if run_dir:
            state.state_dict, state.optimizer_state = model.state_dict(), optimizer.state_dict()
            state.scaler_state, state.finished = scaler.state_dict(), finished()
            save_checkpoint(state, checkpoint_path)
            write_history(state.history, run_dir)
        if on_epoch:
            on_epoch(state.history)
    bar.close()
    return TrainResult(model.eval(), state.history, normalization, run_dir, device)


def _check_finite(loss_sum: torch.Tensor, step: int, lr: float, checkpoint_path: Path | None) -> None:
    if not torch.isfinite(loss_sum):
        kept = f"; the last good checkpoint {checkpoint_path} is kept" if checkpoint_path else ""
        raise TrainingDivergedError(f"the training loss became {loss_sum.item()} by step {step} "
                                    f"(learning rate {lr:.4g}){kept}: lower the learning rate or "
                                    f"turn off mixed precision (amp='off')")
