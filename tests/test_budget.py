import random

import pytest

from cifar_resnet.budget import count_flops, count_parameters, count_training_flops, layer_counts
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
def test_counting_from_the_config_matches_the_built_model_layer_by_layer(seed):
    config = random_config(random.Random(seed))
    counted = {layer.name: layer.parameters for layer in layer_counts(config)}
    assert counted == built_counts(config)


def test_every_preset_fits_the_budget_and_groups_add_up():
    for name, preset in PRESETS.items():
        report = count_parameters(preset.model)
        assert report.fits_budget, name
        assert sum(report.by_group.values()) == sum(report.by_kind.values()) == report.total
        assert sum(s.parameters for s in report.stages) == report.total


def test_over_budget_verdict():
    report = count_parameters(ModelConfig(blocks=(2, 2, 2, 2), channels=(64, 128, 256, 512), pool=4))
    assert report.total == 11_173_962  # ResNet-18 for CIFAR-10
    assert not report.fits_budget and report.verdict.startswith("OVER the budget")
    assert "OVER the budget" in report.table()


@pytest.mark.parametrize("seed", range(20))
def test_airbench_style_counting_matches_the_built_model(seed):
    config = random_airbench_config(random.Random(seed))
    counted = {layer.name: layer.parameters for layer in layer_counts(config)}
    assert counted == built_counts(config)
    assert count_parameters(config).flops == count_flops(config)


def test_airbench_style_report_shows_the_patch_stem_and_the_pooled_stages():
    report = count_parameters(PRESETS["cpu-fast"].model)
    assert [s.output_shape for s in report.stages] == [(24, 31, 31), (64, 15, 15), (192, 7, 7), (256, 3, 3), (10, 1, 1)]
    assert report.total == 2_489_656 and report.by_kind["linear"] == 2_560  # no classifier bias


@pytest.mark.parametrize("seed", range(12))
def test_flops_from_the_config_match_torch_flop_counter(seed):
    config = random_config(random.Random(seed))
    assert count_parameters(config).flops == count_flops(config)


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


def test_counting_needs_no_model():
    """Counting a 4.9M-parameter model builds nothing: it works with the model builder broken."""
    import cifar_resnet.budget as budget

    original = budget.build_model
    budget.build_model = None
    try:
        report = budget.count_parameters(PRESETS["reference"].model)
        assert (report.total, report.flops) == (4_916_284, 1_538_081_952)
    finally:
        budget.build_model = original
