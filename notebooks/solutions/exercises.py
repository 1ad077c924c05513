"""Solutions to the notebooks' exercises, one per name in cifar_resnet.exercises.CHECKS.

Try each exercise in its notebook first; `check(name, answer)` there says right or wrong.
"""
import math

import torch

from cifar_resnet import ModelConfig


# 01: data and augmentation
def batched_hflip(images):
    return images.flip(3)  # dimension 3 is the columns: every image mirrored left-right in one call


def channel_means(images):
    return images.double().div(255).mean(dim=(0, 2, 3))  # over images, rows and columns, in [0, 1]


# 02: architecture and parameter budget
# Stage 2 of the reference: 4 blocks of 132 channels, 3x3 convs; BatchNorm has 2 x channels.
# Block 1: conv1 66 -> 132 (66*132*9), conv2 132 -> 132 (132*132*9), two BatchNorms, 1x1 shortcut (66*132) + BN.
# Blocks 2-4: two 132 -> 132 convs and two BatchNorms each.
stage_2_parameters = (66 * 132 * 9 + 132 * 132 * 9 + 2 * 2 * 132 + 66 * 132 + 2 * 132
                      + 3 * (2 * 132 * 132 * 9 + 2 * 2 * 132))

four_stage_config = ModelConfig(blocks=(2, 2, 2, 2), channels=(56, 112, 200, 300), pool=4)


# 03: training
lr_at_half_way = 0.2 * 0.5 * (1 + math.cos(math.pi * (0.5 - 0.05) / 0.95))  # peak 0.2, warmup 5%, cosine


def accuracy(logits, labels):
    return (logits.argmax(dim=1) == labels).float().mean().item()


# 04: evaluation
def accuracy_from_confusion(confusion):
    return (confusion.diagonal().sum() / confusion.sum()).item()


def recall(confusion, c):
    return (confusion[c, c] / confusion[c].sum()).item()  # row c: the images whose true class is c


# 05: the submission
broken_submission_line = 5  # "3,10": there is no class 10


def submission_rows(ids, predictions):
    return "ID,Labels\n" + "".join(f"{i},{p}\n" for i, p in zip(ids, predictions))
