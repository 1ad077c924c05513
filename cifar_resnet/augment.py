"""Training-time augmentation of whole uint8 batches (N, 3, H, W) on whatever device they live on.

Each function draws one random choice per image from ``generator`` (a torch.Generator on the
images' device, for reproducible runs) and returns a new uint8 batch. ``augment`` chains them
the way training does; notebook 01 shows each one on the same images.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _rand(n: int, images: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.rand(n, device=images.device, generator=generator)


def random_crop(images: Tensor, padding: int = 4, generator: torch.Generator | None = None) -> Tensor:
    """Zero-pad by ``padding`` and cut a random HxW window per image (RandomCrop(32, padding=4))."""
    if padding == 0:
        return images
    n, c, h, w = images.shape
    padded = F.pad(images, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n, 1), device=images.device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n, 1), device=images.device, generator=generator)
    rows = (dy + torch.arange(h, device=images.device)).view(n, 1, h, 1)
    cols = (dx + torch.arange(w, device=images.device)).view(n, 1, 1, w)
    batch = torch.arange(n, device=images.device).view(n, 1, 1, 1)
    channel = torch.arange(c, device=images.device).view(1, c, 1, 1)
    return padded[batch, channel, rows, cols]


def random_flip(images: Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """Mirror each image left-right with probability ``p``."""
    flip = (_rand(len(images), images, generator) < p).view(-1, 1, 1, 1)
    return torch.where(flip, images.flip(3), images)


def _erase_boxes(images: Tensor, top: Tensor, left: Tensor, height: Tensor, width: Tensor,
                 apply: Tensor, fill) -> Tensor:
    """Fill the box [top, top+height) x [left, left+width) of each image where ``apply``."""
    _, c, h, w = images.shape
    rows = torch.arange(h, device=images.device).view(1, h, 1)
    cols = torch.arange(w, device=images.device).view(1, 1, w)
    v = lambda t: t.view(-1, 1, 1)  # noqa: E731
    inside = ((rows >= v(top)) & (rows < v(top + height)) & (cols >= v(left)) & (cols < v(left + width))
              & v(apply))
    fill = torch.as_tensor(fill, dtype=images.dtype, device=images.device).expand(c).view(1, c, 1, 1)
    return torch.where(inside.unsqueeze(1), fill, images)


def cutout(images: Tensor, size: int = 8, p: float = 1.0, fill=0,
           generator: torch.Generator | None = None) -> Tensor:
    """Blank a ``size`` x ``size`` square centred anywhere in the image (clipped at the border)."""
    n, _, h, w = images.shape
    cy = (_rand(n, images, generator) * h).long()
    cx = (_rand(n, images, generator) * w).long()
    top, left = (cy - size // 2).clamp(min=0), (cx - size // 2).clamp(min=0)
    bottom, right = (cy - size // 2 + size).clamp(max=h), (cx - size // 2 + size).clamp(max=w)
    return _erase_boxes(images, top, left, bottom - top, right - left,
                        _rand(n, images, generator) < p, fill)


def random_erasing(images: Tensor, p: float = 0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), fill=0,
                   generator: torch.Generator | None = None) -> Tensor:
    """Erase a random rectangle with probability ``p`` (torchvision's RandomErasing, batched).

    Area is a uniform fraction ``scale`` of the image, aspect ratio log-uniform in ``ratio``.
    """
    n, _, h, w = images.shape
    area = h * w * (scale[0] + (scale[1] - scale[0]) * _rand(n, images, generator))
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * _rand(n, images, generator))
    height = torch.sqrt(area * aspect).round().long().clamp(1, h)
    width = torch.sqrt(area / aspect).round().long().clamp(1, w)
    top = (_rand(n, images, generator) * (h - height + 1)).long()
    left = (_rand(n, images, generator) * (w - width + 1)).long()
    return _erase_boxes(images, top, left, height, width, _rand(n, images, generator) < p, fill)


def rand_augment(images: Tensor, num_ops: int = 2, magnitude: int = 9) -> Tensor:
    """torchvision's RandAugment, with its own random operations for every image.

    It draws from torch's global generator (seeded by training) and loops over images, so it is
    much slower than the functions above: an option, not the default.
    """
    from torchvision.transforms import v2

    transform = v2.RandAugment(num_ops=num_ops, magnitude=magnitude)
    return torch.stack([transform(image) for image in images])


def augment(images: Tensor, *, crop_padding: int = 4, flip: bool = True, erasing: float = 0.5,
            randaugment: bool = False, fill=0, generator: torch.Generator | None = None) -> Tensor:
    """The training augmentation: crop, flip, (RandAugment), random erasing, in the reference order."""
    images = random_crop(images, crop_padding, generator)
    if flip:
        images = random_flip(images, generator=generator)
    if randaugment:
        images = rand_augment(images)
    if erasing > 0:
        images = random_erasing(images, p=erasing, fill=fill, generator=generator)
    return images
