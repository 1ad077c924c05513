"""``fit``: the one training loop for the notebooks, the command line and the benchmarks.

``fit`` reads as its steps: set up the run (``Trainer``: the plan, the model, the optimizer, the batches,
and the checkpoint to resume from, if asked), then per epoch train (``train_epoch``: augmented batches,
one ``train_step`` each at the schedule's learning rate) and finish it (``end_epoch``: validate, record,
save). The training images stay on the device as uint8; each step normalizes a batch, runs forward and
backward under autocast and takes a Nesterov SGD (or Muon) step. Every epoch ends with a history row and an
atomic checkpoint; within an epoch a checkpoint is also written every CHECKPOINT_SECONDS, and Ctrl-C
(Kernel > Interrupt in Jupyter) stops after the running step with a checkpoint. ``resume=True`` continues
any of them exactly where it stopped. On the CPU a run keeps the memory its steps free for the next step
(``memory.kept_for_reuse``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from .augment import Augmentation, TrainingBatches
from .checkpoint import Checkpoint, save_checkpoint
from .config import ConfigurationError, ModelConfig, TrainConfig
from .data import CifarData, Normalization
from .device import Compute, device_description
from .errors import CifarResnetError
from .evaluate import class_shares, predict_logits
from .memory import kept_for_reuse
from .model import build_model, whiten_stem
from .network import Builder, Network
from .optimizer import LOOKAHEAD_EVERY, Lookahead, make_optimizer, set_learning_rate
from .progress import Clock, ProgressBar, StopRequest
from .run_folder import CHECKPOINT_FILE, has_validation, run_description, start_run_folder, write_history
from .schedule import lr_at
from .training_state import (RunPlan, TrainingState, check_finite, restore, resume_point, stopped_message,
                             unfinished_slow_weights)

SHARES_IMAGES = 2000  # training images whose predicted classes show what a test set like them gets
WHITENING_IMAGES = 5000  # training images whose patches the whitened stem is computed from
FINITE_CHECK_EVERY = 25  # steps between checks that the loss is still finite (each check waits for the device)


class TrainingInterrupted(CifarResnetError, KeyboardInterrupt):
    """Training was stopped (Ctrl-C, Kernel > Interrupt); the message says what was kept."""


@dataclass
class TrainResult:
    model: nn.Module  # the trained model, in eval mode
    history: list[dict]
    normalization: Normalization
    run_dir: Path | None
    plan: RunPlan  # what the run decided: the split, the batch size, how it computed

    @property
    def device(self) -> torch.device:
        return self.plan.compute.device

    @property
    def checkpoint_path(self) -> Path | None:
        return self.run_dir / CHECKPOINT_FILE if self.run_dir else None

    def summary(self) -> str:
        """One line on how the run ended: its validation accuracy (if it held out a split), time and speed."""
        if not self.history:
            return "no epoch was trained"
        last = self.history[-1]
        scored = (f"validation accuracy {last['val_acc']:.2%}" if has_validation(last) else
                  "no validation split (val_size=0): score it on the test images with `evaluate`")
        return (f"epoch {last['epoch']}: {scored}; {last['elapsed'] / 60:.1f} minutes, "
                f"{last['images_per_s']:,.0f} images/s in the last epoch")


def prepare_model(network: Network | nn.Module, config: TrainConfig, compute: Compute,
                  whitening_images: Callable[[], Tensor]) -> nn.Module:
    """The course's ResNet of a ModelConfig (seeded), a Builder's network, or the module given, on the
    run's device and in its memory format, its stem whitened on ``whitening_images()`` if the recipe says so."""
    torch.manual_seed(config.seed)
    if isinstance(network, nn.Module):
        model = network
    else:
        model = build_model(network) if isinstance(network, ModelConfig) else network.build()
    model = model.to(compute.device)
    if compute.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if config.whiten_stem:
        stem = getattr(model, "stem", None)
        if not (isinstance(stem, nn.Sequential) and isinstance(stem[0], nn.Conv2d)):
            raise ConfigurationError("whiten_stem = True needs a network whose first conv is stem[0], as in the "
                                     "course's ResNet: set whiten_stem=False for this network")
        whiten_stem(model, whitening_images(), config.whiten_eps)
    return model


def training_batches(images: Tensor, labels: Tensor, plan: RunPlan, config: TrainConfig,
                     normalization: Normalization) -> TrainingBatches:
    """The run's shuffled, augmented batches of its uint8 training ``images``, on its device."""
    fill = tuple(round(m * 255) for m in normalization.mean)  # erased pixels become about 0 once normalized
    device = plan.compute.device
    return TrainingBatches(images.to(device), labels.to(device), plan.batch_size, Augmentation(config, fill),
                           config.seed)


def set_stem_bias_learning(model: nn.Module, config: TrainConfig, fraction_done: float) -> None:
    """Let a whitened stem's biases (its conv's, or the BatchNorm's scale and shift after a bias-free conv) learn
    until ``config.stem_bias_until`` of training, then freeze them: from then on nothing before the first stage
    learns, so the backward pass stops there."""
    if config.whiten_stem and config.stem_bias_until < 1:
        whitened = model.stem[0].weight
        for parameter in model.stem.parameters():
            if parameter is not whitened:
                parameter.requires_grad_(fraction_done < config.stem_bias_until)


def predicted_shares(net: nn.Module, images: Tensor, normalization: Normalization, compute: Compute,
                     classes: int) -> list[float]:
    """The share of each class a trained model predicts for training images, which a Kaggle test set from the same
    distribution should get too (``kaggle.check_shift``); kept in the checkpoint."""
    predicted = predict_logits(net, images[:SHARES_IMAGES], normalization, compute=compute).argmax(1)
    return class_shares(predicted, classes).tolist()


def validation_scores(net: nn.Module, images: Tensor, labels: Tensor, normalization: Normalization,
                      criterion: nn.Module, compute: Compute, batch_size: int) -> tuple[float | None, float | None]:
    """Loss and accuracy on the validation split (None, None without one)."""
    if not len(labels):
        return None, None
    logits = predict_logits(net, images, normalization, batch_size=batch_size, compute=compute)
    return criterion(logits, labels).item(), (logits.argmax(1) == labels).float().mean().item()


def first_line(plan: RunPlan, config: TrainConfig, state: TrainingState, run_dir: Path | None, note: str) -> str:
    """What the run is about to do, where, and in which precision."""
    length = f"{config.minutes:g} minutes" if config.minutes else f"{config.epochs} epochs"
    resumed = f", resuming after step {state.step}" if state.step else ""
    folder = f"; run folder {run_dir}" if run_dir else ""
    return (f"training on {plan.compute}: {len(plan.train_indices):,} images, batches of {plan.batch_size}, "
            f"{length}{resumed}{folder}" + (f"; {note}" if note else ""))


def out_of_memory(compute: Compute, batch_size: int) -> CifarResnetError:
    return CifarResnetError(f"out of memory on {device_description(compute.device)} at batch size {batch_size}: use "
                            f"a smaller batch (--batch-size {max(1, batch_size // 2)}); resume keeps the finished epochs")


@contextlib.contextmanager
def interruptions_explained(message: Callable[[], str]):
    """Turn a KeyboardInterrupt into a TrainingInterrupted that says what was kept (``message()``)."""
    try:
        yield
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt:
        raise TrainingInterrupted(message()) from None


class Trainer:
    """One training run: its model, optimizer and batches (from its checkpoint with ``resume``), and its loop."""

    def __init__(self, network: Network | nn.Module, config: TrainConfig, data: CifarData,
                 run_dir: str | Path | None, device: torch.device | str | None, resume: bool = False):
        self.config, self.data = config, data
        self.network = Builder.of_module(network) if isinstance(network, nn.Module) else network  # as recorded
        self.plan = RunPlan.make(config, data, device)
        self.compute = self.plan.compute
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.checkpoint_path = self.run_dir / CHECKPOINT_FILE if self.run_dir else None
        previous, self.resume_note = resume_point(self.checkpoint_path if resume else None, self.network, config)
        train_images = data.train_images[self.plan.train_indices]
        self.normalization = previous.normalization if previous else Normalization.from_images(train_images)
        self.model = prepare_model(network, config, self.compute,
                                   lambda: self.normalization(train_images[:WHITENING_IMAGES]))
        self.optimizer = make_optimizer(self.model, config, self.compute.matmul_dtype)
        self.scaler = self.compute.grad_scaler()
        restore(previous, self.model, self.optimizer, self.scaler)
        self.lookahead = Lookahead(self.model, slow=unfinished_slow_weights(previous, self.compute.device)) \
            if config.lookahead else None
        self.batches = training_batches(train_images, data.train_labels[self.plan.train_indices], self.plan, config,
                                        self.normalization)
        self.val_x, self.val_y = data.train_images[self.plan.val_indices], data.train_labels[self.plan.val_indices]
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.net = torch.compile(self.model) if config.compile else self.model
        self.state = TrainingState.resumed(previous, self.compute.device)
        self.clock = Clock(config, len(self.batches))

    def run(self, progress: bool = True, on_epoch: Callable[[list[dict]], None] | None = None) -> TrainResult:
        """Train until the epochs or the time budget are used up; return the trained model."""
        if self.run_dir:
            start_run_folder(self.run_dir, run_description(self.network, self.config, self.normalization,
                                                           self.data, self.compute))
        self.clock.restart(self.state.elapsed)
        if progress or self.resume_note:  # on stderr, with the progress bar: stdout keeps only results
            print(first_line(self.plan, self.config, self.state, self.run_dir, self.resume_note), file=sys.stderr,
                  flush=True)
        bar = ProgressBar(self.clock, self.state, self.compute.device, progress)
        try:
            with StopRequest() as stop, interruptions_explained(self.stopped_message), \
                    kept_for_reuse(self.compute.device):
                while not self.clock.finished(self.state):
                    train_seconds = self.train_epoch(bar, stop)
                    if train_seconds is None:
                        break  # the time budget ran out as the epoch began
                    self.end_epoch(train_seconds, bar, on_epoch)
                    if stop.requested:
                        raise TrainingInterrupted(self.stopped_message(saved_now=True))
                if self.state.class_shares is None and self.state.history:  # the time ran out as an epoch began
                    self.state.class_shares = predicted_shares(self.net, self.batches.images, self.normalization,
                                                               self.compute, len(self.data.classes))
                    self.save()
        finally:
            bar.close()
        return TrainResult(self.model.eval(), self.state.history, self.normalization, self.run_dir, self.plan)

    def train_epoch(self, bar: ProgressBar, stop: StopRequest) -> float | None:
        """Train the current epoch from where it stands; its seconds of training, or None if no step fit."""
        state, batches, sums = self.state, self.batches, self.state.sums
        self.model.train()
        batches.start_epoch(state.epoch, at=state.batch, random_state=state.rng_state)
        sums.begin()
        for i in range(state.batch, len(batches)):
            if self.clock.out_of_time():
                break
            x, y = batches.batch(i)
            lr = self.scheduled_lr()
            loss, logits = self.train_step(x, y, lr)
            sums.add(loss, logits, y, lr)
            state.batch = i + 1
            if state.step % FINITE_CHECK_EVERY == 0 or state.batch == len(batches):
                check_finite(sums, state.step, self.checkpoint_path)
                bar.show(epoch=state.epoch + 1, loss=f"{sums.mean_loss():.3f}", lr=f"{lr:.3g}")
            bar.advance()
            if state.batch < len(batches) and (stop.requested or self.run_dir and self.clock.checkpoint_due()):
                self.save(within_epoch=True)
                if stop.requested:
                    raise TrainingInterrupted(self.stopped_message(saved_now=True))
        return sums.seconds() if sums.seen else None

    def scheduled_lr(self) -> float:
        """The schedule's learning rate for the next step."""
        return lr_at(self.clock.fraction_done(self.state.step), self.config.lr, self.config.warmup,
                     self.config.schedule)

    def train_step(self, images: Tensor, labels: Tensor, lr: float) -> tuple[Tensor, Tensor]:
        """One optimizer step on uint8 ``images`` at learning rate ``lr``; the loss and logits."""
        set_learning_rate(self.optimizer, lr)
        set_stem_bias_learning(self.model, self.config, self.clock.fraction_done(self.state.step))
        if self.compute.channels_last:  # while still uint8: a quarter of the bytes to move
            images = images.contiguous(memory_format=torch.channels_last)
        x = self.normalization(images)
        try:
            with self.compute.autocast():
                logits = self.net(x)
                loss = self.criterion(logits, labels)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
        except torch.OutOfMemoryError:
            raise out_of_memory(self.compute, len(x)) from None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.state.step += 1
        if self.lookahead and self.state.step % LOOKAHEAD_EVERY == 0:
            self.lookahead.update(self.clock.fraction_done(self.state.step))
        return loss, logits

    def end_epoch(self, train_seconds: float, bar: ProgressBar,
                  on_epoch: Callable[[list[dict]], None] | None) -> None:
        """Validate, add the epoch's history row, save the checkpoint and history, call ``on_epoch``."""
        state = self.state
        check_finite(state.sums, state.step, self.checkpoint_path)
        if self.lookahead:  # validate and checkpoint the averaged weights
            self.lookahead.update(self.clock.fraction_done(state.step))
        val_loss, val_acc = validation_scores(self.net, self.val_x, self.val_y, self.normalization, self.criterion,
                                              self.compute, self.config.eval_batch_size)
        row = state.finish_epoch(val_loss, val_acc, train_seconds, self.clock.elapsed())
        bar.show(epoch=state.epoch, loss=f"{row['train_loss']:.3f}",
                 val_acc=f"{row['val_acc']:.3f}" if has_validation(row) else "no split")
        if self.clock.finished(state):
            state.class_shares = predicted_shares(self.net, self.batches.images, self.normalization, self.compute,
                                                  len(self.data.classes))
        if self.run_dir:
            self.save()
            write_history(state.history, self.run_dir)
        if on_epoch:
            on_epoch(state.history)

    def save(self, within_epoch: bool = False) -> None:
        """Write the checkpoint of the run as it stands (atomically); ``within_epoch``: in the middle of an epoch,
        with the random state to continue it from (and only in a run folder, and never of a diverged run)."""
        state = self.state
        if within_epoch:
            if not self.run_dir:
                return
            check_finite(state.sums, state.step, self.checkpoint_path)
            state.rng_state, state.elapsed = self.batches.random_state(state.batch), self.clock.elapsed()
        within = state.within_epoch(self.lookahead.slow if self.lookahead else None)
        save_checkpoint(Checkpoint(
            model_config=self.network, normalization=self.normalization, state_dict=self.model.state_dict(),
            train_config=self.config, epoch=state.epoch, step=state.step, elapsed=state.elapsed,
            history=state.history, optimizer_state=self.optimizer.state_dict(), scaler_state=self.scaler.state_dict(),
            finished=self.clock.finished(state) and within is None, within_epoch=within,
            class_shares=state.class_shares), self.checkpoint_path)
        self.clock.mark_saved()

    def stopped_message(self, saved_now: bool = False) -> str:
        return stopped_message(self.state, self.checkpoint_path, self.clock, saved_now)


def fit(network: Network | nn.Module, train_config: TrainConfig | None, data: CifarData,
        run_dir: str | Path | None = None, *, device: torch.device | str | None = None,
        resume: bool = False, progress: bool = True,
        on_epoch: Callable[[list[dict]], None] | None = None) -> TrainResult:
    """Train a network on ``data`` and return it with its history and what the run decided (``plan``).

    network:  the course's ResNet as a ModelConfig, a student's own network as a ``network.Builder``,
              or any nn.Module (trained in place; its checkpoint records its class as the builder, so a
              class defined in a notebook reloads in that notebook).
    run_dir:  where checkpoint.pt, history.json, history.csv and run.json are written (None keeps
              everything in memory).
    resume:   continue from run_dir/checkpoint.pt, if it exists, with the same recipe (the execution settings
              ``config.EXECUTION_FIELDS`` may change; the first line says which did).
    progress: print the run's first line and show a progress bar.
    on_epoch: called with the history after each epoch (the notebooks draw live curves with it).
    """
    trainer = Trainer(network, train_config or TrainConfig(), data, run_dir, device, resume=resume)
    return trainer.run(progress, on_epoch)


@dataclass(frozen=True)
class TrainingEstimate:
    """How long ``fit`` will take: seconds of training, and the speed it was estimated from."""

    seconds: float
    images_per_s: float | None  # None when a time budget sets the length
    description: str

    def __str__(self) -> str:
        return self.description


def estimate_training_time(network: Network, train_config: TrainConfig, data: CifarData,
                           device: torch.device | str | None = None, steps: int = 3) -> TrainingEstimate:
    """How long ``fit(network, train_config, data)`` will train: its time budget, or its epochs
    at the speed of a few real training steps timed here on random images (after one warm-up step)."""
    validation = "" if train_config.val_size == 0 else ", plus a validation pass after each epoch"
    if train_config.minutes:
        return TrainingEstimate(train_config.minutes * 60, None,
                                f"{train_config.minutes:g} minutes of training (the recipe's time budget){validation}")
    plan = RunPlan.make(train_config, data, device)
    train_images, batch = len(plan.train_indices), plan.batch_size
    timing = dataclasses.replace(train_config, val_size=0, whiten_stem=False, compile=False)
    cpu = torch.device("cpu")
    random_images = CifarData(torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8, device=cpu),
                              torch.arange(batch, device=cpu) % 10, torch.empty(0, 3, 32, 32, dtype=torch.uint8,
                              device=cpu), torch.empty(0, dtype=torch.long, device=cpu), "random images for timing")
    trainer = Trainer(network, timing, random_images, None, plan.compute.device)
    trainer.batches.start_epoch(0)
    x, y = trainer.batches.batch(0)
    with kept_for_reuse(plan.compute.device):  # as in a run
        trainer.train_step(x, y, lr=0.0)[0].item()  # warm-up: allocations, kernel choice (a zero rate changes nothing)
        start = time.perf_counter()
        for _ in range(steps):
            loss = trainer.train_step(x, y, lr=0.0)[0]
        loss.item()  # wait for the device
        images_per_s = steps * batch / (time.perf_counter() - start)
    seconds = train_config.epochs * plan.steps_per_epoch * batch / images_per_s
    return TrainingEstimate(seconds, images_per_s, (
        f"about {_duration(seconds)} of training: {train_config.epochs} epochs of {train_images:,} images at "
        f"{images_per_s:,.0f} images/s (timed just now on {device_description(plan.compute.device)}){validation}"))


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} seconds"
    return f"{seconds / 60:.0f} minutes" if seconds < 5400 else f"{seconds / 3600:.1f} hours"
