"""CIFAR-10-C-style corruptions, test-time adaptation, and robustness in the paper's terms."""
import colorsys
import copy
import json

import pytest
import torch
from torch import nn

from cifar_resnet import corruptions
from cifar_resnet.adaptation import entropy_minimized, predict_adapted, recalibrate_batchnorm
from cifar_resnet.augment import random_blur, random_noise
from cifar_resnet.config import PRESETS, ConfigurationError, TrainConfig
from cifar_resnet.corruptions import CONSTANTS, CORRUPTIONS, FAMILIES, SEVERITIES, corrupt
from cifar_resnet.data import Normalization, write_kaggle_pickle
from cifar_resnet.model import build_model, whiten_stem
from cifar_resnet.robustness import (CorruptionResult, corruption_errors, corruption_results, load_results,
                                     mean_accuracies, mean_corruption_accuracy, remedies_table, save_results,
                                     severity_table, stem_response, summarize)


@pytest.fixture(scope="module")
def images(smoke_data):
    return smoke_data.test_images[:24]


def test_there_are_fourteen_corruptions_in_cifar10cs_families_each_with_five_published_constants():
    assert len(CORRUPTIONS) == 14 and set(CORRUPTIONS) == set(CONSTANTS) and "frost" not in CORRUPTIONS
    assert sum(len(names) for names in FAMILIES.values()) == 14
    assert all(len(CONSTANTS[name]) == 5 for name in CORRUPTIONS)
    assert CONSTANTS["gaussian_noise"] == (0.04, 0.06, 0.08, 0.09, 0.10)
    assert CONSTANTS["jpeg_compression"] == (80, 65, 58, 50, 40)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_every_corruption_keeps_the_shape_and_type_is_reproducible_and_changes_the_images(images, name):
    for severity in (1, 5):
        out = corrupt(images, name, severity, seed=3)
        assert out.shape == images.shape and out.dtype == torch.uint8
        assert torch.equal(out, corrupt(images, name, severity, seed=3))
        assert not torch.equal(out, images)


def test_noise_grows_with_severity_and_gaussian_noise_has_the_published_spread():
    grey = torch.full((200, 3, 32, 32), 128, dtype=torch.uint8)
    spread = [(corrupt(grey, "gaussian_noise", s).float() - 128).std().item() for s in SEVERITIES]
    assert spread == sorted(spread)
    assert spread[0] == pytest.approx(0.04 * 255, rel=0.05) and spread[-1] == pytest.approx(0.10 * 255, rel=0.05)
    hit = (corrupt(grey, "impulse_noise", 5) != 128).float().mean().item()
    assert hit == pytest.approx(0.07, abs=0.01)  # 7% of the values set to 0 or 255


def test_brightness_raises_hsv_value_and_keeps_hue_and_saturation(images):
    out = corrupt(images, "brightness", 3)
    for n, y, x in ((0, 5, 7), (3, 20, 11), (9, 31, 0)):
        before = colorsys.rgb_to_hsv(*(images[n, :, y, x].float() / 255).tolist())
        after = colorsys.rgb_to_hsv(*(out[n, :, y, x].float() / 255).tolist())
        assert after[2] == pytest.approx(min(before[2] + 0.15, 1), abs=2 / 255)
        if before[1] > 0.2:
            assert after[1] == pytest.approx(before[1], abs=0.05)


def test_contrast_pulls_each_channel_towards_its_mean_and_blur_removes_fine_detail(images):
    out = corrupt(images, "contrast", 5).float()
    assert (out.std((2, 3)) < images.float().std((2, 3)) * 0.2 + 1).all()
    detail = lambda x: (x.float()[..., 1:] - x.float()[..., :-1]).abs().mean()  # noqa: E731
    for blur in ("defocus_blur", "zoom_blur", "motion_blur"):
        assert detail(corrupt(images, blur, 5)) < detail(images)


def test_bad_names_and_severities_say_what_to_use(images):
    with pytest.raises(ValueError, match="gaussian_noise"):
        corrupt(images, "frost", 1)
    with pytest.raises(ValueError, match="severity"):
        corrupt(images, "fog", 6)


def test_noise_and_blur_augmentation_touch_only_their_share_and_are_recipe_settings(images):
    g = torch.Generator().manual_seed(0)
    assert torch.equal(random_noise(images, p=0.0, generator=g), images)
    assert torch.equal(random_blur(images, p=0.0, generator=g), images)
    changed = (random_noise(images.repeat(20, 1, 1, 1), p=0.25, generator=g) != images.repeat(20, 1, 1, 1))
    assert changed.flatten(1).any(1).float().mean().item() == pytest.approx(0.25, abs=0.08)
    assert not torch.equal(random_blur(images, p=1.0, generator=g), images)
    assert "pixel noise on 20% of the images" in TrainConfig(noise=0.2).describe()
    for bad in (dict(noise=1.5), dict(blur=-0.1), dict(whiten_eps=0.0)):
        with pytest.raises(ConfigurationError):
            TrainConfig(**bad)


def test_a_larger_whitening_epsilon_caps_the_gain_of_the_faint_directions(smoke_data):
    normalization = Normalization.from_images(smoke_data.train_images)
    gains = {}
    for eps in (5e-4, 2e-2):
        model = build_model(PRESETS["cpu-fast"].model)
        whiten_stem(model, normalization(smoke_data.train_images[:500]), eps)
        gains[eps] = stem_response(model, smoke_data.test_images[:50], normalization)["gain"]
    assert len(gains[5e-4]) == 12  # the whitened filters, without their negatives
    assert gains[2e-2].max() <= (1 / 2e-2) ** 0.5 + 1e-4 < gains[5e-4].max()


def _model_with_batchnorm():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 10)).eval()


def test_batchnorm_is_re_estimated_only_when_the_shift_check_fires_unless_told(smoke_data, images):
    model = _model_with_batchnorm()
    normalization = Normalization.from_images(smoke_data.train_images)
    clean = predict_adapted(model, smoke_data.train_images[:300], normalization, [0.1] * 10)
    brighter = (images.float() * 0.5 + 120).to(torch.uint8)
    shifted = predict_adapted(model, brighter, normalization)
    assert shifted.shift.shifted and shifted.recalibrated
    assert shifted.action() == f"BatchNorm statistics re-estimated on the {len(images)} test images"
    assert not predict_adapted(model, brighter, normalization, adapt="off").recalibrated
    assert predict_adapted(model, images, normalization, adapt="always").recalibrated
    plain = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    assert not predict_adapted(plain, brighter, normalization, adapt="always").recalibrated
    if not clean.shift.shifted:
        assert clean.action().startswith("nothing changed")
    with pytest.raises(ValueError, match="auto"):
        predict_adapted(model, images, normalization, adapt="sometimes")


def test_recalibration_and_tent_leave_the_model_untouched_and_measure_the_new_images(images):
    model = _model_with_batchnorm()
    before = copy.deepcopy(model.state_dict())
    normalization = Normalization((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    recalibrated = recalibrate_batchnorm(model, images, normalization)
    adapted = entropy_minimized(model, images, normalization, batch_size=8)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with torch.no_grad():
        activations = model[0](normalization(images))
    assert torch.allclose(recalibrated[1].running_mean, activations.mean((0, 2, 3)), atol=1e-4)
    assert not torch.equal(adapted[1].bias, model[1].bias) and not adapted.training


def test_results_summaries_tables_and_corruption_errors(smoke_data, images, tmp_path):
    model = _model_with_batchnorm()
    normalization = Normalization.from_images(smoke_data.train_images)
    labels = smoke_data.test_labels[:24]
    measured = corruption_results(model, images, labels, normalization, adapts=("off", "auto"),
                                  corruptions=("gaussian_noise", "fog"), severities=(1, 5), progress=False)
    rows = measured["auto"]
    assert [(r.corruption, r.severity) for r in rows] == [("clean", 0), ("gaussian_noise", 1), ("gaussian_noise", 5),
                                                          ("fog", 1), ("fog", 5)]
    means = mean_accuracies(rows)
    assert mean_corruption_accuracy(rows) == pytest.approx(sum(means.values()) / 2)
    assert corruption_errors(rows, rows)["mCE"] == pytest.approx(1.0)
    table = severity_table(rows)
    assert "| gaussian noise |" in table and "mean of all corrupted sets" in table
    save_results(rows, tmp_path / "robustness.json")
    assert load_results(tmp_path / "robustness.json") == rows and load_results(tmp_path / "missing.json") is None
    summary = summarize(rows)
    assert summary["sets"] == 4 and summary["images"] == 24
    ways = {"as trained": measured["off"], "predict": measured["auto"]}
    entry = {"epochs": 1, "scored": {"test": {"results": {m: [r.to_dict() for r in ways[m]] for m in ways},
                                              "summary": {m: summarize(ways[m]) for m in ways}}}}
    table = remedies_table({"mine": entry}, baseline="mine")
    assert "| mine | 1 | predict |" in table and "| 1.00 |" in table


def test_predict_says_what_it_did_on_a_shifted_pickle_and_the_hand_in_records_it(smoke_data, tmp_path, capsys):
    from cifar_resnet.cli import main
    from cifar_resnet.handin import make_handin
    from cifar_resnet.train import fit

    run = tmp_path / "run"
    fit(PRESETS["tiny"].model, TrainConfig(epochs=1, batch_size=100, val_size=100, amp="off"), smoke_data, run,
        progress=False)
    noisy = corrupt(smoke_data.test_images, "contrast", 5)  # a shift in the pixel statistics alone
    write_kaggle_pickle(tmp_path / "noisy.pkl", noisy)
    argv = ["predict", "--checkpoint", str(run / "checkpoint.pt"), "--pkl", str(tmp_path / "noisy.pkl")]
    for adapt, said in (("auto", f"BatchNorm statistics re-estimated on the {len(noisy):,} test images"),
                        ("off", "nothing changed")):
        assert main(argv + ["--out", str(tmp_path / f"{adapt}.csv"), "--adapt", adapt]) == 0
        assert capsys.readouterr().out.splitlines()[0].startswith(said)
    record = json.loads((tmp_path / "auto.json").read_text())
    assert record["batchnorm_reestimated"] and record["shifted"] and record["adapt"] == "auto"
    plots = tmp_path / "plots"
    plots.mkdir()
    save_results([CorruptionResult("clean", 0, 0.5, False, 40), CorruptionResult("fog", 1, 0.25, True, 40)],
                 plots / "robustness.json")
    make_handin(run, tmp_path / "auto.csv", plots, tmp_path / "handin")
    results = json.loads((tmp_path / "handin" / "results.json").read_text())
    assert results["prediction"]["batchnorm_reestimated"]
    assert results["corruptions"]["mean_corruption_accuracy"] == 0.25
    report = (tmp_path / "handin" / "report.md").read_text()
    assert "mean corruption accuracy" in report and "25.00% (worst: fog" in report
