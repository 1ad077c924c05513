"""The benchmarks' re-implementations of airbench's designs, and the utilization figure's two measurements."""
import sys
from pathlib import Path

import pytest
import torch

from cifar_resnet import Normalization, build_model, get_preset
from cifar_resnet.budget import count_training_flops
from cifar_resnet.device import Compute

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import airbench94_muon  # noqa: E402
from utilization import matmul_peak, run_flops_per_image, training_flops_per_image  # noqa: E402


def test_airbench94_muon_steps_every_trainable_parameter_once_and_its_filters_with_muon():
    net = airbench94_muon.make_net()
    optimizer, whiten_bias = airbench94_muon.make_optimizer(net, 2000, Compute.choose("cpu"))
    grouped = [p for group in optimizer.param_groups for p in group["params"]]
    trainable = [p for p in net.parameters() if p.requires_grad]
    assert len(grouped) == len({id(p) for p in grouped}) == len(trainable)
    assert {id(p) for p in grouped} == {id(p) for p in trainable} and all(p is not net[0].weight for p in grouped)
    [muon] = [g for g in optimizer.param_groups if g.get("orthogonalize")]
    assert all(p.ndim == 4 for p in muon["params"]) and len(muon["params"]) == 6  # two convs in each of 3 groups
    assert (muon["lr"], muon["muon_momentum"]) == (0.24, 0.6) and whiten_bias["params"] == [net[0].bias]
    head = net[-1]
    assert head.bias is None and head.weight.std().item() == pytest.approx(1.0, rel=1e-5)
    assert head(torch.ones(1, 256)).shape == (1, 10)


def test_airbench94_muon_trains_on_a_time_budget():
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(64) % 10
    model, run = airbench94_muon.train(images, labels, Normalization.from_images(images), minutes=0.01)
    assert run["steps"] >= 1 and run["images"] == 64 * run["steps"] and run["images_per_s"] > 0
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_training_flops_per_image_counts_what_the_budget_counts():
    config = get_preset("cpu-fast").model
    model = build_model(config)
    model.stem[0].weight.requires_grad_(False)  # the whitened stem does not train
    assert training_flops_per_image(model) == count_training_flops(config, frozen_stem=True)


def test_a_run_whose_stem_bias_freezes_part_way_counts_both_phases_by_their_shares():
    model = build_model(get_preset("cpu-fast").model)
    model.stem[0].weight.requires_grad_(False)
    learning, frozen = (training_flops_per_image(model, {"stem.0.bias": learns}) for learns in (True, False))
    assert frozen < learning and model.stem[0].bias.requires_grad  # counted on a copy
    assert run_flops_per_image(model, "stem.0.bias", 0.25) == pytest.approx(0.25 * learning + 0.75 * frozen)
    net = airbench94_muon.make_net()
    assert run_flops_per_image(net, "0.bias", 1.0) == training_flops_per_image(net)


def test_matmul_peak_is_a_positive_rate():
    assert matmul_peak(Compute.choose("cpu"), size=256, repeats=1) > 0
