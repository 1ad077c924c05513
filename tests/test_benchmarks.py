"""The benchmark script runs end to end at smoke size and prints its JSON line (no timing is asserted)."""
import json
import subprocess
import sys
from pathlib import Path

from cifar_resnet import memory
from cifar_resnet.search_record import record_study, record_table

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


def test_gpu_check_smoke_runs_every_gpu_preset_and_cpu_fast_and_prints_the_readme_table():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    presets = [r["preset"] for r in result["results"]]
    assert presets[-4:] == ["reference", "gpu-94", "gpu-95", "cpu-fast"]
    for r in result["results"]:
        assert 0 <= r["val_acc"] <= 1 and set(r["test_acc"]) == {"off", "flip", "flip-shift"}
        assert r["minutes"] > 0 and r["images_per_s"] > 0 and r["peak_memory_mb"] > 0 and r["precision"]
    lines = proc.stdout.splitlines()
    header = lines.index("| preset | epochs (of) | minutes | images/s | peak memory | precision | val | test | flip TTA "
                         "| flip-shift TTA |")
    assert lines[header - 2].startswith(f"{result['device']}, {result['date']}, torch ")  # the GPU's name, the date
    rows = lines[header + 2:header + 2 + len(presets)]
    assert [row.split(" | ")[0] for row in rows] == [f"| {name}" for name in presets]
    assert all(row.count("|") == 11 and "%" in row for row in rows)


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


def test_experiments_smoke_writes_the_list_it_runs(tmp_path):
    out = tmp_path / "experiments.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "experiments.py"), "--smoke", "--minutes", "0.01",
                           "--only", "augmentations", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = json.loads(out.read_text())["augmentations"]
    assert saved["date"] and saved["machine"] and saved["minutes"] == 0.01
    assert [r["label"] for r in saved["rows"]] == ["no augmentation", "flips only", "flips and crops: airbench94's recipe"]
    assert all(0 <= r["val_acc"] <= 1 and 0 <= r["val_acc_tta"] <= 1 and r["epochs"] > 0 for r in saved["rows"])
    assert json.loads(proc.stdout.strip().splitlines()[-1])["augmentations"] == saved["rows"]


def test_search_study_smoke_writes_its_trials_counts_and_presets_and_resumes(tmp_path):
    out, runs = tmp_path / "search.json", tmp_path / "runs"
    command = [sys.executable, str(ROOT / "benchmarks" / "search_study.py"), "--smoke", "--minutes-per-trial", "0.01",
               "--runs", str(runs), "--out", str(out)]
    proc = subprocess.run([*command, "--trials", "2"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = json.loads(out.read_text())
    assert saved["machine"] and saved["date"] and saved["budget"] == {"epochs": None, "minutes": 0.01}
    assert len(saved["trials"]) == 2 and sum(saved["counts"].values()) == 2
    assert [row["label"] for row in saved["presets"]] == ["tiny", "small", "cpu-fast", "four-stage", "reference"]
    study = record_study(saved)  # what notebook 06 draws with Optuna's plots
    assert [t.state.name for t in study.trials] == [row["state"] for row in saved["trials"]]
    assert [t.params for t in study.trials] == [row["params"] for row in saved["trials"]]
    finished = [row for row in saved["trials"] if row["state"] == "COMPLETE"]
    assert [t.values for t in record_study(saved, ("accuracy", "parameters")).trials] == [
        [row["value"], row["parameters"]] for row in finished]
    table = record_table(saved)
    assert "preset cpu-fast" in table and f"{len(saved['trials'])} trials of 0.01 minutes each" in table
    proc = subprocess.run([*command, "--trials", "3"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads(out.read_text())
    assert [t["number"] for t in again["trials"]] == [0, 1, 2] and again["presets"] == saved["presets"]  # kept


def test_search_workers_smoke_times_two_workers_on_one_study(tmp_path):
    out = tmp_path / "workers.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "search_workers.py"), "--smoke", "--settings",
                           "2:1", "--trials-per-worker", "1", "--out", str(out)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = json.loads(out.read_text())
    assert saved["machine"] and saved["date"] and saved["cores"] and saved["preset"] == "cpu-fast"
    [row] = saved["rows"]
    assert (row["workers"], row["threads_per_worker"], row["trials"], row["complete"]) == (2, 1, 2, 2)
    assert row["trials_per_hour"] > 0 and row["seconds"] >= row["seconds_per_trial"] > 0


def test_versus_airbench_smoke_scores_each_network_on_both_sets():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "versus_airbench.py"), "--smoke", "--minutes",
                           "0.02", "--repeat", "2", "--split", "--against", "airbench94_muon", "airbench94",
                           "--channels", "32", "96", "128"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["minutes"] == 0.02 and result["against"] == ["airbench94_muon", "airbench94"]
    assert set(result["scored"]) == {"validation", "test"} and set(result["means"]) == {*result["against"], "cpu-fast"}
    assert result["network"]["channels"] == [32, 96, 128] and result["network"]["style"] == "airbench"
    for name, means in result["means"].items():
        assert means["epochs"] > 0 and means["images_per_s"] > 0, name
        assert all(0 <= acc <= 1 for by_mode in means["acc"].values() for acc in by_mode.values()), name
        assert len(result["runs"][name]) == 2, name
    gap = result["tta_gaps"]["airbench94"]["validation"]
    assert gap == result["means"]["cpu-fast"]["acc"]["validation"]["flip-shift"] - \
        result["means"]["airbench94"]["acc"]["validation"]["flip-shift"]
    first, second = (proc.stdout.split(f"round {k}, seed {k - 1}, ")[1].split()[0] for k in (1, 2))
    assert (first, second) == ("airbench94_muon", "airbench94")  # the second round's order turns by one


def test_cost_smoke_times_each_width_and_batch_and_draws_the_budgets(tmp_path):
    budgets = []
    for k, (minutes, acc) in enumerate(((10, 0.88), (5, 0.85), (10, 0.9))):  # versus_airbench.py outputs: JSON last
        budgets.append(tmp_path / f"versus_{k}.json")
        budgets[-1].write_text("a table\n" + json.dumps({"minutes": minutes, "cpu_fast_acc": acc, "airbench_acc": acc,
                                                           "scored_images": 1000}) + "\n")
    budgets.append(tmp_path / "versus_new.json")  # the JSON line since --against: means per network and set
    means = {name: {"acc": {"test": {"flip-shift": 0.9}}} for name in ("cpu-fast", "airbench94_muon")}
    budgets[-1].write_text(json.dumps({"minutes": 15, "means": means, "scored": {"test": 1000}}) + "\n")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cost.py"), "--smoke",
                           "--figure", str(tmp_path / "cost.png"), "--budgets", *map(str, budgets)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout.strip().splitlines()[-1])["rows"]
    assert [(r["width"], r["batch_size"]) for r in rows] == [(0.25, 16), (0.25, 32), (0.5, 16), (0.5, 32)]
    assert all(r["images_per_s"] > 0 and r["epoch_minutes"] > 0 for r in rows)
    assert rows[0]["parameters"] < rows[2]["parameters"] and (tmp_path / "cost.png").stat().st_size > 0


def test_profile_training_smoke_sums_each_networks_time_by_kind():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "profile_training.py"), "--smoke",
                           "--same-memory"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["same_memory"] and "all keep freed memory" in proc.stdout
    assert set(result["runs"]) == {"airbench94", "airbench94_muon", "cpu-fast"}
    for name, run in result["runs"].items():
        assert run["images"] > 0 and run["seconds"]["convolution"] > 0, name
        assert sum(run["seconds"].values()) == run["total_seconds"], name
    assert "convolution" in proc.stdout and "images trained" in proc.stdout


def test_step_speed_smoke_times_each_way_side_by_side():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "step_speed.py"), "--smoke"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    ways = {"airbench94", "airbench94, stem bias learning", "cpu-fast eager", "cpu-fast eager, stem bias learning",
            "cpu-fast eager, oneDNN's weight gradients", "cpu-fast forward and backward", "cpu-fast optimizer step",
            "cpu-fast compiled"}
    assert set(result["images_per_s"]) == ways and set(result["warm_up_seconds"]) == ways
    assert all(len(speeds) == 2 and min(speeds) > 0 for speeds in result["images_per_s"].values())
    assert "/ airbench94" in proc.stdout


def test_small_map_conv_smoke_times_every_convolution_both_ways():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "small_map_conv.py"), "--smoke"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    layers = result["ms_per_pass"]
    assert len(layers) == 9 and all(t["nn.Conv2d"] > 0 and t["Conv2d"] > 0 for t in layers.values())
    assert {tuple(t["input"][2:]) for t in layers.values()} == {(31, 31), (15, 15), (7, 7), (3, 3)}


def test_run_timeline_smoke_accounts_for_each_run_to_the_second():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_timeline.py"), "--smoke", "--minutes",
                           "0.15", "--repeat", "2", "--same-memory"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["same_memory"] and "both keep freed memory" in proc.stdout
    assert [list(runs) for runs in result["rounds"]] == [["airbench94", "cpu-fast"], ["cpu-fast", "airbench94"]]
    for name, run in result["rounds"][1].items():
        assert run["steps"] >= 2 and run["steady_step_s"] > 0, name
        accounted = run["steps"] * run["steady_step_s"] + sum(run["extra_s"].values())
        assert abs(accounted - run["seconds"]) < 1e-6 * run["seconds"], name
    assert len(result["ratios"]) == 2 and result["mean_ratios"]["images_per_s"] > 0
    assert "frozen-phase spread" in proc.stdout and "the mean of 2 round(s)" in proc.stdout


def test_stage_widths_smoke_times_each_width_beside_airbench94():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "stage_widths.py"), "--smoke", "--widths",
                           "64,192,256", "32,192,256"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(result["means"]) == {"airbench94", "64/192/256", "32/192/256"}
    assert all(len(speeds) == 2 and min(speeds) > 0 for speeds in result["images_per_s"].values())
    ways = result["ways"]
    assert ways["32/192/256"]["training_flops"] < ways["64/192/256"]["training_flops"]
    assert ways["32/192/256"]["parameters"] < ways["64/192/256"]["parameters"] < 5_000_000
    assert "/ airbench94" in proc.stdout


def test_memory_reuse_smoke_counts_the_page_faults_kept_memory_saves():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "memory_reuse.py"), "--smoke"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    means = json.loads(proc.stdout.strip().splitlines()[-1])["means"]
    assert set(means) == {f"{name}, {setting}" for name in ("airbench94", "cpu-fast", "cpu-fast predicting")
                          for setting in ("as it is", "kept for reuse")}
    assert all(mean["ms"] > 0 and mean["page_faults"] >= 0 and mean["peak_rss_mb"] > 0 for mean in means.values())
    if memory.glibc() is not None:  # airbench94's 1,000-image batch maps blocks over glibc's threshold afresh
        assert means["airbench94, kept for reuse"]["page_faults"] < means["airbench94, as it is"]["page_faults"] / 3
