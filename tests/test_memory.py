"""kept_for_reuse: inside it glibc's malloc serves large blocks from its heap and keeps them; outside it maps them
apart as before; elsewhere it does nothing. Training runs and predictions keep their memory inside it."""
import ctypes
import threading

import pytest
import torch

from cifar_resnet import memory
from cifar_resnet.config import PRESETS, TrainConfig
from cifar_resnet.data import Normalization
from cifar_resnet.evaluate import predict_logits
from cifar_resnet.train import fit

BLOCK = 64 * 2 ** 20  # over glibc's mmap threshold, 32 MB at its highest
HUGE = 2 ** 30  # a block larger than any free one a test leaves in the heap (never touched: no memory used)


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]


def mapped_bytes() -> int:
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("needs glibc 2.33 or later")
    libc.mallinfo2.restype = MallInfo2
    return libc.mallinfo2().hblkhd


def mapped_apart(nbytes: int) -> bool:
    """Whether a block of ``nbytes`` that PyTorch allocates now gets a mapping of its own."""
    before = mapped_bytes()
    block = torch.empty(nbytes, dtype=torch.uint8)
    mapped = mapped_bytes() - before >= nbytes
    del block
    return mapped


def test_large_blocks_come_from_the_heap_inside_and_are_mapped_apart_again_after():
    assert mapped_apart(HUGE)
    with memory.kept_for_reuse("cpu"):
        assert not mapped_apart(BLOCK)
    assert mapped_apart(HUGE)


def test_nested_and_concurrent_runs_keep_the_setting_until_the_last_one_ends():
    with memory.kept_for_reuse(torch.device("cpu")):
        with memory.kept_for_reuse("cpu"):
            pass
        assert not mapped_apart(BLOCK)
        inside, leave = threading.Event(), threading.Event()

        def other_run():
            with memory.kept_for_reuse("cpu"):
                inside.set()
                leave.wait()
        thread = threading.Thread(target=other_run)
        thread.start()
        inside.wait()
    assert not mapped_apart(BLOCK)  # the other run is still inside
    leave.set()
    thread.join()
    assert mapped_apart(HUGE)


def test_nothing_changes_off_the_cpu_or_without_glibc(monkeypatch):
    with memory.kept_for_reuse("meta"):
        assert mapped_apart(HUGE)
    monkeypatch.setattr(memory.os, "confstr", lambda name: None)  # musl's answer
    assert memory.glibc() is None
    with memory.kept_for_reuse("cpu"):
        assert mapped_apart(HUGE)


def test_a_cpu_training_run_keeps_its_memory_and_gives_it_back_after(smoke_data):
    mapped_bytes()
    during = []
    fit(PRESETS["tiny"].model, TrainConfig(epochs=2, batch_size=100, val_size=100, amp="off"), smoke_data,
        device="cpu", progress=False, on_epoch=lambda history: during.append(mapped_apart(BLOCK)))
    assert during == [False, False]
    assert mapped_apart(HUGE)


def test_predicting_keeps_its_memory_and_gives_it_back_after(smoke_data):
    class Recording(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(3, 10)
            self.during = []

        def forward(self, x):
            self.during.append(mapped_apart(BLOCK))
            return self.head(x.mean((2, 3)))
    mapped_bytes()
    model = Recording()
    logits = predict_logits(model, smoke_data.test_images[:64], Normalization.from_images(smoke_data.train_images),
                            batch_size=32)
    assert logits.shape == (64, 10) and model.during == [False, False]
    assert mapped_apart(HUGE)
