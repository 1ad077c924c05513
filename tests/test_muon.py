import pytest
import torch

from cifar_resnet.config import ModelConfig, TrainConfig
from cifar_resnet.model import build_model
from cifar_resnet.muon import Muon, orthogonalize
from cifar_resnet.optimizer import make_optimizer


@pytest.mark.parametrize("shape", [(16, 144), (144, 16)])
def test_orthogonalize_pushes_every_singular_value_towards_one(shape):
    torch.manual_seed(0)
    matrix = torch.randn(shape) @ torch.diag(torch.logspace(-1, 1, shape[1]))  # singular values 4-100x apart
    assert torch.linalg.svdvals(matrix).max() > 4 * torch.linalg.svdvals(matrix).min()
    singular = torch.linalg.svdvals(orthogonalize(matrix, steps=5))
    assert matrix.shape == orthogonalize(matrix).shape
    assert singular.min() > 0.5 and singular.max() < 1.3


def test_muon_steps_filters_at_a_fixed_norm_and_leaves_the_rest_to_sgd():
    torch.manual_seed(0)
    conv, bias = torch.nn.Parameter(torch.randn(8, 4, 3, 3)), torch.nn.Parameter(torch.zeros(8))
    optimizer = Muon([{"params": [conv], "orthogonalize": True, "muon_momentum": 0.5},
                      {"params": [bias]}], lr=0.1, momentum=0.9, nesterov=True)
    conv.grad, bias.grad = torch.randn_like(conv), torch.ones(8)
    before = conv.detach().clone()
    optimizer.step()
    rescaled = before * 8 ** 0.5 / before.norm()
    step = (rescaled - conv.detach()).flatten(1) / 0.1  # the orthogonalized update, as a matrix
    assert torch.linalg.svdvals(step).min() > 0.3
    torch.testing.assert_close(bias.detach(), torch.full((8,), -0.1 * 1.9))  # SGD, Nesterov: g + 0.9 g
    assert "momentum_buffer" in optimizer.state[conv] and "momentum_buffer" in optimizer.state[bias]


def test_the_muon_recipe_puts_exactly_the_filters_of_bias_free_convs_in_the_muon_group():
    model = build_model(ModelConfig(blocks=(1, 1), channels=(32, 64), pool=7, downsample="maxpool", style="airbench"))
    optimizer = make_optimizer(model, TrainConfig(optimizer="muon", lr=0.5, muon_lr=0.2))
    muon = [g for g in optimizer.param_groups if g.get("orthogonalize")]
    assert len(muon) == 1 and muon[0]["lr_scale"] == pytest.approx(0.4)
    filters = {id(p) for p in model.parameters() if p.ndim == 4} - {id(model.stem[0].weight)}  # the stem has a bias
    assert {id(p) for p in muon[0]["params"]} == filters
    others = {id(p) for g in optimizer.param_groups if not g.get("orthogonalize") for p in g["params"]}
    assert not others & filters and id(model.fc.weight) in others
    assert type(make_optimizer(model, TrainConfig())) is torch.optim.SGD
