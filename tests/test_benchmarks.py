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
