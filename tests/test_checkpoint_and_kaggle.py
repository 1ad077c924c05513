import os

import numpy as np
import pytest
import torch

from cifar_resnet.checkpoint import (ArchitectureMismatchError, Checkpoint, load_model,
                                     save_checkpoint)
from cifar_resnet.config import PRESETS, ModelConfig, TrainConfig
from cifar_resnet.data import Normalization, write_kaggle_pickle
from cifar_resnet.errors import CifarResnetError
from cifar_resnet.evaluate import confusion_counts, evaluate, predict_logits, score
from cifar_resnet.kaggle import predict_submission, submission_accuracy, validate_submission, write_submission
from cifar_resnet.model import build_model
from cifar_resnet.train import fit

TINY = PRESETS["tiny"].model
NORM = Normalization((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


@pytest.fixture(scope="module")
def trained(smoke_data, tmp_path_factory):
    """A tiny model trained for a few dozen steps on the smoke data, with its run folder."""
    run = tmp_path_factory.mktemp("run")
    config = TrainConfig(epochs=4, batch_size=50, lr=0.1, val_size=100)
    return fit(TINY, config, smoke_data, run, progress=False)


def test_checkpoints_round_trip_and_load_with_weights_only(tmp_path):
    model = build_model(TINY)
    path = save_checkpoint(Checkpoint(model_config=TINY, normalization=NORM, state_dict=model.state_dict(),
                                           train_config=TrainConfig(), epoch=3), tmp_path / "c.pt")
    raw = torch.load(path, weights_only=True)
    assert raw["format"].startswith("cifar_resnet.checkpoint") and raw["model_config"]["channels"] == [16, 32, 64]
    loaded, ckpt = load_model(path)
    assert ckpt.epoch == 3 and ckpt.normalization == NORM and not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # readable like any other file, not 0600


def test_a_checkpoint_of_another_architecture_lists_the_differences(tmp_path):
    path = save_checkpoint(Checkpoint(model_config=TINY, normalization=NORM, state_dict=build_model(TINY).state_dict()),
                           tmp_path / "c.pt")
    other = ModelConfig(blocks=(1, 2, 1), channels=(16, 32, 64), num_classes=100)
    with pytest.raises(ArchitectureMismatchError, match=r"blocks: \[1, 2, 1\] vs \[1, 1, 1\]; num_classes: 100 vs 10"):
        load_model(path, expected=other)


class _RunsCode:
    def __reduce__(self):
        return (print, ("this would run on loading",))


@pytest.mark.parametrize("content, message", [
    (b"", "could not be loaded safely"),
    (b"garbage" * 10, "could not be loaded safely"),
    ("bare state_dict", "not a cifar_resnet checkpoint"),
    ("code", "could not be loaded safely"),
    ("altered", "do not fit its own configuration"),
])
def test_bad_checkpoints_are_refused_clearly(tmp_path, content, message):
    path = tmp_path / "c.pt"
    if content == "bare state_dict":
        torch.save(build_model(TINY).state_dict(), path)
    elif content == "code":
        torch.save({"format": "cifar_resnet.checkpoint/1", "x": _RunsCode()}, path)
    elif content == "altered":
        state = build_model(TINY).state_dict()
        state["fc.weight"] = torch.zeros(3, 3)
        save_checkpoint(Checkpoint(model_config=TINY, normalization=NORM, state_dict=state), path)
    else:
        path.write_bytes(content)
    with pytest.raises(CifarResnetError, match=message):
        load_model(path)


def test_score_and_confusion_matrix():
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    logits = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 2, 2, 0]), 3).float() * 5
    result = score(logits, labels, classes=("a", "b", "c"))
    assert result.accuracy == pytest.approx(4 / 6)
    assert result.per_class == pytest.approx({"a": 0.5, "b": 1.0, "c": 2 / 3})
    assert result.confusion.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert torch.equal(confusion_counts(labels, result.predictions, 3), result.confusion)
    assert result.most_confident_mistakes(1).item() in (1, 5)


def test_flip_tta_averages_an_image_and_its_mirror(trained, smoke_data):
    images, labels = smoke_data.test_images[:40], smoke_data.test_labels[:40]
    plain = predict_logits(trained.model, images, trained.normalization)
    mirrored = predict_logits(trained.model, images.flip(3), trained.normalization)
    tta = predict_logits(trained.model, images, trained.normalization, tta=True, batch_size=7)
    torch.testing.assert_close(tta, (plain + mirrored) / 2, rtol=1e-4, atol=1e-4)
    result = evaluate(trained.model, images, labels, trained.normalization, tta=True)
    assert result.accuracy == pytest.approx((tta.argmax(1) == labels).float().mean().item())


def test_flip_shift_tta_weighs_six_views(trained, smoke_data):
    images = smoke_data.test_images[:20]
    padded = torch.nn.functional.pad(images, (1, 1, 1, 1), mode="replicate")  # reflect is not for uint8
    padded[..., 0, :], padded[..., -1, :] = padded[..., 2, :], padded[..., -3, :]
    padded[..., :, 0], padded[..., :, -1] = padded[..., :, 2], padded[..., :, -3]  # now reflected
    flip = lambda x: predict_logits(trained.model, x, trained.normalization, tta="flip")  # noqa: E731
    expected = (flip(images) / 2 + flip(padded[..., :-2, :-2]) / 4 + flip(padded[..., 2:, 2:]) / 4)
    got = predict_logits(trained.model, images, trained.normalization, tta="flip-shift", batch_size=6)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="flip-shift"):
        predict_logits(trained.model, images, trained.normalization, tta="rotate")


def test_end_to_end_submission_scores_what_evaluate_says(trained, smoke_data, tmp_path):
    """Train, evaluate, predict a Kaggle pickle of the same images in shuffled order, compare."""
    result = evaluate(trained.model, smoke_data.test_images, smoke_data.test_labels, trained.normalization)
    assert result.accuracy > 0.2, "the trained model should beat chance (0.1)"
    order = torch.randperm(len(smoke_data.test_labels), generator=torch.Generator().manual_seed(0))
    ids = np.arange(1000, 1000 + len(order))
    write_kaggle_pickle(tmp_path / "test.pkl", smoke_data.test_images[order], ids)
    with open(tmp_path / "labels.csv", "w") as f:
        f.write("ID,Labels\n" + "".join(f"{i},{int(y)}\n" for i, y in zip(ids, smoke_data.test_labels[order])))
    submission = predict_submission(trained.checkpoint_path, tmp_path / "test.pkl", tmp_path / "submission.csv")
    lines = submission.read_text().splitlines()
    assert lines[0] == "ID,Labels" and len(lines) == len(ids) + 1
    assert [int(line.split(",")[0]) for line in lines[1:]] == ids.tolist()
    assert submission_accuracy(submission, tmp_path / "labels.csv") == pytest.approx(result.accuracy)


def test_write_submission_with_other_column_names(tmp_path):
    path = write_submission([3, 1, 2], [9, 0, 4], tmp_path / "s.csv", columns=("id", "label"))
    assert path.read_text().splitlines() == ["id,label", "3,9", "1,0", "2,4"]
    assert validate_submission(path, [1, 2, 3], columns=("id", "label")) == 3
    with pytest.raises(CifarResnetError, match="3 ids but 2 labels"):
        write_submission([1, 2, 3], [1, 2], tmp_path / "t.csv")
    assert not (tmp_path / "t.csv").exists()


@pytest.mark.parametrize("text, message", [
    ("Id,Label\n0,1\n1,2\n2,3\n", "header is 'Id,Label'"),
    ("", "header is 'an empty file'"),
    ("ID,Labels\n0,1\n1,2\n", "1 test ids have no row"),
    ("ID,Labels\n0,1\n1,2\n2,3\n7,1\n", "line 5: id '7' is not an id"),
    ("ID,Labels\n0,1\n1,2\n1,2\n2,3\n", "line 4: id 1 appears twice"),
    ("ID,Labels\n0,1\n1,cat\n2,3\n", "line 3: label 'cat' is not an integer"),
    ("ID,Labels\n0,1\n1,10\n2,3\n", "line 3: label '10' is not an integer 0-9"),
    ("ID,Labels\n0,1.0\n1,1\n2,3\n", "line 2: label '1.0'"),
    ("ID,Labels\n0,1,5\n1,1\n2,3\n", "line 2: 3 fields"),
])
def test_validator_names_the_first_bad_row(tmp_path, text, message):
    path = tmp_path / "s.csv"
    path.write_text(text)
    with pytest.raises(CifarResnetError, match=message):
        validate_submission(path, [0, 1, 2])
