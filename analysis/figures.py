"""Save one experiment's figures next to its spec.json (benchmark.png at the run's root) and
return the markdown links to them. Drawing is analysis.plots / analysis.plots_tuning."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from analysis import compare, plots, plots_tuning
from analysis.experiment import Experiment
from analysis.metrics import CONFIDENCE, higher_is_better
from analysis.text import COLUMN_NAMES, METRIC_NAMES
from tune.experiments import BENCHMARK


def save_figures(run_dir: Path, ex: Experiment, budget: pd.DataFrame) -> list[str]:
    links, folder, title, primary = [], run_dir / ex.name, ex.spec.title, ex.primary
    if (ex.curves["phase"] == "final").any():
        ax = plots.plot_comparison(ex.curves, primary.selection,
                                   title=f"{title}: {METRIC_NAMES[primary.selection]} of final runs")
        plots.save_figure(ax, folder / "comparison.png")
        links.append(f"![{METRIC_NAMES[primary.selection]} of the final runs]({ex.name}/comparison.png)")
    if (ex.curves["phase"] == "tune").any():
        ax = plots_tuning.plot_tuning_curves(ex.curves, primary.selection, title=f"{title}: tuning trials")
        plots.save_figure(ax, folder / "tuning.png")
        links.append(f"![tuning trials as ASHA stopped them]({ex.name}/tuning.png)")
    if not budget.empty:
        ax = plots_tuning.plot_budget(budget, primary.objective,
                                      title=f"{title}: best tuning objective after n trials "
                                            "(mean over repeats, band min–max)")
        plots.save_figure(ax, folder / "budget.png")
        links.append(f"![best tuning objective after n trials]({ex.name}/budget.png)")
    spaces = {o: ex.spec.optimizers[o] for o in ex.optimizers if o in ex.spec.optimizers}
    if spaces and (ex.trials["phase"] == "tune").any():
        best = compare.best_trials(ex.trials, primary.objective, primary.higher_better)
        axes = plots_tuning.plot_sensitivity(ex.trials, spaces, primary.objective, best,
                                             title=f"{title}: {primary.objective} against every tuned hyperparameter")
        plots.save_figure(axes, folder / "sensitivity.png")
        links.append(f"![tuning objective against every tuned hyperparameter]({ex.name}/sensitivity.png)")
    if ex.name == BENCHMARK and len(ex.per_seed):
        links.append(_benchmark_figure(run_dir, ex))
    return links


def _benchmark_figure(run_dir: Path, ex: Experiment) -> str:
    order = ex.ranked()
    columns = [ex.primary.column, ex.primary.column.replace("loss", "acc") if "loss" in ex.primary.column
               else ex.primary.column.replace("acc", "loss")]
    figure, axes = plt.subplots(1, 2, figsize=(11, 0.55 * len(order) + 2), layout="constrained")
    for ax, column in zip(axes, columns):
        frame = ex.per_seed.assign(**{column: compare.scored(ex.per_seed, column, higher_is_better(column))})
        plots.plot_benchmark(frame, column, ax=ax, order=order,
                             title=f"{COLUMN_NAMES[column]}: mean and {CONFIDENCE:.0%} CI (dashed: adam)")
    figure.suptitle(f"Benchmark: all optimizers, ordered by {ex.primary.describe()} (best at top); "
                    "diverged runs count as the worst value", fontsize=10)
    plots.save_figure(axes, run_dir / "benchmark.png")
    return "![benchmark: the primary metric of every optimizer](benchmark.png)"
