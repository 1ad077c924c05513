import pytest
import torch
from matplotlib.figure import Figure

from cifar_resnet import course, plots
from cifar_resnet.budget import count_parameters
from cifar_resnet.config import PARAMETER_BUDGET, PRESETS
from cifar_resnet.data import load_kaggle_pickle, write_kaggle_pickle
from cifar_resnet.errors import CifarResnetError
from cifar_resnet.evaluate import score
from cifar_resnet.handin import make_handin
from cifar_resnet.kaggle import predict_submission
from cifar_resnet.run_folder import read_history


@pytest.fixture
def course_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CIFAR_RESNET_PRESET", raising=False)
    monkeypatch.delenv("CIFAR_RESNET_MINUTES", raising=False)
    return course.settings(smoke=True)


def test_every_figure_draws_and_saves(smoke_data, tmp_path):
    images, labels = smoke_data.test_images[:40], smoke_data.test_labels[:40]
    evaluation = score(torch.randn(40, 10), labels)
    history = [{"epoch": e, "step": 10 * e, "lr": 0.1 / e, "train_loss": 2 / e, "train_acc": 0.2 * e,
                "val_loss": 2.1 / e, "val_acc": 0.19 * e} for e in (1, 2, 3)]
    reports = [(m, count_parameters(PRESETS["reference"].model)) for m in (1, 2)]
    figures = {
        "grid": plots.image_grid(images[:10], [str(int(y)) for y in labels[:10]], ncols=5),
        "samples": plots.class_samples(images, labels, per_class=3),
        "counts": plots.class_counts({"a": labels, "b": labels[:20]}),
        "gallery": plots.augmentation_gallery(images[:4], {"flip": lambda x: x.flip(3)}),
        "curves": plots.training_curves(history),
        "lr": plots.lr_schedule(history, 0.1, 0.1),
        "confusion": plots.confusion_matrix(evaluation),
        "per_class": plots.per_class_accuracy({"plain": evaluation}),
        "mistakes": plots.confident_mistakes(images, evaluation, k=8),
        "scaling": plots.budget_scaling({"m": reports}, PARAMETER_BUDGET),
        "spectra": plots.singular_values({"a": torch.rand(16) + 0.1, "b": torch.ones(16)}, "steps"),
    }
    for name, fig in figures.items():
        assert isinstance(fig, Figure), name
        path = plots.save_figure(fig, tmp_path / f"{name}.png")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(figures["samples"].axes) == 30 and len(figures["gallery"].axes) == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.png" for n in figures)


def test_settings_keep_smoke_runs_away_from_the_real_plots(course_settings, monkeypatch):
    assert course_settings.preset == "tiny" and course_settings.run_dir.name == "smoke"
    assert course_settings.plots_dir == course_settings.run_dir / "plots"
    monkeypatch.setenv("CIFAR_RESNET_PRESET", "small")
    monkeypatch.setenv("CIFAR_RESNET_MINUTES", "12.5")
    real = course.settings(smoke=False)
    assert real.run_dir.name == "course" and real.plots_dir == real.project / "plots"
    assert real.model_config == PRESETS["small"].model and real.train_config.minutes == 12.5
    monkeypatch.setenv("CIFAR_RESNET_PRESET", "nope")
    with pytest.raises(CifarResnetError, match="unknown preset 'nope'"):
        course.settings()


def test_notebooks_04_and_05_work_alone_in_smoke_mode(course_settings, smoke_data, tmp_path):
    run_dir = course.find_or_train_run(course_settings, smoke_data)
    assert (run_dir / "checkpoint.pt").is_file() and len(read_history(run_dir)) == 2
    pickle_path = course.find_or_write_kaggle_pickle(course_settings, smoke_data, root=tmp_path / "no-data")
    images, ids = load_kaggle_pickle(pickle_path)
    assert len(ids) == len(smoke_data.test_labels) and sorted(images.sum(dim=(1, 2, 3)).tolist()) == \
        sorted(smoke_data.test_images.sum(dim=(1, 2, 3)).tolist())
    submission = predict_submission(run_dir / "checkpoint.pt", pickle_path, run_dir / "submission.csv")
    history = read_history(run_dir)
    plots.save_figure(plots.training_curves(history), course_settings.plots_dir / "training_curves.png")
    plots.save_figure(plots.class_counts({"x": smoke_data.test_labels}), course_settings.plots_dir / "counts.png")
    manifest = make_handin(run_dir, submission, course_settings.plots_dir, course_settings.handin_dir, data=smoke_data)
    handin = manifest.parent
    names = sorted(str(p.relative_to(handin)) for p in handin.rglob("*") if p.is_file())
    assert names == ["MANIFEST.md", "history.csv", "model_config.json", "model_weights.pt", "parameter_count.txt",
                     "plots/training_curves.png", "report.md", "report.tex", "results.json", "submission.csv"]
    assert "counts.png" not in manifest.read_text(), "only figures of the student's run go into the hand-in"
    assert "78,042" in (handin / "parameter_count.txt").read_text()
    assert "| submission.csv |" in manifest.read_text()
    weights = torch.load(handin / "model_weights.pt", weights_only=True)
    model = PRESETS["tiny"].model
    from cifar_resnet.model import build_model
    build_model(model).load_state_dict(weights)


def test_outside_smoke_mode_a_missing_run_or_pickle_says_what_to_do(tmp_path, monkeypatch, smoke_data):
    monkeypatch.chdir(tmp_path)
    real = course.settings(smoke=False)
    with pytest.raises(CifarResnetError, match="run notebook 03 first"):
        course.find_or_train_run(real, smoke_data)
    with pytest.raises(CifarResnetError, match="no cifar_test_nolabel.pkl under"):
        course.find_or_write_kaggle_pickle(real, smoke_data, root=tmp_path)
    (tmp_path / "kaggle").mkdir()
    write_kaggle_pickle(tmp_path / "kaggle" / "cifar_test_nolabel.pkl", smoke_data.test_images[:3])
    assert course.find_or_write_kaggle_pickle(real, smoke_data, root=tmp_path).parent.name == "kaggle"


def test_training_curves_of_a_run_without_a_validation_split():
    history = [{"epoch": e, "step": 10 * e, "lr": 0.1, "train_loss": 2 / e, "train_acc": 0.2 * e,
                "val_loss": float("nan"), "val_acc": float("nan")} for e in (1, 2)]
    loss_ax, acc_ax = plots.training_curves(history).axes
    assert [line.get_label() for line in acc_ax.get_lines()] == ["train"]
    assert acc_ax.get_title() == "accuracy (no validation split)" and not acc_ax.texts


def test_a_last_epoch_cut_short_is_drawn_as_the_part_that_ran():
    history = [{"epoch": e, "step": step, "lr": 0.1, "train_loss": 2 / e, "train_acc": 0.2 * e, "val_loss": 1.0,
                "val_acc": 0.2 * e} for e, step in ((1, 40), (2, 80), (3, 90))]  # the third ran 10 of 40 steps
    assert plots.epochs_done(history) == [1.0, 2.0, 2.25]
    loss_ax, acc_ax = plots.training_curves(history).axes
    assert list(acc_ax.get_lines()[0].get_xdata()) == [1.0, 2.0, 2.25]


def test_legends_stand_beside_the_bars():
    labels = torch.arange(100) % 10
    for fig in (plots.class_counts({"a": labels}), plots.per_class_accuracy({"plain": score(torch.randn(100, 10), labels)})):
        legend = fig.axes[0].get_legend()
        fig.canvas.draw()
        assert legend.get_window_extent().x0 >= fig.axes[0].get_window_extent().x1  # right of the plotting area


def test_notebook_runs_always_hold_a_validation_split_out(course_settings, monkeypatch):
    monkeypatch.setenv("CIFAR_RESNET_PRESET", "cpu-fast")
    run = course.settings(smoke=False)
    assert PRESETS["cpu-fast"].train.val_size == 0 and run.train_config.val_size is None
    assert run.train_config.minutes == 15 and course.settings(smoke=False, preset="tiny").train_config == PRESETS["tiny"].train
