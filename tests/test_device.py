"""How each device computes, shown on stand-ins: Apple silicon (mps), Colab's T4, an A100 and CPUs with and without
bf16, each made by patching what PyTorch reports. None of these ran on the real hardware (README says so)."""
import pytest
import torch

from cifar_resnet import device as device_module
from cifar_resnet.config import PRESETS, TrainConfig
from cifar_resnet.device import Compute, autocast_dtype, select_device
from cifar_resnet.errors import CifarResnetError
from cifar_resnet.model import build_model
from cifar_resnet.muon import orthogonalize
from cifar_resnet.optimizer import make_optimizer


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def apple_silicon(monkeypatch, torch_release: tuple[int, int], macos: tuple[int, ...] = (14, 5)):
    """A Mac whose mps backend is available, with the given PyTorch release and macOS."""
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(device_module, "torch_version", lambda: torch_release)
    monkeypatch.setattr(device_module, "macos_version", lambda: macos)


def gpu(monkeypatch, capability: tuple[int, int], name: str):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # true on a T4 too
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: name)


def test_auto_picks_cuda_then_mps_then_the_cpu(monkeypatch, no_cuda):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert select_device() == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert select_device() == torch.device("mps")
    gpu(monkeypatch, (8, 0), "NVIDIA A100-SXM4-40GB")
    assert select_device() == torch.device("cuda")


def test_asking_for_mps_where_there_is_none_says_what_to_do(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(CifarResnetError, match="device 'mps' was asked for .*use --device cpu"):
        select_device("mps")


@pytest.mark.parametrize("release, macos, dtype, scaled", [
    ((2, 8), (14, 5), torch.bfloat16, False),  # bf16 autocast: PyTorch 2.6+ on macOS 14+
    ((2, 6), (13, 6), torch.float16, False),  # macOS 13 has no bf16: fp16, and no GradScaler for mps before 2.8
    ((2, 8), (13, 6), torch.float16, True),  # ... a GradScaler from 2.8
    ((2, 5), (14, 5), torch.float16, False),  # fp16 autocast only, before 2.6
    ((2, 4), (14, 5), None, False),  # no autocast on mps before 2.5: float32
])
def test_autocast_on_mps_follows_what_the_installed_pytorch_supports(monkeypatch, no_cuda, release, macos, dtype,
                                                                      scaled):
    apple_silicon(monkeypatch, release, macos)
    compute = Compute.choose("mps")
    assert (compute.dtype, compute.scale_gradients) == (dtype, scaled)
    assert not compute.channels_last  # convolution backward in channels_last was 30x slower on mps
    assert compute.matmul_dtype == (torch.bfloat16 if dtype == torch.bfloat16 else torch.float16)
    if dtype == torch.float16:
        assert compute.precision == f"fp16 autocast {'with' if scaled else 'without'} gradient scaling"


def test_asking_mps_for_a_precision_its_pytorch_lacks_is_refused_by_name(monkeypatch, no_cuda):
    apple_silicon(monkeypatch, (2, 5), (13, 6))
    with pytest.raises(CifarResnetError, match="amp='bf16' on mps needs PyTorch 2.6 and macOS 14"):
        autocast_dtype("bf16", torch.device("mps"))
    apple_silicon(monkeypatch, (2, 4), (14, 5))
    with pytest.raises(CifarResnetError, match="amp='fp16' on mps needs PyTorch 2.5"):
        autocast_dtype("fp16", torch.device("mps"))
    assert autocast_dtype("off", torch.device("mps")) is None


@pytest.mark.parametrize("name, capability, dtype, matmul", [
    ("Tesla T4", (7, 5), torch.float16, torch.float16),  # Colab's free tier: fp16 tensor cores, no native bf16
    ("Tesla P100-PCIE-16GB", (6, 0), torch.float16, torch.float16),  # Kaggle
    ("NVIDIA A100-SXM4-40GB", (8, 0), torch.bfloat16, torch.bfloat16),
])
def test_muons_iterations_run_in_the_dtype_the_gpu_computes_well(monkeypatch, name, capability, dtype, matmul):
    gpu(monkeypatch, capability, name)
    compute = Compute.choose("cuda")
    assert (compute.dtype, compute.matmul_dtype, compute.channels_last) == (dtype, matmul, True)
    assert compute.scale_gradients == (dtype == torch.float16)
    model = build_model(PRESETS["cpu-fast"].model)
    assert make_optimizer(model, PRESETS["cpu-fast"].train, compute.matmul_dtype).matmul_dtype == matmul


@pytest.mark.parametrize("native, matmul", [(True, torch.bfloat16), (False, torch.float32)])
def test_on_a_cpu_muon_runs_in_bf16_only_where_the_cpu_computes_it(monkeypatch, no_cuda, native, matmul):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(device_module, "cpu_has_bf16", lambda: native)
    assert Compute.choose().matmul_dtype == matmul and Compute.choose().dtype == (torch.bfloat16 if native else None)


def test_a_stand_in_t4s_muon_step_orthogonalizes_in_fp16(monkeypatch, smoke_data):
    """Training on a stand-in T4 (on the CPU, which computes fp16 too): the Newton-Schulz iterations get float16."""
    from cifar_resnet import muon
    from cifar_resnet.train import fit

    t4 = Compute(torch.device("cpu"), torch.float16, scale_gradients=True, matmul_dtype=torch.float16)
    monkeypatch.setattr(Compute, "choose", classmethod(lambda cls, *args, **kwargs: t4))
    dtypes, original = [], muon.orthogonalize
    monkeypatch.setattr(muon, "orthogonalize", lambda m, steps=3, dtype=torch.bfloat16: dtypes.append(dtype)
                        or original(m, steps, dtype))
    config = TrainConfig(epochs=1, batch_size=50, optimizer="muon", val_size=900)  # two steps
    result = fit(PRESETS["tiny"].model, config, smoke_data, progress=False)
    assert result.plan.compute is t4 and dtypes and set(dtypes) == {torch.float16}


def test_orthogonalize_in_fp16_keeps_the_singular_values_near_one():
    torch.manual_seed(0)
    matrix = torch.randn(64, 576) @ torch.diag(torch.logspace(-1, 1, 576))
    for dtype in (torch.bfloat16, torch.float16):
        singular = torch.linalg.svdvals(orthogonalize(matrix, dtype=dtype).float())
        assert 0.5 < singular.min() and singular.max() < 1.3, dtype
