"""Where students run it: Colab, Kaggle notebooks, old GPUs, Python 3.10, CPU laptops, damaged files."""
import io
import json
import math
import random
import shutil
import signal
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch


from cifar_resnet import course, progress, runtime, train
from cifar_resnet.checkpoint import load_checkpoint
from cifar_resnet.config import PRESETS, TrainConfig
from cifar_resnet.data import load_cifar10, write_kaggle_pickle, write_synthetic_cifar
from cifar_resnet.device import autocast_dtype
from cifar_resnet.errors import CifarResnetError
from cifar_resnet.handin import load_handin_model, make_handin
from cifar_resnet.kaggle import predict_submission
from cifar_resnet.progress import Clock, ProgressBar
from cifar_resnet.train import TrainingInterrupted, estimate_training_time, fit
from cifar_resnet.training_state import TrainingState

ROOT = Path(__file__).resolve().parents[1]
TINY = PRESETS["tiny"].model


# ------------------------------------------------------------------ mixed precision on the GPUs students get

@pytest.mark.parametrize("gpu, capability, expected", [
    ("Tesla T4", (7, 5), torch.float16),  # Colab's free tier, Kaggle
    ("Tesla P100-PCIE-16GB", (6, 0), torch.float16),  # Kaggle
    ("NVIDIA A100-SXM4-40GB", (8, 0), torch.bfloat16),  # Colab Pro
])
def test_auto_precision_is_bf16_only_where_the_gpu_computes_it(monkeypatch, gpu, capability, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # true on all three
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: gpu)
    assert autocast_dtype("auto", torch.device("cuda")) is expected


def test_the_run_says_its_precision_first_and_keeps_it_in_run_json(smoke_data, tmp_path, capsys):
    fit(TINY, TrainConfig(epochs=1, batch_size=300, val_size=100, amp="off"), smoke_data, tmp_path)
    first = capsys.readouterr().err.strip().splitlines()[0]
    assert first.startswith("training on CPU") and "in float32" in first and str(tmp_path) in first
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["precision"] == "float32" and run["autocast_dtype"] is None
    fit(TINY, TrainConfig(epochs=1, batch_size=300, val_size=100, amp="bf16"), smoke_data, tmp_path / "bf16",
        progress=False)
    assert json.loads((tmp_path / "bf16" / "run.json").read_text())["autocast_dtype"] == "bfloat16"


# ------------------------------------------------------------------ Python 3.10

def test_the_package_needs_nothing_newer_than_python_3_10():
    proc = subprocess.run([sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())", "--target=3.10-", "--violations", "--no-tips",
                           "--eval-annotations", "cifar_resnet", "benchmarks"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'requires-python = ">=3.10"' in (ROOT / "pyproject.toml").read_text()


# ------------------------------------------------------------------ Colab and Kaggle

@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A working folder outside the project, no preset or data chosen by the environment."""
    monkeypatch.chdir(tmp_path)
    for name in ("CIFAR_RESNET_PRESET", "CIFAR_RESNET_MINUTES", "CIFAR_RESNET_DATA", "KAGGLE_KERNEL_RUN_TYPE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_on_colab_with_drive_mounted_runs_and_hand_in_live_on_drive(elsewhere, monkeypatch):
    drive = elsewhere / "content" / "drive" / "MyDrive"
    monkeypatch.setattr(runtime, "COLAB_DRIVE", drive)
    colab = types.ModuleType("google.colab")
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    assert course.settings(smoke=False).run_dir == elsewhere / "runs" / "course"  # Drive not mounted (yet)
    drive.mkdir(parents=True)
    run = course.settings(smoke=False)
    assert run.run_dir == drive / "cifar-resnet" / "runs" / "course"
    assert run.handin_dir.is_relative_to(drive / "cifar-resnet") and run.plots_dir == drive / "cifar-resnet" / "plots"
    monkeypatch.delitem(sys.modules, "google.colab")  # not Colab: a folder of that name means nothing
    assert course.settings(smoke=False).run_dir == elsewhere / "runs" / "course"


def test_in_a_kaggle_notebook_data_pickle_and_runs_are_found_and_placed_with_no_configuration(
        elsewhere, monkeypatch, smoke_data):
    inputs, working = elsewhere / "kaggle" / "input", elsewhere / "kaggle" / "working"
    competition = inputs / "some-course-competition-2025"
    write_synthetic_cifar(elsewhere / "synthetic", 3, 2)
    shutil.copytree(elsewhere / "synthetic" / "3x2-seed0", competition / "cifar-10-python")
    write_kaggle_pickle(competition / "cifar_test_nolabel.pkl", smoke_data.test_images[:5])
    (inputs / "another-dataset" / "images").mkdir(parents=True)
    working.mkdir()
    monkeypatch.setattr(runtime, "KAGGLE_INPUT", inputs)
    monkeypatch.setattr(runtime, "KAGGLE_WORKING", working)
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    data = load_cifar10(smoke=False)
    assert data.source == str(competition / "cifar-10-python" / "cifar-10-batches-py") and len(data.train_labels) == 30
    run = course.settings(smoke=False)
    assert course.find_or_write_kaggle_pickle(run, data) == competition / "cifar_test_nolabel.pkl"
    assert run.run_dir == working / "runs" / "course" and run.plots_dir == working / "plots"


def test_notebooks_install_on_colab_and_kaggle_and_offer_to_mount_drive():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        first = "".join(cells[0]["source"])
        assert "KAGGLE_KERNEL_RUN_TYPE" in first and "drive.mount(" in first and "MOUNT_DRIVE = " in first, path.name


# ------------------------------------------------------------------ a laptop without a GPU

def test_the_default_preset_follows_the_hardware_and_the_notebook_can_change_it(elsewhere, monkeypatch):
    assert course.settings(smoke=False).preset == "cpu-fast"  # this machine has no GPU
    assert course.settings(smoke=True).preset == "tiny"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert course.settings(smoke=False).preset == "course"
    assert course.settings(smoke=False, preset="small").preset == "small"
    monkeypatch.setenv("CIFAR_RESNET_PRESET", "four-stage")
    assert course.settings(smoke=False).preset == "four-stage"
    assert course.settings(smoke=False, preset="small", minutes=5).train_config.minutes == 5


def test_the_estimate_comes_from_timed_steps_or_the_time_budget(smoke_data):
    estimate = estimate_training_time(TINY, TrainConfig(epochs=3, batch_size=100, val_size=100), smoke_data, steps=2)
    assert estimate.images_per_s > 0 and estimate.seconds == pytest.approx(3 * 900 / estimate.images_per_s)
    assert "3 epochs of 900 images" in str(estimate) and "images/s" in str(estimate)
    timed = estimate_training_time(TINY, TrainConfig(minutes=15, val_size=0), smoke_data)
    assert timed.seconds == 900 and "15 minutes" in str(timed) and "validation" not in str(timed)


def test_a_time_budget_shows_progress_against_the_budget(smoke_data):
    config = TrainConfig(minutes=3, val_size=100)
    clock = Clock(config, steps_per_epoch=10)
    clock.restart(elapsed=45.0)
    bar = ProgressBar(clock, TrainingState.resumed(None, torch.device("cpu")), torch.device("cpu"), enabled=True)
    bar.bar.fp = io.StringIO()
    bar.advance()
    assert bar.bar.total == 180 and 45 <= bar.bar.n < 60
    assert "/180 s of the time budget" in str(bar.bar)
    bar.close()


# ------------------------------------------------------------------ what a newcomer's session ran into

def test_a_finished_run_without_a_validation_split_resumes_to_an_equal_history(smoke_data, tmp_path):
    config = TrainConfig(epochs=2, batch_size=300, val_size=0, amp="off")
    result = fit(TINY, config, smoke_data, tmp_path, progress=False)
    again = fit(TINY, config, smoke_data, tmp_path, progress=False, resume=True)
    assert again.history == result.history  # notebook 03's last cell
    assert all(row["val_acc"] is None for row in result.history)
    json.loads((tmp_path / "history.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert "no validation split" in again.summary()
    submission = predict_submission(tmp_path / "checkpoint.pt", write_kaggle_pickle(
        tmp_path / "test.pkl", smoke_data.test_images[:10]), tmp_path / "submission.csv")
    manifest = make_handin(tmp_path, submission, tmp_path / "no-plots", tmp_path / "handin").read_text()
    assert "no validation split" in manifest and "nan" not in manifest.lower()


def interrupt_at_step(monkeypatch, step: int, how: str) -> None:
    """At the forward pass of optimizer step ``step`` (1-based), press Ctrl-C ('signal') or die at once ('raise')."""
    original, calls = train.Trainer.train_step, []

    def train_step(self, images, labels, lr):
        calls.append(1)
        if len(calls) == step:
            if how == "signal":
                signal.raise_signal(signal.SIGINT)  # what Kernel > Interrupt sends
            else:
                raise KeyboardInterrupt  # as abrupt as it gets in-process: nothing runs after it
        return original(self, images, labels, lr)

    monkeypatch.setattr(train.Trainer, "train_step", train_step)


@pytest.mark.parametrize("how, lookahead", [("signal", True), ("raise", True), ("signal", False)])
def test_an_epoch_interrupted_midway_resumes_to_the_weights_of_an_uninterrupted_run(
        smoke_data, tmp_path, monkeypatch, how, lookahead):
    monkeypatch.setattr(sys.modules["cifar_resnet.augment"], "AUGMENT_CHUNK", 200)  # 2 batches a chunk: resume inside one
    config = TrainConfig(epochs=2, batch_size=100, lr=0.1, val_size=100, amp="off", lookahead=lookahead,
                         alternate_flip=True, erasing=0.5)
    full = fit(TINY, config, smoke_data, tmp_path / "full", progress=False)
    monkeypatch.setattr(progress, "CHECKPOINT_SECONDS", 0.0)  # a checkpoint after every step
    with monkeypatch.context() as patch:
        interrupt_at_step(patch, 9 + 4, how)  # epoch 2 (9 steps each), in its second chunk
        with pytest.raises(TrainingInterrupted) as stopped:
            fit(TINY, config, smoke_data, tmp_path / "split", progress=False)
    kept = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert kept.epoch == 1 and kept.step == (13 if how == "signal" else 12) and kept.within_epoch
    message = str(stopped.value)
    assert f"step {kept.step}" in message and "resume=True" in message and "\n" not in message
    assert stopped.value._render_traceback_() == [f"\x1b[0;31mTrainingInterrupted\x1b[0m: {message}"]
    resumed = fit(TINY, config, smoke_data, tmp_path / "split", progress=False, resume=True)
    assert [h["step"] for h in resumed.history] == [9, 18]
    assert resumed.history[1]["train_loss"] == pytest.approx(full.history[1]["train_loss"], rel=1e-5)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_checkpoints_come_every_few_minutes_within_a_long_epoch(smoke_data, tmp_path, monkeypatch):
    saves = []
    monkeypatch.setattr(train.Trainer, "save", lambda self, within_epoch=False: saves.append(self.state.batch))
    fit(TINY, TrainConfig(epochs=1, batch_size=100, val_size=100, amp="off"), smoke_data, tmp_path, progress=False)
    assert saves == [0]  # only the epoch's end: the steps take far less than CHECKPOINT_SECONDS
    saves.clear()
    monkeypatch.setattr(progress, "CHECKPOINT_SECONDS", 0.0)
    fit(TINY, TrainConfig(epochs=1, batch_size=100, val_size=100, amp="off"), smoke_data, tmp_path / "b",
        progress=False)
    assert saves == [1, 2, 3, 4, 5, 6, 7, 8, 0]
    assert progress.CHECKPOINT_SECONDS <= 120


def test_the_command_line_says_what_an_interrupt_kept(smoke_data, tmp_path, monkeypatch, capsys):
    from cifar_resnet.cli import main

    monkeypatch.setattr(progress, "CHECKPOINT_SECONDS", 0.0)
    interrupt_at_step(monkeypatch, 3, "signal")
    code = main(["train", "--preset", "tiny", "--smoke", "--out", str(tmp_path), "--epochs", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 130 and err[-1].startswith("interrupted in epoch 1 after step 3;") and "train --resume" in err[-1]


# ------------------------------------------------------------------ damaged files

def mutations(data: bytes, count: int, seed: int = 0):
    """Seeded damage of the kinds synced drives cause: a flipped byte, a truncation, a zeroed run, a changed header."""
    rng = random.Random(seed)
    for i in range(count):
        damaged, kind = bytearray(data), ("flip", "truncate", "zero", "header")[i % 4]
        if kind == "flip":
            damaged[rng.randrange(len(damaged))] ^= rng.randrange(1, 256)
        elif kind == "truncate":
            del damaged[rng.randrange(len(damaged)):]
        elif kind == "zero":
            start, length = rng.randrange(len(damaged)), rng.randrange(1, 512)
            damaged[start:start + length] = bytes(len(damaged[start:start + length]))
        else:
            damaged[rng.randrange(64)] = rng.randrange(256)
        yield kind, bytes(damaged)


@pytest.fixture(scope="module")
def trained_run(smoke_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    fit(TINY, TrainConfig(epochs=1, batch_size=300, val_size=100, amp="off", lookahead=True), smoke_data, run,
        progress=False)
    return run


def test_200_damaged_checkpoints_load_the_same_weights_or_are_refused_by_name(trained_run, tmp_path):
    good = (trained_run / "checkpoint.pt").read_bytes()
    saved = load_checkpoint(trained_run / "checkpoint.pt").state_dict
    outcomes = {"refused": 0, "same": 0}
    for kind, damaged in mutations(good, 200):
        path = tmp_path / "checkpoint.pt"
        path.write_bytes(damaged)
        try:
            loaded = load_checkpoint(path).state_dict
        except CifarResnetError as e:
            assert str(path) in str(e) and ("damaged" in str(e) or "not a cifar_resnet checkpoint" in str(e)), e
            outcomes["refused"] += 1
            continue
        assert loaded.keys() == saved.keys() and all(torch.equal(loaded[k], saved[k]) for k in saved), kind
        outcomes["same"] += 1
    assert outcomes["refused"] > 100, outcomes


def test_200_damaged_handin_weights_load_the_same_weights_or_are_refused(trained_run, smoke_data, tmp_path):
    pickle_path = write_kaggle_pickle(tmp_path / "test.pkl", smoke_data.test_images[:20])
    submission = predict_submission(trained_run / "checkpoint.pt", pickle_path, tmp_path / "submission.csv")
    handin = make_handin(trained_run, submission, tmp_path / "no-plots", tmp_path / "handin").parent
    saved = load_handin_model(handin).state_dict()
    good = (handin / "model_weights.pt").read_bytes()
    refused = 0
    for kind, damaged in mutations(good, 200, seed=1):
        (handin / "model_weights.pt").write_bytes(damaged)
        try:
            loaded = load_handin_model(handin).state_dict()
        except CifarResnetError as e:
            assert "model_weights.pt" in str(e), e
            refused += 1
            continue
        assert all(torch.equal(loaded[k], saved[k]) for k in saved), kind
    assert refused == 200  # any change of the file's bytes changes its SHA-256
    (handin / "model_config.json").write_text("{not json")
    with pytest.raises(CifarResnetError, match="model_config.json cannot be read"):
        load_handin_model(handin)


def test_summary_and_plots_accept_old_histories_with_nan(smoke_data):
    row = {"epoch": 1, "step": 3, "lr": 0.1, "train_loss": 2.0, "train_acc": 0.2, "val_loss": math.nan,
           "val_acc": math.nan, "images_per_s": 100.0, "seconds": 1.0, "elapsed": 1.0}
    assert "no validation split" in train.TrainResult(None, [row], None, None, plan=None).summary()
