"""Solutions to the notebooks' exercises, one per name in cifar_resnet.exercises.EXERCISES, in notebook order.

Try each exercise in its notebook first; `check(name, answer)` there says right or wrong, with a hint.
`python notebooks/execute.py` runs the notebooks with these filled in, so the executed copies show what a right
answer prints. The questionnaires' answers are in questionnaires.md beside this file.
"""
import csv
import math

import torch
import torch.nn.functional as F
from torch import nn

from cifar_resnet import ModelConfig


# 01: data and augmentation
def normalize_per_channel(train_images, images):
    x = train_images.double() / 255                      # pixel values in [0, 1]
    mean = x.mean(dim=(0, 2, 3)).view(1, 3, 1, 1)          # one mean per channel: over images, rows, columns
    std = x.std(dim=(0, 2, 3)).view(1, 3, 1, 1)
    normalized = (images.double() / 255 - mean) / std      # the training statistics, applied to any images
    return normalized.float()


def random_crop_batch(images, padding, generator):
    n, c, h, w = images.shape
    padded = F.pad(images, (padding,) * 4)                # zeros all round: (N, 3, h + 2p, w + 2p)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)  # one shift per image
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    rows = (dy.view(n, 1) + torch.arange(h)).view(n, 1, h, 1).expand(n, c, h, w + 2 * padding)
    cropped_rows = padded.gather(2, rows)                 # each image's h rows, from its own dy
    cols = (dx.view(n, 1) + torch.arange(w)).view(n, 1, 1, w).expand(n, c, h, w)
    return cropped_rows.gather(3, cols)                   # and its w columns, from its own dx


def random_erasing_batch(images, p, scale, ratio, fill, generator):
    n, c, h, w = images.shape
    area = h * w * (scale[0] + (scale[1] - scale[0]) * torch.rand(n, generator=generator))
    log_ratio = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * torch.rand(n, generator=generator)
    height = torch.sqrt(area * log_ratio.exp()).round().long().clamp(1, h)
    width = torch.sqrt(area / log_ratio.exp()).round().long().clamp(1, w)
    top = (torch.rand(n, generator=generator) * (h - height + 1)).long()
    left = (torch.rand(n, generator=generator) * (w - width + 1)).long()
    erase = torch.rand(n, generator=generator) < p
    rows, cols = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    inside = ((rows >= top.view(n, 1, 1)) & (rows < (top + height).view(n, 1, 1))
              & (cols >= left.view(n, 1, 1)) & (cols < (left + width).view(n, 1, 1)) & erase.view(n, 1, 1))
    colour = torch.tensor(fill, dtype=images.dtype).view(1, c, 1, 1)
    return torch.where(inside.unsqueeze(1), colour, images)


# 02: architecture and parameter budget
class MyBasicBlock(nn.Module):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        nn.init.zeros_(self.bn2.weight)                   # the residual branch starts at 0: the block is ReLU(x)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:    # a projection where the shape changes
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


def make_stage(in_channels, out_channels, blocks, stride, block):
    layers = []
    for i in range(blocks):
        first = i == 0                                    # only the first block changes the shape
        layers.append(block(in_channels if first else out_channels, out_channels, stride=stride if first else 1))
    return nn.Sequential(*layers)


def parameter_count(blocks, channels, kernel, skip_kernel, pool):
    total = 3 * channels[0] * 3 * 3 + 2 * channels[0]    # the stem: a 3x3 conv and a BatchNorm
    size, in_channels = 32, channels[0]
    for i, (b, c, f, k) in enumerate(zip(blocks, channels, kernel, skip_kernel)):
        stride = 1 if i == 0 else 2
        size = (size + stride - 1) // stride              # a stride-2 'same' conv rounds up
        total += in_channels * c * f * f + c * c * f * f + 4 * c  # the first block: two convs, two BatchNorms
        if stride != 1 or in_channels != c:
            total += in_channels * c * k * k + 2 * c      # its projection shortcut and its BatchNorm
        total += (b - 1) * (2 * c * c * f * f + 4 * c)    # the other blocks
        in_channels = c
    return total + channels[-1] * (size // pool) ** 2 * 10 + 10  # the linear classifier and its biases


four_stage_config = ModelConfig(blocks=(2, 2, 2, 2), channels=(56, 112, 200, 300), pool=4)


# 03: training
def smoothed_cross_entropy(logits, labels, smoothing):
    k = logits.shape[1]
    log_probabilities = logits.log_softmax(dim=1)
    target = torch.full_like(log_probabilities, smoothing / k)  # eps / K on every class
    target.scatter_add_(1, labels.view(-1, 1), torch.full_like(log_probabilities[:, :1], 1 - smoothing))
    loss = -(target * log_probabilities).sum(dim=1)
    return loss.mean()


def warmup_cosine(step, total_steps, peak, warmup):
    done = step / total_steps
    if done < warmup:
        return peak * done / warmup                       # linear from 0 to the peak
    t = (done - warmup) / (1 - warmup)                    # 0 after the warmup, 1 at the end
    rate = peak * (1 + math.cos(math.pi * t)) / 2
    return rate


def sgd_momentum_step(weight, grad, velocity, lr, momentum, weight_decay):
    grad = grad + weight_decay * weight                   # weight decay is part of the gradient
    velocity = momentum * velocity + grad                 # PyTorch's form: the rate multiplies the velocity
    weight = weight - lr * velocity
    new = (weight, velocity)
    return new


def training_step(net, optimizer, loss_fn, images, labels):
    net.train()                                           # BatchNorm on batch statistics
    loss = loss_fn(net(images), labels)                   # forward
    optimizer.zero_grad()                                 # clear the last step's gradients
    loss.backward()                                       # backward
    optimizer.step()                                      # step
    return loss


# 04: evaluation
@torch.no_grad()
def flip_tta_logits(model, x):
    model.eval()
    plain = model(x).float()
    mirrored = model(x.flip(3)).float()                   # dim 3: the columns, left-right
    averaged = (plain + mirrored) / 2
    return averaged


def confusion_matrix(labels, predictions, classes):
    pairs = labels * classes + predictions                # one number per (true, predicted) pair
    counts = torch.bincount(pairs, minlength=classes * classes)
    matrix = counts.view(classes, classes)                # row: true class, column: prediction
    return matrix


def recall(confusion, c):
    return (confusion[c, c] / confusion[c].sum()).item()  # row c: the images whose true class is c


def calibration_bins(probabilities, labels, bins):
    confidence, predicted = probabilities.max(dim=1)
    index = (confidence * bins).long().clamp(max=bins - 1)  # a confidence of 1 goes into the last bin
    count = torch.bincount(index, minlength=bins).double()
    held = count.clamp(min=1)                                # empty bins: 0, not 0 / 0
    mean_confidence = torch.bincount(index, weights=confidence.double(), minlength=bins) / held
    accuracy = torch.bincount(index, weights=(predicted == labels).double(), minlength=bins) / held
    return mean_confidence, accuracy, count


def expected_calibration_error(probabilities, labels, bins):
    confidence, predicted = probabilities.max(dim=1)
    index = (confidence * bins).long().clamp(max=bins - 1)  # bins of equal width over [0, 1]
    right = (predicted == labels).double()
    error = 0.0
    for b in range(bins):
        inside = index == b
        if inside.any():                                  # |accuracy - confidence|, weighted by the bin's share
            error += inside.double().mean() * (right[inside].mean() - confidence[inside].double().mean()).abs()
    return float(error)


@torch.no_grad()
def reestimate_batchnorm(model, x):
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()                  # forget the training images' statistics
            module.momentum = None                        # an equal-weight average, not a running one
    model.train()                                         # BatchNorm counts only in training mode
    model(x)
    return model.eval()


# 05: the submission
@torch.no_grad()
def predict_in_batches(model, images, normalization, batch_size):
    model.eval()
    labels = []
    for start in range(0, len(images), batch_size):       # the last batch may be shorter
        batch = normalization(images[start:start + batch_size])
        labels.append(model(batch).argmax(dim=1))
    return torch.cat(labels)


def write_submission_csv(path, ids, predictions):
    if len(ids) != len(predictions):
        raise ValueError(f"{len(ids)} ids but {len(predictions)} predictions")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ID", "Labels"])
        writer.writerows(zip((int(i) for i in ids), (int(p) for p in predictions)))
    return path


def submission_problems(text, ids):
    rows = list(csv.reader(text.splitlines()))
    if not rows or rows[0] != ["ID", "Labels"]:
        return ["the header is not ID,Labels"]
    problems, seen = [], set()
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 2 or not row[0].isdigit() or not row[1].isdigit():
            problems.append(f"line {line}: expected two integers, found {row}")
            continue
        if int(row[0]) in seen or int(row[0]) not in ids:
            problems.append(f"line {line}: id {row[0]} is repeated or not a test id")
        if not 0 <= int(row[1]) <= 9:
            problems.append(f"line {line}: label {row[1]} is not a class")
        seen.add(int(row[0]))
    problems += [f"id {i} has no row" for i in ids if i not in seen]
    return problems


broken_submission_line = 5  # "3,10": there is no class 10
