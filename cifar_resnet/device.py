"""Which device to run on and which autocast precision to use: one code path for CPU and CUDA."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import CifarResnetError


def select_device(device: torch.device | str | None = None) -> torch.device:
    """``device`` if given (checked), else CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CifarResnetError("device 'cuda' was asked for but no CUDA GPU is visible: use --device cpu, "
                               "or on Colab choose Runtime > Change runtime type > GPU")
    return device


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 autocast pays off."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` ('auto', 'bf16', 'fp16', 'off') on ``device``; None = float32."""
    if amp == "off":
        return None
    if amp == "fp16":
        if device.type != "cuda":
            raise CifarResnetError("amp='fp16' needs a CUDA GPU; use 'bf16', 'auto' or 'off' on the CPU")
        return torch.float16
    if amp == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if gpu_has_bf16(device) else torch.float16
    return torch.bfloat16 if device.type == "cpu" and cpu_has_bf16() else None


def gpu_has_bf16(device: torch.device) -> bool:
    """Whether this GPU computes bf16 natively: compute capability 8.0 (Ampere) or newer.

    ``torch.cuda.is_bf16_supported()`` is also true on a T4 (7.5) or a P100 (6.0), where bf16 is
    only emulated and cuDNN has no bf16 convolutions; those GPUs train in fp16 with a gradient scaler.
    """
    return torch.cuda.get_device_capability(device) >= (8, 0)


def precision_name(dtype: torch.dtype | None) -> str:
    """How a run computes: 'bf16 autocast', 'fp16 autocast with gradient scaling' or 'float32'."""
    return {torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast with gradient scaling"}.get(
        dtype, "float32")


def device_description(device: torch.device) -> str:
    """A short human description: the GPU's name, or the CPU and its thread count."""
    if device.type == "cuda":
        return f"CUDA GPU: {torch.cuda.get_device_name(device)}"
    return f"CPU ({torch.get_num_threads()} threads, bf16 {'native' if cpu_has_bf16() else 'emulated'})"


@dataclass(frozen=True)
class Compute:
    """Where a run computes and in which precision: decided once, then passed along (nanoGPT's ``ctx``)."""

    device: torch.device
    dtype: torch.dtype | None = None  # the autocast dtype; None computes in float32

    @classmethod
    def choose(cls, device: torch.device | str | None = None, amp: str = "auto") -> "Compute":
        """``device`` (by default the GPU when there is one) and the autocast dtype ``amp`` gives there."""
        device = select_device(device)
        return cls(device, autocast_dtype(amp, device))

    def autocast(self) -> torch.autocast:
        """The context that runs a forward pass in this precision."""
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None)

    def __str__(self) -> str:
        return f"{device_description(self.device)} in {precision_name(self.dtype)}"
