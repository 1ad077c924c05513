import os

import pytest
import torch

from cifar_resnet.data import load_cifar10


@pytest.fixture(scope="session")
def smoke_data():
    """The smoke subset: real CIFAR-10 when $CIFAR_RESNET_DATA has it, else synthetic data."""
    return load_cifar10(smoke=True)


@pytest.fixture(scope="session", autouse=True)
def _synthetic_cache(tmp_path_factory):
    """Synthetic data goes to a fresh folder, never the user's cache."""
    if "CIFAR_RESNET_CACHE" not in os.environ:
        os.environ["CIFAR_RESNET_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(min(2, torch.get_num_threads()))
