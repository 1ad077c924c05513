"""Notebook 01's exercises: per-channel normalization, a batched random crop, batched random erasing."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..augment import _erase_boxes, cutout, random_crop, random_erasing
from ..data import Normalization
from . import cases
from .marking import Exercise

SCALE, RATIO = (0.02, 0.33), (0.3, 3.3)  # torchvision's RandomErasing defaults, as the exercise uses them


def check_normalize(answer) -> tuple[bool, str]:
    g = cases.generator()
    train = cases.images(g, 200)
    train[:, 1] = train[:, 1] // 2 + 100  # channels with different statistics
    images = cases.images(g, 16)
    result = answer(train, images)
    if not isinstance(result, torch.Tensor) or result.shape != images.shape:
        return False, "return a float tensor shaped like `images`: (N, 3, 32, 32)"
    result = result.double()
    if torch.allclose(result, Normalization.from_images(images)(images).double(), atol=1e-3):
        return False, "those are the statistics of `images` itself: normalize with the *training* images' mean and std"
    expected = Normalization.from_images(train)(images).double()
    if not torch.allclose(result, expected, atol=1e-3):
        return False, ("per channel c: mean_c and std_c of train_images / 255 over images, rows and columns (dims 0, 2, "
                       "3); then (images / 255 - mean) / std, with mean and std shaped (1, 3, 1, 1) to broadcast")
    return True, ""


def _windows_matched(images: torch.Tensor, out: torch.Tensor, padding: int, mode: str) -> torch.Tensor:
    """(N, 2p+1, 2p+1): which shifted windows of each padded image equal its output."""
    padded = F.pad(images, (padding,) * 4, mode=mode)
    windows = padded.unfold(2, images.shape[2], 1).unfold(3, images.shape[3], 1)  # (N, 3, 2p+1, 2p+1, H, W)
    return (windows == out[:, :, None, None]).all(dim=5).all(dim=4).all(dim=1)


def check_crop(answer) -> tuple[bool, str]:
    g = cases.generator()
    seed = cases.integer(g, 0, 10 ** 6)
    for padding in (4, 2):
        images = cases.images(g, 128)
        out = answer(images, padding, cases.seeded(seed))
        if not isinstance(out, torch.Tensor) or out.shape != images.shape or out.dtype != images.dtype:
            return False, "return a uint8 batch shaped like the input: (N, 3, 32, 32)"
        matched = _windows_matched(images, out, padding, "constant")
        if not matched.flatten(1).any(1).all():
            if _windows_matched(images, out, padding, "reflect").flatten(1).any(1).all():
                return False, "pad with zeros (black pixels), not by mirroring the border"
            return False, ("each output must be a 32x32 window of its image padded with `padding` zeros on every side: "
                           "F.pad(images, (padding,) * 4), then one (dy, dx) in 0..2*padding per image")
        shifts = matched.flatten(1).float().argmax(1)
        if len(shifts.unique()) == 1:
            return False, "every image needs its own random shift: draw one dy and one dx per image, not one per batch"
        if len(shifts.unique()) < (2 * padding + 1) ** 2 // 2:
            return False, f"draw dy and dx uniformly from 0 to 2*padding ({2 * padding}), both ends included"
    if not torch.equal(answer(images, padding, cases.seeded(seed)), out):
        return False, "draw every random number from `generator`, so that the same seed gives the same crops"
    if torch.equal(answer(images, padding, cases.seeded(seed + 1)), out):
        return False, "a different seed must give different crops: draw the shifts from `generator`"
    return True, ""


def _boxes(images: torch.Tensor, out: torch.Tensor, fill: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per image: whether it changed, whether every changed pixel took the fill, and its erased box's size."""
    changed = (out != images).any(dim=1)  # (N, H, W)
    filled = (out == fill.view(1, 3, 1, 1)).all(dim=1)
    rows, cols = changed.any(dim=2), changed.any(dim=1)
    height, width = rows.sum(1), cols.sum(1)
    top = rows.float().argmax(1)
    return changed.flatten(1).any(1), (filled | ~changed).flatten(1).all(1), height, width, changed.flatten(1).sum(1), top


def check_erasing(answer) -> tuple[bool, str]:
    g = cases.generator()
    images, seed = cases.images(g, 256), cases.integer(g, 0, 10 ** 6)
    fill = tuple(cases.integer(g, 1, 254) for _ in range(3))
    fill_t = torch.tensor(fill, dtype=torch.uint8, device=cases.CPU)

    def erase(p, at=seed):
        return answer(images.clone(), p, SCALE, RATIO, fill, cases.seeded(at))

    out = erase(1.0)
    if not isinstance(out, torch.Tensor) or out.shape != images.shape or out.dtype != images.dtype:
        return False, "return a uint8 batch shaped like the input: (N, 3, 32, 32)"
    erased, all_filled, height, width, count, top = _boxes(images, out, fill_t)
    if not all_filled.all():
        return False, f"erased pixels take the colour `fill` ({fill} here), one value per channel"
    if not erased.all():
        return False, "with p = 1 every image gets a rectangle"
    if (count < 0.97 * height * width).any():
        return False, "erase one solid rectangle per image: rows top..top+h and columns left..left+w, all three channels"
    area = (height * width).double() / images[0, 0].numel()
    if area.min() < 0.6 * SCALE[0] or area.max() > 1.1 * SCALE[1]:
        return False, f"draw the rectangle's area as a fraction of the image, uniformly in scale = {SCALE}"
    aspect = height.double() / width.double()
    if aspect.min() < 0.2 or aspect.max() > 5:
        return False, (f"draw the aspect ratio h / w log-uniformly in ratio = {RATIO}: h = sqrt(area * r), "
                       "w = sqrt(area / r)")
    _, _, h, w, _, _ = _boxes(images, random_erasing(images, 1.0, SCALE, RATIO, fill, cases.seeded(seed)), fill_t)
    if abs(area.mean() - (h * w).double().mean() / images[0, 0].numel()) > 0.03:
        return False, (f"the areas drawn do not average like torchvision's RandomErasing: draw the area uniformly in "
                       f"{SCALE} of the image and the log of the aspect ratio uniformly")
    if len(top.unique()) < 4:
        return False, "place each rectangle at a random position of its own (top and left drawn per image)"
    share = _boxes(images, erase(0.5), fill_t)[0].double().mean().item()
    if not 0.35 < share < 0.65 or not torch.equal(erase(0.0), images):
        return False, f"erase each image with probability p (with p = 0.5 your answer erased {share:.0%} of them)"
    if not torch.equal(erase(1.0), out) or torch.equal(erase(1.0, seed + 1), out):
        return False, "draw every random number from `generator`: the same seed, the same boxes; another, others"
    return True, ""


EXERCISES = (
    Exercise("normalize_per_channel", check_normalize, own=(Normalization, "from_images")),
    Exercise("random_crop_batch", check_crop, own=(random_crop, "RandomCrop", "random_crop"), no_loop=True),
    Exercise("random_erasing_batch", check_erasing,
             own=(random_erasing, _erase_boxes, cutout, "RandomErasing", "erase", "random_erasing"), no_loop=True),
)
