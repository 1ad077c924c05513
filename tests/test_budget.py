import random

import pytest

import torch
from torch import nn

from cifar_resnet.budget import count_flops, count_parameters, count_training_flops
from cifar_resnet.config import DOWNSAMPLING, PARAMETER_BUDGET, PRESETS, ModelConfig
from cifar_resnet.model import build_model


def random_config(rng: random.Random) -> ModelConfig:
    n = rng.randint(1, 5)
    sizes = [32 >> i for i in range(n)]
    return ModelConfig(blocks=[rng.randint(1, 4) for _ in range(n)],
                       channels=[rng.randint(1, 96) for _ in range(n)],
                       kernel=[rng.choice([1, 3, 5, 7]) for _ in range(n)],
                       skip_kernel=[rng.choice([1, 3]) for _ in range(n)],
                       pool=rng.randint(1, sizes[-1]), num_classes=rng.choice([10, 100]),
                       downsample=rng.choice(DOWNSAMPLING))


def random_airbench_config(rng: random.Random) -> ModelConfig:
    n = rng.randint(1, 4)
    return ModelConfig(blocks=[rng.randint(1, 3) for _ in range(n)], channels=[rng.randint(1, 96) for _ in range(n)],
                       kernel=[rng.choice([1, 3, 5]) for _ in range(n)], pool=rng.randint(1, (15, 7, 3, 1)[n - 1]),
                       num_classes=rng.choice([10, 100]), downsample="maxpool", style="airbench")


def built_counts(config):
    model = build_model(config, device="meta")
    return {name: sum(p.numel() for p in module.parameters(recurse=False))
            for name, module in model.named_modules() if any(True for _ in module.parameters(recurse=False))}


def test_reference_preset_has_exactly_4916284_parameters():
    report = count_parameters(PRESETS["reference"].model)
    assert report.total == 4_916_284
    assert sum(p.numel() for p in build_model(PRESETS["reference"].model).parameters()) == 4_916_284
    assert report.fits_budget and "83,716 to spare" in report.verdict


@pytest.mark.parametrize("seed", range(60))
def test_counts_equal_the_built_models_layer_by_layer(seed):
    rng = random.Random(seed)
    config = random_config(rng) if seed % 3 else random_airbench_config(rng)
    report = count_parameters(config)
    assert {layer.name: layer.parameters for layer in report.layers} == built_counts(config)
    assert report.total == sum(p.numel() for p in build_model(config).parameters())
    assert report.flops == count_flops(config)


class SqueezeExcite(nn.Module):
    """A student's block: a residual pair of convs whose channels a small gate reweighs."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm = nn.BatchNorm2d(channels)
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, channels // 4),
                                  nn.ReLU(), nn.Linear(channels // 4, channels), nn.Sigmoid())

    def forward(self, x):
        y = torch.relu(self.norm(self.conv(x)))
        return x + y * self.gate(y)[:, :, None, None]


def test_any_network_is_counted_by_its_own_modules():
    shared = nn.Conv2d(16, 16, 3, padding=1)  # used twice, counted once (torchsummary counts it twice)
    network = nn.Sequential()
    network.add_module("stem", nn.Conv2d(3, 16, 3, padding=1))
    network.add_module("body", nn.Sequential(SqueezeExcite(16), shared, nn.ReLU(), shared, nn.MaxPool2d(2)))
    network.add_module("head", nn.Sequential(nn.Flatten(), nn.Linear(16 * 16 * 16, 10)))
    report = count_parameters(network)
    assert report.total == sum(p.numel() for p in network.parameters()) == 448 + 2320 + 32 + 68 + 80 + 2320 + 40970
    assert [(s.name, s.output_shape) for s in report.stages] == [("stem", (16, 32, 32)), ("body", (16, 16, 16)),
                                                                  ("head", (10, 1, 1))]
    assert report.by_group == {"stem": 448, "body": 4820, "head": 40970} and report.config is None
    conv_3x3 = 2 * 16 * 16 * 9 * 32 * 32  # a 16-to-16 conv on the 32x32 map: the block's and the shared one, twice
    assert report.flops == 2 * 3 * 16 * 9 * 32 * 32 + 3 * conv_3x3 + 2 * (16 * 4 + 4 * 16) + 2 * 16 * 16 * 16 * 10
    assert network.training, "counting leaves the network's mode as it was"


def test_every_preset_fits_the_budget_and_groups_add_up():
    for name, preset in PRESETS.items():
        report = count_parameters(preset.model)
        assert report.fits_budget, name
        assert sum(report.by_group.values()) == sum(report.by_kind.values()) == report.total
        assert sum(s.parameters for s in report.stages) == report.total


class Weights(nn.Module):
    def __init__(self, count: int):
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(count))

    def forward(self, x):
        return x.flatten(1)[:, :10] * self.weights[:10]


def test_the_course_rule_is_at_most_5_million():
    assert count_parameters(Weights(5_000_000)).fits_budget
    over = count_parameters(Weights(5_000_001))
    assert not over.fits_budget and over.verdict == "OVER the budget: 5,000,001 > 5,000,000 parameters (1 too many)"


def test_over_budget_verdict():
    report = count_parameters(ModelConfig(blocks=(2, 2, 2, 2), channels=(64, 128, 256, 512), pool=4))
    assert report.total == 11_173_962  # ResNet-18 for CIFAR-10
    assert not report.fits_budget and report.verdict.startswith("OVER the budget")
    assert "OVER the budget" in report.table()


def test_airbench_style_report_shows_the_patch_stem_and_the_pooled_stages():
    report = count_parameters(PRESETS["cpu-fast"].model)
    assert [s.output_shape for s in report.stages] == [(24, 31, 31), (64, 15, 15), (160, 7, 7), (256, 3, 3), (10, 1, 1)]
    assert report.total == 2_194_552 and report.by_kind["linear"] == 2_560  # no classifier bias


def test_flops_of_the_reference_model():
    assert count_flops(PRESETS["reference"].model) == count_parameters(PRESETS["reference"].model).flops == 1_538_081_952


def test_training_flops_are_forward_and_backward():
    """About 3x the forward pass: the backward pass computes input and weight gradients of every
    layer but the first, whose input needs no gradient."""
    config = PRESETS["reference"].model
    stem_input_gradient = 2 * 3 * 66 * 9 * 32 * 32
    assert count_training_flops(config) == 3 * count_flops(config) - stem_input_gradient
    assert 13.8e15 < count_training_flops(config) * 60 * 49_920 < 13.9e15  # the reference recipe: ~14 PFLOPs
    stem_weight_gradient = 2 * 3 * 66 * 9 * 32 * 32  # not computed when the stem is frozen (whiten_stem)
    assert count_training_flops(config) - count_training_flops(config, frozen_stem=True) == stem_weight_gradient


def test_report_as_json_and_table():
    report = count_parameters(PRESETS["reference"].model)
    d = report.to_dict()
    assert d["total"] == 4_916_284 and d["fits_budget"] is True and d["flops"] == 1_538_081_952
    assert d["budget"] == PARAMETER_BUDGET
    assert [s["output_shape"] for s in d["stages"]] == [[66, 32, 32], [66, 32, 32], [132, 16, 16], [264, 8, 8], [10, 1, 1]]
    assert "stage 3        264x8x8    3,488,496" in report.table()
