import copy

import pytest
import torch
from torch import nn

from cifar_resnet.config import PRESETS
from cifar_resnet.conv import Conv2d, SmallMapConv
from cifar_resnet.model import build_model


def gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, autocast: bool) -> dict[str, torch.Tensor]:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return {name: p.grad for name, p in model.named_parameters() if p.grad is not None}


def as_plain_convs(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose Conv2d layers all run as nn.Conv2d does."""
    plain = copy.deepcopy(model)
    for module in plain.modules():
        if isinstance(module, Conv2d):
            module.forward = nn.Conv2d.forward.__get__(module)
    return plain


@pytest.mark.parametrize("autocast", [True, False])
@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format])
def test_cpu_fast_gets_nn_conv2d_gradients_in_each_memory_format_and_dtype(autocast, memory_format):
    torch.manual_seed(0)
    model = build_model(PRESETS["cpu-fast"].model).to(memory_format=memory_format)
    plain = as_plain_convs(model)
    x = torch.randn(16, 3, 32, 32).contiguous(memory_format=memory_format)
    y = torch.randint(0, 10, (16,))
    got, expected = gradients(model, x, y, autocast), gradients(plain, x, y, autocast)
    assert got.keys() == expected.keys()
    for name, grad in got.items():
        assert grad.dtype == expected[name].dtype and grad.stride() == expected[name].stride(), name
        error = (grad - expected[name]).norm() / expected[name].norm()
        assert error < (1e-3 if autocast else 1e-5), (name, error)  # bf16 sums in another order differ a little


def test_small_map_convolution_matches_nn_conv2d_for_both_inputs_and_outputs():
    torch.manual_seed(0)
    x = torch.randn(4, 6, 3, 2, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(5, 6, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(SmallMapConv.apply, (x, weight))
    torch.testing.assert_close(SmallMapConv.apply(x, weight), nn.functional.conv2d(x, weight, padding=1))


def test_only_3x3_stride_1_convolutions_that_train_on_small_maps_take_the_matrix_product(monkeypatch):
    calls = []

    def recorded(x, weight):
        calls.append(x.shape)
        return nn.functional.conv2d(x, weight, padding=1)
    monkeypatch.setattr(SmallMapConv, "apply", recorded)
    small, large = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 4, 4)
    conv = Conv2d(4, 4, 3, padding=1, bias=False)
    conv(small)
    conv(large)
    Conv2d(4, 4, 3, stride=2, padding=1, bias=False)(small)
    Conv2d(4, 4, 1, bias=False)(small)
    Conv2d(4, 4, 3, padding=1, bias=True)(small)
    with torch.no_grad():
        conv(small)
    assert calls == [small.shape]
