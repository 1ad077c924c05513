"""Interrupted training, killed writes, diverging runs, bad inputs: nothing is lost, every error is clear."""
import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cifar_resnet.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from cifar_resnet.cli import main
from cifar_resnet.config import PRESETS, TrainConfig
from cifar_resnet.data import Normalization, load_cifar10, load_kaggle_pickle, write_synthetic_cifar
from cifar_resnet.errors import CifarResnetError
from cifar_resnet.model import build_model
from cifar_resnet.train import fit
from cifar_resnet.training_state import TrainingDivergedError

TINY = PRESETS["tiny"].model
NORM = Normalization((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
ROOT = Path(__file__).resolve().parents[1]


def python(*args, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


WRITER = """
import sys, torch
from cifar_resnet.checkpoint import Checkpoint, save_checkpoint
from cifar_resnet.config import PRESETS
from cifar_resnet.data import Normalization
from cifar_resnet.model import build_model
state = build_model(PRESETS["reference"].model).state_dict()
norm = Normalization((0.5,) * 3, (0.25,) * 3)
for epoch in range(1, 100000):
    for tensor in state.values():
        tensor.fill_(epoch)
    save_checkpoint(Checkpoint(model_config=PRESETS["reference"].model, normalization=norm, state_dict=state,
                               epoch=epoch), sys.argv[1])
"""


@pytest.mark.parametrize("seed", range(4))
def test_a_checkpoint_killed_mid_write_is_the_old_or_the_new_one(tmp_path, seed):
    path = tmp_path / "checkpoint.pt"
    writer = python("-c", WRITER, str(path))
    while not path.exists():
        assert writer.poll() is None, writer.stderr.read()
        time.sleep(0.05)
    time.sleep(random.Random(seed).uniform(0.1, 1.5))
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    checkpoint = load_checkpoint(path)  # complete: it loads
    epochs = {float(t.flatten()[0]) for t in checkpoint.state_dict.values() if t.numel()}
    assert epochs == {float(checkpoint.epoch)}, "the weights all come from one save"
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".tmp")] == ["checkpoint.pt"]


def cli_train(out: Path, epochs: int, *extra: str) -> subprocess.Popen:
    return python("-m", "cifar_resnet", "train", "--preset", "tiny", "--smoke", "--epochs", str(epochs),
                  "--amp", "off", "--out", str(out), *extra)


def test_a_run_killed_and_resumed_ends_with_the_same_weights_as_one_never_interrupted(tmp_path, smoke_data):
    whole = cli_train(tmp_path / "whole", 5)
    assert whole.wait() == 0, whole.stderr.read()
    run = tmp_path / "killed"
    victim = cli_train(run, 5)
    while not (run / "history.json").exists():
        assert victim.poll() is None, victim.stderr.read()
        time.sleep(0.02)
    time.sleep(random.uniform(0, 0.3))
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    interrupted_at = load_checkpoint(run / "checkpoint.pt").epoch
    assert interrupted_at < 5, "the kill came too late to test anything"
    resumed = cli_train(run, 5, "--resume")
    assert resumed.wait() == 0, resumed.stderr.read()
    a, b = load_checkpoint(tmp_path / "whole" / "checkpoint.pt"), load_checkpoint(run / "checkpoint.pt")
    assert [h["epoch"] for h in b.history] == [1, 2, 3, 4, 5]
    for key in a.state_dict:
        torch.testing.assert_close(a.state_dict[key], b.state_dict[key], rtol=1e-5, atol=1e-6, msg=key)


def test_twenty_interruptions_in_a_row_leave_one_checkpoint_and_a_whole_history(tmp_path, smoke_data):
    config = TrainConfig(epochs=20, batch_size=300, lr=0.05, val_size=100, amp="off")

    def stop_after_each_new_epoch(history):
        raise KeyboardInterrupt

    for attempt in range(20):
        with pytest.raises(KeyboardInterrupt):
            fit(TINY, config, smoke_data, tmp_path, resume=True, progress=False, on_epoch=stop_after_each_new_epoch)
        assert load_checkpoint(tmp_path / "checkpoint.pt").epoch == attempt + 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "history.csv", "history.json", "run.json"]
    history = json.loads((tmp_path / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, 21))
    assert [h["step"] for h in history] == [3 * e for e in range(1, 21)]
    assert len((tmp_path / "history.csv").read_text().splitlines()) == 21
    assert fit(TINY, config, smoke_data, tmp_path, resume=True, progress=False).history == history


def test_divergence_keeps_the_last_good_checkpoint(tmp_path, smoke_data, monkeypatch):
    config = TrainConfig(epochs=3, batch_size=100, lr=0.05, val_size=100, amp="off")
    model_holder = {}

    def poison_after_first_epoch(history):
        if len(history) == 1:  # a weight becomes infinite, as after an exploding update
            checkpoint_before = (tmp_path / "checkpoint.pt").read_bytes()
            model_holder["bytes"] = checkpoint_before
            for module in poison_after_first_epoch.model.modules():
                if isinstance(module, torch.nn.Linear):
                    module.weight.data.fill_(float("inf"))

    import cifar_resnet.train as train_module
    original = train_module.build_model

    def capture(config_):
        poison_after_first_epoch.model = original(config_)
        return poison_after_first_epoch.model

    monkeypatch.setattr(train_module, "build_model", capture)
    with pytest.raises(TrainingDivergedError, match=r"by step \d+ \(learning rate [\d.e-]+\); the last good "
                                                    r"checkpoint .*checkpoint.pt is kept"):
        fit(TINY, config, smoke_data, tmp_path, progress=False, on_epoch=poison_after_first_epoch)
    assert (tmp_path / "checkpoint.pt").read_bytes() == model_holder["bytes"]
    assert load_checkpoint(tmp_path / "checkpoint.pt").epoch == 1


def test_out_of_memory_suggests_a_smaller_batch(smoke_data, monkeypatch):
    def out_of_memory(self, x):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr("cifar_resnet.model.ResNet.forward", out_of_memory)
    with pytest.raises(CifarResnetError, match=r"out of memory .* at batch size 128: use a smaller batch "
                                               r"\(--batch-size 64\)"):
        fit(TINY, TrainConfig(epochs=1, batch_size=128, val_size=100), smoke_data, progress=False)


# ---------------------------------------------------------------- bad inputs, through the API and the CLI

def write(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=4)


BATCH = {b"data": np.zeros((10, 3072), np.uint8), b"labels": list(range(10))}
BAD_DATA = {  # case: (file in cifar-10-batches-py, what to put there (None deletes it), message)
    "truncated batch": ("test_batch", pickle.dumps(BATCH)[:100], "empty or truncated|not a readable pickle"),
    "empty batch": ("data_batch_2", b"", "empty or truncated"),
    "wrong keys": ("test_batch", {b"pixels": BATCH[b"data"], b"labels": BATCH[b"labels"]},
                   r"has keys \['labels', 'pixels'\]; it needs 'data' and 'labels'"),
    "wrong dtype": ("test_batch", {**BATCH, b"data": BATCH[b"data"].astype(np.float32)}, r"'data' is float32"),
    "wrong shape": ("test_batch", {**BATCH, b"data": np.zeros((10, 32, 32, 3), np.uint8)}, r"expected uint8 \(N, 3072\)"),
    "label outside 0-9": ("data_batch_5", {**BATCH, b"labels": [0] * 9 + [12]}, "label 12 is outside 0-9"),
    "fewer labels than images": ("test_batch", {**BATCH, b"labels": [1, 2]}, "for 10 images"),
    "a batch missing": ("data_batch_3", None, "lacks data_batch_3"),
    "code in the pickle": ("test_batch", {b"data": os.system, b"labels": []}, "refused: it asks to load"),
}


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    return write_synthetic_cifar(tmp_path_factory.mktemp("layout"), train_per_class=5, test_per_class=2)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_checkpoint(Checkpoint(model_config=TINY, normalization=NORM,
                                      state_dict=build_model(TINY).state_dict()),
                           tmp_path_factory.mktemp("ckpt") / "checkpoint.pt")


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_data_files_give_one_clear_error_in_python_and_on_the_command_line(case, layout, checkpoint, tmp_path, capsys):
    name, content, message = BAD_DATA[case]
    root = tmp_path / "data"
    folder = shutil.copytree(layout, root / "cifar-10-batches-py")
    if content is None:
        (folder / name).unlink()
    elif isinstance(content, bytes):
        (folder / name).write_bytes(content)
    else:
        write(folder / name, content)
    with pytest.raises(CifarResnetError, match=message) as info:
        load_cifar10(root, smoke=False)
    assert str(folder) in str(info.value)
    code = main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(root)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert __import__("re").search(message, err) and "Traceback" not in err


BAD_PICKLES = {
    "empty file": (b"", "empty or truncated"),
    "not a dict": ([1, 2], "no 'data' entry"),
    "wrong shape": ({b"data": np.zeros((3, 32, 32), np.uint8)}, r"shape \(3, 32, 32\), expected \(N, 32, 32, 3\)"),
    "wrong dtype": ({b"data": np.zeros((3, 32, 32, 3), np.float32)}, "float32 array"),
    "duplicate ids": ({b"data": np.zeros((3, 32, 32, 3), np.uint8), b"ids": np.array([4, 4, 5])}, "ids are not unique"),
    "ids of another length": ({b"data": np.zeros((3, 32, 32, 3), np.uint8), b"ids": np.arange(5)}, "5 ids for 3 images"),
    "code in the pickle": ({b"data": np.zeros((3, 32, 32, 3), np.uint8), b"x": shutil.rmtree}, "refused"),
}


@pytest.mark.parametrize("case", list(BAD_PICKLES))
def test_bad_kaggle_pickles_give_one_clear_error_in_python_and_on_the_command_line(case, checkpoint, tmp_path, capsys):
    content, message = BAD_PICKLES[case]
    path = tmp_path / "test.pkl"
    path.write_bytes(content) if isinstance(content, bytes) else write(path, content)
    with pytest.raises(CifarResnetError, match=message):
        load_kaggle_pickle(path)
    code = main(["predict", "--checkpoint", str(checkpoint), "--pkl", str(path), "--out", str(tmp_path / "s.csv")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and __import__("re").search(message, err)
    assert not (tmp_path / "s.csv").exists()


def test_channel_first_kaggle_data_is_accepted_with_a_notice(checkpoint, tmp_path, capsys):
    write(tmp_path / "test.pkl", {b"data": np.zeros((3, 3, 32, 32), np.uint8), b"ids": np.array([7, 8, 9])})
    with pytest.warns(UserWarning, match="channel-first"):
        assert main(["predict", "--checkpoint", str(checkpoint), "--pkl", str(tmp_path / "test.pkl"),
                     "--out", str(tmp_path / "s.csv")]) == 0
    rows = [line.split(",") for line in (tmp_path / "s.csv").read_text().splitlines()[1:]]
    assert [int(i) for i, _ in rows] == [7, 8, 9] and all(0 <= int(label) <= 9 for _, label in rows)


def test_a_checkpoint_of_another_architecture_is_refused_on_resume(tmp_path, smoke_data, capsys):
    save_checkpoint(Checkpoint(model_config=PRESETS["small"].model, normalization=NORM,
                               state_dict=build_model(PRESETS["small"].model).state_dict(),
                               train_config=PRESETS["tiny"].train), tmp_path / "checkpoint.pt")
    code = main(["train", "--preset", "tiny", "--smoke", "--out", str(tmp_path), "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and "holds another architecture" in err
    assert "channels: [16, 32, 64] vs [32, 64, 128]" in err
