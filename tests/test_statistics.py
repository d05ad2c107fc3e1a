"""Statistics: the array functions (analysis.metrics) on hand-computed values and against scipy,
the frame functions (analysis.compare) and verdicts on synthetic frames with known answers."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import compare, metrics
from synthetic import synthetic_curves


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



def test_smallest_holm_p_is_one_sign_pattern_per_side_times_the_family():
    assert metrics.smallest_holm_p(3, 1) == 0.25  # 2 of the 8 sign patterns
    assert metrics.smallest_holm_p(6, 2) == pytest.approx(2 * 2 / 64)
    assert metrics.smallest_holm_p(1, 5) == metrics.smallest_holm_p(0, 1) == 1.0
    adam = 0.50 + 0.01 * np.arange(6)
    assert metrics.permutation_test(adam - 0.05 - adam) == metrics.smallest_holm_p(6, 1)  # all seeds agree


def test_ranking_and_intervals_score_a_failed_run_as_the_worst():
    adam = 0.50 + 0.01 * np.arange(4)
    per_seed = _per_seed(adam, adam - 0.02, diverged_candidate=(0, 1))
    # cand's diverged runs take the worst finite loss (0.53): mean 0.5175 > Adam's 0.515 (dropped, 0.505 < 0.515)
    assert compare.ranked_by_mean(per_seed, "test_loss", False, ["adam", "cand", "absent"]) == ["adam", "cand"]
    mean, low, high = compare.mean_interval([0.5, np.inf, 0.7, np.nan])  # non-finite values left out
    assert mean == pytest.approx(0.6) and 0.5 <= low <= mean <= high <= 0.7
    assert compare.mean_interval([np.inf]) is None


def test_epochs_to_adams_target():
    curves = synthetic_curves("x", ["adam", "slow"], 4, {"slow": 0.3})
    final = curves[(curves["phase"] == "final") & (curves["optimizer"] == "adam")]
    target = compare.baseline_target(curves)
    assert target == pytest.approx(final.groupby("seed")["val_loss"].min().median())
    reach = compare.reaching_target(curves, target, ["adam", "slow", "absent"])
    assert reach.loc["adam", "reached"] == 2 and reach.loc["adam", "runs"] == 4  # half of Adam's runs reach its median
    assert reach.loc["slow", "reached"] == 0 and reach.loc["slow", "median_epoch"] == np.inf
    assert reach.loc["absent", "runs"] == 0
