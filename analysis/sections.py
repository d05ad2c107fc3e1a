"""One experiment's section of report.md, as markdown lines: protocol, best hyperparameters,
results, tuning budget and divergence, and the paired comparison with its verdict. Text only:
the numbers come from analysis.compare and analysis.metrics, the figures from analysis.figures.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import compare
from analysis.experiment import Experiment
from analysis.metrics import ALPHA, BOOTSTRAP_METHOD, CONFIDENCE, INCONCLUSIVE, smallest_holm_p
from analysis.text import COLUMN_NAMES, METRIC_NAMES, fmt_difference, fmt_hparam, fmt_interval, fmt_p, fmt_space, fmt_value, table

CI_LEVEL = f"{100 * CONFIDENCE:.0f} %"  # the confidence level as the report's tables write it


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
            ours = "; ".join(f"r{int(c['repeat'])}: {fmt_hparam(optimizer, name, c.get(name), space.get(name))}"
                             for c in configs) or "—"
            rows.append([optimizer, name, ours, fmt_hparam(optimizer, name, reported.get(name), space.get(name)),
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
    for optimizer in ex.ranked():
        runs = ex.runs(optimizer)
        cells = [optimizer, f"{len(runs)} ({runs['repeat'].nunique()} × {runs['seed'].nunique()})"]
        for column in columns:
            interval = compare.mean_interval(scored[runs.index] if column == primary.column else runs[column])
            cells.append(fmt_interval(column, *interval) if interval else "—")
        cells.append(f"{runs['best_epoch'].median():.0f}" if runs["best_epoch"].notna().any() else "—")
        said = ex.spec.reported_metrics.get(optimizer, {})
        cells.append(", ".join(f"{METRIC_NAMES.get(m, m)} {fmt_value(m, v)}" for m, v in said.items()) or "—")
        rows.append(cells)
    return [f"Final runs (repeats × seeds), mean [{CI_LEVEL} {BOOTSTRAP_METHOD} bootstrap CI] over runs, best "
            f"primary first. Primary: {primary.describe()}; a diverged run counts as the worst finite "
            "value of the experiment there. The other columns leave non-finite values out; the "
            "final-epoch ones tell overfitting from worse optimisation.", ""] + table(header, rows)


def tuning_and_cost(ex: Experiment, budget: pd.DataFrame) -> list[str]:
    tuning = ex.trials[ex.trials["phase"] == "tune"]
    final_curves = ex.curves[ex.curves["phase"] == "final"]
    epoch_time = compare.mean_epoch_time(final_curves if len(final_curves) else ex.curves)
    target = compare.baseline_target(ex.curves)
    reach = compare.reaching_target(ex.curves, target, ex.optimizers) if np.isfinite(target) else None
    rows = []
    for o in ex.optimizers:
        rows.append([o, f"{_count(tuning, o)} ({tuning.loc[tuning['optimizer'] == o, 'repeat'].nunique()} repeats)",
                     str(_count(tuning, o, "pruned")),
                     f"{_count(tuning, o, 'diverged')}/{_count(tuning, o)}",
                     f"{int(compare.failed(ex.runs(o), ex.primary.column).sum())}/{len(ex.runs(o))}",
                     f"{epoch_time[o]:.3g}" if o in epoch_time.index else "—",
                     _reached(reach.loc[o]) if reach is not None else "—"])
    header = ["optimizer", "tuning trials", "stopped by ASHA", "diverged (tuning)", "diverged (final)",
              "s / epoch", "epochs to target (median)"]
    lines = table(header, rows)
    if np.isfinite(target):
        lines += [f"Target: Adam's median best validation loss over its final runs ({target:.4g}); runs that "
                  "never reach it count as infinitely slow. s / epoch is the mean training time of one epoch.", ""]
    return lines + budget_table(ex, budget)


def _reached(reach: pd.Series) -> str:
    """A cell of "epochs to target": the median epoch and how many runs reached the target."""
    if not reach["runs"]:
        return "—"
    median = f"{reach['median_epoch']:.0f}" if np.isfinite(reach["median_epoch"]) else "—"
    return f"{median} ({int(reach['reached'])}/{int(reach['runs'])} runs reached)"


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
                     "candidate mean", f"mean difference (candidate − Adam) [{CI_LEVEL} CI]", "P(better)",
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
    floor = smallest_holm_p(smallest, len(comparisons))
    if floor >= ALPHA:
        lines += [f"With {smallest} paired seeds and {len(comparisons)} candidate(s) the smallest attainable "
                  f"Holm-adjusted permutation p is {floor:.3g} ≥ {ALPHA}, so \"supported\" cannot be reached.", ""]
    if single:
        c = comparisons[0]
        return lines + [f"**Verdict: {c.verdict}** ({c.reason}).", "", agreement(c.verdict, ex.spec.reported_verdict), ""]
    return lines + [f"- {c.candidate}: **{c.verdict}** ({c.reason})." for c in comparisons] + [""]
