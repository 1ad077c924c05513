"""No tensor depends on the default device: every path runs on the CPU while the default device is 'meta'.

A tensor made without an explicit device then lands on 'meta' and the run fails at once, just as on a GPU
it would sit on the CPU beside a model on CUDA (or on CUDA, for a student who set the default device there).
"""
import contextlib
import dataclasses
import sys

import pytest
import torch

from cifar_resnet import experiments, gradients
from cifar_resnet.budget import count_flops, count_parameters
from cifar_resnet.checkpoint import load_model
from cifar_resnet.config import PRESETS, ModelConfig, TrainConfig
from cifar_resnet.data import CifarData, Normalization, load_cifar10, write_kaggle_pickle
from cifar_resnet.device import Compute
from cifar_resnet.evaluate import evaluate
from cifar_resnet.handin import make_handin
from cifar_resnet.kaggle import check_shift, predict_submission
from cifar_resnet.network import Builder
from cifar_resnet.robustness import corruption_results, stem_response
from cifar_resnet.train import estimate_training_time, fit
from cifar_resnet.widgets import BudgetExplorer

CPU = torch.device("cpu")
RECIPES = ("reference", "cpu-fast", "gpu-94", "gpu-95")
STUDENT_NETWORK = '''
import torch
from torch import nn

def small_net(width=8):
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10))
'''


@contextlib.contextmanager
def default_device_elsewhere():
    """The default device is 'meta' inside, whatever it was."""
    previous = torch.get_default_device()
    torch.set_default_device("meta")
    try:
        yield
    finally:
        torch.set_default_device(previous)


@pytest.fixture(scope="module")
def few_images(smoke_data) -> CifarData:
    """Three batches of 64 training images and a validation split, so that a few steps of any recipe are quick."""
    return CifarData(smoke_data.train_images[:300], smoke_data.train_labels[:300], smoke_data.test_images[:40],
                     smoke_data.test_labels[:40], smoke_data.source, smoke_data.synthetic, True)


def few_steps(recipe: TrainConfig, **changes) -> TrainConfig:
    """``recipe`` for two short epochs of 64-image batches, with 100 images held out."""
    return dataclasses.replace(recipe, **{"minutes": None, "epochs": 2, "batch_size": 64, "val_size": 100, **changes})


def stop_after_first_epoch(history):
    if len(history) == 1:
        raise KeyboardInterrupt


def interrupted_then_resumed(network, config, data, run_dir):
    """Train one epoch, stop, resume to the end: the resumed run's result."""
    with pytest.raises(KeyboardInterrupt):
        fit(network, config, data, run_dir, device=CPU, progress=False, on_epoch=stop_after_first_epoch)
    return fit(network, config, data, run_dir, device=CPU, progress=False, resume=True)


@pytest.fixture
def student_builder(tmp_path, monkeypatch):
    (tmp_path / "tinynet.py").write_text(STUDENT_NETWORK)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield Builder.parse("tinynet:small_net", {"width": 8})
    sys.modules.pop("tinynet", None)


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_trains_and_resumes_without_the_default_device(name, few_images, tmp_path):
    preset = PRESETS[name]
    with default_device_elsewhere():
        result = interrupted_then_resumed(preset.model, few_steps(preset.train), few_images, tmp_path)
    assert [row["epoch"] for row in result.history] == [1, 2] and result.device == CPU
    assert all(t.device == CPU for t in result.model.state_dict().values())


def test_a_students_builder_trains_and_resumes_without_the_default_device(student_builder, few_images, tmp_path):
    with default_device_elsewhere():
        result = interrupted_then_resumed(student_builder, few_steps(TrainConfig()), few_images, tmp_path)
    assert len(result.history) == 2


def test_the_gradient_scaler_path_trains_without_the_default_device(few_images, tmp_path, monkeypatch):
    t4 = Compute(CPU, torch.float16, scale_gradients=True, channels_last=True, matmul_dtype=torch.float16)
    monkeypatch.setattr(Compute, "choose", classmethod(lambda cls, *args, **kwargs: t4))  # a stand-in T4's choice
    small = ModelConfig(blocks=(1,), channels=(8,), pool=8)  # fp16 convolutions are slow on a CPU: a small network
    recipe = few_steps(PRESETS["cpu-fast"].train, batch_size=32, val_size=20)  # Muon, lookahead, a whitened stem
    with default_device_elsewhere():
        result = interrupted_then_resumed(small, recipe, few_images, tmp_path)
    assert result.plan.compute is t4 and len(result.history) == 2


def test_loading_data_and_the_time_estimate_need_no_default_device(few_images):
    with default_device_elsewhere():
        data = load_cifar10(smoke=True)
        estimate = estimate_training_time(PRESETS["tiny"].model, few_steps(PRESETS["tiny"].train), few_images,
                                          device=CPU, steps=1)
    assert data.train_images.device == CPU and estimate.images_per_s > 0


@pytest.fixture(scope="module")
def trained_run(few_images, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    fit(PRESETS["tiny"].model, few_steps(PRESETS["tiny"].train), few_images, run_dir, device=CPU, progress=False)
    return run_dir


def test_evaluation_in_every_tta_mode_prediction_and_the_shift_check_need_no_default_device(
        few_images, trained_run, tmp_path):
    model, checkpoint = load_model(trained_run / "checkpoint.pt", CPU)
    pickle_path = write_kaggle_pickle(tmp_path / "test.pkl", few_images.test_images)
    with default_device_elsewhere():
        scores = {mode: evaluate(model, few_images.test_images, few_images.test_labels, checkpoint.normalization,
                                 tta=mode).accuracy for mode in ("off", "flip", "flip-shift")}
        submission = predict_submission(trained_run / "checkpoint.pt", pickle_path, tmp_path / "submission.csv",
                                        device=CPU)
        shift = check_shift(few_images.test_images, torch.zeros(40, dtype=torch.long, device=CPU),
                            checkpoint.normalization, checkpoint.class_shares)
    assert all(0 <= s <= 1 for s in scores.values()) and submission.is_file() and shift.balance_distance > 0


def test_the_handin_and_robustness_need_no_default_device(few_images, trained_run, tmp_path):
    submission = predict_submission(trained_run / "checkpoint.pt", write_kaggle_pickle(
        tmp_path / "test.pkl", few_images.test_images), tmp_path / "submission.csv", device=CPU)
    model, checkpoint = load_model(trained_run / "checkpoint.pt", CPU)
    with default_device_elsewhere():
        manifest = make_handin(trained_run, submission, tmp_path / "plots", tmp_path / "handin", data=few_images)
        results = corruption_results(model, few_images.test_images, few_images.test_labels, checkpoint.normalization,
                                     checkpoint.class_shares, adapts=("off", "auto", "always"), severities=(2,),
                                     progress=False)
        response = stem_response(model, few_images.test_images, checkpoint.normalization)
    assert manifest.is_file() and all(len(rows) == 15 for rows in results.values()) and len(response["gain"])


def test_experiments_gradient_norms_and_the_budget_explorer_need_no_default_device(few_images):
    variant = experiments.Variant("tiny", PRESETS["tiny"].model, few_steps(PRESETS["tiny"].train, epochs=1))
    config = ModelConfig(blocks=(1, 2), channels=(17, 35), pool=4)  # a configuration no earlier count has cached
    normalization = Normalization.from_images(few_images.train_images)
    with default_device_elsewhere():
        rows = experiments.compare([variant], few_images, device=CPU, show=False)
        norms = [gradients.gradient_norms(model, few_images.train_images[:16], few_images.train_labels[:16],
                                          normalization)
                 for model in gradients.residual_variants(PRESETS["tiny"].model).values()]
        report, flops = count_parameters(config), count_flops(config)
        explorer = BudgetExplorer("small")
        explorer.blocks[0].value = 3
    assert rows[0]["epochs"] == 1 and all(norms) and report.total > 0 and flops > 0
    assert explorer.config().blocks[0] == 3

