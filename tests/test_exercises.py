"""Every exercise's check: the solution is right; a typical mistake is caught with a hint; the package's own
implementation, a preset and a copied number are refused; an untouched exercise says "not answered yet" without
stopping Run All; and every notebook asks for at least three real functions where it teaches them."""
import dataclasses
import functools
import importlib.util
import inspect
import json
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cifar_resnet import ModelConfig, get_preset
from cifar_resnet.adaptation import recalibrate_batchnorm
from cifar_resnet.augment import random_crop, random_erasing
from cifar_resnet.budget import count_parameters
from cifar_resnet.data import Normalization
from cifar_resnet.evaluate import calibration_bins, confusion_counts, expected_calibration_error, predict_logits
from cifar_resnet.exercises import BY_NOTEBOOK, EXERCISES, RIGHT, UNANSWERED, WRONG, check, mark, use
from cifar_resnet.kaggle import validate_submission, write_submission
from cifar_resnet.model import BasicBlock, TorchvisionLayout
from cifar_resnet.train import fit
from cifar_resnet.schedule import lr_at

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("solutions", ROOT / "notebooks" / "solutions" / "exercises.py")
SOLUTIONS = importlib.util.module_from_spec(spec)
sys.modules["solutions"] = SOLUTIONS  # so that inspect finds the source of its classes
spec.loader.exec_module(SOLUTIONS)
S = SOLUTIONS


def _block_without_final_relu():
    class Block(S.MyBasicBlock):
        def forward(self, x):
            return self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))) + self.shortcut(x)
    return Block


def _block_without_zero_init():
    class Block(S.MyBasicBlock):
        def __init__(self, in_channels, out_channels, stride=1):
            super().__init__(in_channels, out_channels, stride)
            nn.init.ones_(self.bn2.weight)
    return Block


def _step_without_zero_grad(net, optimizer, loss_fn, images, labels):
    net.train()
    loss = loss_fn(net(images), labels)
    loss.backward()
    optimizer.step()
    return loss


def _sutskever_momentum(weight, grad, velocity, lr, momentum, weight_decay):
    velocity = momentum * velocity - lr * (grad + weight_decay * weight)  # the rate inside the velocity
    return weight + velocity, velocity


def _unweighted_ece(probabilities, labels, bins):
    confidence, predicted = probabilities.max(1)
    index = (confidence * bins).long().clamp(max=bins - 1)
    gaps = [((predicted[index == b] == labels[index == b]).double().mean() - confidence[index == b].double().mean()).abs()
            for b in range(bins) if (index == b).any()]
    return float(sum(gaps) / len(gaps))


def _bins_by_the_labels_probability(probabilities, labels, bins):
    confidence = probabilities.gather(1, labels.view(-1, 1)).flatten()  # the label's probability, not the top one
    index = (confidence * bins).long().clamp(max=bins - 1)
    count = torch.bincount(index, minlength=bins).double()
    right = (probabilities.argmax(1) == labels).double()
    return (torch.bincount(index, weights=confidence.double(), minlength=bins) / count.clamp(min=1),
            torch.bincount(index, weights=right, minlength=bins) / count.clamp(min=1), count)


def _writer_with_row_numbers(path, ids, predictions):
    if len(ids) != len(predictions):
        raise ValueError("lengths differ")
    path.write_text("ID,Labels\n" + "".join(f"{n},{int(p)}\n" for n, p in enumerate(predictions)))
    return path


def _problems_header_only(text, ids):
    return [] if text.startswith("ID,Labels") else ["header"]


def _predict_in_train_mode(model, images, normalization, batch_size):
    with torch.no_grad():
        return torch.cat([model.train()(normalization(images[s:s + batch_size])).argmax(1)
                          for s in range(0, len(images), batch_size)])


def _crop_one_shift(images, padding, generator):
    dy, dx = torch.randint(0, 2 * padding + 1, (2,), generator=generator).tolist()
    return F.pad(images, (padding,) * 4)[..., dy:dy + images.shape[2], dx:dx + images.shape[3]]


def _reestimate_without_reset(model, x):
    with torch.no_grad():
        model.train()(x)  # a running average that still remembers the training images
    return model.eval()


MISTAKES = {  # name: (a typical wrong answer, words its hint must contain)
    "normalize_per_channel": (lambda train, images: (images.float() / 255 - (train.float() / 255).mean()) /
                              (train.float() / 255).std(), "per channel"),
    "random_crop_batch": (_crop_one_shift, "its own random shift"),
    "random_erasing_batch": (lambda images, p, scale, ratio, fill, generator: S.random_erasing_batch(
        images, p, scale, ratio, (0, 0, 0), generator), "the colour `fill`"),
    "MyBasicBlock": (_block_without_final_relu(), "ReLU after adding the shortcut"),
    "make_stage": (lambda cin, cout, blocks, stride, block: nn.Sequential(
        *[block(cin if i == 0 else cout, cout, stride=stride) for i in range(blocks)]), "only the first block"),
    "parameter_count": (lambda blocks, channels, kernel, skip, pool: S.parameter_count(blocks, channels, kernel, skip,
                                                                                       pool) - 2 * sum(channels),
                        "BatchNorm"),
    "four_stage_config": (dataclasses.replace(S.four_stage_config, channels=(64, 128, 256, 512)), "OVER the budget"),
    "smoothed_cross_entropy": (lambda logits, labels, eps: -((1 - eps) * F.one_hot(labels, 10) + eps / 9 *
                                                             (1 - F.one_hot(labels, 10))).mul(
        logits.log_softmax(1)).sum(1).mean(), "all K classes"),
    "warmup_cosine": (lambda step, total, peak, warmup: peak * step / (warmup * total) if step < warmup * total
                      else peak * (1 + math.cos(math.pi * step / total)) / 2, "after the warmup"),
    "sgd_momentum_step": (_sutskever_momentum, "the rate multiplies the velocity"),
    "training_step": (_step_without_zero_grad, "zero_grad"),
    "flip_tta_logits": (lambda model, x: (model.eval()(x) + model(x.flip(2))) / 2, "top to bottom"),
    "confusion_matrix": (lambda labels, predictions, classes: torch.bincount(
        predictions * classes + labels, minlength=classes ** 2).view(classes, classes), "other way round"),
    "recall": (lambda confusion, c: confusion[c, c] / confusion[:, c].sum(), "that is precision"),
    "calibration_bins": (_bins_by_the_labels_probability, "top probability"),
    "expected_calibration_error": (_unweighted_ece, "share of the images"),
    "reestimate_batchnorm": (_reestimate_without_reset, "reset_running_stats"),
    "predict_in_batches": (_predict_in_train_mode, "eval mode"),
    "write_submission_csv": (_writer_with_row_numbers, "not the row numbers"),
    "submission_problems": (_problems_header_only, "found nothing wrong"),
    "broken_submission_line": (4, "classes are numbered 0 to 9"),
}

PACKAGE_ANSWERS = {  # name: what a student could hand in instead of writing it (the package's, or PyTorch's)
    "normalize_per_channel": lambda train, images: Normalization.from_images(train)(images),
    "random_crop_batch": lambda images, padding, generator: random_crop(images, padding, generator),
    "random_erasing_batch": random_erasing,
    "MyBasicBlock": type("MyBlock", (BasicBlock,), {}),
    "make_stage": lambda cin, cout, blocks, stride, block: TorchvisionLayout().stage(
        ModelConfig(blocks=(1, blocks), channels=(cin, cout)), 1, cin),
    "parameter_count": lambda blocks, channels, kernel, skip_kernel, pool: count_parameters(ModelConfig(
        blocks, channels, kernel=kernel, skip_kernel=skip_kernel, pool=pool)).total,
    "four_stage_config": get_preset("four-stage").model,
    "smoothed_cross_entropy": functools.partial(F.cross_entropy),
    "warmup_cosine": lambda step, total, peak, warmup: lr_at(step / total, peak, warmup),
    "sgd_momentum_step": lambda *args: torch.optim.SGD,
    "training_step": lambda net, optimizer, loss_fn, images, labels: fit(net, None, images),
    "flip_tta_logits": lambda model, x: predict_logits(model, x, None, tta="flip"),
    "confusion_matrix": lambda labels, predictions, classes: confusion_counts(labels, predictions, classes),
    "calibration_bins": lambda probabilities, labels, bins: calibration_bins(probabilities, labels, bins),
    "expected_calibration_error": expected_calibration_error,
    "reestimate_batchnorm": lambda model, x: recalibrate_batchnorm(model, x, lambda images: images),
    "predict_in_batches": lambda model, images, normalization, batch_size: predict_logits(
        model, images, normalization).argmax(1),
    "write_submission_csv": lambda path, ids, predictions: write_submission(ids, predictions, path),
    "submission_problems": lambda text, ids: validate_submission(text, ids),
}
NO_PACKAGE_VERSION = {"recall", "broken_submission_line"}  # nothing in the package computes these


def test_every_exercise_has_a_solution_a_mistake_and_a_refused_shortcut():
    assert set(MISTAKES) == set(EXERCISES) and all(hasattr(SOLUTIONS, name) for name in EXERCISES)
    assert set(PACKAGE_ANSWERS) | NO_PACKAGE_VERSION == set(EXERCISES)


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_the_solution_is_right_and_a_mistake_is_caught_with_a_hint(name, capsys):
    check(name, getattr(SOLUTIONS, name))
    assert capsys.readouterr().out == f"✓ {name}: right\n"
    wrong, words = MISTAKES[name]
    verdict, message = mark(name, wrong)
    assert verdict == WRONG and words in message, message


@pytest.mark.parametrize("name", sorted(PACKAGE_ANSWERS))
def test_the_packages_own_answer_is_refused(name):
    verdict, message = mark(name, PACKAGE_ANSWERS[name])
    assert verdict == WRONG, message
    assert "that is the preset" in message if name == "four_stage_config" else "package's own" in message, message


@pytest.mark.parametrize("name", sorted(n for n, e in EXERCISES.items() if e.kind != "value"))
def test_a_copied_number_is_refused(name):
    verdict, message = mark(name, 4_916_284)  # the reference network's count, printed in notebook 02
    assert verdict == WRONG and "not a int" in message


def test_the_batched_exercises_refuse_a_python_loop():
    def crop_with_a_loop(images, padding, generator):
        return torch.stack([S.random_crop_batch(image[None], padding, generator)[0] for image in images])

    verdict, message = mark("random_crop_batch", crop_with_a_loop)
    assert verdict == WRONG and "Python loop" in message
    assert mark("confusion_matrix", lambda labels, predictions, classes: torch.tensor(
        [[int(((labels == t) & (predictions == p)).sum()) for p in range(classes)] for t in range(classes)]))[0] == WRONG


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_an_untouched_exercise_is_not_answered_yet(name, capsys):
    def stub(*args):
        ...

    class StubBlock(nn.Module):
        def __init__(self, in_channels, out_channels, stride=1):
            super().__init__()
            ...  # your layers

        def forward(self, x):
            ...  # your forward pass

    untouched = {"function": stub, "class": StubBlock, "value": ...}[EXERCISES[name].kind]
    for answer in (..., None, untouched):
        assert mark(name, answer)[0] == UNANSWERED, answer
    check(name, ...)
    assert "not answered yet" in capsys.readouterr().out


def test_an_answer_that_crashes_is_wrong_with_its_reason():
    verdict, message = mark("random_crop_batch", lambda images, padding, generator: images.flip(7))
    assert verdict == WRONG and "IndexError" in message


def test_use_hands_the_next_cell_the_students_answer_only_when_it_is_right(capsys):
    assert use("confusion_matrix", S.confusion_matrix, confusion_counts) is S.confusion_matrix
    assert use("confusion_matrix", ..., confusion_counts) is confusion_counts
    assert "using the package's version" in capsys.readouterr().out


def test_the_checks_draw_fresh_inputs_so_a_memorized_output_cannot_pass():
    first = {}

    def memorize(logits, labels, smoothing):
        first.setdefault(smoothing, S.smoothed_cross_entropy(logits, labels, smoothing).detach())
        return first[smoothing].clone().requires_grad_()

    assert mark("smoothed_cross_entropy", memorize)[0] == RIGHT  # right by construction, and remembered
    assert mark("smoothed_cross_entropy", memorize)[0] == WRONG


def _exercise_cells(path: Path) -> list[tuple[str, str, str]]:
    """(exercise name, the stub cell's code, the next code cell) for every `check("name", ...)` in the notebook."""
    code = [("".join(c["source"])) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    found = []
    for i, source in enumerate(code):
        for name in EXERCISES:
            if f'check("{name}", ' in source:
                found.append((name, source, code[i + 1] if i + 1 < len(code) else ""))
    return found


@pytest.mark.parametrize("notebook", sorted(BY_NOTEBOOK))
def test_every_notebook_asks_for_three_real_functions_and_uses_each_in_the_next_cell(notebook):
    path = next((ROOT / "notebooks").glob(f"{notebook}_*.ipynb"))
    cells = _exercise_cells(path)
    assert {name for name, _, _ in cells} == {e.name for e in BY_NOTEBOOK[notebook]}, path.name
    real = [name for name, _, _ in cells if EXERCISES[name].kind != "value"
            and len(inspect.getsource(getattr(SOLUTIONS, name)).strip().splitlines()) >= 6]
    assert len(real) >= 3, (path.name, real)
    for name, _, following in cells:
        if EXERCISES[name].kind != "value":
            assert name in following, f"{path.name}: the cell after {name}'s check does not use it"
    text = path.read_text()
    assert "## Questionnaire" in text
