"""The design search: its space, its storage (embedded, and a real PostgreSQL server with workers that vanish),
its leaderboard, and its refusals."""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import postgres_cluster
import pytest

from cifar_resnet.cli import main
from cifar_resnet.config import PARAMETER_BUDGET, ConfigurationError, ModelConfig
from cifar_resnet.run_folder import read_history
from cifar_resnet.search import TrialBudget, open_study, study_identity
from cifar_resnet.search_space import DEFAULT_SPACE, Sampler, base_recipe, check_budget, load_space, smallest_model
from cifar_resnet.study_storage import masked, open_storage, scrubbed

# Small networks on the smoke subset; stage 3's 4,096 channels are far over the budget (pruned untrained).
TINY_SPACE = {"base": "tiny",
              "model": {"style": "torchvision", "stages": [2, 3], "blocks": [1],
                        "channels": [[8, 16], [16, 32], [32, 4096]], "pool": "global"},
              "train": {"lr": {"low": 0.05, "high": 0.3, "log": True}, "label_smoothing": [0.0, 0.1]}}


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def board_of(capsys, *argv) -> dict:
    code, out, _ = run(capsys, "search", "--show", "--json", *argv)
    assert code == 0
    return json.loads(out.strip().splitlines()[-1])


def assert_agrees_with_run_folders(board: dict, folder: Path) -> None:
    """Every trial trained has its folder and the leaderboard's value is its last validation score; no trial
    over the budget was trained."""
    for row in board["trials"]:
        if row["parameters"] is not None and row["parameters"] > PARAMETER_BUDGET:
            assert row["state"] == "PRUNED" and not (folder / row["run_folder"]).exists()
        elif row["state"] == "COMPLETE":
            history = read_history(folder / row["run_folder"])
            assert row["value"] == history[-1]["val_acc"]
            assert (folder / row["run_folder"] / "checkpoint.pt").is_file()
    numbers = [row["number"] for row in board["trials"]]
    assert numbers == list(range(len(numbers)))  # every trial once


# The space


def test_the_default_space_fits_the_budget_and_draws_course_networks():
    space = load_space(None)
    assert space == DEFAULT_SPACE and check_budget(space) < PARAMETER_BUDGET
    largest = Sampler(space, lambda name, value: value["high"] if isinstance(value, dict) else max(value))
    model, recipe = largest.model(), largest.recipe(base_recipe(space))
    assert model.stages == 4 and model.blocks == (2, 2, 2, 2) and model.channels == (96, 256, 384, 512)
    assert model.pool == model.feature_sizes[-1] and model.style == "airbench"
    assert (recipe.lr, recipe.batch_size, recipe.optimizer, recipe.val_size) == (3.0, 1024, "sgd", None)
    assert smallest_model(space).code() == ("ModelConfig(blocks=(1, 1, 1), channels=(32, 64, 128), kernel=3, "
                                            "skip_kernel=1, pool=3, downsample='maxpool', style='airbench')")


def test_a_fixed_value_is_never_searched_and_per_stage_lists_give_each_stage_its_own_choices():
    asked = []
    space = {"model": {"stages": 3, "blocks": [[1], [1, 2], [2]], "channels": [16, 32], "pool": 8}}
    Sampler(space, lambda name, value: asked.append((name, value)) or value[0]).model()
    assert asked == [("blocks_2", [1, 2]), ("channels_1", [16, 32]), ("channels_2", [16, 32]),
                     ("channels_3", [16, 32])]


@pytest.mark.parametrize("space, words", [
    ({"model": {"blocks": 1, "channels": 8}, "extra": 1}, "unknown space keys ['extra']"),
    ({"model": {"blocks": 1, "chanels": 8}}, "unknown model keys ['chanels']"),
    ({"model": {"blocks": 1, "channels": 8}, "train": {"epochs": [1, 2]}}, "--epochs-per-trial"),
    ({"model": {"blocks": 1, "channels": 8}, "train": {"lr": {"low": 1, "high": 0.1}}}, "low < high"),
    ({"model": {"blocks": 1, "channels": 8}, "train": {"optimizer": ["sgd", "adam"]}}, "optimizer = 'adam'"),
    ({"model": {"stages": [3, 4], "blocks": 1, "channels": [[8], [16], [32]]}}, "gives choices for 3 stages"),
])
def test_a_space_no_search_could_use_is_refused_naming_the_key(space, words):
    with pytest.raises(ConfigurationError) as info:
        load_space(space)
    assert words in str(info.value)


# Storage and the command line's refusals


def test_a_password_is_never_shown():
    url = "postgresql://team:s3cr%40t@db.example.org:5432/search"
    assert masked(url) == "postgresql://team:***@db.example.org:5432/search"
    assert scrubbed("FATAL: password s3cr@t or s3cr%40t rejected", url) == "FATAL: password *** or *** rejected"


def test_the_storage_url_comes_from_the_flag_the_environment_or_a_colab_or_kaggle_secret(monkeypatch):
    import types

    from cifar_resnet.study_storage import storage_url

    monkeypatch.delenv("CIFAR_RESNET_STORAGE", raising=False)
    assert storage_url(None) is None  # embedded
    colab = types.ModuleType("google.colab")
    colab.userdata = types.SimpleNamespace(get=lambda name: {"CIFAR_RESNET_STORAGE": "postgresql://colab"}[name])
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    assert storage_url(None) == "postgresql://colab"
    monkeypatch.setenv("CIFAR_RESNET_STORAGE", "postgresql://environment")
    assert storage_url(None) == "postgresql://environment" and storage_url("mysql://flag") == "mysql://flag"
    monkeypatch.delenv("CIFAR_RESNET_STORAGE")
    monkeypatch.delitem(sys.modules, "google.colab")

    class NoSuchSecret(Exception):
        pass

    def get_secret(name):
        if name != "CIFAR_RESNET_STORAGE":
            raise NoSuchSecret(name)
        return "postgresql://kaggle"
    kaggle = types.ModuleType("kaggle_secrets")
    kaggle.UserSecretsClient = lambda: types.SimpleNamespace(get_secret=get_secret)
    monkeypatch.setitem(sys.modules, "kaggle_secrets", kaggle)
    assert storage_url(None) == "postgresql://kaggle"


def test_bad_inputs_exit_2_in_one_line_without_the_password(capsys, tmp_path):
    common = ("--trials", "1", "--epochs-per-trial", "1", "--smoke", "--out", str(tmp_path))
    code, out, err = run(capsys, "search", "--study", "s", "--storage", "redis://u:pw1@localhost/0", *common)
    assert code == 2 and "unknown storage scheme 'redis'" in err and "pw1" not in out + err
    port = postgres_cluster.free_port()  # nothing listens there
    code, out, err = run(capsys, "search", "--study", "s", "--storage",
                         f"postgresql://team:hunter2pw@127.0.0.1:{port}/search", *common)
    assert code == 2 and "cannot reach the study database postgresql://team:***@127.0.0.1" in err
    assert "hunter2pw" not in out + err and len(err.strip().splitlines()) == 1
    over = tmp_path / "over.json"
    over.write_text(json.dumps({"base": "tiny", "model": {"blocks": [8, 9], "channels": [[1024], [2048]],
                                                          "stages": 2}}))
    code, _, err = run(capsys, "search", "--study", "s", "--space", str(over), *common)
    assert code == 2 and "no configuration in the space fits the 5,000,000-parameter budget" in err
    assert not (tmp_path / "s").exists()  # caught before any trial, before the study is made
    code, _, err = run(capsys, "search", "--show", "--study", "nobody", "--out", str(tmp_path))
    assert code == 2 and "no study 'nobody'" in err and len(err.strip().splitlines()) == 1


def test_a_worker_joining_while_the_creator_writes_the_identity_waits_for_it(tmp_path):
    import threading

    import optuna

    identity = study_identity(load_space(TINY_SPACE), ("accuracy",), TrialBudget(epochs=1))
    storage = open_storage(None, tmp_path)
    creator = optuna.create_study(study_name="race", storage=storage.optuna_storage, direction="maximize")
    creator.set_user_attr("space", identity["space"])  # the rest comes a moment later
    rest = threading.Timer(0.5, lambda: [creator.set_user_attr(k, v) for k, v in identity.items() if k != "space"])
    rest.start()
    joined = open_study("race", storage, identity)
    rest.join()
    assert joined.user_attrs == identity


def test_the_embedded_default_searches_shows_and_trains_the_best_with_no_server(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("CIFAR_RESNET_STORAGE", raising=False)
    space = tmp_path / "space.json"
    space.write_text(json.dumps(TINY_SPACE))
    code, out, err = run(capsys, "search", "--study", "solo", "--trials", "4", "--epochs-per-trial", "2",
                         "--space", str(space), "--smoke", "--out", str(tmp_path), "--device", "cpu")
    assert code == 0 and (tmp_path / "solo" / "study.journal").is_file() and "best: trial" in out
    board = board_of(capsys, "--study", "solo", "--out", str(tmp_path))
    assert len(board["trials"]) == 4 and board["best"]["state"] == "COMPLETE"
    assert all(row["state"] in ("COMPLETE", "PRUNED") and row["retry_of"] is None for row in board["trials"])
    assert_agrees_with_run_folders(board, tmp_path / "solo")

    other = tmp_path / "other.json"
    other.write_text(json.dumps({**TINY_SPACE, "train": {"lr": 0.1}}))
    code, _, err = run(capsys, "search", "--study", "solo", "--trials", "1", "--epochs-per-trial", "2",
                       "--space", str(other), "--smoke", "--out", str(tmp_path))
    assert code == 2 and "study 'solo'" in err and "another space" in err

    best = ModelConfig.from_dict(board["best"]["config"]["model"])
    code, out, err = run(capsys, "train", "--from-study", "solo", "--search-out", str(tmp_path), "--epochs", "1",
                         "--smoke", "--out", str(tmp_path / "final"), "--device", "cpu")
    assert code == 0 and f"trial {board['best']['number']}" in err
    assert json.loads((tmp_path / "final" / "run.json").read_text())["model_config"] == best.to_dict()
    assert len(read_history(tmp_path / "final")) == 1


# Workers sharing a PostgreSQL study, one of them killed mid-trial


class SecretURL(str):
    """A URL whose password a failing test's traceback never shows."""

    def __repr__(self) -> str:
        return repr(masked(self))


@pytest.fixture(scope="module")
def postgres_url():
    """A PostgreSQL server's URL: $CIFAR_RESNET_TEST_POSTGRES (CI starts one), else a cluster of our own."""
    if os.environ.get("CIFAR_RESNET_TEST_POSTGRES"):
        yield SecretURL(os.environ["CIFAR_RESNET_TEST_POSTGRES"])
        return
    if postgres_cluster.binaries() is None:
        pytest.skip("no PostgreSQL server is installed (Debian: apt-get install postgresql); the shared-study "
                    "test needs one")
    folder = Path(tempfile.mkdtemp(prefix="cifar-resnet-pg-"))
    try:
        yield SecretURL(postgres_cluster.start(folder))
    finally:
        postgres_cluster.stop(folder)


EPOCHS = 12  # per trial: the first worker is killed after its first, long before the pruner's first rung (3)


def worker(url: str | None, out: Path, space: Path, trials: int, log: Path, study: str = "team") -> subprocess.Popen:
    command = [sys.executable, "-m", "cifar_resnet", "search", "--study", study, *(["--storage", url] if url else []),
               "--trials", str(trials), "--epochs-per-trial", str(EPOCHS), "--space", str(space), "--smoke",
               "--out", str(out), "--heartbeat", "1", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


def wait_for(condition, seconds: float, what: str, logs: list[Path]):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    shown = "\n".join(f"--- {log.name}:\n{log.read_text()[-2000:]}" for log in logs if log.exists())
    raise AssertionError(f"timed out waiting for {what}\n{shown}")


def started_folder(line: str) -> Path:
    """The run folder of a "trial N started in FOLDER: ..." line."""
    return Path(line.split(" started in ")[1].split(":")[0])


def training_trial(log: Path) -> tuple[int, Path] | None:
    """The first trial a worker trains, once it has written a checkpoint."""
    for line in log.read_text().splitlines():
        if " started in " in line:
            number, folder = int(line.split()[1]), started_folder(line)
            return (number, folder) if (folder / "checkpoint.pt").is_file() else None
    return None


def test_two_workers_share_a_study_and_a_killed_workers_trial_is_retried(postgres_url, tmp_path, capsys):
    space = tmp_path / "space.json"
    space.write_text(json.dumps({**TINY_SPACE, "model": {**TINY_SPACE["model"], "channels": [[16], [32], [64, 4096]]}}))
    identity = study_identity(load_space(space), ("accuracy",), TrialBudget(epochs=EPOCHS))
    study = open_study("team", open_storage(postgres_url, tmp_path), identity)
    study.enqueue_trial({"stages": 3, "channels_3": 4096})  # one trial surely over the budget
    out, logs = tmp_path / "runs", [tmp_path / f"worker-{i}.log" for i in range(3)]
    workers = [worker(postgres_url, out, space, 3, log) for log in logs[:2]]

    def first_to_train():  # whichever worker first trains a trial with a checkpoint is killed
        for index, log in enumerate(logs[:2]):
            if found := training_trial(log):
                return index, found
    doomed, (killed, killed_folder) = wait_for(first_to_train, 240, "a worker's checkpoint", logs)
    workers[doomed].send_signal(signal.SIGKILL)
    workers[doomed].wait()
    assert workers[1 - doomed].wait(timeout=300) == 0
    time.sleep(2.5)  # past the grace period of two heartbeats: the killed trial is now stale, whoever looks
    finisher = worker(postgres_url, out, space, 1, logs[2])
    assert finisher.wait(timeout=300) == 0

    text = "\n".join(log.read_text() for log in logs)
    assert postgres_url.split(":")[2].split("@")[0] not in text  # the password never shows
    board = board_of(capsys, "--study", "team", "--storage", postgres_url)
    rows = {row["number"]: row for row in board["trials"]}
    assert rows[killed]["state"] == "FAIL"
    retries = [row for row in board["trials"] if row["retry_of"] == killed]
    assert len(retries) == 1 and retries[0]["state"] in ("COMPLETE", "PRUNED")
    assert retries[0]["run_folder"] == killed_folder.name and "resumed from its checkpoint" in text
    assert sum(row["state"] == "RUNNING" for row in board["trials"]) == 0
    assert any(row["parameters"] > PARAMETER_BUDGET for row in board["trials"])  # the space reaches over the budget
    assert_agrees_with_run_folders(board, out / "team")


def test_ctrl_c_keeps_the_finished_trials_and_queues_the_stopped_one_to_resume(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CIFAR_RESNET_STORAGE", raising=False)
    space = tmp_path / "space.json"  # no network over the budget: the second trial always trains
    space.write_text(json.dumps({**TINY_SPACE, "model": {**TINY_SPACE["model"], "channels": [[8, 16], [16, 32], [32]]}}))
    log = tmp_path / "search.log"
    search = worker(None, tmp_path, space, 3, log, study="stopped")

    def second_trial_training():
        lines = log.read_text().splitlines()
        finished = [i for i, line in enumerate(lines) if line.endswith(("COMPLETE", "PRUNED")) or "val_acc" in line]
        started = [line for line in lines[finished[0]:] if " started in " in line] if finished else []
        return started and (started_folder(started[0]) / "checkpoint.pt").is_file()
    wait_for(second_trial_training, 240, "a second trial's checkpoint", [log])
    search.send_signal(signal.SIGINT)
    assert search.wait(timeout=120) == 130
    assert re.search(r"search stopped: \d+ finished trials? kept in .*queued to resume from its checkpoint",
                     log.read_text())
    board = board_of(capsys, "--study", "stopped", "--out", str(tmp_path))
    stopped = [row for row in board["trials"] if row["state"] == "FAIL"]
    assert len(stopped) == 1 and any(row["state"] in ("COMPLETE", "PRUNED") for row in board["trials"])
    assert [row["state"] for row in board["trials"] if row["retry_of"] == stopped[0]["number"]] == ["WAITING"]

    again = worker(None, tmp_path, space, 1, tmp_path / "again.log", study="stopped")
    assert again.wait(timeout=240) == 0 and "resumed from its checkpoint" in (tmp_path / "again.log").read_text()
