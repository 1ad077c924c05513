import json

import pytest

from cifar_resnet.config import PRESETS, ConfigurationError, ModelConfig, TrainConfig, get_preset
from cifar_resnet.errors import CifarResnetError


def test_reference_preset_is_the_course_model():
    c = get_preset("reference").model
    assert (c.blocks, c.channels, c.kernel, c.skip_kernel, c.pool) == ((3, 4, 3), (66, 132, 264), (3, 3, 3), (1, 1, 1), 8)
    assert c.feature_sizes == (32, 16, 8) and c.pooled_size == 1


def test_int_kernels_broadcast_to_every_stage():
    c = ModelConfig(blocks=(1, 1, 1, 1), channels=(8, 16, 32, 64), kernel=5, skip_kernel=3, pool=4)
    assert c.kernel == (5, 5, 5, 5) and c.skip_kernel == (3, 3, 3, 3) and c.stages == 4


@pytest.mark.parametrize("kwargs, names", [
    (dict(blocks=(1, 1), channels=(8, 0)), "channels[stage 2] = 0"),
    (dict(blocks=(1, 0), channels=(8, 8)), "blocks[stage 2] = 0"),
    (dict(blocks=(1, 1), channels=(8, 8, 8)), "channels has 3 values"),
    (dict(blocks=(1, 1), channels=(8, 8), kernel=(3,)), "kernel has 1 values"),
    (dict(blocks=(1, 1), channels=(8, 8), kernel=4), "kernel[stage 1] = 4: must be odd"),
    (dict(blocks=(1, 1), channels=(8, 8), skip_kernel=(1, 2)), "skip_kernel[stage 2] = 2"),
    (dict(blocks=(1, 1, 1), channels=(8, 8, 8), pool=16), "pool = 16 is larger than the last feature map (8x8"),
    (dict(blocks=(1,) * 7, channels=(8,) * 7, pool=1), "stage 7 would halve a 1x1 feature map"),
    (dict(blocks=(), channels=()), "blocks is empty"),
    (dict(blocks=(1,), channels=(8,), pool=0), "pool = 0"),
    (dict(blocks=(1,), channels=(8,), downsample="avgpool"), "downsample = 'avgpool'"),
    (dict(blocks=(1,), channels=(8,), style="keras"), "style = 'keras'"),
    (dict(blocks=(1,), channels=(32,), pool=1, style="airbench"), "set downsample = 'maxpool'"),
    (dict(blocks=(1,) * 5, channels=(32,) * 5, pool=1, downsample="maxpool", style="airbench"),
     "stage 5 would halve a 1x1 feature map"),
])
def test_invalid_configurations_name_the_wrong_value(kwargs, names):
    with pytest.raises(ValueError) as info:
        ModelConfig(**kwargs)
    assert names in str(info.value)
    assert isinstance(info.value, CifarResnetError)


def test_configs_round_trip_through_json():
    for preset in PRESETS.values():
        model = ModelConfig.from_dict(json.loads(json.dumps(preset.model.to_dict())))
        train = TrainConfig.from_dict(json.loads(json.dumps(preset.train.to_dict())))
        assert model == preset.model and train == preset.train


def test_unknown_fields_and_presets_are_refused():
    with pytest.raises(ConfigurationError, match="unknown ModelConfig fields"):
        ModelConfig.from_dict({"blocks": [1], "channels": [8], "depth": 3})
    with pytest.raises(ConfigurationError, match="unknown preset 'resnet50'"):
        get_preset("resnet50")


@pytest.mark.parametrize("kwargs, message", [
    (dict(epochs=0), "epochs = 0"), (dict(minutes=-1.0), "minutes = -1.0"),
    (dict(warmup=1.0), "warmup"), (dict(amp="fp8"), "amp = 'fp8'"), (dict(erasing=2.0), "erasing"),
    (dict(flip=False, alternate_flip=True), "alternate_flip = True needs flip = True"),
    (dict(schedule="step"), "schedule = 'step'"), (dict(optimizer="adam"), "optimizer = 'adam'"),
    (dict(optimizer="muon", muon_momentum=1.0), "muon_momentum = 1.0"),
])
def test_invalid_train_configs(kwargs, message):
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
        TrainConfig(**kwargs)


def test_code_line_rebuilds_the_config():
    for c in (get_preset("four-stage").model, ModelConfig(blocks=(1, 2), channels=(8, 16), downsample="maxpool"),
              ModelConfig(blocks=(1, 1), channels=(32, 64), pool=7, downsample="maxpool", style="airbench"),
              ModelConfig(blocks=(1,), channels=(8,), num_classes=100)):
        assert eval(c.code(), {"ModelConfig": ModelConfig}) == c


def test_train_config_repr_shows_minutes_or_epochs_not_both():
    timed, counted = TrainConfig(minutes=15.0), TrainConfig(epochs=7)
    assert "minutes=15.0" in repr(timed) and "epochs" not in repr(timed)
    assert "epochs=7" in repr(counted) and "minutes=None" in repr(counted)
    assert eval(repr(counted), {"TrainConfig": TrainConfig}) == counted


def test_a_recipe_describes_itself_from_its_settings():
    fast, reference = get_preset("cpu-fast").train.describe(), get_preset("reference").train.describe()
    assert fast.startswith("15 minutes in batches of 512") and "straight line down to 7%" in fast
    assert "alternating flips" in fast and "no validation split" in fast and "cosine" not in fast
    assert reference.startswith("30 epochs") and "cosine decay" in reference and "validation split of 10%" in reference
