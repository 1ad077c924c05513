"""A student's own network, from `--model module:builder` to a hand-in a grader accepts; the Kaggle shift check."""
import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from cifar_resnet.checkpoint import load_checkpoint, load_model
from cifar_resnet.cli import main
from cifar_resnet.config import COURSE_TECHNIQUES, PRESETS, TrainConfig
from cifar_resnet.data import write_kaggle_pickle
from cifar_resnet.handin import load_handin_model, make_handin
from cifar_resnet.kaggle import DistributionShiftWarning, predict_submission
from cifar_resnet.network import Builder
from cifar_resnet.train import fit

ROOT = Path(__file__).resolve().parents[1]
BAD_BUILDERS = '''
import torch
from torch import nn
NOT_A_FUNCTION = 3
def returns_a_list():
    return [nn.Linear(3, 10)]
def wrong_logits():
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 7))
def crashes():
    raise RuntimeError("my bug")
'''


def student_module() -> str:
    """The stand-in student's mynet.py: the cell of notebook 02 that writes it."""
    cells = json.loads((ROOT / "notebooks" / "02_architecture_and_parameter_budget.ipynb").read_text())["cells"]
    source = next("".join(c["source"]) for c in cells if "".join(c["source"]).startswith("%%writefile mynet.py"))
    return source.split("\n", 1)[1]


@pytest.fixture
def student_folder(tmp_path, monkeypatch):
    """A working folder holding mynet.py (the SE network) and badnet.py, importable as a student's would be."""
    (tmp_path / "mynet.py").write_text(student_module())
    (tmp_path / "badnet.py").write_text(BAD_BUILDERS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("mynet", "badnet"):
        sys.modules.pop(name, None)


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_student_network_with_se_blocks_goes_from_params_to_handin(student_folder, smoke_data, capsys):
    code, out, err = run_cli(capsys, "params", "--model", "mynet:se_resnet", "--model-kwargs", '{"width": 8}')
    built = sum(p.numel() for p in Builder.parse("mynet:se_resnet", {"width": 8}).build().parameters())
    assert code == 0, err
    assert f"{built:,}" in out and "stages.0.gate.1" in out and "fits the budget" in out
    code, out, err = run_cli(capsys, "train", "--model", "mynet:se_resnet", "--model-kwargs", '{"width": 8}', "--smoke",
                             "--out", "run", "--epochs", "1", "--batch-size", "100")
    assert code == 0, err
    checkpoint = load_checkpoint(student_folder / "run" / "checkpoint.pt")
    assert checkpoint.model_config == Builder("mynet:se_resnet", (("width", 8),))
    raw = torch.load(student_folder / "run" / "checkpoint.pt", weights_only=True)  # names the builder, holds no code
    assert raw["model_config"] == {"builder": "mynet:se_resnet", "kwargs": {"width": 8}}
    code, out, err = run_cli(capsys, "evaluate", "--checkpoint", "run/checkpoint.pt", "--smoke", "--json")
    assert code == 0 and 0 <= json.loads(out)["accuracy"] <= 1, err
    write_kaggle_pickle(student_folder / "test.pkl", smoke_data.test_images[:40])
    code, out, err = run_cli(capsys, "predict", "--checkpoint", "run/checkpoint.pt", "--pkl", "test.pkl",
                             "--out", "submission.csv")
    assert code == 0 and "validated" in out, err
    code, out, err = run_cli(capsys, "handin", "--run", "run", "--submission", "submission.csv", "--out", "handin",
                             "--smoke")
    assert code == 0, err
    handin = student_folder / "handin"
    results = json.loads((handin / "results.json").read_text())
    assert results["parameters"] == built and results["fits_budget"] and results["epochs"] == 1
    assert set(results["test_accuracy"]) == {"off", "flip", "flip-shift"} and results["versions"]["torch"]
    assert results["course_techniques"] == dict.fromkeys(COURSE_TECHNIQUES, True)  # the default: the course's recipe
    assert str(student_folder) not in (handin / "results.json").read_text()  # no home folder in a committed file
    report = (handin / "report.md").read_text()
    assert "| trained | 1 epochs in " in report and "the recipe asked for 1 epochs" in report
    assert "| RandAugment | yes |" in report
    for section in ("## Overview", "## Methodology", "## Results", "## What we tried", "## References"):
        assert section in report
    assert f"{built:,}" in report and f"{100 * results['test_accuracy']['off']:.2f}%" in report
    assert "\\usepackage{aaai24}" in (handin / "report.tex").read_text()
    assert "nan" not in (report + (handin / "MANIFEST.md").read_text()).lower()
    rebuilt = load_handin_model(handin)
    assert sum(p.numel() for p in rebuilt.parameters()) == built


@pytest.mark.parametrize("path, message", [
    ("nocolon", "name a builder as module:function"),
    ("no_such_module:build", "module 'no_such_module' cannot be imported"),
    ("badnet:missing", "'badnet' has no 'missing'"),
    ("badnet:NOT_A_FUNCTION", "'NOT_A_FUNCTION' is a int, not a function"),
    ("badnet:returns_a_list", "returned a list, not an nn.Module"),
    ("badnet:wrong_logits", r"maps images \(2, 3, 32, 32\) to \(2, 7\), but CIFAR-10 needs logits of shape \(2, 10\)"),
    ("badnet:crashes", "builder badnet:crashes failed: RuntimeError: my bug"),
])
def test_a_bad_builder_is_one_line_and_exit_2(student_folder, capsys, path, message):
    for command in ("params", "train"):
        extra = ["--smoke", "--out", "run"] if command == "train" else []
        code, _, err = run_cli(capsys, command, "--model", path, *extra)
        assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
        assert __import__("re").search(message, err), err


def test_model_and_shape_flags_do_not_mix(student_folder, capsys):
    code, _, err = run_cli(capsys, "params", "--model", "mynet:se_resnet", "--blocks", "2", "2")
    assert code == 2 and "leave out --blocks" in err


def test_a_network_defined_in_the_session_trains_and_reloads(smoke_data, tmp_path):
    """fit takes any nn.Module; its checkpoint names its class, found again where it was defined."""
    from cifar_resnet.model import BasicBlock

    network = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), BasicBlock(8, 8), torch.nn.AdaptiveAvgPool2d(1),
                                  torch.nn.Flatten(), torch.nn.Linear(8, 10))
    result = fit(network, TrainConfig(epochs=1, batch_size=300, val_size=100, amp="off"), smoke_data, tmp_path,
                 progress=False)
    assert result.model is network
    checkpoint = load_checkpoint(tmp_path / "checkpoint.pt")
    assert checkpoint.model_config == Builder("torch.nn.modules.container:Sequential")
    reloaded, _ = load_model(tmp_path / "checkpoint.pt", "cpu", network=torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), BasicBlock(8, 8), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(8, 10)))
    assert all(torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), network.state_dict().values()))
    (tmp_path / "submission.csv").write_text("ID,Labels\n0,1\n")  # make_handin copies it as it is
    manifest = make_handin(tmp_path, tmp_path / "submission.csv", tmp_path, tmp_path / "handin", network=reloaded)
    assert f"{sum(p.numel() for p in network.parameters()):,}" in manifest.read_text()


@pytest.fixture(scope="module")
def tiny_run(smoke_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("tiny")
    fit(PRESETS["tiny"].model, TrainConfig(epochs=3, batch_size=100, lr=0.1, val_size=100, amp="off"), smoke_data, run,
        progress=False)
    return run


def predict_warnings(run, images, tmp_path) -> list[str]:
    pickle_path = write_kaggle_pickle(tmp_path / "test.pkl", images)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predict_submission(run / "checkpoint.pt", pickle_path, tmp_path / "submission.csv")
    return [str(w.message) for w in caught if issubclass(w.category, DistributionShiftWarning)]


def test_predict_names_a_shift_for_brightened_flattened_images_and_not_for_clean_ones(tiny_run, smoke_data, tmp_path,
                                                                                       capsys):
    assert len(load_checkpoint(tiny_run / "checkpoint.pt").class_shares) == 10
    assert predict_warnings(tiny_run, smoke_data.test_images, tmp_path) == []
    x = smoke_data.test_images.float()
    shifted = ((x - x.mean()) * 0.6 + x.mean() + 40).clamp(0, 255).to(torch.uint8)  # brighter, flatter
    [message] = predict_warnings(tiny_run, shifted, tmp_path)
    assert "shift" in message and "84.97%" in message and "training standard deviations" in message
    write_kaggle_pickle(tmp_path / "shifted.pkl", shifted)
    assert main(["predict", "--checkpoint", str(tiny_run / "checkpoint.pt"), "--pkl", str(tmp_path / "shifted.pkl"),
                 "--out", str(tmp_path / "s.csv")]) == 0
    assert capsys.readouterr().err.strip() == f"warning: {message}"  # one plain line on the command line


def test_the_hand_in_holds_only_the_runs_figures_and_says_when_there_is_no_split(smoke_data, tmp_path):
    run = tmp_path / "run"
    fit(PRESETS["tiny"].model, TrainConfig(epochs=1, batch_size=300, val_size=0, amp="off"), smoke_data, run,
        progress=False)
    submission = predict_submission(run / "checkpoint.pt", write_kaggle_pickle(tmp_path / "t.pkl", smoke_data.test_images),
                                    tmp_path / "submission.csv")
    plots = tmp_path / "plots"
    plots.mkdir()
    for name in ("training_curves.png", "time_to_accuracy.png"):  # the run's figure, and a benchmark's
        (plots / name).write_bytes(b"\x89PNG\r\n\x1a\n")
    manifest = make_handin(run, submission, plots, tmp_path / "handin").read_text()
    assert "plots/training_curves.png" in manifest and "time_to_accuracy" not in manifest
    assert "no validation split" in manifest and "test accuracy not measured" in manifest
    results = json.loads((tmp_path / "handin" / "results.json").read_text())
    assert results["validation_accuracy"] is None and results["test_accuracy"] is None


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_report_tex_compiles_with_the_author_kits_style_beside_it(tiny_run, smoke_data, tmp_path):
    submission = predict_submission(tiny_run / "checkpoint.pt", write_kaggle_pickle(tmp_path / "t.pkl",
                                    smoke_data.test_images), tmp_path / "submission.csv")
    handin = make_handin(tiny_run, submission, tmp_path, tmp_path / "handin", data=smoke_data).parent
    # A stand-in for AuthorKit24's aaai24.sty (not redistributable): what the report uses of it.
    (handin / "aaai24.sty").write_text("\\newcommand{\\affiliations}[1]{\\date{#1}}\n")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "report.tex"], cwd=handin,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (handin / "report.pdf").stat().st_size > 0
