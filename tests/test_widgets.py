import random
import re

import pytest

from cifar_resnet.budget import count_parameters
from cifar_resnet.config import PRESETS, ModelConfig
from cifar_resnet.model import build_model
from cifar_resnet.widgets import CUSTOM, budget_explorer


def shown_total(explorer) -> int:
    return int(re.search(r"<b>([\d,]+)</b> parameters", explorer.total.value).group(1).replace(",", ""))


def test_starts_on_the_reference_preset():
    e = budget_explorer()
    assert shown_total(e) == 4_916_284 and "fits" in e.total.value
    assert "98.3% of the 5,000,000 budget" in e.bar.value and "#ef8f00" in e.bar.value  # above 90%: orange
    assert "1,538.1 MFLOPs" in e.flops.value
    assert "model_config = ModelConfig(blocks=(3, 4, 3), channels=(66, 132, 264), kernel=3, skip_kernel=1, pool=8)" \
        in e.code.value
    assert e.table.value.count("<tr>") == 1 + 5 and "3,488,496" in e.table.value and "264&times;8&times;8" in e.table.value
    assert e.error.value == ""


def test_moving_a_slider_updates_everything_live():
    e = budget_explorer()
    e.blocks[1].value = 6
    expected = count_parameters(ModelConfig(blocks=(3, 6, 3), channels=(66, 132, 264), pool=8))
    assert shown_total(e) == expected.total == 5_544_604  # two more 132-channel blocks: +628,320
    assert "OVER" in e.total.value and "#c62828" in e.bar.value
    assert e.preset.value == CUSTOM
    assert f"{expected.flops / 1e6:,.1f} MFLOPs" in e.flops.value


def test_downsampling_by_max_pool_costs_flops_not_parameters():
    e = budget_explorer()
    e.downsample.value = "maxpool"
    expected = count_parameters(ModelConfig(blocks=(3, 4, 3), channels=(66, 132, 264), pool=8, downsample="maxpool"))
    assert shown_total(e) == 4_916_284 and f"{expected.flops / 1e6:,.1f} MFLOPs" in e.flops.value
    assert expected.flops > count_parameters(PRESETS["reference"].model).flops
    assert "downsample=&#x27;maxpool&#x27;" in e.code.value


def test_scale_all_channels_and_four_stages():
    e = budget_explorer("small")
    e.scale.value = 0.5
    assert e.config().channels == (16, 32, 64) and shown_total(e) == count_parameters(e.config()).total
    e.stages.value = 4  # the 4th stage's map is 4x4: P follows it instead of showing an error
    assert e.pool.value == e.pool.max == 4 and e.error.value == "" and e.preset.value == CUSTOM
    assert e.config().stages == 4 and e.blocks[3].layout.display == "flex"
    e.stages.value = 3
    assert e.blocks[3].layout.display == "none" and e.channels[3].layout.display == "none"
    assert all(s.layout.display == "flex" for s in e.blocks[:3] + e.channels[:3])


def test_the_preset_picker_fills_the_controls():
    e = budget_explorer("reference")
    for name, preset in PRESETS.items():
        e.preset.value = name
        assert e.config() == preset.model and shown_total(e) == count_parameters(preset.model).total
        assert e.preset.value == name


def test_no_control_can_make_the_configuration_impossible():
    e = budget_explorer()
    e.pool.value = 16  # past the last 8x8 map: the slider stops at 8
    assert e.pool.value == 8 and e.error.value == "" and shown_total(e) == 4_916_284
    e.stages.value = 4
    assert e.pool.value == 4 and e.error.value == ""
    e.style.value = "airbench"  # it halves by max pool: the downsampling follows
    assert e.downsample.value == "maxpool" and e.downsample.disabled and e.error.value == ""
    assert e.pool.max == 1 and shown_total(e) == count_parameters(e.config()).total
    e.style.value = "torchvision"
    assert not e.downsample.disabled and e.error.value == ""


@pytest.mark.parametrize("seed", range(25))
def test_the_shown_total_equals_the_built_model_on_random_settings(seed):
    rng = random.Random(seed)
    e = budget_explorer()
    e.stages.value = rng.choice([3, 4])
    for slider in e.blocks + e.channels:
        slider.value = rng.randint(slider.min, slider.max if slider in e.blocks else 300)
    e.scale.value = rng.choice([0.25, 0.5, 1.0, 1.35])
    e.kernel.value, e.skip_kernel.value = rng.choice([1, 3, 5]), rng.choice([1, 3])
    e.pool.value = rng.randint(1, 4)
    built = build_model(e.config(), device="meta")
    assert shown_total(e) == sum(p.numel() for p in built.parameters())
