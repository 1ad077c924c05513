"""The notebooks' experiments: the variants they train and the committed measurements they read."""
import dataclasses

import pytest
from torch import nn

from cifar_resnet import experiments, get_preset
from cifar_resnet.budget import count_parameters
from cifar_resnet.config import AIRBENCH_RECIPE, AIRBENCH_RESNET, COURSE_TECHNIQUES, TrainConfig, techniques_used
from cifar_resnet.errors import CifarResnetError


def test_tricks_build_airbench94s_recipe_up_one_trick_at_a_time_on_airbenchs_residual_network():
    variants = experiments.trick_variants(2.0)
    assert variants[-1].train == dataclasses.replace(AIRBENCH_RECIPE, minutes=2.0, val_size=None)
    assert all(v.model == AIRBENCH_RESNET and v.train.minutes == 2.0 and v.train.val_size is None for v in variants)
    plain = variants[0].train
    assert not (plain.whiten_stem or plain.lookahead or plain.alternate_flip)
    assert (plain.label_smoothing, plain.bias_lr_scale, plain.schedule) == (0.0, 1.0, "cosine")
    for before, after in zip(variants, variants[1:]):  # each row changes exactly the fields its trick names
        changed = {f.name for f in dataclasses.fields(before.train)
                   if getattr(before.train, f.name) != getattr(after.train, f.name)}
        assert len(changed) == 1, (after.label, changed)


def test_cpu_fast_is_airbench94s_recipe_in_the_batch_size_the_batch_variants_compare():
    variants = experiments.batch_variants(2.0)
    batches = {(1024, 1.5), (512, 0.75), (256, 0.375)}  # (batch size, learning rate): the rate per image kept
    assert len(variants) == len(batches) * len(experiments.SEEDS)
    cpu_fast = get_preset("cpu-fast").train
    assert dataclasses.replace(AIRBENCH_RECIPE, batch_size=cpu_fast.batch_size, lr=cpu_fast.lr,
                               minutes=cpu_fast.minutes, optimizer="muon", whiten_eps=0.02,
                               stem_bias_until=0.3) == cpu_fast
    assert (cpu_fast.batch_size, cpu_fast.lr) in batches
    assert {(v.train.batch_size, v.train.lr, v.train.seed) for v in variants} == {
        (batch, lr, seed) for batch, lr in batches for seed in experiments.SEEDS}
    assert all(v.train.lr / v.train.batch_size == AIRBENCH_RECIPE.lr / AIRBENCH_RECIPE.batch_size for v in variants)


def test_optimizer_variants_are_cpu_fast_with_sgd_and_as_it_is_the_sgd_arm_a_batch_variant():
    variants = experiments.optimizer_variants(5.0)
    assert [v.train.optimizer for v in variants] == ["sgd", "muon"] * len(experiments.SEEDS)
    cpu_fast = dataclasses.replace(get_preset("cpu-fast").train, minutes=5.0, val_size=None, whiten_eps=5e-4,
                                   stem_bias_until=1.0)
    assert variants[1].train == cpu_fast and variants[1].model == AIRBENCH_RESNET
    batch_trains = {v.train for v in experiments.batch_variants(5.0)}
    assert all(v.train in batch_trains for v in variants if v.train.optimizer == "sgd")  # measured once in one run


def test_augmentation_variants_end_with_airbench94s_recipe_and_start_without_augmentation():
    none, flips, full = experiments.augmentation_variants(1.0)
    assert (none.train.flip, none.train.crop_padding) == (False, 0)
    assert (flips.train.flip, flips.train.crop_padding) == (True, 0)
    assert full.train == experiments.trick_variants(1.0)[-1].train


def test_compare_trains_a_variant_measured_before_only_once(smoke_data, monkeypatch):
    calls = []
    monkeypatch.setattr(experiments, "run_variant", lambda v, data, device=None: calls.append(v) or {"label": v.label})
    done = {}
    variants = experiments.trick_variants(0.01)
    experiments.compare(variants[-1:], smoke_data, show=False, done=done)
    rows = experiments.compare(experiments.augmentation_variants(0.01), smoke_data, show=False, done=done)
    assert len(calls) == 3  # airbench94's recipe closes both lists: trained once
    assert rows[-1]["label"] == "flips and crops: airbench94's recipe"


def test_run_variant_scores_on_the_validation_split(smoke_data):
    tiny = experiments.preset_variants(0.005, names=("tiny",))[0]
    row = experiments.run_variant(tiny, smoke_data)
    assert row["label"] == "tiny" and row["parameters"] == 78_042
    assert 0 <= row["val_acc"] <= 1 and 0 <= row["val_acc_tta"] <= 1 and row["epochs"] > 0 and row["minutes"] > 0


@pytest.mark.parametrize("name, variants", [("tricks", experiments.trick_variants),
                                            ("batches", experiments.batch_variants),
                                            ("optimizers", experiments.optimizer_variants),
                                            ("augmentations", experiments.augmentation_variants),
                                            ("presets", experiments.preset_variants)])
def test_the_committed_measurements_match_the_variants_the_notebooks_name(name, variants):
    run = experiments.measured(name)
    assert run["machine"] and run["date"] and run["minutes"] > 0
    assert [r["label"] for r in run["rows"]] == [v.label for v in variants(run["minutes"])]
    assert all("diverged" in r or 0 < r["val_acc"] <= 1 for r in run["rows"])


def test_the_technique_rows_are_the_variants_they_name_with_the_recipe_they_trained():
    run = experiments.measured("techniques")
    assert run["machine"] and run["date"] and run["epochs"] == experiments.TECHNIQUE_EPOCHS
    variants = {v.label: v for seed in experiments.SEEDS for v in experiments.technique_variants(run["epochs"], seed)}
    assert run["rows"] and all(row["label"] in variants for row in run["rows"])
    for row in run["rows"]:
        assert TrainConfig.from_dict(row["recipe"]) == variants[row["label"]].train, row["label"]
        assert row["epochs"] == run["epochs"] and 0 < row["val_acc"] <= 1


def test_the_techniques_are_the_courses_recipe_less_one_at_a_time():
    base, *others = experiments.technique_variants(20)
    assert techniques_used(base.train) == dict.fromkeys(COURSE_TECHNIQUES, True)
    assert base.model == AIRBENCH_RESNET and base.train.batch_size == 512 and base.train.lr == 0.4
    for variant in others:
        changed = base.train.changes(variant.train)
        assert changed and set(changed) <= {"randaugment", "erasing", "label_smoothing", "schedule"}, variant.label


def test_show_measured_prints_machine_date_and_table(capsys):
    rows = experiments.show_measured("presets")
    out = capsys.readouterr().out
    run = experiments.measured("presets")
    assert run["machine"] in out and run["date"] in out and "reference" in out and len(rows) == 5


def test_an_unknown_measurement_is_named():
    with pytest.raises(CifarResnetError, match="no measurement 'speed'"):
        experiments.measured("speed")


def test_stem_bias_variants_differ_from_cpu_fast_only_in_when_the_stem_bias_freezes():
    variants = experiments.stem_bias_variants(5.0)
    assert [v.train.stem_bias_until for v in variants] == [1.0, 0.3] * len(experiments.SEEDS)
    cpu_fast = dataclasses.replace(get_preset("cpu-fast").train, minutes=5.0, val_size=None)
    assert variants[1].train == cpu_fast and variants[0].train == dataclasses.replace(cpu_fast, stem_bias_until=1.0)


def test_hiverge_variants_change_one_thing_each_around_cpu_fast():
    variants = experiments.hiverge_variants(5.0)
    cpu_fast = dataclasses.replace(get_preset("cpu-fast").train, minutes=5.0, val_size=None)
    base, silu, jitter, batches = variants[:4]
    assert len(variants) == 4 * len(experiments.SEEDS) and {v.train.seed for v in variants[4:]} == {1}
    assert base.train == silu.train == cpu_fast and base.model == jitter.model == batches.model == AIRBENCH_RESNET
    assert jitter.train == dataclasses.replace(cpu_fast, brightness_contrast=experiments.HIVERGE_BRIGHTNESS_CONTRAST)
    assert batches.train == dataclasses.replace(cpu_fast, batch_size=1024, lr=2 * cpu_fast.lr)
    network = silu.model.build()
    stage_activations = {type(m) for m in network.stages.modules() if isinstance(m, (nn.GELU, nn.SiLU))}
    assert stage_activations == {nn.SiLU} and isinstance(network.stem[1], nn.GELU)
    assert count_parameters(silu.model).total == count_parameters(AIRBENCH_RESNET).total


def test_muon_rate_variants_change_only_muons_rate_or_momentum_around_cpu_fasts():
    variants = experiments.muon_rate_variants(5.0)
    cpu_fast = dataclasses.replace(get_preset("cpu-fast").train, minutes=5.0, val_size=None)
    arms = 1 + len(experiments.MUON_CHANGES)
    assert len(variants) == arms * len(experiments.SEEDS) and variants[0].train == cpu_fast
    assert [(v.train.muon_lr, v.train.muon_momentum) for v in variants[:arms]] == [(0.12, 0.6), (0.06, 0.6),
                                                                                 (0.24, 0.6), (0.12, 0.8)]
    for variant in variants[:arms]:
        assert variant.train == dataclasses.replace(cpu_fast, muon_lr=variant.train.muon_lr,
                                                    muon_momentum=variant.train.muon_momentum)
    assert {v.train.seed for v in variants[arms:]} == {1} and "cpu-fast's recipe, seed 1" in variants[arms].label
