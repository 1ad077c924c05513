import json
import re
import subprocess
import sys

import numpy as np
import pytest

from cifar_resnet.cli import build_parser, main, train_config_from_args
from cifar_resnet.config import ConfigurationError, get_preset
from cifar_resnet.data import write_kaggle_pickle


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_params_json_reports_the_reference_model(capsys):
    code, out, _ = run(capsys, "params", "--preset", "reference", "--json")
    report = json.loads(out)
    assert code == 0 and report["total"] == 4_916_284 and report["fits_budget"] is True
    assert report["flops"] == 1_538_081_952


def test_params_flags_describe_a_configuration(capsys):
    code, out, _ = run(capsys, "params", "--blocks", "3", "4", "3", "--channels", "66", "132", "264",
                       "--kernel", "3", "--skip-kernel", "1", "--pool", "8", "--json")
    assert code == 0 and json.loads(out)["total"] == 4_916_284
    code, out, _ = run(capsys, "params", "--preset", "reference", "--blocks", "2", "2", "2", "2",
                       "--channels", "64", "128", "256", "512", "--pool", "4")
    assert code == 0 and "OVER the budget: 11,173,962" in out and "stage 4" in out
    code, out, _ = run(capsys, "params", "--list")
    assert "reference" in out and "4,916,284" in out
    code, out, _ = run(capsys, "params", "--preset", "small", "--channels", "64", "160", "256", "--pool", "3",
                       "--downsample", "maxpool", "--style", "airbench", "--json")
    assert code == 0 and json.loads(out)["total"] == 2_194_552  # cpu-fast's network, from flags


def test_every_subcommand_has_help(capsys):
    for command in ("params", "train", "evaluate", "predict"):
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0
        assert "usage: python -m cifar_resnet " + command in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = re.search(r"\{([a-z,]+)\}", capsys.readouterr().out).group(1).split(",")
    assert {"params", "train", "evaluate", "predict"} <= set(listed)


def test_train_settings_come_from_the_preset_the_flags_and_set():
    args = build_parser().parse_args(["train", "--preset", "cpu-fast", "--out", "run", "--lr", "0.3",
                                      "--set", "weight_decay=1e-3", "--set", "lookahead=true",
                                      "--set", "val-size=2000", "--set", "minutes=none", "--set", "epochs=3"])
    config = train_config_from_args(args)
    preset = get_preset("cpu-fast").train
    assert (config.lr, config.weight_decay, config.lookahead, config.val_size) == (0.3, 1e-3, True, 2000)
    assert config.minutes is None and config.epochs == 3
    assert (config.batch_size, config.whiten_stem) == (preset.batch_size, preset.whiten_stem)


def test_epochs_replace_a_recipes_minutes_and_minutes_replace_epochs():
    def recipe(*flags):
        return train_config_from_args(build_parser().parse_args(["train", "--preset", "cpu-fast", "--out", "r", *flags]))
    assert recipe("--epochs", "5").minutes is None and recipe("--epochs", "5").epochs == 5  # cpu-fast gives minutes
    assert recipe().minutes == 15 and recipe("--minutes", "2", "--epochs", "5").minutes == 2


def test_an_installed_package_holds_every_subpackage():
    import tomllib
    from pathlib import Path

    from setuptools import find_packages

    root = Path(__file__).parent.parent
    include = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    folders = {str(p.parent.relative_to(root)).replace("/", ".") for p in (root / "cifar_resnet").rglob("__init__.py")}
    assert folders and set(find_packages(str(root), include=include)) == folders


@pytest.mark.parametrize("setting, message", [
    ("weight_decay", "give NAME=VALUE"),
    ("momentum_x=0.9", "NAME one of"),
    ("lookahead=maybe", "lookahead takes a value of type bool"),
    ("batch_size=1.5", "batch_size takes a value of type int"),
    ("lr=none", "lr takes a value of type float"),
])
def test_bad_train_settings_are_named(setting, message):
    args = build_parser().parse_args(["train", "--out", "run", "--set", setting])
    with pytest.raises(ConfigurationError, match=message):
        train_config_from_args(args)


@pytest.mark.parametrize("argv, message", [
    (["params", "--blocks", "1", "1", "--channels", "8"], "channels has 1 values"),
    (["params", "--preset", "huge"], "unknown preset 'huge'"),
    (["evaluate", "--checkpoint", "missing.pt"], "checkpoint missing.pt does not exist"),
    (["train", "--data", "empty", "--out", "run", "--smoke", "--device", "cuda:7"], "no CUDA GPU|cuda"),
])
def test_user_errors_exit_2_with_one_line(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    if "cuda:7" in argv and __import__("torch").cuda.is_available():
        pytest.skip("a GPU is present")
    code, out, err = run(capsys, *argv)
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert __import__("re").search(message, err)


def test_no_traceback_reaches_the_terminal(tmp_path):
    bad = tmp_path / "test.pkl"
    bad.write_bytes(b"\x80\x04truncated")
    ckpt = tmp_path / "c.pt"
    ckpt.write_bytes(b"")
    proc = subprocess.run([sys.executable, "-m", "cifar_resnet", "predict", "--checkpoint", str(ckpt),
                           "--pkl", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: checkpoint {ckpt} could not be loaded safely")


def test_train_evaluate_predict_from_the_command_line(capsys, tmp_path, smoke_data):
    run_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", "--preset", "tiny", "--out", str(run_dir), "--smoke", "--epochs", "2")
    assert code == 0, err
    assert out.startswith("epoch 2: validation accuracy ")
    assert {p.name for p in run_dir.iterdir()} >= {"checkpoint.pt", "history.json", "history.csv"}
    code, out, _ = run(capsys, "evaluate", "--checkpoint", str(run_dir / "checkpoint.pt"), "--smoke", "--json")
    report = json.loads(out)
    assert code == 0 and 0 <= report["accuracy"] <= 1 and len(report["per_class"]) == 10
    assert report["synthetic"] == smoke_data.synthetic
    write_kaggle_pickle(tmp_path / "test.pkl", smoke_data.test_images[:30], np.arange(30))
    code, out, _ = run(capsys, "predict", "--checkpoint", str(run_dir / "checkpoint.pt"),
                       "--pkl", str(tmp_path / "test.pkl"), "--out", str(tmp_path / "submission.csv"), "--tta")
    assert code == 0 and "validated" in out
    assert len((tmp_path / "submission.csv").read_text().splitlines()) == 31
    code, _, err = run(capsys, "train", "--preset", "tiny", "--out", str(run_dir), "--smoke", "--epochs", "3",
                       "--resume")
    assert code == 2 and "epochs: 2 vs 3" in err


def test_train_without_a_validation_split_says_how_to_score_it(capsys, tmp_path, smoke_data):
    code, out, err = run(capsys, "train", "--preset", "tiny", "--out", str(tmp_path / "run"), "--smoke",
                         "--epochs", "1", "--set", "val_size=0")
    assert code == 0, err
    assert out.startswith("epoch 1: no validation split (val_size=0): score it on the test images with `evaluate`")


@pytest.mark.parametrize("gpu", [True, False])
def test_evaluate_and_predict_use_the_gpu_when_there_is_one(gpu, monkeypatch, tmp_path, capsys, smoke_data):
    import torch

    from cifar_resnet.checkpoint import Checkpoint, save_checkpoint
    from cifar_resnet.data import Normalization
    from cifar_resnet.model import build_model

    tiny = get_preset("tiny").model
    path = save_checkpoint(Checkpoint(model_config=tiny, normalization=Normalization((0.5,) * 3, (0.25,) * 3),
                                           state_dict=build_model(tiny).state_dict()),
                           tmp_path / "checkpoint.pt")
    write_kaggle_pickle(tmp_path / "test.pkl", smoke_data.test_images[:8])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (8, 0))  # an A100
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "NVIDIA A100-SXM4-40GB")
    placed, original = [], Checkpoint.build_model
    monkeypatch.setattr(Checkpoint, "build_model",  # where the model is put; built on the CPU, which is all there is
                        lambda self, device=None, network=None: placed.append(torch.device(device).type)
                        or original(self, "cpu"))
    assert main(["evaluate", "--checkpoint", str(path), "--smoke"]) == 0
    assert main(["predict", "--checkpoint", str(path), "--pkl", str(tmp_path / "test.pkl"),
                 "--out", str(tmp_path / "submission.csv")]) == 0
    assert placed == ["cuda" if gpu else "cpu"] * 2
