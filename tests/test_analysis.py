"""Tests of analysis: statistics on hand-computed values and against scipy, frame functions and
verdicts on synthetic frames with known answers, figures through their Axes, and the report of a
small synthetic run folder (tune + final phases, repeats, spec.json files)."""

import json
import math
import re

import matplotlib

matplotlib.use("Agg")  # noqa: E402  (tests are an entry point: they choose the backend)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from scipy import stats  # noqa: E402

from analysis import compare, metrics, plots, plots_tuning  # noqa: E402
from analysis.__main__ import main as analysis_main  # noqa: E402
from analysis.load import trials_from_curves  # noqa: E402
from analysis.report import write_report  # noqa: E402

ALL_OPTIMIZERS = ["adam", "cgi", "gao", "gns", "lrg", "svd"]


# --- synthetic run ---------------------------------------------------------

def _curve_rows(experiment, optimizer, phase, trial_id, seed, epochs, floor, lr, rng,
                diverge=False, max_epochs=None, repeat=0, started_at=1e9):
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
        "beta": 0.9 if optimizer == "gao" else np.nan, "norm_eps": np.nan,
        "rank": 20.0 if optimizer in ("lrg", "svd") else np.nan,
        "study": f"{experiment}/{optimizer}/r{repeat}", "repeat": repeat, "reported_at": started_at + e,
    })


def synthetic_curves(experiment, optimizers, n_seeds, offsets=None, tune_trials=6,
                     tune_epochs=9, final_epochs=12, seed=0, repeats=1):
    """Tune trials stopped at ASHA-like rungs (one diverges) per repeat, and final runs per
    repeat and seed whose per-seed noise is shared across optimizers, as pairing by seed implies.
    offsets[optimizer] shifts that optimizer's loss floor (negative = better)."""
    rng = np.random.default_rng(seed)
    offsets = offsets or {}
    frames = []
    for optimizer in optimizers:
        for r in range(repeats):
            for t in range(tune_trials):
                lr = float(10 ** rng.uniform(-4, -1))
                floor = 0.45 + 0.15 * math.log10(lr / 0.005) ** 2
                epochs = [1, 3, tune_epochs, tune_epochs, 3, tune_epochs][t % 6]
                frames.append(_curve_rows(experiment, optimizer, "tune", f"{optimizer}_r{r}_t{t:02d}", t, epochs,
                                          floor, lr, rng, diverge=(t == 4), max_epochs=tune_epochs, repeat=r,
                                          started_at=1e9 + 100 * len(frames)))
    seed_effects = np.random.default_rng(seed + 1).normal(0, 0.03, n_seeds)
    for optimizer in optimizers:
        for r in range(repeats):
            for s in range(n_seeds):
                noise = np.random.default_rng(1000 + s)  # same noise for every optimizer
                frames.append(_curve_rows(experiment, optimizer, "final", f"{optimizer}_r{r}_f{s}", s, final_epochs,
                                          0.45 + seed_effects[s] + offsets.get(optimizer, 0.0), 0.005, noise,
                                          max_epochs=final_epochs, repeat=r, started_at=1e9 + 100 * len(frames)))
    return pd.concat(frames, ignore_index=True)


def trials_of(curves):
    """The trials frame as the loader writes it."""
    return trials_from_curves(curves)


def _spec(name, optimizers, reported_verdict=None, metric="val_loss", primary=None):
    spec = {
        "name": name, "seed_file": "000_0bef21695cdf6d3c.txt", "title": f"Title of {name}",
        "hypothesis": f"{name} beats Adam.",
        "data": {"n_train": 4000, "n_test": 1000, "val_fraction": 0.2, "seed": 42},
        "model": {"hidden": [100, 100]}, "batch_size": 100,
        "optimizers": {o: {"lr": {"type": "loguniform", "low": 1e-5, "high": 0.1}} for o in optimizers},
        "tuning": {"num_samples": 6, "epochs": 9, "metric": metric, "mode": "max" if "acc" in metric else "min",
                   "grace_period": 1, "reduction_factor": 3, "repeats": 2},
        "final": {"epochs": 12, "seeds": 3},
        "reported": {"adam": {"lr": 0.0057}},
        "reported_metrics": {"adam": {"test_acc": 0.701}},
        "choices": ["Validation split taken from the training set."],
    }
    extra = {"cgi": {"inversion_frequency": {"type": "int", "low": 2, "high": 100}},
             "gao": {"beta": {"type": "uniform", "low": 0.8, "high": 0.999}},
             "lrg": {"rank": {"type": "int", "low": 1, "high": 124, "log": True}},
             "svd": {"rank": {"type": "int", "low": 1, "high": 100, "log": True}}}
    for optimizer in optimizers:
        spec["optimizers"][optimizer].update(extra.get(optimizer, {}))
    if "cgi" in optimizers:
        spec["reported"]["cgi"] = {"lr": 0.0053, "inversion_frequency": 98}
    if reported_verdict:
        spec["reported_verdict"] = reported_verdict
    if primary:
        spec["final"]["primary"] = primary
    return spec


def write_run(run_dir, experiments, provenance=None):
    """experiments: {name: (curves, spec or None)} -> writes the run folder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    curves = pd.concat([c for c, _ in experiments.values()], ignore_index=True)
    curves.to_parquet(run_dir / "curves.parquet")
    trials_of(curves).to_parquet(run_dir / "trials.parquet")
    for name, (_, spec) in experiments.items():
        if spec is not None:
            (run_dir / name).mkdir(exist_ok=True)
            (run_dir / name / "spec.json").write_text(json.dumps(spec))
    if provenance:
        (run_dir / "run.json").write_text(json.dumps({"status": "complete", "provenance": provenance}))
    return run_dir


PROVENANCE = {"versions": {"python": "3.12.1", "torch": "2.5.0", "ray": "2.60.0", "optuna": "4.1",
                           "numpy": "2.1", "pandas": "2.2"}, "git_commit": "abc1234", "cpus": 2, "nodes": 1,
              "address": None, "concurrency": {"cgi": 2, "benchmark": 2}}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("run"), {
        "cgi": (synthetic_curves("cgi", ["adam", "cgi"], 3, {"cgi": 0.01}, repeats=2),
                _spec("cgi", ["adam", "cgi"], reported_verdict="not supported")),
        "benchmark": (synthetic_curves("benchmark", ALL_OPTIMIZERS, 3, {"gao": -0.05, "svd": 0.08, "lrg": 0.02},
                                       seed=3, repeats=2),
                      _spec("benchmark", ALL_OPTIMIZERS)),
    }, provenance=PROVENANCE)


@pytest.fixture(scope="module")
def report_text(run_dir):
    return write_report(run_dir).read_text()


def _verdict_line(text):
    return re.search(r"\*\*Verdict: ([a-z ]+)\*\*", text).group(1)


def _per_seed(adam, candidate, diverged_candidate=()):
    """A per-seed frame of one repeat from arrays of primary values (test_loss, final epoch)."""
    rows = []
    for optimizer, values in (("adam", adam), ("cand", candidate)):
        for s, value in enumerate(values):
            diverged = optimizer == "cand" and s in diverged_candidate
            rows.append({"experiment": "x", "optimizer": optimizer, "study": f"x/{optimizer}/r0", "repeat": 0,
                         "seed": s, "trial_id": f"{optimizer}{s}", "epochs": 10, "diverged": diverged,
                         "test_loss": np.inf if diverged else value})
    return pd.DataFrame(rows)


# --- statistics on arrays --------------------------------------------------

def test_bootstrap_ci_is_scipys_percentile_interval():
    low, high = metrics.bootstrap_ci([0.1, 0.1, 0.1])
    assert low == high == pytest.approx(0.1)
    assert metrics.bootstrap_ci([2.0]) == (2.0, 2.0)
    assert all(math.isnan(x) for x in metrics.bootstrap_ci([]))
    values = np.random.default_rng(0).normal(1.0, 1.0, 50)
    low, high = metrics.bootstrap_ci(values, seed=7)
    assert low < values.mean() < high and (low, high) == metrics.bootstrap_ci(values, seed=7)
    expected = stats.bootstrap((values,), np.mean, method="percentile", rng=7).confidence_interval
    assert (low, high) == pytest.approx((expected.low, expected.high), abs=0.05)


def test_permutation_test_hand_values_and_full_enumeration():
    assert metrics.permutation_test([0.0, 0.0, 0.0]) == 1.0
    # 8 sign patterns of [1, 2, 3]; |sum| >= 6 only for all + and all −.
    assert metrics.permutation_test([1.0, 2.0, 3.0]) == 0.25
    assert metrics.permutation_test([-1.0, -2.0, -3.0]) == 0.25
    assert metrics.permutation_test(np.ones(8)) == pytest.approx(2 / 256)
    d = np.random.default_rng(3).normal(0.3, 1.0, 10)
    signs = 2 * ((np.arange(2 ** 10)[:, None] >> np.arange(10)) & 1) - 1
    by_hand = np.mean(np.abs(signs @ d) >= abs(d.sum()) - 1e-12)
    assert metrics.permutation_test(d) == pytest.approx(by_hand)


def test_permutation_test_monte_carlo_beyond_exact_limit():
    assert metrics.permutation_test(np.zeros(20)) == 1.0
    # behaviour changed with scipy: both tails of the Monte-Carlo null count, 2 (1 + 0) / (1 + n)
    p = metrics.permutation_test(np.linspace(0.5, 1.5, 20), n_resamples=20_000, seed=1)
    assert p == pytest.approx(2 / 20_001)


def test_two_level_bootstrap_with_one_repeat_is_scipys_paired_bootstrap():
    rng = np.random.default_rng(5)
    baseline = rng.normal(0.5, 0.05, 12)
    candidate = baseline + rng.normal(-0.02, 0.03, 12)
    low, high = metrics.two_level_bootstrap_ci(candidate[None], baseline[None], seed=1)
    scipy_ci = stats.bootstrap((candidate, baseline), lambda c, b, axis: np.mean(c - b, axis=axis), paired=True,
                               vectorized=True, method="percentile", n_resamples=10_000, rng=2).confidence_interval
    width = scipy_ci.high - scipy_ci.low
    assert low == pytest.approx(scipy_ci.low, abs=0.05 * width)
    assert high == pytest.approx(scipy_ci.high, abs=0.05 * width)


def test_a_disagreeing_tuning_repeat_widens_the_ci():
    rng = np.random.default_rng(0)
    baseline = np.tile(rng.normal(0.5, 0.05, 10), (3, 1))
    candidate = baseline[0] + rng.normal(-0.02, 0.01, 10)
    agree = np.tile(candidate, (3, 1))
    disagree = agree + np.array([[-0.03], [0.0], [0.03]])  # same mean, one repeat tuned better, one worse
    narrow = metrics.two_level_bootstrap_ci(agree, baseline)
    wide = metrics.two_level_bootstrap_ci(disagree, baseline)
    assert wide[1] - wide[0] > 1.5 * (narrow[1] - narrow[0])
    assert np.mean(agree) == pytest.approx(np.mean(disagree))


def test_holm_textbook_example():
    assert metrics.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert metrics.holm([0.02]) == pytest.approx([0.02])
    adjusted = metrics.holm([0.5, np.nan, 0.4])
    assert math.isnan(adjusted[1]) and adjusted[[0, 2]] == pytest.approx([0.8, 0.8])
    assert metrics.holm([0.9, 0.8]).max() == 1.0


def test_substitute_failed_takes_the_worst_finite_value():
    values = [0.5, np.inf, 0.7, 0.6]
    assert metrics.substitute_failed(values, [False, True, False, False], False) == pytest.approx([0.5, 0.7, 0.7, 0.6])
    assert metrics.substitute_failed([0.9, 0.8], [True, False], True) == pytest.approx([0.8, 0.8])


def test_budget_curve_of_a_known_trial_sequence_is_exact():
    objective = [0.9, 0.5, 0.7, 0.65, 0.6, 0.8]
    usable = [True, False, True, False, True, True]  # 0.5 stopped by ASHA, 0.65 diverged
    assert metrics.budget_curve(objective, usable, False) == pytest.approx([0.9, 0.9, 0.7, 0.7, 0.6, 0.6])
    curve = metrics.budget_curve([0.3, 0.6, 0.5], [False, True, True], True)
    assert math.isnan(curve[0]) and curve[1:] == pytest.approx([0.6, 0.6])


def test_probability_of_improvement_and_time_to_target():
    assert metrics.probability_of_improvement([3, 2, 3], [2, 2, 2], True) == pytest.approx(2.5 / 3)
    assert metrics.probability_of_improvement([1, 3], [2], True, paired=False) == 0.5
    epochs, losses = [1, 2, 3, 4, 5], [2.0, 1.0, 0.6, 0.4, 0.5]
    assert metrics.time_to_target(epochs, losses, 0.5) == 4
    assert math.isnan(metrics.time_to_target(epochs, losses, 0.1))


def test_verdict_rule():
    assert metrics.verdict((0.1, 0.3), 0.01, 10, 0.5)[0] == metrics.SUPPORTED
    assert metrics.verdict((-0.3, -0.1), 0.01, 10, 0.5)[0] == metrics.NOT_SUPPORTED
    assert metrics.verdict((-0.001, 0.002), 0.6, 10, 0.5)[0] == metrics.NOT_SUPPORTED
    assert metrics.verdict((-0.1, 0.3), 0.3, 10, 0.5)[0] == metrics.INCONCLUSIVE
    assert metrics.verdict((0.1, 0.3), 0.01, 2, 0.5)[0] == metrics.INCONCLUSIVE
    label, reason = metrics.verdict((0.1, 0.3), 0.01, 10, 0.5, candidate_diverged=0.2, baseline_diverged=0.1)
    assert label == metrics.NOT_SUPPORTED and "diverged" in reason


# --- statistics on frames --------------------------------------------------

def test_per_seed_metrics_keep_repeats_apart():
    curves = synthetic_curves("x", ["adam", "cgi"], 4, {"cgi": -0.1}, repeats=2)
    per_seed = compare.per_seed_metrics(curves)
    assert len(per_seed) == 16 and set(per_seed["epochs"]) == {12} and set(per_seed["repeat"]) == {0, 1}
    run = curves[(curves["phase"] == "final") & (curves["trial_id"] == "cgi_r1_f2")]
    best = run.loc[run["val_loss"].idxmin()]
    row = per_seed[(per_seed["optimizer"] == "cgi") & (per_seed["seed"] == 2) & (per_seed["repeat"] == 1)].iloc[0]
    assert row["best_epoch"] == best["epoch"] and row["best_val_loss"] == best["val_loss"]
    assert row["test_loss"] == run["test_loss"].iloc[-1]


def test_compare_clear_winner_and_identical():
    curves = synthetic_curves("x", ["adam", "good", "same"], 8, {"good": -0.05})
    per_seed = compare.per_seed_metrics(curves)
    good = compare.compare_paired(per_seed, "test_loss", "good")
    assert good.verdict == metrics.SUPPORTED and good.probability_of_improvement == 1.0
    assert good.mean_difference == pytest.approx(-0.05 * (1 - np.exp(-4))) and good.ci[1] < 0
    same = compare.compare_paired(per_seed, "test_loss", "same")
    assert same.verdict == metrics.NOT_SUPPORTED and same.p_value == 1.0 and same.ci == (0.0, 0.0)


def _overfitting_curves(n_seeds=10):
    """adam: best validation loss 0.40 at epoch 5, then overfits to 0.64 by epoch 12; cand:
    best 0.45 at epoch 10, ends at 0.47. Test loss = validation loss + 0.02 + seed noise."""
    e = np.arange(0, 13)
    shapes = {"adam": np.where(e <= 5, 2.3 - (2.3 - 0.40) * e / 5, 0.40 + 0.04 * (e - 5)),
              "cand": np.where(e <= 10, 2.3 - (2.3 - 0.45) * e / 10, 0.45 + 0.01 * (e - 10))}
    frames = []
    for optimizer, val in shapes.items():
        for s in range(n_seeds):
            noise = np.random.default_rng(s).normal(0, 0.005)
            frames.append(pd.DataFrame({"experiment": "x", "optimizer": optimizer, "phase": "final",
                                        "study": f"x/{optimizer}/r0", "repeat": 0, "seed": s,
                                        "trial_id": f"{optimizer}{s}", "epoch": e, "val_loss": val + noise,
                                        "val_acc": 0.5, "train_loss": val, "test_loss": val + 0.02 + noise,
                                        "test_acc": 0.5, "diverged": False}))
    return pd.concat(frames, ignore_index=True)


def test_a_candidate_that_overfits_less_but_is_worse_at_its_best_epoch_is_not_supported():
    per_seed = compare.per_seed_metrics(_overfitting_curves())
    early = compare.compare_paired(per_seed, "best_test_loss", "cand")
    assert early.mean_difference == pytest.approx(0.05) and early.verdict == metrics.NOT_SUPPORTED
    final = compare.compare_paired(per_seed, "test_loss", "cand")  # the final epoch would have favoured it
    assert final.mean_difference < 0 and final.verdict == metrics.SUPPORTED


def test_a_candidate_diverging_on_4_of_10_seeds_and_better_on_the_rest_is_not_supported():
    adam = 0.50 + 0.01 * np.arange(10)
    per_seed = _per_seed(adam, adam - 0.05, diverged_candidate=(0, 3, 6, 9))
    c = compare.compare_paired(per_seed, "test_loss", "cand")
    assert c.verdict == metrics.NOT_SUPPORTED and "diverged" in c.reason
    assert c.n_pairs == 10 and c.diverged == (4, 0)  # ranked last, never dropped
    # seed 9's substitute ties Adam's worst run (0.59) and counts half
    assert c.probability_of_improvement == pytest.approx(0.65)
    assert c.candidate_mean == pytest.approx(np.mean(np.where(np.isin(np.arange(10), [0, 3, 6, 9]), 0.59, adam - 0.05)))


def test_holm_adjusts_the_benchmark_verdicts():
    adam = 0.50 + 0.01 * np.arange(6)
    rows = _per_seed(adam, adam - 0.05)
    twin = rows[rows["optimizer"] == "cand"].assign(optimizer="twin")
    per_seed = pd.concat([rows, twin], ignore_index=True)
    alone = compare.compare_paired(per_seed, "test_loss", "cand")
    both = compare.compare_experiment(per_seed, "test_loss", ["cand", "twin"])
    assert alone.p_value == pytest.approx(2 / 64) and alone.verdict == metrics.SUPPORTED
    assert [c.p_adjusted for c in both] == pytest.approx([4 / 64, 4 / 64])
    assert {c.verdict for c in both} == {metrics.INCONCLUSIVE}


def test_budget_curves_over_repeats_follow_start_order():
    trials = pd.DataFrame({
        "phase": "tune", "optimizer": "adam", "repeat": [0, 0, 0, 1, 1, 1],
        "trial_id": ["a", "b", "c", "d", "e", "f"], "started_at": [3.0, 1.0, 2.0, 1.0, 2.0, 3.0],
        "best_val_loss": [0.5, 0.9, 0.7, 0.8, 0.6, 0.4],
        "pruned": [False, False, False, False, True, False], "diverged": False})
    budget = compare.budget_curves(trials, "best_val_loss", False)
    # repeat 0 in start order: 0.9, 0.7, 0.5; repeat 1: 0.8, (0.6 stopped by ASHA), 0.4
    assert list(budget["n"]) == [1, 2, 3]
    assert budget["mean"].to_numpy() == pytest.approx([0.85, 0.75, 0.45])
    assert budget["low"].to_numpy() == pytest.approx([0.8, 0.7, 0.4])
    assert budget["high"].to_numpy() == pytest.approx([0.9, 0.8, 0.5])


# --- figures ---------------------------------------------------------------

def test_figures_return_their_axes(run_dir):
    curves = pd.read_parquet(run_dir / "curves.parquet")
    trials = pd.read_parquet(run_dir / "trials.parquet")
    cgi = curves[curves["experiment"] == "cgi"]
    ax = plots.plot_comparison(cgi)
    assert len(ax.get_lines()) == 2 and ax.get_yscale() == "log" and ax.get_xlabel() == "epoch"
    assert "adam (6 runs)" in [t.get_text() for t in ax.get_legend().get_texts()]
    ax = plots.plot_comparison(cgi[cgi["phase"] == "tune"])
    assert not ax.get_lines() and ax.texts[0].get_text() == "no final runs"

    bench = trials[trials["experiment"] == "benchmark"]
    budget = compare.budget_curves(bench, "best_val_loss", False)
    ax = plots_tuning.plot_budget(budget, "best_val_loss")
    assert len(ax.get_lines()) == 6 and ax.get_xlabel().startswith("trials run")
    spaces = _spec("benchmark", ALL_OPTIMIZERS)["optimizers"]
    best = compare.best_trials(bench, "best_val_loss", False)
    assert len(best) == 12  # one per optimizer and repeat
    axes = plots_tuning.plot_sensitivity(bench, spaces, "best_val_loss", best)
    assert axes.shape == (6, 2) and sum(ax.get_visible() for ax in axes.ravel()) == 10
    panels = {ax.get_title(): ax for ax in axes.ravel() if ax.get_visible()}
    assert panels["adam: lr"].get_xscale() == "log" and panels["adam: lr"].get_yscale() == "log"
    assert panels["lrg: rank"].get_xscale() == "log" and "integer" in panels["lrg: rank"].get_xlabel()
    assert panels["cgi: inversion_frequency"].get_xscale() == "linear"
    assert panels["gao: beta"].get_xlabel() == "beta (linear)"
    stars = [c for c in panels["gao: lr"].collections if c.get_label() == "best trial (each repeat)"]
    assert len(stars[0].get_offsets()) == 2
    plots.save_figure(axes, run_dir / "plots" / "sensitivity.png")
    gao = bench[bench["optimizer"] == "gao"]
    ax = plots_tuning.plot_hparam(gao.assign(beta=[0.9, 0.99] * (len(gao) // 2)), "beta",
                                  {"type": "choice", "values": [0.9, 0.99]}, "best_val_loss", best)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.9", "0.99"] and ax.get_xscale() == "linear"
    ax = plots_tuning.plot_hparam(bench[bench["optimizer"] == "cgi"], "inversion_frequency",
                                  {"type": "int", "low": 2, "high": 100}, "best_val_loss", best)
    assert isinstance(ax.xaxis.get_major_locator(), matplotlib.ticker.MaxNLocator)


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
    assert "r0: 98; r1: 98" in report_text  # each repeat's config


def test_report_names_primary_correction_method_and_divergence(report_text):
    words = " ".join(report_text.split())
    assert "test loss at each run's epoch of best validation loss (early-stopped)" in report_text
    assert "`final.primary` = best_val_epoch" in report_text
    assert "Holm–Bonferroni" in report_text and "p (Holm)" in report_text
    assert "two-level percentile bootstrap" in words and "scipy.stats.permutation_test" in words
    assert f"p < {metrics.ALPHA}" in report_text
    assert "diverged (tuning)" in report_text and "diverged (final)" in report_text
    # every repeat has one diverged trial of 6, and no final run diverged
    cgi = report_text.split("## cgi:")[1].split("## benchmark:")[0]
    assert "| cgi | 12 (2 repeats) | 4 | 2/12 | 0/6 |" in cgi
    assert "**Provenance:** python 3.12.1, torch 2.5.0" in report_text and "git abc1234" in report_text


def test_report_verdicts_and_figures(run_dir, report_text):
    verdicts = re.findall(r"\*\*(supported|not supported|inconclusive)\*\*", report_text)
    assert len(verdicts) >= 6  # cgi + five benchmark candidates (summary and sections)
    assert "cannot be reached" in report_text  # 3 seeds can never give p < 0.05
    assert "The write-up concluded the hypothesis was **not supported**" in report_text
    for link in ["cgi/comparison.png", "cgi/tuning.png", "cgi/budget.png", "cgi/sensitivity.png",
                 "benchmark/comparison.png", "benchmark/sensitivity.png", "benchmark.png"]:
        assert f"({link})" in report_text and (run_dir / link).exists()
    assert "Best tuning objective (best_val_loss) found after n trials" in report_text


def test_report_supported_and_equivalent(tmp_path):
    better = synthetic_curves("better", ["adam", "cgi"], 8, {"cgi": -0.06})
    same = synthetic_curves("same", ["adam", "cgi"], 3, {"cgi": 0.0})
    run = write_run(tmp_path, {"better": (better, _spec("better", ["adam", "cgi"], "supported")),
                               "same": (same, _spec("same", ["adam", "cgi"]))})
    text = write_report(run).read_text()
    assert "**Provenance:**" not in text
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
    last = curves.index[(curves["trial_id"] == "gns_r0_f1")][-1]
    curves.loc[last, ["val_loss", "test_loss", "diverged"]] = [np.inf, np.inf, True]
    spec = _spec("gns", ["adam", "gns"], "not supported", metric="val_acc")
    text = write_report(write_run(tmp_path, {"gns": (curves, spec)})).read_text()
    assert "test accuracy at best-val epoch (primary)" in text and " pp [" in text
    # behaviour changed: the diverged run is kept as the worst value, and counted against gns
    assert "| gns | 4 (1 × 4) |" in text and "1/4 / 0/4" in text
    assert "diverged in 25% of its final runs" in text


def test_cli_rebuilds_the_report_from_edited_frames(tmp_path, capsys):
    run = write_run(tmp_path, {"cgi": (synthetic_curves("cgi", ["adam", "cgi"], 3, repeats=2),
                                       _spec("cgi", ["adam", "cgi"], primary="final_epoch"))})
    assert analysis_main([str(run)]) == 0 and "report.md" in capsys.readouterr().out
    assert "0/6 / 0/6" in (run / "report.md").read_text()
    curves = pd.read_parquet(run / "curves.parquet")
    curves.loc[curves.index[curves["trial_id"] == "cgi_r1_f0"][-1], ["test_loss", "diverged"]] = [np.inf, True]
    curves.to_parquet(run / "curves.parquet")
    trials_of(curves).to_parquet(run / "trials.parquet")
    assert analysis_main([str(run)]) == 0
    text = (run / "report.md").read_text()
    assert "1/6 / 0/6" in text and "`final.primary` = final_epoch" in text
    assert "final-epoch test loss (primary)" in text
