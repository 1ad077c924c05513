"""Fresh random inputs for the checks: new ones on every call, so an answer copied from a page cannot pass."""
from __future__ import annotations

import random

import torch

CPU = torch.device("cpu")  # the checks compute on the CPU whatever the default device is


def generator() -> torch.Generator:
    """A CPU generator from a fresh seed."""
    return torch.Generator(CPU).manual_seed(random.SystemRandom().randrange(2 ** 31))


def images(g: torch.Generator, n: int = 64, size: int = 32) -> torch.Tensor:
    """Random uint8 images (n, 3, size, size)."""
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g, device=CPU)


def integer(g: torch.Generator, low: int, high: int) -> int:
    """A random integer in [low, high]."""
    return int(torch.randint(low, high + 1, (), generator=g, device=CPU))


def seeded(seed: int) -> torch.Generator:
    return torch.Generator(CPU).manual_seed(seed)
