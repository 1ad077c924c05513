"""B5 training cost of the presets' recipes: exact FLOPs from torch.utils.flop_counter.

FLOPs of one training image (forward and backward, measured on a 'meta'-device model, a
multiply-add counted as 2) times the images a run sees (its optimizer steps x batch size on the
50,000 official training images, or the training split its val_size leaves). Nothing is trained,
so this runs anywhere in seconds. Prints a table, then one JSON line.
  python benchmarks/training_flops.py
"""
from __future__ import annotations

import json
import sys

import torch

from reference import BATCH, EPOCHS, REFERENCE

from cifar_resnet import PRESETS, count_parameters
from cifar_resnet.budget import count_training_flops
from cifar_resnet.data import train_val_split

TRAIN_IMAGES = 50_000


def images_seen(epochs: int, batch_size: int, val_size: int | None) -> int:
    """Images a run of ``epochs`` sees: whole batches of its training split, each epoch."""
    train = len(train_val_split(torch.arange(TRAIN_IMAGES) % 10, val_size)[0])
    return epochs * (train // batch_size) * batch_size


def recipe_row(name: str, model, epochs: int, batch_size: int, val_size: int | None,
               frozen_stem: bool = False) -> dict:
    per_image = count_training_flops(model, frozen_stem)
    seen = images_seen(epochs, batch_size, val_size)
    return {"recipe": name, "parameters": count_parameters(model).total, "train_flops_per_image": per_image,
            "epochs": epochs, "images_seen": seen, "pflops": per_image * seen / 1e15}


def main() -> int:
    rows = [recipe_row("reference (60 epochs, batch 128)", REFERENCE, EPOCHS, BATCH, 0)]
    for name in ("gpu-94", "gpu-95"):
        train = PRESETS[name].train
        rows.append(recipe_row(name, PRESETS[name].model, train.epochs, train.batch_size, train.val_size,
                               frozen_stem=train.whiten_stem))
    print(f"{'recipe':<34} {'parameters':>11} {'GFLOPs/image':>13} {'epochs':>7} {'images':>11} {'PFLOPs':>7}")
    for r in rows:
        print(f"{r['recipe']:<34} {r['parameters']:>11,} {r['train_flops_per_image'] / 1e9:>13.3f} "
              f"{r['epochs']:>7} {r['images_seen']:>11,} {r['pflops']:>7.3f}")
    print("(forward + backward; GPU accuracy of gpu-94 and gpu-95 not measured here: no GPU was available)")
    by_name = {r["recipe"].split(" ")[0]: r for r in rows}
    print(json.dumps({"gpu_94_pflops": by_name["gpu-94"]["pflops"], "gpu_95_pflops": by_name["gpu-95"]["pflops"],
                      "reference_pflops": by_name["reference"]["pflops"], "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
