"""A student's own network, named as ``module:builder``: a function that returns an ``nn.Module``.

The name follows the ``module:attribute`` convention of uvicorn and gunicorn: ``importlib`` finds
the module on the path, the working folder first (for example a ``mynet.py`` beside the notebooks),
and calls the builder with the keyword arguments given. The network must map normalized images
(N, 3, 32, 32) to logits (N, 10). A checkpoint of such a network records the builder's name and
keyword arguments, not code: loading it imports and runs the builder again, which is the
student's own code, so load only checkpoints whose builder you trust.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .config import ModelConfig
from .errors import CifarResnetError
from .model import build_model

NUM_CLASSES = 10


@dataclass(frozen=True)
class Builder:
    """``module:function`` and the keyword arguments to call it with."""

    path: str
    kwargs: tuple[tuple[str, Any], ...] = ()  # (name, value) pairs, so that a Builder is hashable

    @classmethod
    def parse(cls, path: str, kwargs: dict | str | None = None) -> "Builder":
        """A Builder from 'module:function' and keyword arguments (a dict or a JSON object)."""
        module, sep, function = path.partition(":")
        if not (module and sep and function):
            raise CifarResnetError(f"--model {path!r}: name a builder as module:function, e.g. mynet:se_resnet")
        if isinstance(kwargs, str):
            try:
                kwargs = json.loads(kwargs)
            except json.JSONDecodeError as e:
                raise CifarResnetError(f"--model-kwargs {kwargs!r} is not JSON ({e}); "
                                       f"give an object such as '{{\"width\": 32}}'") from None
        if not isinstance(kwargs or {}, dict):
            raise CifarResnetError(f"the keyword arguments of {path} must be a JSON object, not {kwargs!r}")
        return cls(path, tuple(sorted((kwargs or {}).items())))

    @classmethod
    def of_module(cls, module: nn.Module) -> "Builder":
        """The builder that rebuilds ``module``: its class, called without arguments."""
        return cls(f"{type(module).__module__}:{type(module).__qualname__}")

    def function(self):
        """The builder function, imported (the working folder is searched first)."""
        module_name, _, attribute = self.path.partition(":")
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            owner = importlib.import_module(module_name)
        except ImportError as e:
            raise CifarResnetError(f"builder {self.path}: module {module_name!r} cannot be imported ({e}); put "
                                   f"{module_name}.py in the working folder or on PYTHONPATH") from None
        except Exception as e:  # the student's module itself failed while importing
            raise CifarResnetError(f"builder {self.path}: importing {module_name!r} failed "
                                   f"({type(e).__name__}: {e})") from None
        function = owner
        for name in attribute.split("."):
            function = getattr(function, name, None)
        if function is None:
            raise CifarResnetError(f"builder {self.path}: {module_name!r} has no {attribute!r}")
        if not callable(function):
            raise CifarResnetError(f"builder {self.path}: {attribute!r} is a {type(function).__name__}, "
                                   f"not a function that returns an nn.Module")
        return function

    def build(self, device: torch.device | str | None = None) -> nn.Module:
        """Call the builder and check that it gives an nn.Module mapping (N, 3, 32, 32) to (N, 10)."""
        function = self.function()
        try:
            with torch.device(device or "cpu"):
                network = function(**dict(self.kwargs))
        except Exception as e:
            raise CifarResnetError(f"builder {self.path} failed: {type(e).__name__}: {e}") from None
        if not isinstance(network, nn.Module):
            raise CifarResnetError(f"builder {self.path} returned a {type(network).__name__}, not an nn.Module")
        check_logits(network, self.path)
        return network

    def to_dict(self) -> dict:
        return {"builder": self.path, "kwargs": dict(self.kwargs)}

    @classmethod
    def from_dict(cls, data: dict) -> "Builder":
        return cls.parse(data["builder"], data.get("kwargs") or {})

    def code(self) -> str:
        """The call that builds the network."""
        return f"{self.path}({', '.join(f'{k}={v!r}' for k, v in self.kwargs)})"


Network = ModelConfig | Builder


def check_logits(network: nn.Module, name: str) -> None:
    """Raise CifarResnetError unless ``network`` maps two images to (2, 10) logits."""
    device = next(network.parameters(), torch.empty(0, device="cpu")).device
    was_training = network.training
    try:
        with torch.no_grad():
            logits = network.eval()(torch.zeros(2, 3, 32, 32, device=device))
    except Exception as e:
        raise CifarResnetError(f"{name}: the network fails on a batch of images (2, 3, 32, 32): "
                               f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    finally:
        network.train(was_training)
    shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
    if shape != (2, NUM_CLASSES):
        raise CifarResnetError(f"{name}: the network maps images (2, 3, 32, 32) to {shape}, "
                               f"but CIFAR-10 needs logits of shape (2, {NUM_CLASSES})")


def build_network(network: Network, device: torch.device | str | None = None) -> nn.Module:
    """The freshly initialised network of a ModelConfig (the course's ResNet) or of a Builder."""
    return build_model(network, device) if isinstance(network, ModelConfig) else network.build(device)


def network_from_dict(data: dict) -> Network:
    """A ModelConfig or a Builder from its ``to_dict`` form."""
    return Builder.from_dict(data) if "builder" in data else ModelConfig.from_dict(data)
