"""The reference course pipeline and cifar_resnet, measured side by side in one run.

B1 augmentation   images/s: per-image PIL pipeline in a DataLoader (batch 128, 2 workers)
                  vs cifar_resnet.augment on uint8 chunks of 4,096 images, as fit calls it (same
                  operations, RandAugment included)
B2 training step  images/s of full steps on the 4,916,284-parameter reference model: NCHW float32 fed by
                  the reference loader vs cifar_resnet.fit (channels_last, bf16 autocast where the CPU
                  has native bf16, batched augmentation on the device)
B3 Kaggle inference of N images with the reference model, each way in a fresh process: all images in
                  one float32 batch vs cifar_resnet.predict_logits (batches of 500); time and peak RSS

Prints a table, then one JSON line (ratios > 1 mean cifar_resnet is better).
  python benchmarks/compare.py --quick          # B1-B3, a few minutes
  python benchmarks/compare.py --quick --smoke  # tiny sizes: checks that everything runs
Data: $CIFAR_RESNET_DATA (real CIFAR-10), or the synthetic smoke data with --smoke.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

from reference import BATCH, REFERENCE, reference_loader

from cifar_resnet import Normalization, TrainConfig, build_model, fit, load_cifar10, predict_logits
from cifar_resnet.augment import AUGMENT_CHUNK, augment
from cifar_resnet.device import cpu_has_bf16, device_description, select_device


def b1_augmentation(images, labels, normalization, n_images: int, rounds: int = 4) -> dict:
    """Images/s of the augmentation alone, each way, over ``n_images`` images each, in ``rounds`` alternating
    rounds (reference, then cifar_resnet), so that both ways see the same load on a shared machine.

    Each reference round starts its DataLoader's workers, waits for a first batch, times its share of the images
    and shuts the workers down, so none of them prefetches while cifar_resnet is timed."""
    fill = tuple(round(255 * m) for m in normalization.mean)
    generator = torch.Generator().manual_seed(0)
    chunk = min(AUGMENT_CHUNK, len(images) // 2)  # as fit augments: a few batches per call
    batch = lambda i: images[(i * chunk) % (len(images) - chunk):][:chunk]  # noqa: E731
    normalization(augment(batch(0), randaugment=True, fill=fill, generator=generator))  # warm-up
    per_round, chunks = max(1, n_images // rounds), 1
    times = {"reference": [0.0, 0], "project": [0.0, 0]}  # seconds, images
    for _ in range(rounds):
        loader = iter(reference_loader(images, labels, normalization))
        next(loader)  # workers started and warm
        start, seen = time.perf_counter(), 0
        while seen < per_round:
            seen += len(next(loader)[0])
        times["reference"][0] += time.perf_counter() - start
        times["reference"][1] += seen
        del loader  # its workers stop before the other way is timed
        start, seen = time.perf_counter(), 0
        while seen < per_round:
            seen += len(normalization(augment(batch(chunks), randaugment=True, fill=fill, generator=generator)))
            chunks += 1
        times["project"][0] += time.perf_counter() - start
        times["project"][1] += seen
    reference, project = (times[way][1] / times[way][0] for way in ("reference", "project"))
    return {"reference_images_per_s": reference, "project_images_per_s": project, "ratio": project / reference,
            "rounds": rounds}


def b2_training(data, normalization, steps: int, device: torch.device) -> dict:
    """Images/s of whole training steps on the reference model, each way."""
    torch.manual_seed(0)
    model = build_model(REFERENCE).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    criterion = nn.CrossEntropyLoss()
    loader = iter(reference_loader(data.train_images, data.train_labels, normalization))

    def step():
        x, y = next(loader)
        x, y = x.to(device), y.to(device)
        loss = criterion(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    reference = steps * BATCH / (time.perf_counter() - start)

    n_train, n_val = (steps + 1) * BATCH, 10  # one extra step, as the reference had its warm-up step
    config = TrainConfig(epochs=1, batch_size=BATCH, val_size=n_val, erasing=0.5, randaugment=True, warmup=0.0)
    subset = type(data)(data.train_images[:n_train + n_val], data.train_labels[:n_train + n_val],
                        data.test_images[:1], data.test_labels[:1], data.source)
    history = fit(REFERENCE, config, subset, device=device, progress=False).history  # its first step included
    project = history[0]["images_per_s"]
    return {"reference_images_per_s": reference, "project_images_per_s": project, "ratio": project / reference,
            "project_precision": "bf16 autocast" if (device.type == "cuda" or cpu_has_bf16()) else "float32"}


def inference_worker(way: str, n_images: int) -> None:
    """Run one way of B3 in this (fresh) process and print its time and peak RSS as JSON."""
    torch.manual_seed(0)
    images = torch.randint(0, 256, (n_images, 3, 32, 32), dtype=torch.uint8)  # pixels do not change the cost
    normalization = Normalization((0.49, 0.48, 0.45), (0.25, 0.24, 0.26))
    model = build_model(REFERENCE).eval()
    start = time.perf_counter()
    if way == "reference":
        with torch.no_grad():
            predictions = model(normalization(images)).argmax(1)
    else:
        predictions = predict_logits(model, images, normalization, batch_size=500).argmax(1)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_rss_mb(), "predictions": len(predictions)}))


def peak_rss_mb() -> float:
    """This process's peak resident memory. On Linux /proc's VmHWM, which starts afresh at exec: a child spawned
    with vfork, as subprocess does, takes its parent's peak into ru_maxrss."""
    status = Path("/proc/self/status")
    if status.exists():
        kilobytes = next(line.split()[1] for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
        return int(kilobytes) / 1024
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 2 ** 20 if sys.platform == "darwin" else maxrss / 1024  # bytes on macOS, kilobytes elsewhere


def b3_inference(n_images: int) -> dict:
    result = {}
    for way in ("reference", "project"):
        out = subprocess.run([sys.executable, __file__, "--inference-worker", way, "--images", str(n_images)],
                             capture_output=True, text=True, check=True).stdout
        result[way] = json.loads(out.strip().splitlines()[-1])
    return {"images": n_images, "reference": result["reference"], "project": result["project"],
            "time_ratio": result["reference"]["seconds"] / result["project"]["seconds"],
            "memory_ratio": result["reference"]["peak_rss_mb"] / result["project"]["peak_rss_mb"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="B1-B3 (the only benchmarks here so far)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on smoke data: checks that it runs")
    parser.add_argument("--inference-worker", choices=["reference", "project"], help=argparse.SUPPRESS)
    parser.add_argument("--images", type=int, default=10_000, help="B3: images to predict")
    args = parser.parse_args(argv)
    if args.inference_worker:
        inference_worker(args.inference_worker, args.images)
        return 0

    device = select_device()
    data = load_cifar10(smoke=args.smoke)
    normalization = Normalization.from_images(data.train_images)
    sizes = dict(aug=256, rounds=1, steps=1, infer=256) if args.smoke else dict(aug=32_768, rounds=4, steps=6,
                                                                             infer=args.images)
    print(f"{data}\ndevice: {device_description(device)}; torch {torch.__version__}; {platform.processor() or platform.machine()}")

    b1 = b1_augmentation(data.train_images, data.train_labels, normalization, sizes["aug"], sizes["rounds"])
    b2 = b2_training(data, normalization, sizes["steps"], device)
    b3 = b3_inference(sizes["infer"])
    rows = [
        ("B1 augmentation (images/s)", b1["reference_images_per_s"], b1["project_images_per_s"], b1["ratio"]),
        ("B2 training step (images/s)", b2["reference_images_per_s"], b2["project_images_per_s"], b2["ratio"]),
        (f"B3 inference of {b3['images']:,} (s)", b3["reference"]["seconds"], b3["project"]["seconds"], b3["time_ratio"]),
        ("B3 peak memory (RSS, MB)", b3["reference"]["peak_rss_mb"], b3["project"]["peak_rss_mb"], b3["memory_ratio"]),
    ]
    print(f"\n{'benchmark':<32} {'reference':>12} {'cifar_resnet':>13} {'ratio':>7}")
    for name, ref, ours, ratio in rows:
        print(f"{name:<32} {ref:>12,.1f} {ours:>13,.1f} {ratio:>6.2f}x")
    print(f"(B2 precision: {b2['project_precision']}; ratios > 1 mean cifar_resnet is better)")
    print(json.dumps({"aug_ratio": b1["ratio"], "train_ratio": b2["ratio"], "infer_time_ratio": b3["time_ratio"],
                      "infer_mem_ratio": b3["memory_ratio"], "b1": b1, "b2": b2, "b3": b3,
                      "device": device_description(device), "smoke": args.smoke}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
