"""Corrupted copies of images in the manner of CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019).

CIFAR-10-C's files cannot be fetched everywhere, so the copies are made here, with the published
severity constants of the paper's CIFAR code (``make_cifar_c.py``), from torch and Pillow alone:
14 of its 15 test corruptions (frost needs its photographs of frost, which are not shipped).
Where that code calls ImageMagick (motion blur, snow) or scipy (zoom, elastic), the same operation
is written in torch: the constants are the paper's, the pixels are close to but not exactly its.

``corrupt(images, name, severity, seed)`` takes and returns uint8 batches (N, 3, 32, 32); the result
is truncated to uint8 as CIFAR-10-C's ``np.uint8`` was. Every random draw comes from ``seed``.
"""
from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

CPU = torch.device("cpu")  # corruptions are made on the CPU, whatever the default device
SEVERITIES = (1, 2, 3, 4, 5)
FAMILIES = {  # CIFAR-10-C's grouping of its test corruptions
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
}
CORRUPTIONS = tuple(name for names in FAMILIES.values() for name in names)

# The severity constants of CIFAR-10-C's make_cifar_c.py, severity 1 to 5.
CONSTANTS = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),  # standard deviation of the noise, of 1
    "shot_noise": (500, 250, 100, 75, 50),  # photons per unit of intensity (Poisson)
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),  # share of values set to 0 or 1
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),  # disk radius, its anti-alias blur
    "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),  # sigma, max shift, rounds
    "motion_blur": ((10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3)),  # radius, sigma of ImageMagick's motion blur
    "zoom_blur": tuple(np.arange(1, top, 0.01) for top in (1.06, 1.11, 1.16, 1.21, 1.26)),  # zoom factors averaged
    "snow": ((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
             (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)),
    "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),  # fog's strength, the fractal's decay
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),  # added to HSV's value
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),  # factor on each channel's distance from its mean
    "elastic_transform": tuple((32 * a, 32 * s, 32 * t) for a, s, t in
                               ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05),
                                (0.1, 0.03, 0.03))),  # displacement scale, its smoothness, affine jitter (pixels)
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),  # side of the down-sampled image, of 32
    "jpeg_compression": (80, 65, 58, 50, 40),  # JPEG quality
}


def corrupt(images: Tensor, name: str, severity: int, seed: int = 0) -> Tensor:
    """``images`` (uint8, (N, 3, 32, 32), any device) with corruption ``name`` at ``severity`` 1-5."""
    if name not in CORRUPTIONS:
        raise ValueError(f"corruption {name!r}: use one of {CORRUPTIONS}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity {severity!r}: use one of {SEVERITIES}")
    generator = torch.Generator(CPU).manual_seed(seed)
    c = CONSTANTS[name][severity - 1]
    x = images.cpu()
    if name in ("pixelate", "jpeg_compression"):  # Pillow on uint8 images, as CIFAR-10-C
        out = _pixelate(x, c) if name == "pixelate" else _jpeg(x, c)
    else:
        out = (_FLOAT[name](x.float() / 255, c, generator).clamp(0, 1) * 255).to(torch.uint8)
    return out.to(images.device)


# ---- noise ----

def _gaussian_noise(x: Tensor, sigma: float, g: torch.Generator) -> Tensor:
    return x + sigma * torch.randn(x.shape, generator=g, device=CPU)


def _shot_noise(x: Tensor, photons: float, g: torch.Generator) -> Tensor:
    return torch.poisson(x * photons, generator=g) / photons


def _impulse_noise(x: Tensor, amount: float, g: torch.Generator) -> Tensor:
    """skimage's 's&p' noise: a share ``amount`` of the values, half set to 1 (salt), half to 0."""
    hit = torch.rand(x.shape, generator=g, device=CPU) < amount
    salt = torch.rand(x.shape, generator=g, device=CPU) < 0.5
    return torch.where(hit, salt.float(), x)


# ---- blur ----

def _filter(x: Tensor, kernel: Tensor) -> Tensor:
    """Each channel convolved with one 2-D kernel, the border mirrored (OpenCV's default, reflect-101)."""
    k = kernel.shape[-1]
    padded = F.pad(x, (k // 2,) * 4, mode="reflect")
    n, c, h, w = padded.shape
    return F.conv2d(padded.view(n * c, 1, h, w), kernel.view(1, 1, k, k).float()).view(n, c, *x.shape[-2:])


def _gaussian_kernel(sigma: float, truncate: float = 4.0) -> Tensor:
    """skimage.filters.gaussian's kernel: out to ``truncate`` standard deviations."""
    radius = max(1, int(truncate * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64, device=CPU)
    line = torch.exp(-t ** 2 / (2 * sigma ** 2))
    line /= line.sum()
    return torch.outer(line, line)


def _gaussian(x: Tensor, sigma: float, truncate: float = 4.0) -> Tensor:
    return _filter(x, _gaussian_kernel(sigma, truncate))


def _defocus_blur(x: Tensor, c: tuple, g: torch.Generator) -> Tensor:
    """A disk of the given radius on a 17x17 grid, anti-aliased by a 3x3 Gaussian (CIFAR-10-C's ``disk``)."""
    radius, alias_blur = c
    t = torch.arange(-8, 9, dtype=torch.float64, device=CPU)
    disk = ((t.view(-1, 1) ** 2 + t.view(1, -1) ** 2) <= radius ** 2).double()
    disk /= disk.sum()
    line = torch.exp(-torch.arange(-1, 2, dtype=torch.float64, device=CPU) ** 2 / (2 * alias_blur ** 2))
    line /= line.sum()
    kernel = F.conv2d(F.pad(disk.view(1, 1, 17, 17), (1,) * 4, mode="reflect"), torch.outer(line, line).view(1, 1, 3, 3))
    return _filter(x, kernel.view(17, 17))


def _glass_blur(x: Tensor, c: tuple, g: torch.Generator) -> Tensor:
    """Blur, then swap each pixel with a random neighbour (one image's swaps all at once), then blur again."""
    sigma, delta, rounds = c
    x = (_gaussian(x, sigma).clamp(0, 1) * 255).to(torch.uint8).float() / 255  # CIFAR-10-C's np.uint8 in between
    n, _, h, w = x.shape
    images = torch.arange(n, device=CPU)
    for _ in range(rounds):
        for row in range(h - delta, delta, -1):
            for col in range(w - delta, delta, -1):
                dx, dy = torch.randint(-delta, delta, (2, n), generator=g, device=CPU)  # np.random.randint: delta excluded
                other = x[images, :, row + dy, col + dx].clone()
                x[images, :, row + dy, col + dx] = x[:, :, row, col]
                x[:, :, row, col] = other
    return _gaussian(x, sigma)


def _shift(x: Tensor, dx: Tensor, dy: Tensor) -> Tensor:
    """Each image moved by its own (dx, dy) pixels, bilinear, the border repeated."""
    n, _, h, w = x.shape
    theta = torch.zeros(n, 2, 3, device=CPU)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2], theta[:, 1, 2] = -2 * dx / w, -2 * dy / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _motion(x: Tensor, radius: float, sigma: float, angle: Tensor) -> Tensor:
    """ImageMagick's motion blur, in torch: each pixel becomes a Gaussian-weighted average of the pixels
    behind it along ``angle`` (degrees, one per image), out to ``radius`` pixels."""
    steps = torch.arange(0, int(radius) + 1, dtype=torch.float32, device=CPU)
    weights = torch.exp(-steps ** 2 / (2 * sigma ** 2))
    weights /= weights.sum()
    cos, sin = torch.cos(torch.deg2rad(angle)), torch.sin(torch.deg2rad(angle))
    return sum(wt * _shift(x, t * cos, t * sin) for t, wt in zip(steps, weights))


def _motion_blur(x: Tensor, c: tuple, g: torch.Generator) -> Tensor:
    angle = torch.empty(len(x), device=CPU).uniform_(-45, 45, generator=g)
    return _motion(x, *c, angle)


def _clipped_zoom(x: Tensor, factor: float) -> Tensor:
    """The centre of each image, zoomed by ``factor`` (bilinear) and cut back to the image's size."""
    h = x.shape[-1]
    crop = math.ceil(h / factor)
    top = (h - crop) // 2
    zoomed = F.interpolate(x[..., top:top + crop, top:top + crop], size=round(crop * factor), mode="bilinear",
                           align_corners=True)
    trim = (zoomed.shape[-1] - h) // 2
    return zoomed[..., trim:trim + h, trim:trim + h]


def _zoom_blur(x: Tensor, factors, g: torch.Generator) -> Tensor:
    return (x + sum(_clipped_zoom(x, float(f)) for f in factors)) / (len(factors) + 1)


# ---- weather ----

def _plasma_fractal(n: int, wibble_decay: float, g: torch.Generator, size: int = 32) -> Tensor:
    """n height maps in [0, 1] by the diamond-square algorithm (CIFAR-10-C's ``plasma_fractal``), batched."""
    maps = torch.zeros(n, size, size, dtype=torch.float64, device=CPU)
    step, wibble = size, 100.0

    def wibbled_mean(total):
        return total / 4 + wibble * (torch.rand(total.shape, generator=g, dtype=torch.float64, device=CPU) * 2 - 1) * wibble

    while step >= 2:
        half = step // 2
        corners = maps[:, 0:size:step, 0:size:step]
        squares = corners + corners.roll(-1, 1)
        squares = squares + squares.roll(-1, 2)
        maps[:, half:size:step, half:size:step] = wibbled_mean(squares)
        centres, corners = maps[:, half:size:step, half:size:step], maps[:, 0:size:step, 0:size:step]
        left = centres + centres.roll(1, 1) + corners + corners.roll(-1, 2)
        maps[:, 0:size:step, half:size:step] = wibbled_mean(left)
        top = centres + centres.roll(1, 2) + corners + corners.roll(-1, 1)
        maps[:, half:size:step, 0:size:step] = wibbled_mean(top)
        step //= 2
        wibble /= wibble_decay
    maps -= maps.amin((1, 2), keepdim=True)
    return (maps / maps.amax((1, 2), keepdim=True)).float()


def _fog(x: Tensor, c: tuple, g: torch.Generator) -> Tensor:
    strength, decay = c
    peak = x.amax((1, 2, 3), keepdim=True)
    x = x + strength * _plasma_fractal(len(x), decay, g).unsqueeze(1)
    return x * peak / (peak + strength)


def _snow(x: Tensor, c: tuple, g: torch.Generator) -> Tensor:
    """Flakes: thresholded zoomed noise, motion-blurred downwards, added twice (once turned round), over an
    image washed towards its brightened grey."""
    mean, std, zoom, threshold, radius, sigma, keep = c
    n, _, h, w = x.shape
    flakes = _clipped_zoom(mean + std * torch.randn(n, 1, h, w, generator=g, device=CPU), zoom)
    flakes = torch.where(flakes < threshold, 0.0, flakes).clamp(0, 1)
    flakes = (flakes * 255).to(torch.uint8).float() / 255  # ImageMagick blurs an 8-bit image
    flakes = _motion(flakes, radius, sigma, torch.empty(n, device=CPU).uniform_(-135, -45, generator=g))
    grey = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)  # OpenCV's RGB2GRAY
    x = keep * x + (1 - keep) * torch.maximum(x, grey * 1.5 + 0.5)
    return x + flakes + flakes.flip(2, 3)


def _brightness(x: Tensor, added: float, g: torch.Generator) -> Tensor:
    """HSV's value raised by ``added`` (at most 1), hue and saturation kept: each pixel scaled by
    new value / old value; a black pixel (saturation 0) becomes grey."""
    value = x.amax(1, keepdim=True)
    raised = (value + added).clamp(max=1)
    return torch.where(value > 0, x * raised / value.clamp(min=1e-12), raised)


# ---- digital ----

def _contrast(x: Tensor, factor: float, g: torch.Generator) -> Tensor:
    means = x.mean((2, 3), keepdim=True)
    return (x - means) * factor + means


def _elastic_transform(x: Tensor, c: tuple, g: torch.Generator) -> Tensor:
    """A random affine jitter of three points, then a smooth random displacement field (bilinear, mirrored)."""
    scale, smoothness, jitter = c
    n, _, h, w = x.shape
    centre, square = torch.tensor([h // 2, w // 2], dtype=torch.float64, device=CPU), min(h, w) // 3
    source = torch.stack([centre + square, torch.stack([centre[0] + square, centre[1] - square]), centre - square])
    target = source + torch.empty(n, 3, 2, dtype=torch.float64, device=CPU).uniform_(-jitter, jitter, generator=g)
    ones = torch.ones(n, 3, 1, dtype=torch.float64, device=CPU)
    # the affine map target -> source (OpenCV's warpAffine samples the source at the inverse of source -> target)
    inverse = torch.linalg.solve(torch.cat([target, ones], 2), source.expand(n, 3, 2)).transpose(1, 2)  # (n, 2, 3)
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float64, device=CPU), torch.arange(w, dtype=torch.float64, device=CPU),
                                indexing="ij")
    points = torch.stack([cols, rows, torch.ones_like(rows)], -1).view(1, -1, 3)  # (x, y, 1) per pixel
    affine = (points @ inverse.transpose(1, 2)).view(n, h, w, 2)
    x = _sample(x, affine[..., 0], affine[..., 1])
    if scale == 0:
        return x
    fields = [_gaussian(torch.empty(n, 1, h, w, device=CPU).uniform_(-1, 1, generator=g), smoothness, truncate=3).squeeze(1) * scale
              for _ in range(2)]
    dx, dy = fields
    return _sample(x, cols.float() + dx, rows.float() + dy)


def _sample(x: Tensor, cols: Tensor, rows: Tensor) -> Tensor:
    """x read at the (fractional) pixel coordinates ``cols``, ``rows`` (n, h, w), bilinear, the border mirrored."""
    h, w = x.shape[-2:]
    grid = torch.stack([(2 * cols + 1) / w - 1, (2 * rows + 1) / h - 1], -1).float()
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _pixelate(images: Tensor, share: float) -> Tensor:
    small = int(32 * share)
    out = [np.asarray(Image.fromarray(image).resize((small, small), Image.BOX).resize((32, 32), Image.BOX))
           for image in images.permute(0, 2, 3, 1).numpy()]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def _jpeg(images: Tensor, quality: int) -> Tensor:
    out = []
    for image in images.permute(0, 2, 3, 1).numpy():
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=quality)
        out.append(np.asarray(Image.open(buffer).convert("RGB")))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


_FLOAT = {"gaussian_noise": _gaussian_noise, "shot_noise": _shot_noise, "impulse_noise": _impulse_noise,
          "defocus_blur": _defocus_blur, "glass_blur": _glass_blur, "motion_blur": _motion_blur,
          "zoom_blur": _zoom_blur, "snow": _snow, "fog": _fog, "brightness": _brightness, "contrast": _contrast,
          "elastic_transform": _elastic_transform}
