"""Statistics on arrays: the numbers behind every verdict, with no frames and no figures.

Where scipy.stats computes a statistic we call it (`bootstrap_ci`: scipy.stats.bootstrap;
`permutation_test`: scipy.stats.permutation_test); what scipy lacks is written here and tested
against scipy where the two overlap: the two-level (repeats × seeds) bootstrap, Holm's
correction, the substitution of diverged runs, and the budget curve. The constants below are
the verdict rule's; the report's rule text is written from them.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

ALPHA = 0.05  # significance level of the (Holm-adjusted) permutation p
CONFIDENCE = 0.95  # of every bootstrap interval
N_RESAMPLES = 10_000  # bootstrap resamples
N_PERMUTATIONS = 100_000  # the sign-flip test is exact while 2**n <= this (n <= 16 seeds)
BOOTSTRAP_METHOD = "percentile"  # the scipy.stats.bootstrap method of every interval
EQUIVALENCE_FRACTION = 0.01  # a CI within ± this share of Adam's mean counts as no benefit
MIN_PAIRS = 3  # paired seeds needed for any verdict but "inconclusive"

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
INCONCLUSIVE = "inconclusive"


def higher_is_better(metric: str) -> bool:
    """Accuracies are maximised, losses minimised."""
    return "acc" in metric


def _mean(x, axis=-1):
    return np.mean(x, axis=axis)


def bootstrap_ci(values, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
                 seed: int = 0) -> tuple[float, float]:
    """scipy.stats.bootstrap interval (BOOTSTRAP_METHOD) of the mean of 1-D `values`.
    One value or identical values give a point interval; no values give (nan, nan)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return float("nan"), float("nan")
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    result = stats.bootstrap((values,), _mean, confidence_level=confidence, n_resamples=n_resamples,
                             method=BOOTSTRAP_METHOD, vectorized=True, rng=seed)
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def permutation_test(differences, n_resamples: int = N_PERMUTATIONS, seed: int = 0) -> float:
    """Two-sided sign-flip permutation p of mean(differences) = 0 (scipy.stats.permutation_test,
    permutation_type='samples'): exact (all 2**n sign patterns) while 2**n <= n_resamples."""
    d = np.asarray(differences, dtype=float)
    if d.size == 0:
        return float("nan")
    result = stats.permutation_test((d,), _mean, permutation_type="samples", vectorized=True,
                                    n_resamples=n_resamples, alternative="two-sided", rng=seed)
    return float(result.pvalue)


def two_level_bootstrap_ci(candidate, baseline, confidence: float = CONFIDENCE,
                           n_resamples: int = N_RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of mean(candidate) − mean(baseline) for arrays of shape
    (repeats, seeds), seed i paired across the two. Each resample draws the seeds jointly
    (pairing kept) and each optimizer's repeats independently (repeats are independent
    tunings), so disagreeing repeats widen the interval. With one repeat each this is the
    paired percentile bootstrap of the per-seed differences."""
    candidate, baseline = np.atleast_2d(candidate).astype(float), np.atleast_2d(baseline).astype(float)
    n_seeds = candidate.shape[1]
    if n_seeds == 0 or baseline.shape[1] != n_seeds:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, n_seeds, size=(n_resamples, n_seeds))

    def resampled_means(values):
        repeats = rng.integers(0, values.shape[0], size=(n_resamples, values.shape[0]))
        per_seed = values[repeats].mean(axis=1)  # (resamples, seeds): mean over drawn repeats
        return np.take_along_axis(per_seed, seeds, axis=1).mean(axis=1)

    differences = resampled_means(candidate) - resampled_means(baseline)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(differences, [tail, 100 - tail])
    return float(low), float(high)


def holm(p_values) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values, in the input order (NaN stays NaN and is not
    counted). The i-th smallest of m p-values is multiplied by m − i + 1, then made
    non-decreasing and capped at 1. (scipy's false_discovery_control is BH/BY, not Holm.)"""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    factors = len(order) - np.arange(len(order))
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(factors * p[order]))
    return adjusted


def smallest_holm_p(n_pairs: int, n_tests: int) -> float:
    """The smallest Holm-adjusted sign-flip p that `n_pairs` paired seeds can give in a family
    of `n_tests`: one sign pattern of 2**n_pairs on each side, times n_tests, at most 1."""
    return min(1.0, n_tests * 2.0 ** (1 - n_pairs)) if n_pairs else 1.0


def substitute_failed(values, failed, higher_better: bool, pool=None) -> np.ndarray:
    """`values` with failed (diverged or non-finite) entries set to the worst finite value of
    `pool` (default: `values` themselves), so a failed run ranks last but statistics stay
    defined. Without any finite value in the pool, failed entries become NaN."""
    values = np.asarray(values, dtype=float)
    failed = np.asarray(failed, dtype=bool) | ~np.isfinite(values)
    pool = values if pool is None else np.asarray(pool, dtype=float)
    pool = pool[np.isfinite(pool)]
    worst = (pool.min() if higher_better else pool.max()) if pool.size else np.nan
    return np.where(failed, worst, values)


def probability_of_improvement(candidate, baseline, higher_better: bool,
                               paired: bool = True) -> float:
    """Fraction of comparisons the candidate wins; ties count half.
    paired=True compares seed i with seed i; paired=False every run with every run."""
    candidate = np.asarray(candidate, dtype=float)
    baseline = np.asarray(baseline, dtype=float)
    if not paired:
        candidate, baseline = candidate[:, None], baseline[None, :]
    wins = candidate > baseline if higher_better else candidate < baseline
    if wins.size == 0:
        return float("nan")
    return float(np.mean(wins + 0.5 * (candidate == baseline)))


def budget_curve(objectives, usable, higher_better: bool) -> np.ndarray:
    """Best objective among the usable trials of the first n, for n = 1..len (trials in the
    order they started); NaN until the first usable trial. Unusable trials (stopped early,
    diverged) use up budget but never become the best."""
    values = np.asarray(objectives, dtype=float)
    usable = np.asarray(usable, dtype=bool) & np.isfinite(values)
    sign = -1.0 if higher_better else 1.0
    best = np.minimum.accumulate(np.where(usable, sign * values, np.inf))
    return np.where(np.isinf(best), np.nan, sign * best)


def time_to_target(clock, losses, target: float) -> float:
    """Value of `clock` (epochs or cumulative seconds) at the first loss <= target; NaN if never."""
    reached = np.flatnonzero(np.asarray(losses, dtype=float) <= target)
    return float(np.asarray(clock, dtype=float)[reached[0]]) if reached.size else float("nan")


def three_digits(value: float) -> str:
    """How a verdict's reason writes a margin unless told the metric's units."""
    return f"{value:.3g}"


def verdict(improvement_ci, p_value: float, n_pairs: int, baseline_mean: float,
            candidate_diverged: float = 0.0, baseline_diverged: float = 0.0,
            alpha: float = ALPHA, equivalence_fraction: float = EQUIVALENCE_FRACTION,
            min_pairs: int = MIN_PAIRS, fmt=three_digits) -> tuple[str, str]:
    """The verdict rule, applied in this order to the CI of the mean improvement (positive =
    candidate better), the (adjusted) p-value and the shares of final runs that diverged.
    Returns (label, reason); `fmt` writes the equivalence margin in the metric's units."""
    low, high = improvement_ci
    margin = equivalence_fraction * abs(baseline_mean)
    if n_pairs < min_pairs or not np.isfinite([low, high, p_value]).all():
        return INCONCLUSIVE, f"only {n_pairs} usable paired seeds; at least {min_pairs} needed"
    if candidate_diverged > baseline_diverged:
        return NOT_SUPPORTED, (f"it diverged in {candidate_diverged:.0%} of its final runs, "
                               f"Adam in {baseline_diverged:.0%}")
    if p_value < alpha and low > 0:
        return SUPPORTED, f"p = {p_value:.3g} < {alpha} and the CI lies above 0"
    if p_value < alpha and high < 0:
        return NOT_SUPPORTED, f"p = {p_value:.3g} < {alpha} and the CI lies below 0: Adam is better"
    if -margin <= low and high <= margin:
        return NOT_SUPPORTED, (f"the CI lies within ±{fmt(margin)} ({equivalence_fraction:.0%} "
                               "of Adam's mean): no practical benefit")
    return INCONCLUSIVE, f"p = {p_value:.3g} and the CI is neither clear of 0 nor within ±{fmt(margin)}"
