"""Which device to run on and how to compute there: one code path for the CPU, CUDA and Apple's GPU (mps).

``Compute.choose`` decides once per run, from the hardware and the installed PyTorch: the autocast dtype,
whether gradients are scaled, the memory format, and the dtype Muon's matrix products run in. The rules:

- CUDA: bf16 autocast on compute capability 8.0 (Ampere) and newer; fp16 with a gradient scaler below it
  (Colab's T4, Kaggle's P100), where bf16 is only emulated.
- CPU: bf16 autocast where the CPU computes bf16 natively (AVX512-BF16 or AMX), else float32.
- mps: bf16 autocast where PyTorch supports it there (PyTorch 2.6 and macOS 14 and later:
  pytorch/pytorch#139386, #139390); else fp16 autocast (PyTorch 2.5 and later: #99272), with a gradient
  scaler only where PyTorch has one for mps (2.8 and later: #142397, #150255), else without; else float32.
  channels_last is off on mps, where convolution backward was measured 30x slower in it (#193349).
"""
from __future__ import annotations

import platform
from dataclasses import dataclass

import torch

from .errors import CifarResnetError

MPS_FP16_AUTOCAST = (2, 5)  # PyTorch releases from which mps has fp16 autocast (pytorch/pytorch#99272)
MPS_BF16_AUTOCAST = (2, 6)  # ... bf16 autocast (#139390), on macOS 14 and later
MPS_BF16_MACOS = (14,)
MPS_GRAD_SCALER = (2, 8)  # ... a GradScaler that works on mps (#150255, fixing #142397)


def mps_available() -> bool:
    """Whether Apple's GPU is usable through PyTorch's mps backend."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def select_device(device: torch.device | str | None = None) -> torch.device:
    """``device`` if given (checked), else CUDA when available, else Apple's GPU (mps), else the CPU."""
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CifarResnetError("device 'cuda' was asked for but no CUDA GPU is visible: use --device cpu, "
                               "or on Colab choose Runtime > Change runtime type > GPU")
    if device.type == "mps" and not mps_available():
        raise CifarResnetError("device 'mps' was asked for but PyTorch cannot use Apple's GPU here (it needs "
                               "Apple silicon, macOS 12.3 or later and a PyTorch built with mps): use --device cpu")
    return device


def torch_version() -> tuple[int, int]:
    """The installed PyTorch's (major, minor) release."""
    major, minor = torch.__version__.split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def macos_version() -> tuple[int, ...]:
    """macOS's version, such as (14, 2); () elsewhere."""
    release = platform.mac_ver()[0]
    return tuple(int(part) for part in release.split(".") if part.isdigit()) if release else ()


def mps_has_bf16() -> bool:
    """Whether bf16 autocast works on mps with this PyTorch and macOS."""
    return torch_version() >= MPS_BF16_AUTOCAST and macos_version() >= MPS_BF16_MACOS


def mps_has_grad_scaler() -> bool:
    """Whether this PyTorch's GradScaler works on mps (earlier ones fail in float64, which mps lacks)."""
    return torch_version() >= MPS_GRAD_SCALER


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 autocast pays off."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def gpu_has_bf16(device: torch.device) -> bool:
    """Whether this GPU computes bf16 natively: compute capability 8.0 (Ampere) or newer.

    ``torch.cuda.is_bf16_supported()`` is also true on a T4 (7.5) or a P100 (6.0), where bf16 is
    only emulated and cuDNN has no bf16 convolutions; those GPUs train in fp16 with a gradient scaler.
    """
    return torch.cuda.get_device_capability(device) >= (8, 0)


def has_native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 at full speed."""
    if device.type == "cuda":
        return gpu_has_bf16(device)
    if device.type == "mps":
        return mps_has_bf16()
    return cpu_has_bf16()


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` ('auto', 'bf16', 'fp16', 'off') on ``device``; None = float32."""
    if amp == "off":
        return None
    if device.type == "mps":
        return _mps_autocast_dtype(amp)
    if amp == "fp16":
        if device.type != "cuda":
            raise CifarResnetError("amp='fp16' needs a GPU (CUDA or mps); use 'bf16', 'auto' or 'off' on the CPU")
        return torch.float16
    if amp == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if gpu_has_bf16(device) else torch.float16
    return torch.bfloat16 if cpu_has_bf16() else None


def _mps_autocast_dtype(amp: str) -> torch.dtype | None:
    has_fp16 = torch_version() >= MPS_FP16_AUTOCAST
    if amp == "bf16" and not mps_has_bf16():
        raise CifarResnetError(f"amp='bf16' on mps needs PyTorch {'.'.join(map(str, MPS_BF16_AUTOCAST))} and macOS "
                               f"{MPS_BF16_MACOS[0]} or later (this is PyTorch {torch.__version__}): use 'auto'")
    if amp == "fp16" and not has_fp16:
        raise CifarResnetError(f"amp='fp16' on mps needs PyTorch {'.'.join(map(str, MPS_FP16_AUTOCAST))} or later "
                               f"(this is {torch.__version__}): use 'off' or upgrade PyTorch")
    if amp == "auto":
        return torch.bfloat16 if mps_has_bf16() else torch.float16 if has_fp16 else None
    return torch.bfloat16 if amp == "bf16" else torch.float16


def matmul_dtype(device: torch.device) -> torch.dtype:
    """The dtype ``device`` multiplies matrices fastest in, where a 16-bit result is precise enough (Muon's
    Newton-Schulz iterations): bf16 where it is native, fp16 on GPUs without it, float32 on CPUs without it."""
    if has_native_bf16(device):
        return torch.bfloat16
    return torch.float32 if device.type == "cpu" else torch.float16


def device_description(device: torch.device) -> str:
    """A short human description: the GPU's name, or the CPU and its thread count."""
    if device.type == "cuda":
        return f"CUDA GPU: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return f"Apple GPU (mps, macOS {'.'.join(map(str, macos_version())) or 'unknown'})"
    return f"CPU ({torch.get_num_threads()} threads, bf16 {'native' if cpu_has_bf16() else 'emulated'})"


@dataclass(frozen=True)
class Compute:
    """Where a run computes and how: decided once, then passed along (nanoGPT's ``ctx``).

    dtype:          the autocast dtype; None computes in float32
    scale_gradients: whether a GradScaler guards fp16 gradients against underflow
    channels_last:  whether images and weights are laid out channels-last
    matmul_dtype:   the dtype of Muon's Newton-Schulz iterations
    """

    device: torch.device
    dtype: torch.dtype | None = None
    scale_gradients: bool = False
    channels_last: bool = True
    matmul_dtype: torch.dtype = torch.bfloat16

    @classmethod
    def choose(cls, device: torch.device | str | None = None, amp: str = "auto",
               channels_last: bool = True) -> "Compute":
        """``device`` (by default the GPU when there is one) and what the rules above give there."""
        device = select_device(device)
        dtype = autocast_dtype(amp, device)
        scale = dtype == torch.float16 and (device.type != "mps" or mps_has_grad_scaler())
        return cls(device, dtype, scale, channels_last and device.type != "mps", matmul_dtype(device))

    def autocast(self) -> torch.autocast:
        """The context that runs a forward pass in this precision."""
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A GradScaler for this device, enabled only where gradients are scaled."""
        return torch.amp.GradScaler(self.device.type, enabled=self.scale_gradients)

    @property
    def precision(self) -> str:
        """How a run computes: 'bf16 autocast', 'fp16 autocast with gradient scaling' or 'float32'."""
        if self.dtype == torch.float16:
            return f"fp16 autocast {'with' if self.scale_gradients else 'without'} gradient scaling"
        return "bf16 autocast" if self.dtype == torch.bfloat16 else "float32"

    def __str__(self) -> str:
        return f"{device_description(self.device)} in {self.precision}"
