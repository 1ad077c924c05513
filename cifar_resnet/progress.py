"""A run's time, progress bar and Ctrl-C: the clock that lays the schedule over steps or minutes and says when
to checkpoint, tqdm over the run, and a stop request that lets the running step finish."""
from __future__ import annotations

import signal
import threading
import time

import torch
from tqdm.auto import tqdm

from .config import TrainConfig

CHECKPOINT_SECONDS = 120.0  # a checkpoint at least this often within an epoch


class Clock:
    """The run's training time, continued across resumes, how far the run has come, and when it last saved."""

    def __init__(self, config: TrainConfig, steps_per_epoch: int):
        self.limit = config.minutes * 60 if config.minutes else None  # seconds of training allowed
        self.total_steps = None if config.minutes else steps_per_epoch * config.epochs
        self.epochs = config.epochs
        self.start = self.saved_at = time.perf_counter()

    def restart(self, elapsed: float) -> None:
        """Count on from ``elapsed`` seconds of training (0 for a new run)."""
        self.start = time.perf_counter() - elapsed
        self.saved_at = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def fraction_done(self, step: int) -> float:
        """The fraction of training done: of the time limit, else of the steps."""
        return self.elapsed() / self.limit if self.limit else (step + 0.5) / self.total_steps

    def out_of_time(self) -> bool:
        return self.limit is not None and self.elapsed() >= self.limit

    def finished(self, state) -> bool:
        """Whether a run standing at ``state`` (a TrainingState) is done."""
        return self.out_of_time() if self.limit else state.epoch >= self.epochs

    def mark_saved(self) -> None:
        self.saved_at = time.perf_counter()

    def since_saved(self) -> float:
        return time.perf_counter() - self.saved_at

    def checkpoint_due(self) -> bool:
        return self.since_saved() >= CHECKPOINT_SECONDS


class ProgressBar:
    """tqdm over the steps of the run, or over the seconds of its time budget."""

    def __init__(self, clock: Clock, state, device: torch.device, enabled: bool):
        self.clock = clock
        timed = clock.limit is not None
        self.bar = tqdm(total=round(clock.limit) if timed else clock.total_steps,
                        initial=round(state.elapsed) if timed else state.step, disable=not enabled,
                        unit="s" if timed else "step", desc=f"training on {device.type}", dynamic_ncols=True,
                        bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s of the time budget{postfix}" if timed else None)

    def advance(self) -> None:
        if self.clock.limit is None:
            self.bar.update(1)
        else:
            self.bar.update(min(self.clock.elapsed(), self.clock.limit) - self.bar.n)

    def show(self, **values) -> None:
        self.bar.set_postfix(values)

    def close(self) -> None:
        self.bar.close()


class StopRequest:
    """While training, Ctrl-C (Kernel > Interrupt) asks the loop to stop after the running step,
    so that it can save; a second Ctrl-C stops at once. (Only in the main thread, where signals arrive.)"""

    def __enter__(self) -> "StopRequest":
        self.requested = False
        self.installed = threading.current_thread() is threading.main_thread()
        if self.installed:
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self.installed:
            signal.signal(signal.SIGINT, self.previous if self.previous is not None else signal.default_int_handler)
