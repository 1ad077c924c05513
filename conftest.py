"""Tests and the notebooks that nbval executes run in smoke mode unless told otherwise."""
import os

os.environ.setdefault("CIFAR_RESNET_SMOKE", "1")
