import dataclasses
import json
import math

import pytest
import torch

import sys
from cifar_resnet.checkpoint import load_checkpoint
from cifar_resnet.config import COURSE_TECHNIQUES, PRESETS, ModelConfig, TrainConfig, techniques_used
from cifar_resnet.errors import CifarResnetError
from cifar_resnet.model import build_model
from cifar_resnet.optimizer import Lookahead, parameter_groups
from cifar_resnet.run_folder import HISTORY_FIELDS, read_history
from cifar_resnet.schedule import lr_at
from cifar_resnet.train import fit
from cifar_resnet.training_state import TrainingDivergedError

TINY = PRESETS["tiny"].model
QUICK = TrainConfig(epochs=2, batch_size=100, lr=0.1, val_size=100, amp="off")


def test_lr_schedule_warms_up_linearly_then_decays_continuously_to_zero():
    peak, warmup = 0.4, 0.1
    assert lr_at(0, peak, warmup) == 0 and lr_at(1, peak, warmup) == pytest.approx(0, abs=1e-12)
    assert lr_at(0.05, peak, warmup) == pytest.approx(0.2)
    eps = 1e-9
    assert lr_at(warmup - eps, peak, warmup) == pytest.approx(lr_at(warmup + eps, peak, warmup), rel=1e-6)
    grid = [lr_at(i / 1000, peak, warmup) for i in range(1001)]
    assert max(abs(a - b) for a, b in zip(grid, grid[1:])) < 2 * peak / (warmup * 1000)  # no jumps
    after = grid[100:]
    assert all(a >= b for a, b in zip(after, after[1:]))
    assert lr_at(0.3, peak, 0.0) == pytest.approx(peak * 0.5 * (1 + math.cos(math.pi * 0.3)))


def test_linear_schedule_is_airbenchs_triangle():
    peak, warmup = 1.5, 0.23
    assert lr_at(0, peak, warmup, "linear") == pytest.approx(0.2 * peak)
    assert lr_at(warmup / 2, peak, warmup, "linear") == pytest.approx(0.6 * peak)
    assert lr_at(warmup, peak, warmup, "linear") == pytest.approx(peak)
    assert lr_at(warmup + (1 - warmup) / 2, peak, warmup, "linear") == pytest.approx((1 + 0.07) / 2 * peak)
    assert lr_at(1, peak, warmup, "linear") == lr_at(2, peak, warmup, "linear") == pytest.approx(0.07 * peak)


def test_no_weight_decay_on_batchnorm_and_biases_and_a_faster_learning_rate_for_biases():
    model = build_model(TINY)
    groups = parameter_groups(model, 5e-4, bias_lr_scale=8.0)
    decay, bn_weights, biases = groups["decayed"], groups["not decayed"], groups["fast biases"]
    assert decay["weight_decay"] == 5e-4 and bn_weights["weight_decay"] == biases["weight_decay"] == 0
    assert (decay["lr_scale"], bn_weights["lr_scale"], biases["lr_scale"]) == (1.0, 1.0, 8.0)
    bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert {id(p) for p in bn_weights["params"]} == {id(m.weight) for m in bn}
    assert {id(p) for p in biases["params"]} == {id(m.bias) for m in bn} | {id(model.fc.bias)}
    assert sum(len(g["params"]) for g in (decay, bn_weights, biases)) == len(list(model.parameters()))
    model.stem[0].weight.requires_grad_(False)  # frozen parameters are left out
    assert sum(len(g["params"]) for g in parameter_groups(model, 5e-4).values()) == len(list(model.parameters())) - 1


def test_airbench_style_groups_leave_the_stem_bias_at_the_base_rate_and_frozen_bn_scales_out():
    model = build_model(ModelConfig(blocks=(1, 1), channels=(32, 64), pool=7, downsample="maxpool", style="airbench"))
    groups = parameter_groups(model, 5e-4, bias_lr_scale=64.0)
    others, biases = groups["not decayed"], groups["fast biases"]
    assert {id(p) for p in others["params"]} == {id(model.stem[0].bias)} and others["lr_scale"] == 1.0
    bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert {id(p) for p in biases["params"]} == {id(m.bias) for m in bn} and biases["lr_scale"] == 64.0
    assert model.fc.bias is None and not any(m.weight.requires_grad for m in bn)


def test_each_group_follows_the_schedule_times_its_scale(smoke_data):
    config = TrainConfig(epochs=1, batch_size=100, lr=0.1, warmup=0.0, bias_lr_scale=4.0, val_size=100, amp="off")
    seen = []
    original = torch.optim.SGD.step

    def spy(self, *args, **kwargs):
        seen.append([g["lr"] for g in self.param_groups])
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.optim.SGD, "step", spy)
        fit(TINY, config, smoke_data, progress=False)
    weights, bn_weights, biases = seen[0]
    assert weights == bn_weights == pytest.approx(lr_at(0.5 / len(seen), 0.1, 0.0))
    assert biases == pytest.approx(4 * weights)


def test_whitened_stem_is_frozen_and_decorrelates_the_patches(smoke_data):
    result = fit(TINY, TrainConfig(**{**QUICK.to_dict(), "epochs": 1, "whiten_stem": True}), smoke_data,
                 progress=False)
    stem = result.model.stem[0]
    assert not stem.weight.requires_grad
    x = result.normalization(smoke_data.train_images[:500])
    out = torch.nn.functional.conv2d(x, stem.weight[:stem.weight.shape[0] // 2], padding=1)
    out = out[..., 1:-1, 1:-1].permute(1, 0, 2, 3).flatten(1)  # interior pixels: no zero padding
    covariance = out @ out.T / out.shape[1]
    torch.testing.assert_close(covariance, torch.eye(len(covariance)), atol=0.2, rtol=0)
    torch.testing.assert_close(stem.weight[:8], -stem.weight[8:16])  # each filter beside its negative


def test_the_whitened_stems_bias_learns_until_its_share_of_training_then_freezes(smoke_data):
    model = build_model(ModelConfig(blocks=(1,), channels=(16,), pool=15, downsample="maxpool", style="airbench"))
    biases = []
    config = dataclasses.replace(QUICK, epochs=4, whiten_stem=True, stem_bias_until=0.5)
    fit(model, config, smoke_data, progress=False, on_epoch=lambda history: biases.append(model.stem[0].bias.clone()))
    assert not torch.equal(biases[0], biases[1])  # still learning through the first half of the steps
    assert torch.equal(biases[1], biases[2]) and torch.equal(biases[2], biases[3])  # frozen from then on
    assert not model.stem[0].bias.requires_grad
    assert "its bias frozen after 50% of training" in config.describe()
    torchvision_layout = fit(TINY, config, smoke_data, progress=False).model  # a bias-free conv, then BatchNorm
    assert not any(p.requires_grad for p in torchvision_layout.stem.parameters())
    assert "bias frozen" not in dataclasses.replace(config, whiten_stem=False).describe()


def test_fit_learns_and_writes_checkpoint_and_history(smoke_data, tmp_path):
    config = TrainConfig(epochs=6, batch_size=50, lr=0.1, val_size=100)
    seen = []
    result = fit(TINY, config, smoke_data, tmp_path, progress=False, on_epoch=lambda h: seen.append(len(h)))
    history = result.history
    assert seen == [1, 2, 3, 4, 5, 6] and [h["epoch"] for h in history] == [1, 2, 3, 4, 5, 6]
    assert set(history[0]) == set(HISTORY_FIELDS) and history[-1]["step"] == 6 * (900 // 50)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_acc"] > 0.2, "no better than chance (0.1) after 6 epochs"
    assert read_history(tmp_path) == json.loads(json.dumps(history))
    csv_lines = (tmp_path / "history.csv").read_text().splitlines()
    assert csv_lines[0] == ",".join(HISTORY_FIELDS) and len(csv_lines) == 7
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt.finished and ckpt.epoch == 6 and ckpt.model_config == TINY and ckpt.train_config == config
    assert ckpt.normalization == result.normalization
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "history.csv", "history.json", "run.json"]
    techniques = json.loads((tmp_path / "run.json").read_text())["course_techniques"]
    assert techniques == techniques_used(config) and set(techniques) == set(COURSE_TECHNIQUES)
    assert result.summary().startswith(f"epoch 6: validation accuracy {history[-1]['val_acc']:.2%}; ")


def test_alternate_flip_mirrors_each_image_in_every_other_epoch(smoke_data, monkeypatch):
    flips = []  # per epoch: each image (by its bytes) and whether augment was told to mirror it

    def record(images, flip, **kwargs):
        flips.append(dict(zip((bytes(image.numpy()) for image in images), flip.tolist())))
        return images

    monkeypatch.setattr(sys.modules["cifar_resnet.augment"], "augment", record)  # the module, not the function
    config = TrainConfig(epochs=3, batch_size=900, lr=0.1, val_size=100, amp="off", alternate_flip=True)
    fit(TINY, config, smoke_data, progress=False)
    assert len(flips) == 3 and len(flips[0]) == 900
    assert 300 < sum(flips[0].values()) < 600
    assert all(flips[1][image] != mirrored and flips[2][image] == mirrored for image, mirrored in flips[0].items())


def test_lookahead_moves_model_and_slow_weights_to_their_average_more_strongly_late():
    model = build_model(TINY)
    lookahead = Lookahead(model, peak=0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.fc.weight.add_(1.0)
        model.stem[1].running_mean.add_(2.0)
        model.stem[1].num_batches_tracked.add_(3)
    lookahead.update(0.0)  # no averaging yet: the slow weights catch up with the model
    torch.testing.assert_close(model.fc.weight, before["fc.weight"] + 1)
    with torch.no_grad():
        model.fc.weight.add_(1.0)
        model.stem[1].running_mean.add_(2.0)
    lookahead.update(1.0)  # half way between the slow weights and the model
    torch.testing.assert_close(model.fc.weight, before["fc.weight"] + 1.5)
    torch.testing.assert_close(model.stem[1].running_mean, before["stem.1.running_mean"] + 3)
    assert model.stem[1].num_batches_tracked.item() == before["stem.1.num_batches_tracked"].item() + 3
    torch.testing.assert_close(lookahead.slow[0], model.state_dict()[next(iter(model.state_dict()))])


def stop_after_first_epoch(history):
    if len(history) == 1:
        raise KeyboardInterrupt


@pytest.mark.parametrize("changes", [{}, {"lookahead": True}, {"optimizer": "muon"}])
def test_an_interrupted_and_resumed_run_equals_an_uninterrupted_one(smoke_data, tmp_path, changes):
    config = TrainConfig(**{**QUICK.to_dict(), **changes})
    full = fit(TINY, config, smoke_data, tmp_path / "full", progress=False)

    with pytest.raises(KeyboardInterrupt):
        fit(TINY, config, smoke_data, tmp_path / "split", progress=False, on_epoch=stop_after_first_epoch)
    assert load_checkpoint(tmp_path / "split" / "checkpoint.pt").epoch == 1
    resumed = fit(TINY, config, smoke_data, tmp_path / "split", progress=False, resume=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    a, b = full.model.state_dict(), resumed.model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_a_resume_takes_new_execution_settings_and_says_which(smoke_data, tmp_path, capsys):
    full = fit(TINY, QUICK, smoke_data, tmp_path / "full", progress=False)
    with pytest.raises(KeyboardInterrupt):
        fit(TINY, QUICK, smoke_data, tmp_path / "split", progress=False, on_epoch=stop_after_first_epoch)
    capsys.readouterr()
    changed = dataclasses.replace(QUICK, eval_batch_size=7)
    resumed = fit(TINY, changed, smoke_data, tmp_path / "split", progress=False, resume=True)
    first = capsys.readouterr().err.splitlines()[0]  # said even without a progress bar
    assert "resuming after step 9" in first and first.endswith("new execution settings (checkpoint -> now): "
                                                               "eval_batch_size 1024 -> 7")
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    assert load_checkpoint(tmp_path / "split" / "checkpoint.pt").train_config == changed
    a, b = full.model.state_dict(), resumed.model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_fit_returns_the_split_and_the_batch_size_it_decided(smoke_data):
    result = fit(TINY, TrainConfig(epochs=1, batch_size=5000, val_size=100, amp="off"), smoke_data, progress=False)
    plan = result.plan
    assert (len(plan.train_indices), len(plan.val_indices), plan.batch_size, plan.steps_per_epoch) == (900, 100, 900, 1)
    assert not set(plan.train_indices.tolist()) & set(plan.val_indices.tolist())
    assert result.history[-1]["step"] == 1 and result.device == plan.compute.device


def test_resume_refuses_other_settings_and_other_architectures(smoke_data, tmp_path):
    fit(TINY, QUICK, smoke_data, tmp_path, progress=False)
    with pytest.raises(CifarResnetError, match="another recipe .*lr: 0.1 vs 0.05"):
        fit(TINY, TrainConfig(**{**QUICK.to_dict(), "lr": 0.05}), smoke_data, tmp_path, resume=True)
    with pytest.raises(CifarResnetError, match=r"channels: \[8, 16, 32\] vs \[16, 32, 64\]"):
        fit(TINY.from_dict({**TINY.to_dict(), "channels": [8, 16, 32]}), QUICK, smoke_data, tmp_path, resume=True)
    finished = fit(TINY, QUICK, smoke_data, tmp_path, progress=False, resume=True)
    assert len(finished.history) == 2  # nothing left to do


def test_a_time_budget_shapes_the_schedule_and_ends_the_run(smoke_data, tmp_path):
    config = TrainConfig(minutes=0.05, batch_size=50, lr=0.1, val_size=100, amp="off")
    result = fit(TINY, config, smoke_data, tmp_path, progress=False)
    last = result.history[-1]
    # the last epoch began within the 3 s (it may end just short of them, the validation after it past them) ...
    assert 3.0 - last["seconds"] < last["elapsed"] < 3.0 + 10
    assert last["lr"] < 0.1 * 0.05, "the cosine decay should have reached (nearly) zero"  # ... and they were spent
    assert load_checkpoint(tmp_path / "checkpoint.pt").finished


def test_a_diverging_run_stops_with_the_learning_rate_and_step(smoke_data, tmp_path):
    config = TrainConfig(epochs=2, batch_size=100, lr=1e30, warmup=0.0, val_size=100, amp="off")
    with pytest.raises(TrainingDivergedError, match=r"loss became (nan|inf) by step \d+ \(learning rate"):
        fit(TINY, config, smoke_data, tmp_path, progress=False)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_bf16_autocast_on_the_cpu_trains(smoke_data):
    config = TrainConfig(epochs=1, batch_size=100, lr=0.1, val_size=100, amp="bf16")
    result = fit(TINY, config, smoke_data, progress=False)
    assert math.isfinite(result.history[0]["train_loss"]) and result.run_dir is None
