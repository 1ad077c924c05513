"""Notebook 03's exercises: label-smoothed cross-entropy, warmup + cosine, one SGD-with-momentum update, the
training step."""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..schedule import lr_at
from . import cases
from .marking import Exercise


def check_smoothed_loss(answer) -> tuple[bool, str]:
    g = cases.generator()
    for smoothing in (0.0, 0.05, 0.2):
        logits = (3 * torch.randn(32, 10, generator=g, device=cases.CPU)).requires_grad_()
        labels = torch.randint(0, 10, (32,), generator=g, device=cases.CPU)
        loss = answer(logits, labels, smoothing)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            return False, "return the loss as one number in a tensor: the mean over the batch"
        if not loss.requires_grad:
            return False, "keep the loss differentiable: torch operations only (no .item(), no numpy)"
        expected = F.cross_entropy(logits, labels, label_smoothing=smoothing)
        if torch.allclose(loss, expected, atol=1e-5):
            continue
        k = logits.shape[1]
        target = torch.full_like(logits, smoothing / (k - 1)).scatter_(1, labels[:, None], 1 - smoothing)
        if torch.allclose(loss, -(target * logits.log_softmax(1)).sum(1).mean(), atol=1e-5):
            return False, ("spread the smoothing over all K classes, the true one included: the target is "
                           "(1 - eps) on the label plus eps / K on every class")
        return False, (f"with eps = {smoothing}: the target is (1 - eps) * one_hot(label) + eps / K, the loss is "
                       f"-sum(target * log_softmax(logits)) over the classes, averaged over the batch")
    return True, ""


def check_warmup_cosine(answer) -> tuple[bool, str]:
    g = cases.generator()
    for total, warmup in ((cases.integer(g, 200, 2000), 0.05), (cases.integer(g, 50, 500), 0.2)):
        peak = 0.05 + cases.integer(g, 1, 100) / 100
        for step in sorted({0, total, round(warmup * total), *(cases.integer(g, 0, total) for _ in range(40))}):
            expected, found = lr_at(step / total, peak, warmup), answer(step, total, peak, warmup)
            if abs(float(found) - expected) > 1e-6 * peak:
                where = ("during the warmup the rate rises linearly from 0 at step 0 to the peak at step "
                         "warmup * total_steps" if step < warmup * total else
                         "after the warmup, t = (step / total_steps - warmup) / (1 - warmup) runs from 0 to 1 and the "
                         "rate is peak * (1 + cos(pi * t)) / 2")
                return False, (f"at step {step} of {total} (peak {peak:g}, warmup {warmup:g}) the rate is "
                               f"{expected:.6g}, not {float(found):.6g}: {where}")
    return True, ""


def check_sgd_step(answer) -> tuple[bool, str]:
    g = cases.generator()
    momentum, weight_decay = 0.9, 5e-4 * cases.integer(g, 1, 4)
    weight = torch.randn(5, 4, generator=g, device=cases.CPU)
    reference = weight.clone().requires_grad_()
    sgd = torch.optim.SGD([reference], lr=0.1, momentum=momentum, weight_decay=weight_decay)
    velocity = torch.zeros_like(weight)
    for lr in (0.1, 0.05, 0.3, 0.01):
        grad = torch.randn(5, 4, generator=g, device=cases.CPU)
        reference.grad = grad.clone()
        for group in sgd.param_groups:
            group["lr"] = lr
        sgd.step()
        result = answer(weight.clone(), grad.clone(), velocity.clone(), lr, momentum, weight_decay)
        if not (isinstance(result, tuple) and len(result) == 2):
            return False, "return two tensors: the new weight and the new velocity"
        weight, velocity = result
        if not torch.allclose(weight, reference.detach(), atol=1e-6):
            return False, ("PyTorch's SGD: g = grad + weight_decay * weight; velocity = momentum * velocity + g; "
                           "weight = weight - lr * velocity (the rate multiplies the velocity, so a changing rate "
                           "changes every step's size at once)")
    return True, ""


class _SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).relu().mean(dim=(2, 3)))


def sgd_step(weight, grad, velocity, lr, momentum, weight_decay):
    """One step of PyTorch's SGD with momentum on one tensor: the package's version of the exercise, for the cells
    that use it until the student's is right. Returns (weight, velocity)."""
    velocity = momentum * velocity + grad + weight_decay * weight
    return weight - lr * velocity, velocity


def training_step(net, optimizer, loss_fn, images, labels):
    """One optimizer step on a batch, returning its loss: the package's version of the exercise."""
    net.train()
    loss = loss_fn(net(images), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss


def check_training_step(answer) -> tuple[bool, str]:
    g = cases.generator()
    torch.manual_seed(cases.integer(g, 0, 10 ** 6))
    theirs = _SmallNet().eval()  # the step must put it in training mode itself
    ours = copy.deepcopy(theirs)
    optimizers = [torch.optim.SGD(n.parameters(), lr=0.1, momentum=0.9) for n in (theirs, ours)]
    for _ in range(3):
        images = torch.randn(8, 3, 6, 6, generator=g, device=cases.CPU)
        labels = torch.randint(0, 10, (8,), generator=g, device=cases.CPU)
        with torch.no_grad():
            before = F.cross_entropy(copy.deepcopy(theirs).train()(images), labels).item()
        loss = answer(theirs, optimizers[0], F.cross_entropy, images, labels)
        training_step(ours, optimizers[1], F.cross_entropy, images, labels)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            return False, "return the loss tensor itself (loss_fn's result), one number"
        if not math.isclose(loss.item(), before, rel_tol=1e-4):
            return False, "return the loss of the batch as computed before the step (the loss the step reduces)"
        moved = [not torch.allclose(a, b) for a, b in zip(theirs.state_dict().values(), ours.state_dict().values())
                 if a.is_floating_point()]
        if any(moved):
            changed = any(not torch.equal(p, q) for p, q in zip(theirs.parameters(), ours.parameters()))
            if changed and theirs.training is False:
                return False, "put the network in training mode first (net.train()): BatchNorm then uses batch statistics"
            return False, ("one step is: net.train(); loss = loss_fn(net(images), labels); optimizer.zero_grad(); "
                           "loss.backward(); optimizer.step(). Forgetting zero_grad adds each step's gradients to the "
                           "last ones")
    return True, ""


EXERCISES = (
    Exercise("smoothed_cross_entropy", check_smoothed_loss,
             own=(F.cross_entropy, nn.CrossEntropyLoss, "cross_entropy", "CrossEntropyLoss")),
    Exercise("warmup_cosine", check_warmup_cosine,
             own=(lr_at, "lr_at", "OneCycleLR", "CosineAnnealingLR", "LambdaLR", "SequentialLR", "LinearLR")),
    Exercise("sgd_momentum_step", check_sgd_step, own=(torch.optim.SGD, "SGD", "optim")),
    Exercise("training_step", check_training_step, own=("fit", "Trainer", "train_step")),
)
