"""The learning rate over a run: a pure function of the fraction of training done."""
from __future__ import annotations

import math

from .config import LINEAR_END_SHARE

LINEAR_START, LINEAR_END = 0.2, LINEAR_END_SHARE  # the 'linear' schedule's first and last rate, as fractions of the peak


def lr_at(done: float, peak: float, warmup: float, schedule: str = "cosine") -> float:
    """Learning rate when the fraction ``done`` of training is done (in [0, 1]), continuous everywhere.

    'cosine': linear from 0 to ``peak`` over the first ``warmup`` fraction, then a cosine down to 0.
    'linear': linear from LINEAR_START * peak to ``peak`` over the warmup, then linear down to
    LINEAR_END * peak (airbench's triangle).
    """
    done = min(max(done, 0.0), 1.0)
    start, end = (LINEAR_START, LINEAR_END) if schedule == "linear" else (0.0, 0.0)
    if done < warmup:
        return peak * (start + (1 - start) * done / warmup)
    decayed = (done - warmup) / (1 - warmup)
    if schedule == "linear":
        return peak * (1 + (end - 1) * decayed)
    return peak * 0.5 * (1 + math.cos(math.pi * decayed))
