"""Tests of analysis.metrics, analysis.plots and analysis.report on hand-computed
values and on a small synthetic run folder (tune + final phases, spec.json files)."""

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from analysis import metrics, plots
from analysis.load import trials_from_curves
from analysis.report import write_report

ALL_OPTIMIZERS = ["adam", "cgi", "gao", "gns", "lrg", "svd"]


# --- synthetic run ---------------------------------------------------------

def _curve_rows(experiment, optimizer, phase, trial_id, seed, epochs, floor, lr, rng,
                diverge=False, max_epochs=None):
    """A plausible loss curve: fast drop from ln(10) to `floor`, slight overfitting.
    Final runs also get the epoch-0 row measured before training."""
    final = phase == "final"
    e = np.arange(0 if final else 1, epochs + 1)
    val_loss = floor + (2.3 - floor) * np.exp(-e / 3) + 0.004 * e + rng.normal(0, 0.01, e.size)
    val_acc = np.clip(1 - val_loss / 2.6, 0, 1)
    diverged = np.zeros(e.size, dtype=bool)
    if diverge:
        val_loss[-1], diverged[-1] = np.inf, True
    epoch_time = 0.05 + 0.01 * (optimizer != "adam") + rng.uniform(0, 0.005, e.size)
    return pd.DataFrame({
        "experiment": experiment, "optimizer": optimizer, "phase": phase, "trial_id": trial_id,
        "seed": seed, "epoch": e, "train_loss": val_loss * 0.8, "val_loss": val_loss,
        "val_acc": val_acc, "test_loss": val_loss + 0.02 if final else np.nan,
        "test_acc": val_acc - 0.01 if final else np.nan, "diverged": diverged,
        "epoch_time": np.where(e == 0, 0.0, epoch_time), "node_id": "node0",
        "max_epochs": max_epochs, "lr": lr,
        "inversion_frequency": 98.0 if optimizer == "cgi" else np.nan,
        "beta": np.nan, "norm_eps": np.nan, "rank": 20.0 if optimizer == "lrg" else np.nan,
    })


def synthetic_curves(experiment, optimizers, n_seeds, offsets=None, tune_trials=6,
                     tune_epochs=9, final_epochs=12, seed=0):
    """Tune trials stopped at ASHA-like rungs (one diverges) and final runs whose
    per-seed noise is shared across optimizers, as pairing by seed implies.
    offsets[optimizer] shifts that optimizer's loss floor (negative = better)."""
    rng = np.random.default_rng(seed)
    offsets = offsets or {}
    frames = []
    for optimizer in optimizers:
        for t in range(tune_trials):
            lr = float(10 ** rng.uniform(-4, -1))
            floor = 0.45 + 0.15 * math.log10(lr / 0.005) ** 2
            epochs = [1, 3, tune_epochs, tune_epochs, 3, tune_epochs][t % 6]
            frames.append(_curve_rows(experiment, optimizer, "tune", f"{optimizer}_t{t}", t,
                                      epochs, floor, lr, rng, diverge=(t == 4),
                                      max_epochs=tune_epochs))
    seed_effects = np.random.default_rng(seed + 1).normal(0, 0.03, n_seeds)
    for optimizer in optimizers:
        for s in range(n_seeds):
            noise = np.random.default_rng(1000 + s)  # same noise for every optimizer
            frames.append(_curve_rows(experiment, optimizer, "final", f"{optimizer}_f{s}", s,
                                      final_epochs, 0.45 + seed_effects[s] + offsets.get(optimizer, 0.0),
                                      0.005, noise, max_epochs=final_epochs))
    return pd.concat(frames, ignore_index=True)


def _spec(name, optimizers, reported_verdict=None):
    spec = {
        "name": name, "seed_file": "000_0bef21695cdf6d3c.txt", "title": f"Title of {name}",
        "hypothesis": f"{name} beats Adam.",
        "data": {"n_train": 4000, "n_test": 1000, "val_fraction": 0.2, "seed": 42},
        "model": {"hidden": [100, 100]}, "batch_size": 100,
        "optimizers": {o: {"lr": {"type": "loguniform", "low": 1e-5, "high": 0.1}} for o in optimizers},
        "tuning": {"num_samples": 6, "epochs": 9, "metric": "val_loss", "mode": "min",
                   "grace_period": 1, "reduction_factor": 3},
        "final": {"epochs": 12, "seeds": 3},
        "reported": {"adam": {"lr": 0.0057}},
        "reported_metrics": {"adam": {"test_acc": 0.701}},
        "choices": ["Validation split taken from the training set."],
    }
    if "cgi" in optimizers:
        spec["optimizers"]["cgi"]["inversion_frequency"] = {"type": "int", "low": 2, "high": 100}
        spec["reported"]["cgi"] = {"lr": 0.0053, "inversion_frequency": 98}
    if reported_verdict:
        spec["reported_verdict"] = reported_verdict
    return spec


def write_run(run_dir, experiments):
    """experiments: {name: (curves, spec or None)} -> writes the run folder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    curves = pd.concat([c for c, _ in experiments.values()], ignore_index=True)
    curves.to_parquet(run_dir / "curves.parquet")
    trials_from_curves(curves).to_parquet(run_dir / "trials.parquet")
    for name, (_, spec) in experiments.items():
        if spec is not None:
            (run_dir / name).mkdir(exist_ok=True)
            (run_dir / name / "spec.json").write_text(json.dumps(spec))
    return run_dir


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("run"), {
        "cgi": (synthetic_curves("cgi", ["adam", "cgi"], 3, {"cgi": 0.01}),
                _spec("cgi", ["adam", "cgi"], reported_verdict="not supported")),
        "benchmark": (synthetic_curves("benchmark", ALL_OPTIMIZERS, 3,
                                       {"gao": -0.05, "svd": 0.08, "lrg": 0.02}, seed=3),
                      _spec("benchmark", ALL_OPTIMIZERS)),
    })


@pytest.fixture(scope="module")
def report_text(run_dir):
    return write_report(run_dir).read_text()


def _verdict_line(text):
    return re.search(r"\*\*Verdict: ([a-z ]+)\*\*", text).group(1)


# --- metrics ---------------------------------------------------------------

def test_bootstrap_ci_of_constant_data_is_a_point():
    low, high = metrics.bootstrap_ci([0.1, 0.1, 0.1])
    assert low == high == pytest.approx(0.1)
    assert metrics.bootstrap_ci([2.0]) == (2.0, 2.0)
    assert all(math.isnan(x) for x in metrics.bootstrap_ci([]))


def test_bootstrap_ci_brackets_mean_and_is_seeded():
    values = np.random.default_rng(0).normal(1.0, 1.0, 50)
    low, high = metrics.bootstrap_ci(values, seed=7)
    assert low < values.mean() < high
    assert (low, high) == metrics.bootstrap_ci(values, seed=7)
    low2d, high2d = metrics.bootstrap_ci(np.column_stack([values, np.ones(50)]))
    assert low2d[1] == high2d[1] == 1.0 and low2d[0] < high2d[0]


def test_permutation_test_hand_values():
    assert metrics.permutation_test([0.0, 0.0, 0.0]) == 1.0
    # 8 sign patterns of [1, 2, 3]; |sum| >= 6 only for all + and all −.
    assert metrics.permutation_test([1.0, 2.0, 3.0]) == 0.25
    assert metrics.permutation_test([-1.0, -2.0, -3.0]) == 0.25
    assert metrics.permutation_test(np.ones(8)) == pytest.approx(2 / 256)


def test_permutation_test_monte_carlo_beyond_exact_limit():
    assert metrics.permutation_test(np.zeros(20)) == 1.0
    p = metrics.permutation_test(np.linspace(0.5, 1.5, 20), n_resamples=20_000, seed=1)
    assert p == pytest.approx(1 / 20_001)


def test_probability_of_improvement_hand_values():
    # wins, tie, win -> (1 + 0.5 + 1) / 3
    assert metrics.probability_of_improvement([3, 2, 3], [2, 2, 2], True) == pytest.approx(2.5 / 3)
    assert metrics.probability_of_improvement([3, 2, 3], [2, 2, 2], False) == pytest.approx(0.5 / 3)
    # all pairs: 1 vs 2 loses, 3 vs 2 wins -> 0.5
    assert metrics.probability_of_improvement([1, 3], [2], True, paired=False) == 0.5


def test_time_to_target_hand_curve():
    epochs, losses = [1, 2, 3, 4, 5], [2.0, 1.0, 0.6, 0.4, 0.5]
    assert metrics.time_to_target(epochs, losses, 0.5) == 4
    assert metrics.time_to_target(epochs, losses, 2.0) == 1
    assert math.isnan(metrics.time_to_target(epochs, losses, 0.1))
    assert math.isnan(metrics.time_to_target([1, 2], [np.inf, np.nan], 1.0))
    assert metrics.time_to_target(np.cumsum([0.5] * 5), losses, 0.6) == 1.5


def test_verdict_rule():
    assert metrics.verdict((0.1, 0.3), 0.01, 10, 0.5)[0] == metrics.SUPPORTED
    assert metrics.verdict((-0.3, -0.1), 0.01, 10, 0.5)[0] == metrics.NOT_SUPPORTED
    assert metrics.verdict((-0.001, 0.002), 0.6, 10, 0.5)[0] == metrics.NOT_SUPPORTED
    assert metrics.verdict((-0.1, 0.3), 0.3, 10, 0.5)[0] == metrics.INCONCLUSIVE
    assert metrics.verdict((0.1, 0.3), 0.01, 2, 0.5)[0] == metrics.INCONCLUSIVE


def test_per_seed_metrics_and_paired_differences():
    curves = synthetic_curves("x", ["adam", "cgi"], 4, {"cgi": -0.1})
    per_seed = metrics.per_seed_metrics(curves)
    assert len(per_seed) == 8 and set(per_seed["epochs"]) == {12}
    run = curves[(curves["phase"] == "final") & (curves["trial_id"] == "cgi_f2")]
    best = run.loc[run["val_loss"].idxmin()]
    row = per_seed[(per_seed["optimizer"] == "cgi") & (per_seed["seed"] == 2)].iloc[0]
    assert row["best_epoch"] == best["epoch"] and row["best_val_loss"] == best["val_loss"]
    assert row["test_loss"] == run["test_loss"].iloc[-1]

    pairs = metrics.paired_differences(per_seed.iloc[::-1].drop(index=0), "test_loss", "cgi")
    assert list(pairs["seed"]) == [1, 2, 3]  # seed 0 of adam dropped, order restored
    assert np.allclose(pairs["difference"], pairs["candidate"] - pairs["baseline"])
    # the floor offset shrinks by exp(-epoch / 3) at the last epoch, 12
    assert np.allclose(pairs["difference"], -0.1 * (1 - np.exp(-4)))


def test_compare_paired_clear_winner_and_identical():
    curves = synthetic_curves("x", ["adam", "good", "same"], 8, {"good": -0.05})
    per_seed = metrics.per_seed_metrics(curves)
    good = metrics.compare_paired(per_seed, "test_loss", "good")
    assert good.verdict == metrics.SUPPORTED and good.probability_of_improvement == 1.0
    assert good.mean_difference == pytest.approx(-0.05 * (1 - np.exp(-4))) and good.ci[1] < 0
    same = metrics.compare_paired(per_seed, "test_loss", "same")
    assert same.verdict == metrics.NOT_SUPPORTED and same.p_value == 1.0 and same.ci == (0.0, 0.0)


def test_mean_epoch_time():
    curves = synthetic_curves("x", ["adam", "cgi"], 2)
    times = metrics.mean_epoch_time(curves)
    assert times["cgi"] > times["adam"]


# --- plots -----------------------------------------------------------------

def test_plots_render_pngs(run_dir):
    curves = pd.read_parquet(run_dir / "curves.parquet")
    trials = pd.read_parquet(run_dir / "trials.parquet")
    cgi = curves[curves["experiment"] == "cgi"]
    benchmark = metrics.per_seed_metrics(curves[curves["experiment"] == "benchmark"])
    paths = [
        plots.save_figure(plots.plot_comparison(cgi), run_dir / "plots" / "comparison.png"),
        plots.save_figure(plots.plot_tuning(cgi, trials[trials["experiment"] == "cgi"]),
                          run_dir / "plots" / "tuning.png"),
        plots.save_figure(plots.plot_benchmark(benchmark, "test_acc"),
                          run_dir / "plots" / "benchmark_acc.png"),
        plots.save_figure(plots.plot_comparison(cgi[cgi["phase"] == "tune"]),
                          run_dir / "plots" / "empty.png"),
    ]
    for path in paths:
        assert path.stat().st_size > 1000 and path.read_bytes()[:4] == b"\x89PNG"
    assert set(plots.OPTIMIZER_COLORS) == set(ALL_OPTIMIZERS)
    assert len(set(plots.OPTIMIZER_COLORS.values())) == len(ALL_OPTIMIZERS)


# --- report ----------------------------------------------------------------

def test_report_names_everything(run_dir, report_text):
    for name in ["cgi", "benchmark"]:
        assert f"## {name}:" in report_text
    for optimizer in ALL_OPTIMIZERS:
        assert f"| {optimizer} |" in report_text
    assert report_text.index("## cgi:") < report_text.index("## benchmark:")
    assert "Verdict rule" in report_text and "Title of cgi" in report_text
    assert "000_0bef21695cdf6d3c.txt" in report_text
    assert "70.10%" in report_text  # the write-up's reported Adam accuracy


def test_report_verdicts_and_figures(run_dir, report_text):
    verdicts = re.findall(r"\*\*(supported|not supported|inconclusive)\*\*", report_text)
    assert len(verdicts) >= 6  # cgi + five benchmark candidates (summary and sections)
    assert "cannot be reached" in report_text  # 3 seeds can never give p < 0.05
    assert "The write-up concluded the hypothesis was **not supported**" in report_text
    for link in ["cgi/comparison.png", "cgi/tuning.png", "benchmark/comparison.png", "benchmark.png"]:
        assert f"({link})" in report_text
        assert (run_dir / link).stat().st_size > 1000


def test_report_supported_and_equivalent(tmp_path):
    better = synthetic_curves("better", ["adam", "cgi"], 8, {"cgi": -0.06})
    same = synthetic_curves("same", ["adam", "cgi"], 3, {"cgi": 0.0})
    run = write_run(tmp_path, {"better": (better, _spec("better", ["adam", "cgi"], "supported")),
                               "same": (same, _spec("same", ["adam", "cgi"]))})
    text = write_report(run).read_text()
    better_section, same_section = text.split("## better:")[1].split("## same:")
    assert _verdict_line(better_section) == "supported"
    assert "we agree" in better_section
    assert _verdict_line(same_section) == "not supported"
    assert "no practical benefit" in same_section


def test_report_without_final_runs_or_specs(tmp_path):
    curves = synthetic_curves("cgi", ["adam", "cgi"], 2)
    curves = curves[curves["phase"] == "tune"]
    orphan = synthetic_curves("orphan", ["adam", "svd"], 2)
    run = write_run(tmp_path, {"cgi": (curves, _spec("cgi", ["adam", "cgi"])), "orphan": (orphan, None)})
    text = write_report(run).read_text()
    assert "No final runs" in text and "spec.json is missing" in text
    assert "best tune trial" in text and (run / "cgi" / "tuning.png").exists()
    assert not (run / "cgi" / "comparison.png").exists()


def test_report_on_empty_folder(tmp_path):
    assert "none found" in write_report(tmp_path).read_text()


def test_report_accuracy_metric_and_diverged_final_run(tmp_path):
    curves = synthetic_curves("gns", ["adam", "gns"], 4, {"gns": 0.02})
    last = curves.index[(curves["trial_id"] == "gns_f1")][-1]
    curves.loc[last, ["val_loss", "test_loss", "diverged"]] = [np.inf, np.inf, True]
    spec = _spec("gns", ["adam", "gns"], "not supported")
    spec["tuning"].update(metric="val_acc", mode="max")
    text = write_report(write_run(tmp_path, {"gns": (curves, spec)})).read_text()
    assert "test accuracy (primary)" in text and " pp [" in text
    # accuracy is finite, so the diverged seed still pairs on the primary metric
    assert "| gns | 4 |" in text
    per_seed = metrics.per_seed_metrics(curves, selection_metric="val_acc")
    loss = metrics.compare_paired(per_seed, "test_loss", "gns")
    assert loss.n_pairs == 3 and loss.n_dropped == 1
