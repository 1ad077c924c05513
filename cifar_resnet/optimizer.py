"""What steps the weights: parameter groups, SGD or Muon over them, and lookahead's slow weights."""
from __future__ import annotations

import torch
from torch import nn

from .config import TrainConfig
from .muon import Muon

LOOKAHEAD_EVERY, LOOKAHEAD_PEAK = 5, 0.95 ** 5  # steps between lookahead updates, their final decay


def parameter_groups(model: nn.Module, weight_decay: float, bias_lr_scale: float = 1.0) -> dict[str, dict]:
    """The model's trainable parameters in named groups.

    'decayed': conv and linear weights, with weight decay. 'not decayed': BatchNorm weights and conv biases
    (as in the airbench style's stem). 'fast biases': the biases of BatchNorm and the classifier, which learn
    ``bias_lr_scale`` times faster than the schedule says. Frozen parameters are left out.
    """
    conv_biases = {id(m.bias) for m in model.modules() if isinstance(m, nn.Conv2d) and m.bias is not None}
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    fast = [p for name, p in trainable if name.endswith("bias") and id(p) not in conv_biases]
    fast_ids = {id(p) for p in fast}
    return {"decayed": {"params": [p for _, p in trainable if p.ndim > 1], "weight_decay": weight_decay,
                        "lr_scale": 1.0},
            "not decayed": {"params": [p for _, p in trainable if p.ndim <= 1 and id(p) not in fast_ids],
                            "weight_decay": 0.0, "lr_scale": 1.0},
            "fast biases": {"params": fast, "weight_decay": 0.0, "lr_scale": bias_lr_scale}}


def make_optimizer(model: nn.Module, config: TrainConfig, matmul_dtype: torch.dtype = torch.bfloat16
                   ) -> torch.optim.SGD:
    """SGD over ``parameter_groups``; with ``optimizer='muon'``, the filters of bias-free convolutions (the
    ones a BatchNorm follows) leave the decayed group for a Muon group of their own, orthogonalized in
    ``matmul_dtype`` (``Compute.matmul_dtype``)."""
    groups = parameter_groups(model, config.weight_decay, config.bias_lr_scale)
    if config.optimizer == "sgd":
        return torch.optim.SGD(list(groups.values()), lr=config.lr, momentum=config.momentum,
                               nesterov=config.nesterov)
    filters = {id(m.weight) for m in model.modules() if isinstance(m, nn.Conv2d) and m.bias is None}
    decayed = groups["decayed"]["params"]
    groups["decayed"]["params"] = [p for p in decayed if id(p) not in filters]
    groups["orthogonalized"] = {"params": [p for p in decayed if id(p) in filters], "orthogonalize": True,
                                "weight_decay": 0.0, "lr_scale": config.muon_lr / config.lr,
                                "muon_momentum": config.muon_momentum}
    return Muon(list(groups.values()), lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
                matmul_dtype=matmul_dtype)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every group at ``lr`` times its ``lr_scale``."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_scale"]


class Lookahead:
    """Slow weights that follow the model, which restarts from them (airbench's lookahead).

    ``update(done)`` moves every float tensor of the model's state (weights and BatchNorm
    statistics) and its slow copy to ``decay * slow + (1 - decay) * model``, with ``decay`` growing
    as ``peak * done ** 3`` (``done``, the fraction of training done): no averaging early on, a long average at the end.
    """

    def __init__(self, model: nn.Module, peak: float = LOOKAHEAD_PEAK, slow: list[torch.Tensor] | None = None):
        self.tensors = [t for t in model.state_dict().values() if t.is_floating_point()]
        self.slow = [t.detach().clone() for t in self.tensors] if slow is None else slow
        self.peak = peak

    @torch.no_grad()
    def update(self, done: float) -> None:
        weight = 1 - self.peak * min(max(done, 0.0), 1.0) ** 3
        for slow, tensor in zip(self.slow, self.tensors):
            slow.lerp_(tensor, weight)
            tensor.copy_(slow)
