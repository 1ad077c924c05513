"""The benchmark script runs end to end at smoke size and prints its JSON line (no timing is asserted)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_compare_quick_smoke_prints_the_ratios():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "compare.py"), "--quick", "--smoke"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("aug_ratio", "train_ratio", "infer_time_ratio", "infer_mem_ratio"):
        assert result[key] > 0, key
    assert "B1 augmentation" in proc.stdout and "B3 peak memory" in proc.stdout


def test_time_to_accuracy_smoke_prints_both_curves(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "time_to_accuracy.py"), "--smoke",
                           "--minutes", "0.05", "--points", "2", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(result["reference_curve"]) == 2 and result["cpu_fast_curve"]
    for key in ("cpu_fast_test_acc", "cpu_fast_split_test_acc", "cpu_fast_split_val_acc"):
        assert set(result[key]) == {"off", "flip", "flip-shift"}, key
    assert result["cpu_fast_epochs"] and all(0 <= r["val_acc"] <= 1 for r in result["cpu_fast_curve"])
    assert (tmp_path / "time_to_accuracy.png").stat().st_size > 0


def test_training_flops_of_the_gpu_recipes():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "training_flops.py")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["gpu_95_pflops"] <= 1.5 and result["gpu_94_pflops"] < result["gpu_95_pflops"]
    assert 13.8 < result["reference_pflops"] < 13.9


def test_gpu_check_smoke_runs_the_three_gpu_presets_on_the_cpu():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [r["preset"] for r in result["results"]] == ["reference", "gpu-94", "gpu-95"]
    for r in result["results"]:
        assert 0 <= r["val_acc"] <= 1 and set(r["test_acc"]) == {"off", "flip", "flip-shift"}
        assert r["minutes"] > 0 and r["images_per_s"] > 0 and r["peak_memory_mb"] > 0 and r["autocast"]
    assert "gpu-95" in proc.stdout and "peak MB" in proc.stdout


def test_gpu_check_refuses_to_run_without_a_gpu_unless_smoke():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "no CUDA GPU is visible" in proc.stderr


def test_explorer_update_times_fresh_and_cached_changes():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "explorer_update.py"), "--changes", "3"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["fresh_median_ms"] > 0 and result["cached_median_ms"] > 0
