"""Statistics on frames: select and reshape the curves / trials frames, then call the array
functions of analysis.metrics. One experiment's frames in, small typed results out.

    per_seed_metrics(curves)          one row per final run (repeat × seed) of each optimizer
    compare_experiment(per_seed, ..)  every candidate against Adam, Holm-adjusted, with verdicts
    budget_curves(trials, ..)         best objective after n tuning trials, over repeats
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from analysis import metrics
from analysis.load import METRIC_COLUMNS
from tune.experiments import BASELINE

BEST_COLUMNS = ("best_epoch", "best_val_loss", "best_val_acc", "best_test_loss", "best_test_acc")
PER_SEED_COLUMNS = ["experiment", "optimizer", "study", "repeat", "seed", "trial_id", "epochs",
                    "diverged", *METRIC_COLUMNS, *BEST_COLUMNS]


def per_seed_metrics(curves: pd.DataFrame, selection_metric: str = "val_loss") -> pd.DataFrame:
    """One row per final run (experiment, optimizer, repeat, seed).

    Metric columns hold the last epoch's values; best_* columns the values at the trained
    epoch (>= 1; epoch 0 is measured before any step) of best finite `selection_metric`.
    `diverged` marks a run that diverged at any epoch. A run done twice keeps the longer one.
    """
    final = curves[curves["phase"] == "final"]
    pick = np.nanargmax if metrics.higher_is_better(selection_metric) else np.nanargmin
    rows = []
    keys = ["experiment", "optimizer", "study", "repeat", "seed", "trial_id"]
    for key, run in final.groupby(keys, sort=True):
        run = run.sort_values("epoch")
        last = run.iloc[-1]
        row = dict(zip(keys, key)) | {"epochs": int(last["epoch"]), "diverged": bool(run["diverged"].any())}
        row |= {column: float(last[column]) for column in METRIC_COLUMNS}
        selection = run[selection_metric].to_numpy(dtype=float)
        selection = np.where(np.isfinite(selection) & (run["epoch"].to_numpy() >= 1), selection, np.nan)
        if not np.isnan(selection).all():
            best = run.iloc[int(pick(selection))]
            row["best_epoch"] = int(best["epoch"])
            row |= {f"best_{m}": float(best[m]) for m in METRIC_COLUMNS if m != "train_loss"}
        rows.append(row)
    frame = pd.DataFrame(rows, columns=PER_SEED_COLUMNS)
    frame = frame.astype({column: float for column in (*METRIC_COLUMNS, *BEST_COLUMNS)}
                         | {"diverged": bool, "repeat": "int64", "seed": "int64"})
    frame = frame.sort_values("epochs", kind="stable")
    frame = frame.drop_duplicates(["experiment", "optimizer", "repeat", "seed"], keep="last")
    return frame.sort_values(["experiment", "optimizer", "repeat", "seed"]).reset_index(drop=True)


def failed(per_seed: pd.DataFrame, column: str) -> pd.Series:
    """Runs that count as the worst outcome on `column`: diverged, or no finite value."""
    return per_seed["diverged"].astype(bool) | ~np.isfinite(per_seed[column].to_numpy(dtype=float))


def scored(per_seed: pd.DataFrame, column: str, higher_better: bool) -> pd.Series:
    """`column` with failed runs set to the worst finite value of that column in the frame
    (one experiment's final runs): every run is kept and a failed one ranks last."""
    values = metrics.substitute_failed(per_seed[column], failed(per_seed, column), higher_better)
    return pd.Series(values, index=per_seed.index, name=column)


def value_matrix(per_seed: pd.DataFrame, optimizer: str, column: str, higher_better: bool) -> pd.DataFrame:
    """repeats × seeds of one optimizer's scored `column`."""
    rows = per_seed[per_seed["optimizer"] == optimizer]
    values = scored(per_seed, column, higher_better)[rows.index]
    return rows.assign(value=values).pivot_table(index="repeat", columns="seed", values="value", aggfunc="mean")


@dataclass(frozen=True)
class PairedComparison:
    """Candidate vs baseline on one metric: repeats × paired seeds."""
    candidate: str
    baseline: str
    metric: str
    higher_better: bool
    n_pairs: int  # seeds run by every repeat of both optimizers
    repeats: tuple[int, int]  # (candidate, baseline) tuning repeats
    diverged: tuple[int, int]  # final runs that diverged (candidate, baseline), all repeats and seeds
    runs: tuple[int, int]  # final runs (candidate, baseline)
    baseline_mean: float
    candidate_mean: float
    mean_difference: float  # candidate − baseline, in the metric's units
    ci: tuple[float, float]  # two-level bootstrap CI of mean_difference
    probability_of_improvement: float  # over paired seeds of repeat means, ties count half
    p_value: float  # sign-flip permutation p over seeds
    p_adjusted: float  # Holm-adjusted over the experiment's candidates
    verdict: str
    reason: str

    def diverged_share(self) -> tuple[float, float]:
        return tuple(d / n if n else 0.0 for d, n in zip(self.diverged, self.runs))


def _with_verdict(c: PairedComparison, p_adjusted: float, fmt) -> PairedComparison:
    low, high = c.ci if c.higher_better else (-c.ci[1], -c.ci[0])
    label, reason = metrics.verdict((low, high), p_adjusted, c.n_pairs, c.baseline_mean,
                                    *c.diverged_share(), fmt=fmt)
    return replace(c, p_adjusted=p_adjusted, verdict=label, reason=reason)


def compare_paired(per_seed: pd.DataFrame, metric: str, candidate: str, baseline: str = BASELINE,
                   higher_better: bool | None = None, seed: int = 0,
                   fmt=metrics.three_digits) -> PairedComparison:
    """Mean difference, two-level bootstrap CI, probability of improvement, sign-flip p and
    verdict (unadjusted p: a family of one) of one candidate in one experiment."""
    if higher_better is None:
        higher_better = metrics.higher_is_better(metric)
    ours = value_matrix(per_seed, candidate, metric, higher_better)
    theirs = value_matrix(per_seed, baseline, metric, higher_better)
    seeds = ours.columns.intersection(theirs.columns)
    ours, theirs = ours[seeds].dropna(axis=1), theirs[seeds].dropna(axis=1)
    seeds = ours.columns.intersection(theirs.columns)
    ours, theirs = ours[seeds].to_numpy(), theirs[seeds].to_numpy()
    per_seed_ours, per_seed_theirs = ours.mean(axis=0), theirs.mean(axis=0)
    difference = per_seed_ours - per_seed_theirs
    runs = {o: per_seed[per_seed["optimizer"] == o] for o in (candidate, baseline)}
    p_value = metrics.permutation_test(difference, seed=seed)
    comparison = PairedComparison(
        candidate=candidate, baseline=baseline, metric=metric, higher_better=higher_better,
        n_pairs=len(seeds), repeats=(ours.shape[0], theirs.shape[0]),
        diverged=(int(failed(runs[candidate], metric).sum()), int(failed(runs[baseline], metric).sum())),
        runs=(len(runs[candidate]), len(runs[baseline])),
        baseline_mean=float(theirs.mean()) if theirs.size else float("nan"),
        candidate_mean=float(ours.mean()) if ours.size else float("nan"),
        mean_difference=float(difference.mean()) if difference.size else float("nan"),
        ci=metrics.two_level_bootstrap_ci(ours, theirs, seed=seed),
        probability_of_improvement=metrics.probability_of_improvement(per_seed_ours, per_seed_theirs, higher_better),
        p_value=p_value, p_adjusted=p_value, verdict="", reason="")
    return _with_verdict(comparison, p_value, fmt)


def compare_experiment(per_seed: pd.DataFrame, metric: str, candidates: list[str],
                       baseline: str = BASELINE, higher_better: bool | None = None,
                       fmt=metrics.three_digits) -> list[PairedComparison]:
    """compare_paired for every candidate with final runs, then Holm's correction across
    them; each verdict uses its adjusted p."""
    present = set(per_seed["optimizer"])
    if baseline not in present:
        return []
    comparisons = [compare_paired(per_seed, metric, c, baseline, higher_better, fmt=fmt)
                   for c in candidates if c != baseline and c in present]
    adjusted = metrics.holm([c.p_value for c in comparisons])
    return [_with_verdict(c, float(p), fmt) for c, p in zip(comparisons, adjusted)]


def ranked_by_mean(per_seed: pd.DataFrame, column: str, higher_better: bool, optimizers: list[str]) -> list[str]:
    """Those of `optimizers` with final runs, best mean `column` (failed runs scored) first."""
    means = scored(per_seed, column, higher_better).groupby(per_seed["optimizer"]).mean()
    present = [o for o in optimizers if o in means.index]
    return sorted(present, key=lambda o: (np.isnan(means[o]), -means[o] if higher_better else means[o]))


def mean_interval(values) -> tuple[float, float, float] | None:
    """Mean and bootstrap CI (metrics.bootstrap_ci) of the finite `values`; None if there are none."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return (values.mean(), *metrics.bootstrap_ci(values)) if values.size else None


def budget_curves(trials: pd.DataFrame, objective: str, higher_better: bool) -> pd.DataFrame:
    """Per optimizer and n = 1..N: the best `objective` among the first n tuning trials of each
    repeat (in the order they started; trials stopped by ASHA or diverged use up budget but
    never count as best, as in the choice of the best config), then mean, min and max over
    repeats. N is the fewest trials any repeat ran; NaN until every repeat has a full trial."""
    tuning = trials[trials["phase"] == "tune"]
    frames = []
    for optimizer, rows in tuning.groupby("optimizer", sort=True):
        curves = []
        for _, study in rows.groupby("repeat", sort=True):
            study = study.sort_values(["started_at", "trial_id"])
            usable = ~study["pruned"].astype(bool) & ~study["diverged"].astype(bool)
            curves.append(metrics.budget_curve(study[objective], usable, higher_better))
        n = min(len(curve) for curve in curves)
        values = np.array([curve[:n] for curve in curves])
        frames.append(pd.DataFrame({"optimizer": optimizer, "n": np.arange(1, n + 1),
                                    "mean": values.mean(axis=0), "low": values.min(axis=0),
                                    "high": values.max(axis=0), "repeats": len(curves)}))
    columns = ["optimizer", "n", "mean", "low", "high", "repeats"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def best_trials(trials: pd.DataFrame, objective: str, higher_better: bool) -> pd.Index:
    """Index of each tuning study's best trial, chosen as the study chooses its config: the
    best finite `objective` among trials that trained the full budget without diverging, or
    among all trials with a finite objective when none did."""
    tuning = trials[trials["phase"] == "tune"]
    best = []
    for _, study in tuning.groupby(["optimizer", "repeat"], sort=True):
        values = study[objective].astype(float)
        full = ~study["pruned"].astype(bool) & ~study["diverged"].astype(bool) & np.isfinite(values)
        pool = values[full] if full.any() else values[np.isfinite(values)]
        if len(pool):
            best.append(pool.idxmax() if higher_better else pool.idxmin())
    return pd.Index(best)


def mean_epoch_time(curves: pd.DataFrame) -> pd.Series:
    """Mean wall time (s) of one training epoch per optimizer (epoch 0 left out)."""
    trained = curves[curves["epoch"] >= 1]
    return trained.groupby("optimizer")["epoch_time"].mean()


def baseline_target(curves: pd.DataFrame, baseline: str = BASELINE) -> float:
    """The baseline's median best validation loss over its final runs (NaN without any)."""
    final = curves[(curves["phase"] == "final") & (curves["optimizer"] == baseline)]
    best = final["val_loss"].replace(np.inf, np.nan).groupby([final["repeat"], final["seed"]]).min().dropna()
    return float(best.median()) if len(best) else float("nan")


def reaching_target(curves: pd.DataFrame, target: float, optimizers: list[str]) -> pd.DataFrame:
    """Per optimizer: how many final runs reach `target` validation loss, of how many, and the
    median epoch they do (a run that never does counts as infinitely slow)."""
    reach = epochs_to_target(curves, target)
    rows = []
    for optimizer in optimizers:
        epochs = reach.loc[reach["optimizer"] == optimizer, "epoch"]
        rows.append({"optimizer": optimizer, "runs": len(epochs), "reached": int(epochs.notna().sum()),
                     "median_epoch": float(epochs.fillna(np.inf).median()) if len(epochs) else np.nan})
    return pd.DataFrame(rows, columns=["optimizer", "runs", "reached", "median_epoch"]).set_index("optimizer")


def epochs_to_target(curves: pd.DataFrame, target: float, loss: str = "val_loss") -> pd.DataFrame:
    """Per final run: first epoch and cumulative training seconds at which `loss` <= target."""
    rows = []
    final = curves[curves["phase"] == "final"]
    for (optimizer, repeat, seed), run in final.groupby(["optimizer", "repeat", "seed"], sort=True):
        run = run.sort_values("epoch")
        rows.append({"optimizer": optimizer, "repeat": int(repeat), "seed": int(seed),
                     "epoch": metrics.time_to_target(run["epoch"], run[loss], target),
                     "seconds": metrics.time_to_target(run["epoch_time"].cumsum(), run[loss], target)})
    return pd.DataFrame(rows, columns=["optimizer", "repeat", "seed", "epoch", "seconds"])
