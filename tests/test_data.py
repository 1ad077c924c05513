import os
import pickle
import shutil
import warnings

import numpy as np
import pytest
import torch

from cifar_resnet.data import (CLASSES, Normalization, SyntheticDataWarning, find_batches_dir, load_cifar10,
                               load_kaggle_pickle, read_batch, train_val_split, write_synthetic_cifar)
from cifar_resnet.errors import CifarResnetError
from cifar_resnet.safe_pickle import load_pickle


@pytest.fixture(scope="module")
def batches(tmp_path_factory):
    """A small dataset in the official layout (synthetic pixels)."""
    return write_synthetic_cifar(tmp_path_factory.mktemp("synthetic"), train_per_class=20, test_per_class=5)


def copy_layout(batches, root):
    target = root / "cifar-10-batches-py"
    shutil.copytree(batches, target)
    return target


def test_smoke_data_fixture_says_where_it_came_from(smoke_data):
    assert smoke_data.smoke
    assert smoke_data.train_images.dtype == torch.uint8 and smoke_data.train_images.shape[1:] == (3, 32, 32)
    assert torch.bincount(smoke_data.train_labels).tolist() == [100] * 10
    assert torch.bincount(smoke_data.test_labels).tolist() == [50] * 10
    if os.environ.get("CIFAR_RESNET_DATA"):
        assert not smoke_data.synthetic, "real data was provided but not used"


@pytest.mark.parametrize("layout", ["", "cifar-10-batches-py", "cifar-10-python/cifar-10-batches-py",
                                    "download/cifar-10-python/cifar-10-batches-py"])
def test_the_official_layout_is_found_wherever_it_sits(batches, tmp_path, layout):
    target = tmp_path / layout
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(batches, target, dirs_exist_ok=True)
    assert find_batches_dir(tmp_path) == target
    data = load_cifar10(tmp_path, smoke=False)
    assert len(data.train_labels) == 200 and len(data.test_labels) == 50 and not data.synthetic


def test_missing_data_is_an_error_outside_smoke_mode_and_synthetic_in_it(tmp_path):
    with pytest.raises(CifarResnetError, match="no CIFAR-10 found under .*CIFAR_RESNET_DATA"):
        load_cifar10(tmp_path, smoke=False)
    with pytest.warns(SyntheticDataWarning, match="SYNTHETIC DATA"):
        data = load_cifar10(tmp_path, smoke=True)
    assert data.synthetic and "SYNTHETIC" in repr(data)
    assert torch.bincount(data.train_labels).tolist() == [100] * 10


def test_smoke_mode_follows_the_environment(batches, tmp_path, monkeypatch):
    copy_layout(batches, tmp_path)
    monkeypatch.setenv("CIFAR_RESNET_DATA", str(tmp_path))
    monkeypatch.setenv("CIFAR_RESNET_SMOKE", "1")
    assert load_cifar10(train_per_class=3, test_per_class=2).train_labels.bincount().tolist() == [3] * 10
    monkeypatch.setenv("CIFAR_RESNET_SMOKE", "0")
    assert len(load_cifar10().train_labels) == 200


def test_synthetic_classes_are_learnable():
    """Class means differ far more than the noise: a network can learn them."""
    from cifar_resnet.data import synthetic_images
    labels = np.repeat(np.arange(10), 50)
    x = synthetic_images(labels, np.random.default_rng(0)).astype(float).mean(axis=(1, 2))  # (N, 3) colours
    centroids = np.stack([x[labels == c].mean(0) for c in range(10)])
    nearest = np.argmin(((x[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (nearest == labels).mean() > 0.5


def test_python2_style_batches_with_str_keys_load(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, (4, 3072), dtype=np.uint8)
    path = tmp_path / "data_batch_1"
    with open(path, "wb") as f:
        pickle.dump({"data": data, "labels": [0, 1, 2, 9], "batch_label": "x"}, f, protocol=2)
    images, labels = read_batch(path)
    assert torch.equal(images, torch.from_numpy(data.reshape(4, 3, 32, 32)))
    assert labels.tolist() == [0, 1, 2, 9]


class _Payload:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    target = tmp_path / "pwned.txt"
    path = tmp_path / "data_batch_1"
    with open(path, "wb") as f:
        pickle.dump({b"data": _Payload(str(target)), b"labels": [0]}, f)
    with pytest.raises(CifarResnetError, match="refused: it asks to load 'io.open'|refused: it asks to load 'builtins.open'"):
        read_batch(path)
    assert not target.exists()
    with open(path, "wb") as f:
        pickle.dump({b"data": np.zeros((1, 32, 32, 3), np.uint8), b"x": os.system}, f)
    with pytest.raises(CifarResnetError, match="refused"):
        load_kaggle_pickle(path)


def write(path, obj, protocol=4):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


GOOD = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2]}


@pytest.mark.parametrize("content, message", [
    (b"", "empty or truncated"),
    (pickle.dumps(GOOD)[:40], "empty or truncated|not a readable pickle"),
    (b"not a pickle at all", "not a readable pickle|could not be read"),
    ([1, 2, 3], "holds a list"),
    ({b"pixels": np.zeros((2, 3072), np.uint8), b"labels": [1, 2]}, r"has keys \['labels', 'pixels'\]"),
    ({b"data": np.zeros((2, 3072), np.float32), b"labels": [1, 2]}, r"'data' is float32 \(2, 3072\)"),
    ({b"data": np.zeros((2, 32, 32, 3), np.uint8), b"labels": [1, 2]}, r"expected uint8 \(N, 3072\)"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 10]}, "label 10 is outside 0-9"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}, "for 2 images"),
])
def test_bad_batches_name_the_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / "data_batch_3"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        write(path, content)
    with pytest.raises(CifarResnetError, match=message) as info:
        read_batch(path)
    assert str(path) in str(info.value)


def test_a_folder_with_missing_batches_says_which(batches, tmp_path):
    target = copy_layout(batches, tmp_path)
    (target / "data_batch_4").unlink()
    with pytest.raises(CifarResnetError, match="lacks data_batch_4"):
        load_cifar10(tmp_path, smoke=False)


def test_train_val_split_is_stratified_seeded_and_exact():
    labels = torch.arange(10).repeat_interleave(torch.tensor([500, 400, 600, 500, 500, 500, 500, 500, 500, 500]))
    train, val = train_val_split(labels, val_size=500, seed=1)
    assert len(val) == 500 and len(train) + len(val) == len(labels)
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert torch.bincount(labels[val]).tolist() == [50, 40, 60, 50, 50, 50, 50, 50, 50, 50]
    assert torch.equal(train_val_split(labels, 500, seed=1)[1], val)
    assert not torch.equal(train_val_split(labels, 500, seed=2)[1], val)
    assert len(train_val_split(labels)[1]) == len(labels) // 10
    with pytest.raises(CifarResnetError, match="val_size"):
        train_val_split(labels, val_size=len(labels))


def test_normalization_statistics_and_application():
    images = torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8)
    norm = Normalization.from_images(images)
    x = images.numpy().astype(np.float64) / 255
    assert np.allclose(norm.mean, x.mean(axis=(0, 2, 3))) and np.allclose(norm.std, x.std(axis=(0, 2, 3), ddof=1))
    out = norm(images)
    assert out.dtype == torch.float32
    assert torch.allclose(out.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(out.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-4)
    assert Normalization.from_dict(norm.to_dict()) == norm


def test_real_data_statistics_match_the_data_readme(smoke_data):
    full = None if smoke_data.synthetic else load_cifar10(smoke=False)
    if full is None or len(full.train_labels) != 50_000:
        pytest.skip("the full real training set is not here")
    norm = Normalization.from_images(full.train_images)
    assert np.allclose(norm.mean, (0.4913, 0.4821, 0.4465), atol=2e-3)
    assert np.allclose(norm.std, (0.2452, 0.2428, 0.2606), atol=2e-3)


@pytest.mark.parametrize("form", ["bytes keys", "str keys", "no ids", "channel-first"])
def test_kaggle_pickle_forms(tmp_path, form):
    hwc = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    ids = np.array([7, 3, 9, 1, 0])
    obj = {"bytes keys": {b"data": hwc, b"ids": ids}, "str keys": {"data": hwc, "ids": ids},
           "no ids": {b"data": hwc}, "channel-first": {b"data": hwc.transpose(0, 3, 1, 2).copy(), b"ids": ids}}[form]
    write(tmp_path / "test.pkl", obj)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images, got_ids = load_kaggle_pickle(tmp_path / "test.pkl")
    assert torch.equal(images, torch.from_numpy(hwc.transpose(0, 3, 1, 2).copy()))
    assert got_ids.tolist() == (list(range(5)) if form == "no ids" else ids.tolist())
    assert any("channel-first" in str(w.message) for w in caught) == (form == "channel-first")


@pytest.mark.parametrize("obj, message", [
    ({b"data": np.zeros((5, 28, 28), np.uint8)}, r"shape \(5, 28, 28\)"),
    ({b"data": np.zeros((5, 32, 32, 3), np.float64)}, "float64 array"),
    ({b"images": np.zeros((5, 32, 32, 3), np.uint8)}, "no 'data' entry"),
    ({b"data": np.zeros((2, 32, 32, 3), np.uint8), b"ids": np.array([1, 1])}, "not unique"),
    ({b"data": np.zeros((2, 32, 32, 3), np.uint8), b"ids": np.array([1, 2, 3])}, "3 ids for 2 images"),
])
def test_bad_kaggle_pickles_are_refused(tmp_path, obj, message):
    write(tmp_path / "test.pkl", obj)
    with pytest.raises(CifarResnetError, match=message):
        load_kaggle_pickle(tmp_path / "test.pkl")


def test_load_pickle_reports_a_missing_file(tmp_path):
    with pytest.raises(CifarResnetError, match="does not exist"):
        load_pickle(tmp_path / "nothing.pkl")


def test_classes_are_in_the_official_order():
    assert CLASSES[0] == "airplane" and CLASSES[3] == "cat" and CLASSES[9] == "truck"
