"""Writes <run>/report.md: for every experiment the protocol actually used, the
best hyperparameters (ours vs the write-up's), final metrics with bootstrap CIs,
the paired comparison against Adam with a verdict, and the figures, which are
saved as PNGs next to each experiment's spec.json (benchmark.png at the root).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from . import plots
from .load import CONFIG_COLUMNS, load_run, trials_from_curves
from .metrics import (BASELINE, EQUIVALENCE_FRACTION, INCONCLUSIVE,
                      PairedComparison, bootstrap_ci, compare_paired, epochs_to_target,
                      higher_is_better, mean_epoch_time, per_seed_metrics)

BENCHMARK = "benchmark"
ALPHA = 0.05

VERDICT_RULE = f"""\
**Verdict rule.** For each candidate, d is the per-seed paired difference on the primary
metric (the test metric matching the tuning metric, at the final epoch of the final runs),
signed so that positive means the candidate is better than Adam. CI is the 95 % percentile
bootstrap CI of mean d (10,000 resamples), p the two-sided paired sign-flip permutation
p-value (exact for up to 16 seeds). The hypothesis is **supported** if p < {ALPHA} and the CI lies
above 0; **not supported** if p < {ALPHA} and the CI lies below 0 (Adam better), or if the whole
CI lies within ±δ with δ = {EQUIVALENCE_FRACTION:.0%} of Adam's mean primary metric
(practically equivalent, so no benefit); **inconclusive** otherwise, and whenever fewer
than 3 paired seeds are usable. The rules are checked in that order. Seeds where either run has a non-finite value (diverged)
are left out of the pair count and reported. P(better) is the fraction of paired seeds on
which the candidate is better (ties count half). With few seeds the percentile bootstrap CI
is too narrow; the permutation p, which cannot fall below 2^(1−n) for n seeds, guards against
that. p-values are not corrected for the several comparisons in the benchmark."""


# --- loading ---------------------------------------------------------------

def read_curves(run_dir) -> pd.DataFrame:
    """curves.parquet, or the curves rebuilt from Ray's folders when it is missing."""
    return load_run(run_dir)


def read_trials(run_dir, curves: pd.DataFrame) -> pd.DataFrame:
    """trials.parquet, or one row per trial derived from `curves` when it is missing."""
    path = Path(run_dir) / "trials.parquet"
    return pd.read_parquet(path) if path.exists() else trials_from_curves(curves)


def read_specs(run_dir) -> dict[str, dict]:
    """Every <run>/<experiment>/spec.json, keyed by the folder name."""
    return {path.parent.name: json.loads(path.read_text())
            for path in sorted(Path(run_dir).glob("*/spec.json"))}


# --- formatting ------------------------------------------------------------

METRIC_NAMES = {"test_loss": "test loss", "test_acc": "test accuracy",
                "val_loss": "validation loss", "val_acc": "validation accuracy"}


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def fmt_value(metric: str, value) -> str:
    """Losses to 4 significant digits, accuracies in percent."""
    if _is_missing(value):
        return "—"
    value = float(value)
    if np.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{100 * value:.2f}%" if higher_is_better(metric) else f"{value:#.4g}"


def fmt_interval(metric: str, mean: float, low: float, high: float) -> str:
    if _is_missing(mean):
        return "—"
    if higher_is_better(metric):
        return f"{100 * mean:.2f}% [{100 * low:.2f}, {100 * high:.2f}]"
    return f"{mean:#.4g} [{low:#.4g}, {high:#.4g}]"


def fmt_difference(metric: str, value: float) -> str:
    """Differences of accuracies in percentage points, of losses with a sign."""
    if _is_missing(value):
        return "—"
    value = float(value) + 0.0  # turns −0.0 into 0.0
    return f"{100 * value:+.2f} pp" if higher_is_better(metric) else f"{value:+#.4g}"


def fmt_p(p: float) -> str:
    return "—" if _is_missing(p) else f"{p:.3g}"


def fmt_hparam(name: str, value, space: dict | None = None) -> str:
    if _is_missing(value):
        return "—"
    if isinstance(value, (int, float, np.number)):
        integral = (space or {}).get("type") == "int" or name in ("inversion_frequency", "rank")
        if integral and float(value).is_integer():
            return str(int(value))
        return f"{float(value):.3g}"
    return str(value)


def fmt_space(space: dict) -> str:
    kind = space.get("type", "?")
    if kind == "choice":
        return "one of " + ", ".join(str(v) for v in space.get("values", []))
    names = {"loguniform": "log-uniform", "uniform": "uniform", "int": "integer"}
    return f"{names.get(kind, kind)} [{space.get('low')}, {space.get('high')}]"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


# --- per-experiment content -------------------------------------------------

def _tuning_objective(spec: dict) -> tuple[str, str]:
    """The tuning metric and mode (val_loss, min when the spec is missing)."""
    tuning = spec.get("tuning", {})
    metric = tuning.get("metric", "val_loss")
    return metric, tuning.get("mode", "max" if higher_is_better(metric) else "min")


def primary_metric(spec: dict) -> tuple[str, bool]:
    """The test metric matching the tuning metric, and whether higher is better."""
    metric, mode = _tuning_objective(spec)
    return metric.replace("val_", "test_"), mode == "max"


def best_tune_trial(trials: pd.DataFrame, optimizer: str, metric: str, mode: str):
    """The tune trial with the best last-epoch objective (diverged ones excluded)."""
    rows = trials[(trials["phase"] == "tune") & (trials["optimizer"] == optimizer)
                  & ~trials["diverged"].astype(bool)]
    rows = rows[np.isfinite(rows[metric].astype(float))]
    if rows.empty:
        return None
    return rows.loc[rows[metric].idxmax() if mode == "max" else rows[metric].idxmin()]


def _experiment_order(specs: dict, curves: pd.DataFrame, trials: pd.DataFrame) -> list[str]:
    names = set(specs) | set(curves["experiment"]) | set(trials["experiment"])
    return sorted(names, key=lambda name: (name == BENCHMARK, name))


def _count(frame: pd.DataFrame, optimizer: str, column: str | None = None) -> int:
    rows = frame[frame["optimizer"] == optimizer]
    return len(rows) if column is None else int(rows[column].astype(bool).sum())


def _protocol(spec: dict, optimizers: list[str], tune: pd.DataFrame,
              per_seed: pd.DataFrame) -> list[str]:
    if not spec:
        return ["spec.json is missing, so the intended protocol is unknown.", ""]
    data, tuning, final = spec.get("data", {}), spec.get("tuning", {}), spec.get("final", {})
    run_trials = ", ".join(
        f"{o} {_count(tune, o)} ({_count(tune, o, 'pruned')} stopped early, "
        f"{_count(tune, o, 'diverged')} diverged)" for o in optimizers) or "none"
    run_seeds = ", ".join(f"{o} {_count(per_seed, o)}" for o in optimizers) or "none"
    lines = [
        f"- **Data:** mnist1d, n_train = {data.get('n_train', '?')}, n_test = "
        f"{data.get('n_test', '?')}, validation fraction {data.get('val_fraction', '?')}, "
        f"data seed {data.get('seed', '?')}.",
        f"- **Model:** MLP with hidden layers {spec.get('model', {}).get('hidden', '?')}; "
        f"batch size {spec.get('batch_size', '?')}.",
        f"- **Tuning:** OptunaSearch + ASHA, budget {tuning.get('num_samples', '?')} trials per "
        f"optimizer of up to {tuning.get('epochs', '?')} epochs; objective "
        f"{tuning.get('metric', '?')} ({tuning.get('mode', '?')}) at the trial's last epoch; "
        f"ASHA grace period {tuning.get('grace_period', '?')} epoch(s), reduction factor "
        f"{tuning.get('reduction_factor', '?')}. Trials actually run: {run_trials}.",
        f"- **Final runs:** each optimizer's best config retrained for "
        f"{final.get('epochs', '?')} epochs on {final.get('seeds', '?')} paired seeds "
        f"(seed i: same initial weights and batch order for every optimizer). "
        f"Seeds actually run: {run_seeds}.",
        "",
    ]
    spaces = spec.get("optimizers", {})
    rows = [[o, name, fmt_space(space)] for o in optimizers for name, space in spaces.get(o, {}).items()]
    if rows:
        lines += ["Search spaces:", ""] + table(["optimizer", "hyperparameter", "space"], rows)
    if spec.get("choices"):
        lines += ["Choices made where the write-up was silent:", ""]
        lines += [f"- {choice}" for choice in spec["choices"]] + [""]
    return lines


def _hyperparameters(spec: dict, optimizers: list[str], curves: pd.DataFrame,
                     trials: pd.DataFrame) -> list[str]:
    metric, mode = _tuning_objective(spec)
    spaces, reported = spec.get("optimizers", {}), spec.get("reported", {})
    rows = []
    for optimizer in optimizers:
        final = curves[(curves["phase"] == "final") & (curves["optimizer"] == optimizer)]
        source = "final runs"
        config = final.iloc[0] if len(final) else None
        if config is None:
            config, source = best_tune_trial(trials, optimizer, metric, mode), "best tune trial"
        names = list(spaces.get(optimizer, {})) + list(reported.get(optimizer, {}))
        if config is not None:
            names += [c for c in CONFIG_COLUMNS if c in config and not _is_missing(config[c])]
        for name in dict.fromkeys(names):
            ours = config[name] if config is not None and name in config else None
            space = spaces.get(optimizer, {}).get(name)
            rows.append([optimizer, name, fmt_hparam(name, ours, space),
                         fmt_hparam(name, reported.get(optimizer, {}).get(name), space),
                         source if config is not None else "no runs"])
    if not rows:
        return ["No hyperparameters recorded.", ""]
    return table(["optimizer", "hyperparameter", "ours", "write-up", "ours from"], rows)


def _results(spec: dict, optimizers: list[str], per_seed: pd.DataFrame, primary: str) -> list[str]:
    metrics = ["test_loss", "test_acc", "val_loss", "val_acc"]
    header = ["optimizer", "seeds"] + [
        METRIC_NAMES[m] + (" (primary)" if m == primary else "") for m in metrics] + [
        "test loss at best val epoch", "best val epoch (median)", "write-up"]
    reported = spec.get("reported_metrics", {}) or {}
    rows = []
    for optimizer in _by_primary_mean(optimizers, per_seed, primary):
        runs = per_seed[per_seed["optimizer"] == optimizer]
        cells = [optimizer, str(len(runs))]
        for metric in metrics:
            values = runs[metric].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            cells.append(fmt_interval(metric, values.mean(), *bootstrap_ci(values))
                         if values.size else "—")
        # what early stopping on validation loss would have kept: apart from overfitting
        at_best = runs["best_test_loss"].to_numpy(dtype=float)
        at_best = at_best[np.isfinite(at_best)]
        cells.append(fmt_interval("test_loss", at_best.mean(), *bootstrap_ci(at_best)) if at_best.size else "—")
        cells.append(f"{runs['best_epoch'].median():.0f}" if runs["best_epoch"].notna().any() else "—")
        said = reported.get(optimizer, {})
        cells.append(", ".join(f"{METRIC_NAMES.get(m, m)} {fmt_value(m, v)}" for m, v in said.items())
                     or "—")
        rows.append(cells)
    return [f"Final-epoch metrics of the final runs, mean [95 % bootstrap CI] over seeds "
            f"(non-finite values left out), best {METRIC_NAMES[primary]} first; the last two columns show "
            f"the epoch of lowest validation loss, to tell overfitting from worse optimisation:", ""] + table(header, rows)


def _by_primary_mean(optimizers: list[str], per_seed: pd.DataFrame, primary: str) -> list[str]:
    means = per_seed.groupby("optimizer")[primary].apply(
        lambda v: v[np.isfinite(v)].mean() if np.isfinite(v).any() else np.nan)
    present = [o for o in optimizers if o in means.index and not np.isnan(means[o])]
    present.sort(key=lambda o: means[o], reverse=higher_is_better(primary))
    return present + [o for o in optimizers if o in means.index and o not in present]


def _costs(optimizers: list[str], curves: pd.DataFrame, trials: pd.DataFrame,
           per_seed: pd.DataFrame) -> list[str]:
    tune = trials[trials["phase"] == "tune"]
    final_curves = curves[curves["phase"] == "final"]
    timed = final_curves if len(final_curves) else curves
    epoch_time = mean_epoch_time(timed)
    adam = final_curves[final_curves["optimizer"] == BASELINE]
    adam_best = adam["val_loss"].replace(np.inf, np.nan).groupby(adam["seed"]).min().dropna()
    target = float(adam_best.median()) if len(adam_best) else float("nan")
    reach = epochs_to_target(curves, target) if np.isfinite(target) else None
    rows = []
    for optimizer in optimizers:
        cells = [optimizer, str(_count(tune, optimizer)), str(_count(tune, optimizer, "pruned")),
                 str(_count(tune, optimizer, "diverged")),
                 str(_count(per_seed, optimizer, "diverged")),
                 f"{epoch_time[optimizer]:.3g}" if optimizer in epoch_time.index else "—"]
        if reach is not None and optimizer in set(reach["optimizer"]):
            epochs = reach.loc[reach["optimizer"] == optimizer, "epoch"]
            median = epochs.fillna(np.inf).median()
            median_text = f"{median:.0f}" if np.isfinite(median) else "—"
            cells.append(f"{median_text} ({epochs.notna().sum()}/{len(epochs)} seeds reached)")
        else:
            cells.append("—")
        rows.append(cells)
    header = ["optimizer", "tune trials run", "stopped by ASHA", "diverged (tune)",
              "diverged (final)", "s / epoch", "epochs to target (median)"]
    note = (f"Target: Adam's median best validation loss over its final seeds ({target:.4g}); "
            "never-reached seeds count as infinitely slow. s / epoch is the mean training "
            "wall time of one epoch" + (" in the final runs." if len(final_curves) else "."))
    return table(header, rows) + ([note, ""] if np.isfinite(target) else [])


def _comparisons(per_seed: pd.DataFrame, optimizers: list[str], primary: str,
                 higher_better: bool) -> list[PairedComparison]:
    if BASELINE not in set(per_seed["optimizer"]):
        return []
    def margin(value):
        return fmt_difference(primary, value).lstrip("+")

    return [compare_paired(per_seed, primary, candidate, BASELINE, higher_better, fmt=margin)
            for candidate in optimizers
            if candidate != BASELINE and candidate in set(per_seed["optimizer"])]


def _comparison_rows(comparisons: list[PairedComparison]) -> list[list[str]]:
    rows = []
    for c in comparisons:
        low, high = c.ci
        dropped = f" ({c.n_dropped} dropped)" if c.n_dropped else ""
        rows.append([c.candidate, f"{c.n_pairs}{dropped}", fmt_value(c.metric, c.baseline_mean),
                     fmt_value(c.metric, c.candidate_mean),
                     f"{fmt_difference(c.metric, c.mean_difference)} "
                     f"[{fmt_difference(c.metric, low)}, {fmt_difference(c.metric, high)}]",
                     f"{c.probability_of_improvement:.2f}", fmt_p(c.p_value), f"**{c.verdict}**"])
    return rows


COMPARISON_HEADER = ["candidate", "paired seeds", "Adam mean", "candidate mean",
                     "mean difference (candidate − Adam) [95 % CI]", "P(better)",
                     "p (sign-flip)", "verdict"]


def _agreement(ours: str, reported: str | None) -> str:
    if not reported:
        return "The spec records no verdict of the write-up (`reported_verdict` missing)."
    said = f"The write-up concluded the hypothesis was **{reported}**; our verdict is **{ours}**"
    if ours == INCONCLUSIVE:
        return said + ": our re-run can neither confirm nor refute it."
    return said + (": we agree." if ours == reported else ": we disagree.")


def _figures(run_dir: Path, name: str, title: str, spec: dict, curves: pd.DataFrame,
             trials: pd.DataFrame, per_seed: pd.DataFrame, optimizers: list[str]) -> list[str]:
    links = []
    folder = run_dir / name
    if (curves["phase"] == "final").any():
        ax = plots.plot_comparison(curves, "val_loss", title=f"{title}: validation loss of final runs")
        plots.save_figure(ax, folder / "comparison.png")
        links.append(f"![validation loss of the final runs]({name}/comparison.png)")
    if (trials["phase"] == "tune").any() or (curves["phase"] == "tune").any():
        metric, mode = _tuning_objective(spec)
        axes = plots.plot_tuning(curves, trials, metric, mode, title=f"{title}: tuning")
        plots.save_figure(axes, folder / "tuning.png")
        links.append(f"![tuning trials and objective against lr]({name}/tuning.png)")
    if name == BENCHMARK and len(per_seed):
        primary, _ = primary_metric(spec)
        order = _by_primary_mean(optimizers, per_seed, primary)
        figure, axes = plots.plt.subplots(1, 2, figsize=(11, 0.55 * len(order) + 2),
                                          layout="constrained")
        for ax, metric in zip(axes, ["test_loss", "test_acc"]):
            plots.plot_benchmark(per_seed, metric, ax=ax, order=order,
                                 title=f"Final {METRIC_NAMES[metric]}: mean and 95% CI (dashed: adam)")
        figure.suptitle(f"Benchmark: all optimizers, ordered by {METRIC_NAMES[primary]} "
                        "(best at top)", fontsize=11)
        plots.save_figure(axes, run_dir / "benchmark.png")
        links.append("![benchmark: final test metrics of every optimizer](benchmark.png)")
    return links


def _experiment_section(run_dir: Path, name: str, spec: dict, curves: pd.DataFrame,
                        trials: pd.DataFrame):
    """Markdown lines of one experiment and its comparisons (for the summary)."""
    metric, _ = _tuning_objective(spec)
    per_seed = per_seed_metrics(curves, selection_metric=metric)
    primary, higher_better = primary_metric(spec)
    optimizers = plots.optimizer_order(set(spec.get("optimizers", {})) | set(curves["optimizer"])
                                       | set(trials["optimizer"]))
    title = spec.get("title", name)
    lines = [f"## {name}: {title}", "",
             f"- **Write-up:** `{spec.get('seed_file', 'unknown')}`",
             f"- **Hypothesis:** {spec.get('hypothesis', 'not recorded')}",
             f"- **Primary metric:** {METRIC_NAMES.get(primary, primary)} at the final epoch "
             f"({'higher' if higher_better else 'lower'} is better).", "",
             "### Protocol", ""]
    lines += _protocol(spec, optimizers, trials[trials["phase"] == "tune"], per_seed)
    lines += ["### Best hyperparameters", ""] + _hyperparameters(spec, optimizers, curves, trials)
    lines += ["### Results", ""]
    if per_seed.empty:
        lines += ["No final runs: only tuning results are available.", ""]
    else:
        lines += _results(spec, optimizers, per_seed, primary)
    lines += ["Tuning and cost per optimizer:", ""] + _costs(optimizers, curves, trials, per_seed)

    comparisons = _comparisons(per_seed, optimizers, primary, higher_better)
    lines += ["### Paired comparison against Adam", ""]
    if per_seed.empty:
        lines += ["No final runs, so no paired comparison and no verdict.", ""]
    elif not comparisons:
        lines += ["No Adam and candidate final runs to pair, so no verdict.", ""]
    else:
        lines += table(COMPARISON_HEADER, _comparison_rows(comparisons))
        smallest = min(c.n_pairs for c in comparisons)
        if 0 < smallest and 2.0 ** (1 - smallest) >= ALPHA:
            lines += [f"With {smallest} paired seeds the smallest attainable two-sided "
                      f"permutation p is {2.0 ** (1 - smallest):.3g} ≥ {ALPHA}, so "
                      "\"supported\" cannot be reached.", ""]
        if name != BENCHMARK and len(comparisons) == 1:
            c = comparisons[0]
            lines += [f"**Verdict: {c.verdict}** ({c.reason}).", "",
                      _agreement(c.verdict, spec.get("reported_verdict")), ""]
        else:
            lines += [f"- {c.candidate}: **{c.verdict}** ({c.reason})." for c in comparisons] + [""]
    links = _figures(run_dir, name, title, spec, curves, trials, per_seed, optimizers)
    lines += ["### Figures", ""] + ([f"{link}\n" for link in links] or ["No figures: no runs.", ""])
    return lines, comparisons


def _summary(rows: list[tuple[str, PairedComparison, str | None]]) -> list[str]:
    if not rows:
        return ["No paired comparisons could be made (no final runs of Adam and a candidate).", ""]
    cells = []
    for experiment, c, reported in rows:
        low, high = c.ci
        cells.append([experiment, c.candidate, METRIC_NAMES.get(c.metric, c.metric),
                      f"{fmt_difference(c.metric, c.mean_difference)} "
                      f"[{fmt_difference(c.metric, low)}, {fmt_difference(c.metric, high)}]",
                      fmt_p(c.p_value), f"**{c.verdict}**", reported or "—"])
    return table(["experiment", "candidate", "primary metric", "mean difference (candidate − Adam) [95 % CI]", "p",
                  "our verdict", "write-up's verdict"], cells)


def write_report(run_dir, curves: pd.DataFrame | None = None,
                 trials: pd.DataFrame | None = None) -> Path:
    """Write <run_dir>/report.md (and the figures it links) and return its path."""
    run_dir = Path(run_dir)
    curves = read_curves(run_dir) if curves is None else curves
    trials = read_trials(run_dir, curves) if trials is None else trials
    specs = read_specs(run_dir)
    if "pruned" not in trials:
        trials = trials.assign(pruned=False)
    experiments = _experiment_order(specs, curves, trials)

    sections, summary_rows = [], []
    for name in experiments:
        spec = specs.get(name, {})
        lines, comparisons = _experiment_section(
            run_dir, name, spec, curves[curves["experiment"] == name],
            trials[trials["experiment"] == name])
        sections += lines
        reported = spec.get("reported_verdict") if name != BENCHMARK else None
        summary_rows += [(name, c, reported) for c in comparisons]

    header = [f"# Re-run report: {run_dir.name}", "",
              "Each write-up's optimizer against tuned Adam on mnist1d, every optimizer tuned "
              "with the same budget, then its best config retrained on paired seeds.", "",
              "Experiments: " + (", ".join(experiments) or "none found") + ".", "",
              VERDICT_RULE, "", "## Summary", ""]
    path = run_dir / "report.md"
    path.write_text("\n".join(header + _summary(summary_rows) + sections))
    return path
