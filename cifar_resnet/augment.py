"""Training-time augmentation of whole uint8 batches (N, 3, H, W) on whatever device they live on.

Each function draws one random choice per image from ``generator`` (a torch.Generator on the
images' device, for reproducible runs) and returns a new uint8 batch. ``augment`` chains them
the way training does; notebook 01 shows each one on the same images. ``TrainingBatches`` serves
a training set as augmented batches, a few thousand images augmented at a time.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import TrainConfig


def _rand(n: int, images: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.rand(n, device=images.device, generator=generator)


def _mirror_mask(flip: float | Tensor, images: Tensor, generator: torch.Generator | None) -> Tensor:
    """Which images to mirror: ``flip`` is a probability, or already one bool per image."""
    if isinstance(flip, Tensor):
        return flip.to(device=images.device, dtype=torch.bool)
    return _rand(len(images), images, generator) < flip


def random_crop(images: Tensor, padding: int = 4, generator: torch.Generator | None = None,
                flip: float | Tensor = 0.0, reflect: bool = False) -> Tensor:
    """Zero-pad (or, with ``reflect``, mirror the border) by ``padding`` and cut a random HxW
    window per image (RandomCrop(32, padding=4));
    with ``flip`` > 0, also mirror each window with that probability (as ``random_flip`` would after),
    or, with ``flip`` a bool tensor, mirror the images it marks.

    One gather over the padded batch: each output pixel reads the padded pixel its image's shift
    (and mirroring) points at.
    """
    flips = isinstance(flip, Tensor) or flip > 0
    if padding == 0:
        return random_flip(images, flip, generator) if flips else images
    n, c, h, w = images.shape
    padded = F.pad(images, (padding,) * 4, mode="reflect" if reflect else "constant")
    dy = torch.randint(0, 2 * padding + 1, (n,), device=images.device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), device=images.device, generator=generator)
    rows = dy.view(n, 1, 1) + torch.arange(h, device=images.device).view(1, h, 1)
    cols = torch.arange(w, device=images.device).view(1, 1, w)
    if flips:
        mirror = _mirror_mask(flip, images, generator).view(n, 1, 1)
        cols = torch.where(mirror, w - 1 - cols, cols)
    index = (rows * (w + 2 * padding) + dx.view(n, 1, 1) + cols).view(n, 1, h * w).expand(n, c, h * w)
    return padded.flatten(2).gather(2, index).view(n, c, h, w)


def random_flip(images: Tensor, p: float | Tensor = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """Mirror each image left-right with probability ``p`` (or, ``p`` a bool tensor, those it marks)."""
    flip = _mirror_mask(p, images, generator).view(-1, 1, 1, 1)
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


def random_noise(images: Tensor, p: float = 0.2, max_sigma: float = 25.5,
                 generator: torch.Generator | None = None) -> Tensor:
    """Add Gaussian pixel noise to each image with probability ``p``, its standard deviation drawn uniformly in
    [0, ``max_sigma``] (of 255; CIFAR-10-C's strongest Gaussian noise is 25.5)."""
    n = len(images)
    sigma = _rand(n, images, generator) * max_sigma * (_rand(n, images, generator) < p)
    noise = torch.randn(images.shape, device=images.device, generator=generator) * sigma.view(n, 1, 1, 1)
    return (images.float() + noise).round_().clamp_(0, 255).to(images.dtype)


def random_brightness_contrast(images: Tensor, strength: float = 0.135, mean: float = 120.0, std: float = 64.0,
                               generator: torch.Generator | None = None) -> Tensor:
    """Shift each image's brightness by up to ``strength`` pixel standard deviations (``std``, of 255) and scale
    its contrast about the dataset's mean pixel (``mean``) by a factor within 1 +- ``strength``, each image by its
    own draw (hiverge's colour jitter: 0.14 and 0.13 on normalized images)."""
    n = len(images)
    shift = ((_rand(n, images, generator) * 2 - 1) * strength * std).view(n, 1, 1, 1)
    scale = (1 + (_rand(n, images, generator) * 2 - 1) * strength).view(n, 1, 1, 1)
    return ((images.float() - mean + shift) * scale + mean).round_().clamp_(0, 255).to(images.dtype)


def random_blur(images: Tensor, p: float = 0.2, max_sigma: float = 1.0,
                generator: torch.Generator | None = None) -> Tensor:
    """Blur each image with probability ``p`` by a Gaussian of standard deviation drawn uniformly in
    [0.1, ``max_sigma``] pixels (a 5x5 kernel, the border mirrored), each image by its own."""
    n, c, h, w = images.shape
    chosen = torch.nonzero(_rand(n, images, generator) < p).flatten()
    sigma = 0.1 + _rand(n, images, generator)[chosen] * (max_sigma - 0.1)
    if not len(chosen):
        return images
    t = torch.arange(-2, 3, device=images.device, dtype=torch.float32)
    line = torch.exp(-t.view(1, 5) ** 2 / (2 * sigma.view(-1, 1) ** 2))
    line = (line / line.sum(1, keepdim=True)).repeat_interleave(c, 0)  # one kernel per image and channel
    x = images[chosen].float().view(1, len(chosen) * c, h, w)
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="reflect"), line.view(-1, 1, 1, 5), groups=len(line))
    x = F.conv2d(F.pad(x, (0, 0, 2, 2), mode="reflect"), line.view(-1, 1, 5, 1), groups=len(line))
    out = images.clone()
    out[chosen] = x.view(len(chosen), c, h, w).round_().clamp_(0, 255).to(images.dtype)
    return out


def adjust_sharpness(images: Tensor, factor: float) -> Tensor:
    """torchvision's adjust_sharpness for uint8 batches, with the same result, about 10x faster on a CPU.

    The blurred image is (3x3 box sum + 4 x centre) / 13, rounded, computed with slices rather than
    a per-channel convolution; the one-pixel border is kept as it is.
    """
    x = images.float()
    rows = x[..., :-2, :] + x[..., 1:-1, :] + x[..., 2:, :]
    box = rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]
    centre = x[..., 1:-1, 1:-1]
    blurred = (box + 4 * centre).div_(13).round_()
    centre.add_(blurred.sub_(centre), alpha=1.0 - factor)
    return x.clamp_(0, 255).to(images.dtype)


RAND_AUGMENT_OPERATIONS = ("shear x", "shear y", "translate x", "translate y", "rotate", "brightness",
                           "saturation", "contrast", "sharpness", "posterize", "solarize", "autocontrast", "equalize",
                           "identity")  # torchvision's 14, in the order of _rand_augment_ops


def _rand_augment_ops(magnitude: int, num_bins: int, size: int) -> list[tuple]:
    """torchvision's RandAugment operations (named in RAND_AUGMENT_OPERATIONS) as (function(images, m), m at
    ``magnitude``, signed)."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    nearest = InterpolationMode.NEAREST
    at = lambda top: top * magnitude / (num_bins - 1)  # noqa: E731  (torch.linspace(0, top, num_bins)[magnitude])

    def shear(x, m, axis):
        angle = math.degrees(math.atan(m))
        return TF.affine(x, angle=0.0, translate=[0, 0], scale=1.0, shear=[angle, 0.0] if axis == 0 else [0.0, angle],
                         interpolation=nearest, center=[0, 0])

    def translate(x, m, axis):  # TF.affine(translate=[int(m), 0] or [0, int(m)]) with nearest: a plain shift
        dim, shift = (-1 if axis == 0 else -2), int(m)
        size, out = x.shape[dim] - abs(shift), torch.zeros_like(x)
        out.narrow(dim, max(shift, 0), size).copy_(x.narrow(dim, max(-shift, 0), size))
        return out

    return [
        (lambda x, m: shear(x, m, 0), at(0.3), True),
        (lambda x, m: shear(x, m, 1), at(0.3), True),
        (lambda x, m: translate(x, m, 0), at(150 / 331 * size), True),
        (lambda x, m: translate(x, m, 1), at(150 / 331 * size), True),
        (lambda x, m: TF.rotate(x, m, interpolation=nearest), at(30.0), True),
        (lambda x, m: TF.adjust_brightness(x, 1 + m), at(0.9), True),
        (lambda x, m: TF.adjust_saturation(x, 1 + m), at(0.9), True),
        (lambda x, m: TF.adjust_contrast(x, 1 + m), at(0.9), True),
        (lambda x, m: adjust_sharpness(x, 1 + m), at(0.9), True),
        (lambda x, m: TF.posterize(x, int(m)), int(round(8 - magnitude / ((num_bins - 1) / 4))), False),
        (lambda x, m: TF.solarize(x, m), 255 * (1 - magnitude / (num_bins - 1)), False),
        (lambda x, m: TF.autocontrast(x), 0, False),
        (lambda x, m: TF.equalize(x), 0, False),
        (lambda x, m: x, 0, False),  # identity
    ]


def rand_augment(images: Tensor, num_ops: int = 2, magnitude: int = 9, num_bins: int = 31,
                 generator: torch.Generator | None = None) -> Tensor:
    """torchvision's RandAugment (same 14 operations and magnitudes), batched.

    Each image draws its own ``num_ops`` operations (and signs). The batch is sorted by what it
    drew, so every operation runs once on a contiguous slice of the images that drew it: a few
    dozen batched calls instead of one pipeline per image.
    """
    ops = _rand_augment_ops(magnitude, num_bins, images.shape[-1])
    variants = [(op, sign * value) for op, value, signed in ops for sign in ((1, -1) if signed else (1,))]
    signed = torch.tensor([is_signed for *_, is_signed in ops], device=images.device)
    first = (torch.tensor([0] + [1 + is_signed for *_, is_signed in ops[:-1]], device=images.device)
             .cumsum(0))  # each operation's first variant
    n = len(images)
    for _ in range(num_ops):
        drawn = torch.randint(len(ops), (n,), device=images.device, generator=generator)
        negative = _rand(n, images, generator) < 0.5
        choice = first[drawn] + (signed[drawn] & negative)  # which variant: (op, +value) or (op, -value)
        order = torch.argsort(choice, stable=True)
        counts = torch.bincount(choice, minlength=len(variants)).tolist()
        grouped = images.index_select(0, order)  # index_select: 10x faster than images[order] on uint8 CPU
        start = 0
        for (op, value), count in zip(variants, counts):
            if count:
                grouped[start:start + count] = op(grouped[start:start + count], value)
            start += count
        images = grouped.index_select(0, torch.argsort(order))  # back in the input order
    return images


def augment(images: Tensor, *, crop_padding: int = 4, flip: bool | Tensor = True, erasing: float = 0.5,
            randaugment: bool = False, fill=0, generator: torch.Generator | None = None,
            crop_reflect: bool = False, blur: float = 0.0, noise: float = 0.0,
            brightness_contrast: float = 0.0) -> Tensor:
    """The training augmentation: crop, flip, (RandAugment), random erasing, in the reference order, then blur
    and noise on the shares ``blur`` and ``noise`` of the images (the pixels a camera and a compressor change),
    then brightness and contrast changed by up to ``brightness_contrast`` (``random_brightness_contrast``).

    ``flip`` True mirrors each image with probability 1/2; a bool tensor says which ones to mirror.
    ``crop_reflect`` pads the crop by mirroring the border instead of with black.
    """
    if not isinstance(flip, Tensor):
        flip = 0.5 if flip else 0.0
    images = random_crop(images, crop_padding, generator, flip=flip, reflect=crop_reflect)
    if randaugment:
        images = rand_augment(images, generator=generator)
    if erasing > 0:
        images = random_erasing(images, p=erasing, fill=fill, generator=generator)
    if blur > 0:
        images = random_blur(images, p=blur, generator=generator)
    if noise > 0:
        images = random_noise(images, p=noise, generator=generator)
    if brightness_contrast > 0:
        images = random_brightness_contrast(images, brightness_contrast, generator=generator)
    return images


AUGMENT_CHUNK = 4096  # images augmented per call (uint8: 12 MB), whole batches of them


class Augmentation:
    """A training recipe's augmentation: ``augment`` with the settings of a TrainConfig (crop_padding,
    crop_reflect, flip, erasing, randaugment, blur, noise, brightness_contrast; ``alternate_flip`` is TrainingBatches' to apply),
    erasing with the colour ``fill``."""

    def __init__(self, config: TrainConfig, fill: tuple[int, ...] | int = 0):
        self.config, self.fill = config, fill

    def __call__(self, images: Tensor, generator: torch.Generator, mirror: Tensor | None = None) -> Tensor:
        """``images`` augmented; ``mirror`` (one bool per image) replaces the coin flips."""
        c = self.config
        return augment(images, crop_padding=c.crop_padding, flip=c.flip if mirror is None else mirror,
                       erasing=c.erasing, randaugment=c.randaugment, fill=self.fill, generator=generator,
                       crop_reflect=c.crop_reflect, blur=c.blur, noise=c.noise,
                       brightness_contrast=c.brightness_contrast)


class TrainingBatches:
    """A training set on its device, served as augmented batches (as airbench's CifarLoader does).

    ``start_epoch`` draws the epoch's order; ``batch(i)`` returns batch i, augmenting the next
    AUGMENT_CHUNK images in one call whenever i starts a chunk. With ``random_state(i)``,
    ``start_epoch(epoch, at=i, random_state=...)`` continues an interrupted epoch at batch i with
    exactly the batches it would have had.
    """

    def __init__(self, images: Tensor, labels: Tensor, batch_size: int, augmentation: Augmentation, seed: int):
        self.images, self.labels, self.augmentation, self.seed = images, labels, augmentation, seed
        self.batch_size = min(batch_size, len(images))
        self.per_chunk = max(1, AUGMENT_CHUNK // self.batch_size)
        self.mirrored_half = None  # the images mirrored in even epochs
        if augmentation.config.alternate_flip:  # airbench's: every image is seen both ways in any two epochs
            coins = torch.Generator(images.device).manual_seed(seed)
            self.mirrored_half = torch.rand(len(images), device=images.device, generator=coins) < 0.5

    def __len__(self) -> int:
        """Batches per epoch (the last partial batch is dropped)."""
        return len(self.images) // self.batch_size

    def start_epoch(self, epoch: int, at: int = 0, random_state: Tensor | None = None) -> None:
        """Draw ``epoch``'s order; with ``at`` and ``random_state``, continue it at batch ``at``."""
        self.epoch = epoch
        self.generator = torch.Generator(self.images.device).manual_seed(self.seed * 1000 + epoch)
        self.order = torch.randperm(len(self.images), device=self.images.device, generator=self.generator)
        if random_state is not None:
            self.generator.set_state(random_state)
        if at % self.per_chunk:  # re-augment the chunk that batch ``at`` belongs to
            self._augment_chunk(at - at % self.per_chunk)

    def random_state(self, at: int) -> Tensor:
        """The random state from which batch ``at`` of this epoch is augmented: where its chunk begins."""
        return self.generator.get_state() if at % self.per_chunk == 0 else self.chunk_state

    def batch(self, i: int) -> tuple[Tensor, Tensor]:
        """Augmented images (uint8) and labels of batch ``i`` of the epoch."""
        if i % self.per_chunk == 0:
            self._augment_chunk(i)
        offset = (i - self.chunk_start) * self.batch_size
        return self.chunk_x[offset:offset + self.batch_size], self.chunk_y[offset:offset + self.batch_size]

    def _augment_chunk(self, first: int) -> None:
        self.chunk_start, self.chunk_state = first, self.generator.get_state()
        idx = self.order[first * self.batch_size:(first + self.per_chunk) * self.batch_size]
        mirror = None if self.mirrored_half is None else self.mirrored_half[idx] ^ (self.epoch % 2 == 1)
        self.chunk_x, self.chunk_y = (self.augmentation(self.images.index_select(0, idx), self.generator, mirror),
                                      self.labels[idx])
