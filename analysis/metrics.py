"""Metrics for comparing optimizers across paired seeds.

Array functions (bootstrap_ci, probability_of_improvement, permutation_test,
time_to_target, verdict) are pure; frame functions (per_seed_metrics,
paired_differences, compare_paired, mean_epoch_time) only select and reshape
the curves / per-seed frames and then call the array functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

BASELINE = "adam"
EQUIVALENCE_FRACTION = 0.01  # |effect| below this share of Adam's mean counts as no benefit
METRIC_COLUMNS = ("train_loss", "val_loss", "val_acc", "test_loss", "test_acc")

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
INCONCLUSIVE = "inconclusive"

BEST_COLUMNS = ("best_epoch", "best_val_loss", "best_val_acc", "best_test_loss", "best_test_acc")
PER_SEED_COLUMNS = ["experiment", "optimizer", "seed", "trial_id", "epochs", "diverged",
                    *METRIC_COLUMNS, *BEST_COLUMNS]


def higher_is_better(metric: str) -> bool:
    """Accuracies are maximised, losses minimised."""
    return "acc" in metric


# --- array functions -------------------------------------------------------

def bootstrap_ci(values, confidence: float = 0.95, n_resamples: int = 10_000,
                 seed: int = 0, statistic=np.mean):
    """Percentile bootstrap interval of `statistic` over axis 0 (the seeds).

    `statistic` must accept an `axis` argument. Returns (low, high): floats for
    1-D input, arrays for n-D input. Constant data gives a point interval and
    empty data gives (nan, nan).
    """
    values = np.asarray(values, dtype=float)
    if values.shape[0] == 0:
        nan = np.full(values.shape[1:], np.nan)
        return (float("nan"),) * 2 if values.ndim == 1 else (nan, nan)
    rng = np.random.default_rng(seed)
    resample = rng.integers(0, values.shape[0], size=(n_resamples, values.shape[0]))
    stats = statistic(values[resample], axis=1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(stats, [tail, 100 - tail], axis=0)
    # Means of identical numbers can differ in the last bit; force an exact point.
    constant = np.all(values == values[0], axis=0)
    point = statistic(values, axis=0)
    low, high = np.where(constant, point, low), np.where(constant, point, high)
    if values.ndim == 1:
        return float(low), float(high)
    return low, high


def probability_of_improvement(candidate, baseline, higher_better: bool,
                               paired: bool = True) -> float:
    """Fraction of comparisons the candidate wins; ties count half.

    paired=True compares seed i with seed i (arrays must align);
    paired=False compares every candidate run with every baseline run.
    """
    candidate = np.asarray(candidate, dtype=float)
    baseline = np.asarray(baseline, dtype=float)
    if not paired:
        candidate, baseline = candidate[:, None], baseline[None, :]
    wins = candidate > baseline if higher_better else candidate < baseline
    ties = candidate == baseline
    if wins.size == 0:
        return float("nan")
    return float(np.mean(wins + 0.5 * ties))


def permutation_test(differences, n_resamples: int = 100_000, seed: int = 0,
                     max_exact: int = 16) -> float:
    """Two-sided paired sign-flip permutation p-value for mean(differences) = 0.

    Enumerates all 2**n sign patterns when n <= max_exact, otherwise draws
    n_resamples random patterns (p = (1 + hits) / (1 + n_resamples)).
    All-zero differences give p = 1.
    """
    d = np.asarray(differences, dtype=float)
    n = d.size
    if n == 0:
        return float("nan")
    observed = abs(d.sum())
    # Sums of the same numbers in a different order can differ by rounding.
    tolerance = 1e-9 * max(1.0, np.abs(d).sum())
    if n <= max_exact:
        patterns = (np.arange(2 ** n)[:, None] >> np.arange(n)) & 1
        signs = 2 * patterns - 1
        hits = np.abs(signs @ d) >= observed - tolerance
        return float(hits.mean())
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(n_resamples, n))
    hits = np.abs(signs @ d) >= observed - tolerance
    return float((1 + hits.sum()) / (1 + n_resamples))


def time_to_target(clock, losses, target: float) -> float:
    """Value of `clock` (epoch numbers or cumulative seconds) at the first loss
    <= target; NaN if the target is never reached."""
    losses = np.asarray(losses, dtype=float)
    reached = np.flatnonzero(losses <= target)
    if reached.size == 0:
        return float("nan")
    return float(np.asarray(clock, dtype=float)[reached[0]])


def verdict(improvement_ci, p_value: float, n_pairs: int, baseline_mean: float,
            alpha: float = 0.05, equivalence_fraction: float = EQUIVALENCE_FRACTION,
            min_pairs: int = 3, fmt=lambda value: f"{value:.3g}") -> tuple[str, str]:
    """The report's verdict rule, applied to the CI of the mean improvement
    (positive = candidate better). Returns (label, reason); `fmt` writes the
    equivalence margin in the metric's units."""
    low, high = improvement_ci
    margin = equivalence_fraction * abs(baseline_mean)
    if n_pairs < min_pairs or not np.isfinite([low, high, p_value]).all():
        return INCONCLUSIVE, f"only {n_pairs} usable paired seeds; at least {min_pairs} needed"
    if p_value < alpha and low > 0:
        return SUPPORTED, f"p = {p_value:.3g} < {alpha} and the CI lies above 0"
    if p_value < alpha and high < 0:
        return NOT_SUPPORTED, f"p = {p_value:.3g} < {alpha} and the CI lies below 0: Adam is better"
    if -margin <= low and high <= margin:
        return NOT_SUPPORTED, (f"the CI lies within ±{fmt(margin)} ({equivalence_fraction:.0%} "
                               "of Adam's mean): no practical benefit")
    return INCONCLUSIVE, f"p = {p_value:.3g} and the CI is neither clear of 0 nor within ±{fmt(margin)}"


# --- frame functions -------------------------------------------------------

def per_seed_metrics(curves: pd.DataFrame, selection_metric: str = "val_loss") -> pd.DataFrame:
    """One row per experiment, optimizer and seed of the final runs.

    Metric columns hold the last epoch's values; best_* columns hold the values
    at the trained epoch (epoch >= 1; final runs also log epoch 0, before any
    step) with the best finite `selection_metric`. If a seed was run twice, the
    longer run is kept.
    """
    final = curves[curves["phase"] == "final"]
    rows = []
    keys = ["experiment", "optimizer", "seed", "trial_id"]
    for (experiment, optimizer, seed, trial_id), run in final.groupby(keys, sort=True):
        run = run.sort_values("epoch")
        last = run.iloc[-1]
        row = {"experiment": experiment, "optimizer": optimizer, "seed": int(seed),
               "trial_id": trial_id, "epochs": int(last["epoch"]),
               "diverged": bool(run["diverged"].any())}
        row.update({column: float(last[column]) for column in METRIC_COLUMNS})
        selection = run[selection_metric].to_numpy(dtype=float)
        trained = run["epoch"].to_numpy() >= 1
        selection = np.where(np.isfinite(selection) & trained, selection, np.nan)
        if np.isnan(selection).all():
            row.update(dict.fromkeys(BEST_COLUMNS, np.nan))
        else:
            pick = np.nanargmax if higher_is_better(selection_metric) else np.nanargmin
            best = run.iloc[int(pick(selection))]
            row["best_epoch"] = int(best["epoch"])
            row.update({f"best_{m}": float(best[m]) for m in METRIC_COLUMNS if m != "train_loss"})
        rows.append(row)
    frame = pd.DataFrame(rows, columns=PER_SEED_COLUMNS)
    # typed even when empty, so callers can test values with numpy
    frame = frame.astype({column: float for column in (*METRIC_COLUMNS, *BEST_COLUMNS)} | {"diverged": bool})
    frame = frame.sort_values("epochs", kind="stable")
    frame = frame.drop_duplicates(["experiment", "optimizer", "seed"], keep="last")
    return frame.sort_values(["experiment", "optimizer", "seed"]).reset_index(drop=True)


def paired_differences(per_seed: pd.DataFrame, metric: str, candidate: str,
                       baseline: str = BASELINE) -> pd.DataFrame:
    """Columns seed, baseline, candidate, difference (candidate − baseline) for
    the seeds both optimizers ran, from one experiment's per-seed frame."""
    def values(optimizer):
        rows = per_seed[per_seed["optimizer"] == optimizer]
        return rows.set_index("seed")[metric].rename(None)

    pairs = pd.concat({"baseline": values(baseline), "candidate": values(candidate)},
                      axis=1, join="inner").sort_index()
    pairs["difference"] = pairs["candidate"] - pairs["baseline"]
    return pairs.rename_axis("seed").reset_index()


@dataclass(frozen=True)
class PairedComparison:
    """Candidate vs baseline on one metric over paired seeds."""
    candidate: str
    baseline: str
    metric: str
    higher_better: bool
    n_pairs: int            # pairs with finite values on both sides
    n_dropped: int          # pairs dropped because a value was NaN/inf (e.g. diverged)
    baseline_mean: float
    candidate_mean: float
    mean_difference: float  # candidate − baseline, in the metric's units
    ci: tuple[float, float]  # bootstrap CI of mean_difference
    probability_of_improvement: float  # over paired seeds, ties count half
    p_value: float
    verdict: str
    reason: str


def compare_paired(per_seed: pd.DataFrame, metric: str, candidate: str,
                   baseline: str = BASELINE, higher_better: bool | None = None,
                   seed: int = 0, fmt=lambda value: f"{value:.3g}") -> PairedComparison:
    """Paired difference, bootstrap CI, probability of improvement, permutation
    p-value and verdict for one candidate in one experiment (`fmt` as in verdict)."""
    if higher_better is None:
        higher_better = higher_is_better(metric)
    pairs = paired_differences(per_seed, metric, candidate, baseline)
    usable = np.isfinite(pairs[["baseline", "candidate"]].to_numpy(dtype=float)).all(axis=1)
    kept = pairs[usable]
    difference = kept["difference"].to_numpy(dtype=float)
    improvement = difference if higher_better else -difference
    low, high = bootstrap_ci(improvement, seed=seed)
    p_value = permutation_test(improvement, seed=seed)
    baseline_mean = float(kept["baseline"].mean()) if len(kept) else float("nan")
    label, reason = verdict((low, high), p_value, len(kept), baseline_mean, fmt=fmt)
    return PairedComparison(
        candidate=candidate, baseline=baseline, metric=metric, higher_better=higher_better,
        n_pairs=len(kept), n_dropped=int((~usable).sum()),
        baseline_mean=baseline_mean,
        candidate_mean=float(kept["candidate"].mean()) if len(kept) else float("nan"),
        mean_difference=float(difference.mean()) if difference.size else float("nan"),
        ci=(low, high) if higher_better else (-high, -low),
        probability_of_improvement=probability_of_improvement(
            kept["candidate"], kept["baseline"], higher_better),
        p_value=p_value, verdict=label, reason=reason,
    )


def mean_epoch_time(curves: pd.DataFrame) -> pd.Series:
    """Mean wall time (s) of one training epoch, per optimizer (epoch 0, the
    evaluation before training, is left out)."""
    trained = curves[curves["epoch"] >= 1]
    return trained.groupby("optimizer")["epoch_time"].mean()


def epochs_to_target(curves: pd.DataFrame, target: float, loss: str = "val_loss") -> pd.DataFrame:
    """Per optimizer and seed of the final runs: first epoch and cumulative
    training seconds at which `loss` <= target (NaN if never)."""
    rows = []
    final = curves[curves["phase"] == "final"]
    for (optimizer, seed), run in final.groupby(["optimizer", "seed"], sort=True):
        run = run.sort_values("epoch")
        rows.append({"optimizer": optimizer, "seed": int(seed),
                     "epoch": time_to_target(run["epoch"], run[loss], target),
                     "seconds": time_to_target(run["epoch_time"].cumsum(), run[loss], target)})
    return pd.DataFrame(rows, columns=["optimizer", "seed", "epoch", "seconds"])
