"""One experiment's section of report.md, as markdown lines: protocol, best hyperparameters,
results, tuning budget and divergence, and the paired comparison with its verdict. Text only:
the numbers come from analysis.compare, the figures from analysis.figures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import compare
from analysis.metrics import ALPHA, INCONCLUSIVE, bootstrap_ci
from analysis.text import METRIC_NAMES, fmt_difference, fmt_hparam, fmt_interval, fmt_p, fmt_space, fmt_value, table
from tune.experiments import BASELINE, ExperimentSpec


@dataclass(frozen=True)
class Primary:
    """The primary metric of an experiment, from its spec (tuning.metric, final.primary)."""
    kind: str  # "best_val_epoch" | "final_epoch"
    selection: str  # the validation metric the best epoch (and the tuning) is judged by
    objective: str  # the trials column the tuning optimised (spec.objective)

    @property
    def metric(self) -> str:
        return self.selection.replace("val_", "test_")

    @property
    def column(self) -> str:
        """The per-seed column holding it."""
        return f"best_{self.metric}" if self.kind == "best_val_epoch" else self.metric

    @property
    def higher_better(self) -> bool:
        return "acc" in self.selection

    def describe(self) -> str:
        where = (f"each run's epoch of best {METRIC_NAMES[self.selection]} (early-stopped)"
                 if self.kind == "best_val_epoch" else "each run's final epoch")
        return f"{METRIC_NAMES[self.metric]} at {where}"


def primary_of(spec: ExperimentSpec) -> Primary:
    return Primary(spec.final.primary, spec.tuning.metric, spec.objective)


COLUMN_NAMES = {"best_test_loss": "test loss at best-val epoch", "best_test_acc": "test accuracy at best-val epoch",
                "test_loss": "final-epoch test loss", "test_acc": "final-epoch test accuracy"}


@dataclass(frozen=True)
class Experiment:
    """Everything one section is written from."""
    name: str
    spec: ExperimentSpec  # a placeholder with the defaults when spec.json is missing or invalid
    spec_problem: str | None  # why spec.json could not be used, if it could not
    curves: pd.DataFrame
    trials: pd.DataFrame
    per_seed: pd.DataFrame
    primary: Primary
    optimizers: list[str]

    def runs(self, optimizer: str) -> pd.DataFrame:
        return self.per_seed[self.per_seed["optimizer"] == optimizer]


def _count(frame: pd.DataFrame, optimizer: str, column: str | None = None) -> int:
    rows = frame[frame["optimizer"] == optimizer]
    return len(rows) if column is None else int(rows[column].astype(bool).sum())


def protocol(ex: Experiment) -> list[str]:
    if ex.spec_problem:
        return [f"{ex.spec_problem}, so the intended protocol is unknown.", ""]
    spec, tuning = ex.spec, ex.trials[ex.trials["phase"] == "tune"]
    run_trials = ", ".join(f"{o} {_count(tuning, o)}" for o in ex.optimizers) or "none"
    run_final = ", ".join(f"{o} {_count(ex.per_seed, o)}" for o in ex.optimizers) or "none"
    t, f, d = spec.tuning, spec.final, spec.data
    lines = [
        f"- **Data:** mnist1d, n_train = {d.n_train}, n_test = {d.n_test}, validation fraction "
        f"{d.val_fraction}, data seed {d.seed}.",
        f"- **Model:** MLP with hidden layers {list(spec.hidden)}; batch size {spec.batch_size}.",
        f"- **Tuning:** {t.repeats} independent repeat(s) per optimizer of OptunaSearch + ASHA, each "
        f"{t.num_samples} trials of up to {t.epochs} epochs, at most {t.concurrency} at once; objective "
        f"{ex.primary.objective} ({t.mode}); ASHA grace period {t.grace_period} epoch(s), reduction "
        f"factor {t.reduction_factor}. Trials actually run: {run_trials}.",
        f"- **Final runs:** each repeat's best config retrained for {f.epochs} epochs on {f.seeds} "
        f"paired seeds (seed i: same initial weights and batch order for every optimizer and repeat). "
        f"Final runs actually done: {run_final}.",
        "",
    ]
    rows = [[o, name, fmt_space(space)] for o in ex.optimizers for name, space in spec.optimizers.get(o, {}).items()]
    if rows:
        lines += ["Search spaces:", ""] + table(["optimizer", "hyperparameter", "space"], rows)
    if spec.choices:
        lines += ["Choices made where the write-up was silent:", ""] + [f"- {c}" for c in spec.choices] + [""]
    return lines


def _configs(ex: Experiment, optimizer: str) -> tuple[list[pd.Series], str]:
    """The config of each repeat: from its final runs, else from its best tuning trial."""
    final = ex.curves[(ex.curves["phase"] == "final") & (ex.curves["optimizer"] == optimizer)]
    if len(final):
        return [rows.iloc[0] for _, rows in final.groupby("repeat", sort=True)], "final runs"
    best = compare.best_trials(ex.trials, ex.primary.objective, ex.primary.higher_better)
    chosen = ex.trials.loc[best]
    return [row for _, row in chosen[chosen["optimizer"] == optimizer].sort_values("repeat").iterrows()], "best tune trial"


def hyperparameters(ex: Experiment) -> list[str]:
    rows = []
    for optimizer in ex.optimizers:
        space, reported = ex.spec.optimizers.get(optimizer, {}), ex.spec.reported.get(optimizer, {})
        configs, source = _configs(ex, optimizer)
        for name in dict.fromkeys([*space, *reported]):
            ours = "; ".join(f"r{int(c['repeat'])}: {fmt_hparam(name, c.get(name), space.get(name))}"
                             for c in configs) or "—"
            rows.append([optimizer, name, ours, fmt_hparam(name, reported.get(name), space.get(name)),
                         source if configs else "no runs"])
    if not rows:
        return ["No hyperparameters recorded.", ""]
    return table(["optimizer", "hyperparameter", "ours (per tuning repeat)", "write-up", "ours from"], rows)


def results(ex: Experiment) -> list[str]:
    primary = ex.primary
    columns = [primary.column] + [c for c in COLUMN_NAMES if c != primary.column]
    header = ["optimizer", "final runs"] + [COLUMN_NAMES[c] + (" (primary)" if c == primary.column else "")
                                            for c in columns] + ["best-val epoch (median)", "write-up"]
    scored = compare.scored(ex.per_seed, primary.column, primary.higher_better)
    rows = []
    for optimizer in by_primary_mean(ex):
        runs = ex.runs(optimizer)
        cells = [optimizer, f"{len(runs)} ({runs['repeat'].nunique()} × {runs['seed'].nunique()})"]
        for column in columns:
            values = scored[runs.index] if column == primary.column else runs[column]
            values = values.to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            cells.append(fmt_interval(column, values.mean(), *bootstrap_ci(values)) if values.size else "—")
        cells.append(f"{runs['best_epoch'].median():.0f}" if runs["best_epoch"].notna().any() else "—")
        said = ex.spec.reported_metrics.get(optimizer, {})
        cells.append(", ".join(f"{METRIC_NAMES.get(m, m)} {fmt_value(m, v)}" for m, v in said.items()) or "—")
        rows.append(cells)
    return [f"Final runs (repeats × seeds), mean [95 % percentile bootstrap CI] over runs, best "
            f"primary first. Primary: {primary.describe()}; a diverged run counts as the worst finite "
            "value of the experiment there. The other columns leave non-finite values out; the "
            "final-epoch ones tell overfitting from worse optimisation.", ""] + table(header, rows)


def by_primary_mean(ex: Experiment) -> list[str]:
    scored = compare.scored(ex.per_seed, ex.primary.column, ex.primary.higher_better)
    means = scored.groupby(ex.per_seed["optimizer"]).mean()
    present = [o for o in ex.optimizers if o in means.index]
    return sorted(present, key=lambda o: (np.isnan(means[o]), -means[o] if ex.primary.higher_better else means[o]))


def tuning_and_cost(ex: Experiment, budget: pd.DataFrame) -> list[str]:
    tuning = ex.trials[ex.trials["phase"] == "tune"]
    final_curves = ex.curves[ex.curves["phase"] == "final"]
    epoch_time = compare.mean_epoch_time(final_curves if len(final_curves) else ex.curves)
    adam = final_curves[final_curves["optimizer"] == BASELINE]
    adam_best = adam["val_loss"].replace(np.inf, np.nan).groupby([adam["repeat"], adam["seed"]]).min().dropna()
    target = float(adam_best.median()) if len(adam_best) else float("nan")
    reach = compare.epochs_to_target(ex.curves, target) if np.isfinite(target) else None
    rows = []
    for o in ex.optimizers:
        epochs = reach.loc[reach["optimizer"] == o, "epoch"] if reach is not None else pd.Series(dtype=float)
        median = epochs.fillna(np.inf).median() if len(epochs) else np.nan
        rows.append([o, f"{_count(tuning, o)} ({tuning.loc[tuning['optimizer'] == o, 'repeat'].nunique()} repeats)",
                     str(_count(tuning, o, "pruned")),
                     f"{_count(tuning, o, 'diverged')}/{_count(tuning, o)}",
                     f"{int(compare.failed(ex.runs(o), ex.primary.column).sum())}/{len(ex.runs(o))}",
                     f"{epoch_time[o]:.3g}" if o in epoch_time.index else "—",
                     (f"{median:.0f}" if np.isfinite(median) else "—") + f" ({epochs.notna().sum()}/{len(epochs)} runs reached)"
                     if len(epochs) else "—"])
    header = ["optimizer", "tuning trials", "stopped by ASHA", "diverged (tuning)", "diverged (final)",
              "s / epoch", "epochs to target (median)"]
    lines = table(header, rows)
    if np.isfinite(target):
        lines += [f"Target: Adam's median best validation loss over its final runs ({target:.4g}); runs that "
                  "never reach it count as infinitely slow. s / epoch is the mean training time of one epoch.", ""]
    return lines + budget_table(ex, budget)


def budget_table(ex: Experiment, budget: pd.DataFrame) -> list[str]:
    if budget.empty:
        return []
    n_max = int(budget["n"].max())
    checkpoints = sorted({1, *(int(np.ceil(n_max * q)) for q in (0.25, 0.5, 0.75)), n_max})
    rows = []
    for o in ex.optimizers:
        curve = budget[budget["optimizer"] == o].set_index("n")
        if curve.empty:
            continue
        rows.append([o, str(curve["repeats"].iloc[0])] + [
            fmt_interval(ex.primary.objective, *curve.loc[n, ["mean", "low", "high"]]) if n in curve.index else "—"
            for n in checkpoints])
    return [f"Best tuning objective ({ex.primary.objective}) found after n trials, in the order the trials "
            "started: mean over repeats [min, max over repeats] (expected validation performance, Dodge et "
            "al. 2019, as the repeats measure it). Trials stopped by ASHA or diverged use up budget but never "
            "count as best, as in the choice of each repeat's config; — until every repeat has a trial that "
            "trained the full budget.", ""] + table(["optimizer", "repeats"] + [f"n = {n}" for n in checkpoints], rows)


COMPARISON_HEADER = ["candidate", "paired seeds", "repeats (candidate / Adam)", "diverged (final, candidate / Adam)", "Adam mean",
                     "candidate mean", "mean difference (candidate − Adam) [95 % CI]", "P(better)",
                     "p (sign-flip)", "p (Holm)", "verdict"]


def comparison_rows(comparisons: list[compare.PairedComparison]) -> list[list[str]]:
    rows = []
    for c in comparisons:
        low, high = c.ci
        rows.append([c.candidate, str(c.n_pairs), f"{c.repeats[0]} / {c.repeats[1]}",
                     f"{c.diverged[0]}/{c.runs[0]} / {c.diverged[1]}/{c.runs[1]}",
                     fmt_value(c.metric, c.baseline_mean), fmt_value(c.metric, c.candidate_mean),
                     f"{fmt_difference(c.metric, c.mean_difference)} [{fmt_difference(c.metric, low)}, "
                     f"{fmt_difference(c.metric, high)}]", f"{c.probability_of_improvement:.2f}",
                     fmt_p(c.p_value), fmt_p(c.p_adjusted), f"**{c.verdict}**"])
    return rows


def agreement(ours: str, reported: str) -> str:
    if not reported:
        return "The spec records no verdict of the write-up (`reported_verdict` missing)."
    said = f"The write-up concluded the hypothesis was **{reported}**; our verdict is **{ours}**"
    if ours == INCONCLUSIVE:
        return said + ": our re-run can neither confirm nor refute it."
    return said + (": we agree." if ours == reported else ": we disagree.")


def comparison(ex: Experiment, comparisons: list[compare.PairedComparison], single: bool) -> list[str]:
    if ex.per_seed.empty:
        return ["No final runs, so no paired comparison and no verdict.", ""]
    if not comparisons:
        return ["No Adam and candidate final runs to pair, so no verdict.", ""]
    lines = [f"Primary metric: {ex.primary.describe()}.", ""] + table(COMPARISON_HEADER, comparison_rows(comparisons))
    smallest = min(c.n_pairs for c in comparisons)
    floor = min(1.0, len(comparisons) * 2.0 ** (1 - smallest)) if smallest else 1.0
    if floor >= ALPHA:
        lines += [f"With {smallest} paired seeds and {len(comparisons)} candidate(s) the smallest attainable "
                  f"Holm-adjusted permutation p is {floor:.3g} ≥ {ALPHA}, so \"supported\" cannot be reached.", ""]
    if single:
        c = comparisons[0]
        return lines + [f"**Verdict: {c.verdict}** ({c.reason}).", "", agreement(c.verdict, ex.spec.reported_verdict), ""]
    return lines + [f"- {c.candidate}: **{c.verdict}** ({c.reason})." for c in comparisons] + [""]
