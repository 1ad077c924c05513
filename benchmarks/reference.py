"""The reference course project's way of training, re-implemented from its description.

Per-image PIL pipeline (RandomCrop(32, padding=4), RandomHorizontalFlip, RandAugment(2, 9),
ToTensor, RandomErasing(p=0.5), Normalize) in a DataLoader (batch 128, 2 workers), the
4,916,284-parameter ResNet in NCHW float32, SGD with momentum and a cosine schedule over 60 epochs.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cifar_resnet import Normalization  # noqa: E402
from cifar_resnet.config import PRESETS  # noqa: E402

REFERENCE = PRESETS["reference"].model
BATCH = 128
EPOCHS = 60


class ReferenceDataset(Dataset):
    """One PIL image at a time through torchvision.transforms."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, normalization: Normalization):
        from torchvision import transforms as T

        self.images = images.permute(0, 2, 3, 1).numpy()  # HWC for PIL
        self.labels = labels.tolist()
        self.transform = T.Compose([
            T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.RandAugment(2, 9), T.ToTensor(),
            T.RandomErasing(p=0.5), T.Normalize(normalization.mean, normalization.std)])

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def reference_loader(images, labels, normalization) -> DataLoader:
    return DataLoader(ReferenceDataset(images, labels, normalization), batch_size=BATCH, shuffle=True,
                      num_workers=2, drop_last=True)


def reference_optimizer(model: torch.nn.Module, steps_per_epoch: int):
    """SGD (lr 0.1, momentum 0.9, weight decay 5e-4) with a per-step cosine decay over 60 epochs."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, EPOCHS * steps_per_epoch)
