"""Figures through the Axes they return: what each draws per optimizer (data, colour, label),
titles, scales, and that they draw into a given Axes. Writing figure files is the report's test."""
import matplotlib

matplotlib.use("Agg")  # noqa: E402  (tests are an entry point: they choose the backend)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from analysis import compare, plots, plots_tuning  # noqa: E402
from synthetic import ALL_OPTIMIZERS, experiment_spec, standard_run  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = standard_run(tmp_path_factory.mktemp("run"))
    return pd.read_parquet(folder / "curves.parquet"), pd.read_parquet(folder / "trials.parquet")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def cgi_curves(run):
    curves, _ = run
    return curves[curves["experiment"] == "cgi"]


def benchmark_trials(run):
    _, trials = run
    return trials[trials["experiment"] == "benchmark"]


def legend(ax) -> list[str]:
    return [text.get_text() for text in ax.get_legend().get_texts()]


def test_comparison_draws_each_optimizers_mean_in_its_colour_adam_first(run):
    curves = cgi_curves(run)
    ax = plots.plot_comparison(curves, "val_loss", title="cgi: validation loss")
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == legend(ax) == ["adam (6 runs)", "cgi (6 runs)"]
    assert [line.get_color() for line in lines] == [plots.optimizer_color("adam"), plots.optimizer_color("cgi")]
    adam = curves[(curves["phase"] == "final") & (curves["optimizer"] == "adam")].groupby("epoch")["val_loss"].mean()
    epochs, means = lines[0].get_data()
    assert list(epochs) == list(adam.index) and means == pytest.approx(adam.to_numpy())
    assert len(ax.collections) == 2  # one CI band per optimizer
    assert ax.get_title() == "cgi: validation loss" and ax.get_xlabel() == "epoch" and ax.get_yscale() == "log"


def test_comparison_of_accuracy_is_in_percent_and_draws_into_a_given_axes(run):
    curves = cgi_curves(run)
    _, given = plt.subplots()
    ax = plots.plot_comparison(curves, "val_acc", ax=given)
    assert ax is given
    adam = curves[(curves["phase"] == "final") & (curves["optimizer"] == "adam")].groupby("epoch")["val_acc"].mean()
    assert ax.get_lines()[0].get_ydata() == pytest.approx(100 * adam.to_numpy())
    assert ax.get_ylabel() == "validation accuracy (%)" and ax.get_yscale() == "linear"
    assert ax.get_title().startswith("Final runs: mean and 95% bootstrap CI")


def test_comparison_without_final_runs_says_so(run):
    curves = cgi_curves(run)
    ax = plots.plot_comparison(curves[curves["phase"] == "tune"])
    assert not ax.get_lines() and ax.texts[0].get_text() == "no final runs"


def test_benchmark_ranks_optimizers_best_first_with_adam_dashed(run):
    curves, _ = run
    per_seed = compare.per_seed_metrics(curves[curves["experiment"] == "benchmark"])
    means = per_seed.groupby("optimizer")["test_loss"].mean()
    ax = plots.plot_benchmark(per_seed, "test_loss")
    order = [label.get_text() for label in ax.get_yticklabels()]
    assert order == list(means.sort_values().index) and order[0] == "gao"  # the lowest loss at the top
    points = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert [point.get_color() for point in points] == [plots.optimizer_color(name) for name in order]
    assert [point.get_xdata()[0] for point in points] == pytest.approx([means[name] for name in order])
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and dashed[0].get_xdata()[0] == pytest.approx(means["adam"])
    assert "dashed: adam" in ax.get_title()


def test_tuning_curves_draw_every_trial_in_its_optimizers_colour(run):
    curves = cgi_curves(run)
    ax = plots_tuning.plot_tuning_curves(curves, "val_loss")
    assert legend(ax) == ["adam (12 trials)", "cgi (12 trials)", "diverged"]
    drawn = [line for line in ax.get_lines() if len(line.get_xdata()) and line.get_marker() in ("None", "")]
    colours = [line.get_color() for line in drawn]
    assert colours.count(plots.optimizer_color("adam")) == colours.count(plots.optimizer_color("cgi")) == 12
    crosses = [line for line in ax.get_lines() if len(line.get_xdata()) and line.get_marker() == "x"]
    assert len(crosses) == 4  # one diverged trial per optimizer and repeat
    assert ax.get_title() == "Tune trials as ASHA stopped them"


def test_budget_draws_the_mean_over_repeats_per_optimizer(run):
    budget = compare.budget_curves(benchmark_trials(run), "best_val_loss", False)
    ax = plots_tuning.plot_budget(budget, "best_val_loss", title="budget")
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == [f"{name} (2 repeats)" for name in ALL_OPTIMIZERS]
    assert [line.get_color() for line in lines] == [plots.optimizer_color(name) for name in ALL_OPTIMIZERS]
    gao = budget[budget["optimizer"] == "gao"]
    assert lines[2].get_ydata() == pytest.approx(gao["mean"].to_numpy(), nan_ok=True)
    assert lines[2].get_drawstyle() == "steps-post"
    assert ax.get_title() == "budget" and ax.get_xlabel().startswith("trials run")


def test_sensitivity_has_a_panel_per_tuned_hyperparameter_with_each_repeats_best_starred(run):
    trials = benchmark_trials(run)
    spaces = experiment_spec("benchmark", ALL_OPTIMIZERS)["optimizers"]
    best = compare.best_trials(trials, "best_val_loss", False)
    assert len(best) == 12  # one per optimizer and repeat
    axes = plots_tuning.plot_sensitivity(trials, spaces, "best_val_loss", best)
    assert axes.shape == (6, 2) and sum(ax.get_visible() for ax in axes.ravel()) == 10
    panels = {ax.get_title(): ax for ax in axes.ravel() if ax.get_visible()}
    assert set(panels) == {f"{name}: {hparam}" for name, space in spaces.items() for hparam in space}
    assert panels["adam: lr"].get_xscale() == "log" and panels["adam: lr"].get_yscale() == "log"
    assert panels["lrg: rank"].get_xscale() == "log" and "integer" in panels["lrg: rank"].get_xlabel()
    assert panels["cgi: inversion_frequency"].get_xscale() == "linear"
    assert panels["gao: beta"].get_xlabel() == "beta (linear)"
    stars = [c for c in panels["gao: lr"].collections if c.get_label() == "best trial (each repeat)"]
    assert len(stars[0].get_offsets()) == 2
    full = [c for c in panels["gao: lr"].collections if c.get_label() == "full budget"][0]
    assert np.allclose(full.get_facecolor()[0], matplotlib.colors.to_rgba(plots.optimizer_color("gao")))


def test_hparam_axes_follow_the_search_space(run):
    trials = benchmark_trials(run)
    best = compare.best_trials(trials, "best_val_loss", False)
    gao = trials[trials["optimizer"] == "gao"]
    ax = plots_tuning.plot_hparam(gao.assign(beta=[0.9, 0.99] * (len(gao) // 2)), "beta",
                                  {"type": "choice", "values": [0.9, 0.99]}, "best_val_loss", best)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.9", "0.99"] and ax.get_xscale() == "linear"
    ax = plots_tuning.plot_hparam(trials[trials["optimizer"] == "cgi"], "inversion_frequency",
                                  {"type": "int", "low": 2, "high": 100}, "best_val_loss", best)
    assert isinstance(ax.xaxis.get_major_locator(), matplotlib.ticker.MaxNLocator)
