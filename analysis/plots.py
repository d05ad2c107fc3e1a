"""Figures of the final runs, and what every figure shares (colours, axes style, saving).
Every function takes `ax=None` (a new figure is made) and returns the axes; colours come
from each optimizer's record (optim.REGISTRY) so every figure agrees. Nothing here shows or
saves a figure except save_figure, which the caller uses; the backend is chosen by the
command-line entry point.
Tuning figures are in analysis.plots_tuning.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd

import optim
from analysis.metrics import CONFIDENCE, bootstrap_ci, higher_is_better
from tune.experiments import BASELINE
from tune.run_folder import atomic_path

_SPARE_COLORS = ["#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]
FIGSIZE = (6.4, 4.2)
DPI = 120

AXIS_LABELS = {
    "train_loss": "training loss (cross-entropy)",
    "val_loss": "validation loss (cross-entropy)",
    "test_loss": "test loss (cross-entropy)",
    "val_acc": "validation accuracy (%)",
    "test_acc": "test accuracy (%)",
    "best_val_loss": "best validation loss so far",
    "best_val_acc": "best validation accuracy so far (%)",
    "best_test_loss": "test loss at best-validation epoch",
    "best_test_acc": "test accuracy at best-validation epoch (%)",
}


def optimizer_color(name: str) -> str:
    """The colour of an optimizer's record; names not registered here get a stable spare colour."""
    if name in optim.REGISTRY:
        return optim.REGISTRY[name].color
    return _SPARE_COLORS[sum(map(ord, name)) % len(_SPARE_COLORS)]


def optimizer_order(names) -> list[str]:
    """Baseline first, then alphabetical."""
    return sorted(set(names), key=lambda name: (name != BASELINE, name))


def save_figure(axes, path, dpi: int = DPI) -> Path:
    """Save the figure holding `axes` (an Axes or an array of them) as PNG and close it."""
    first = np.ravel(axes)[0] if isinstance(axes, np.ndarray) else axes
    figure = first.figure
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as partial:
            figure.savefig(partial, dpi=dpi, format="png")
    finally:
        plt.close(figure)
    return path


def new_axes(ax):
    if ax is None:
        _, ax = plt.subplots(figsize=FIGSIZE, layout="constrained")
    return ax


def display_scale(metric: str) -> float:
    """Accuracies are drawn in percent."""
    return 100.0 if higher_is_better(metric) else 1.0


def style_axes(ax, metric: str, title: str, xlabel: str):
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    if xlabel == "epoch":
        ax.xaxis.set_major_locator(mticker.MaxNLocator(integer=True))
    ax.set_ylabel(AXIS_LABELS.get(metric, metric))
    if "loss" in metric:
        ax.set_yscale("log")
        # plain numbers (0.5, 1, 2) instead of 5×10⁻¹
        label = plain_log_labeller(ax)
        ax.yaxis.set_major_formatter(label)
        ax.yaxis.set_minor_formatter(label)
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)


def plain_log_labeller(ax):
    """Tick labels for a log y axis as plain numbers; the wider the range, the
    fewer leading digits get a label, so labels never crowd."""
    def label(value, _position) -> str:
        low, high = sorted(ax.get_ylim())
        if value <= 0 or low <= 0:
            return ""
        decades = np.log10(high / low)
        shown = (1, 2, 3, 4, 5, 6, 8) if decades <= 1 else (1, 2, 5) if decades <= 3 else (1,)
        leading = round(value / 10 ** np.floor(np.log10(value)))
        return f"{value:g}" if leading in shown else ""
    return mticker.FuncFormatter(label)


def empty_axes(ax, message: str):
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def plot_comparison(curves: pd.DataFrame, metric: str = "val_loss", ax=None,
                    title: str | None = None, confidence: float = CONFIDENCE, seed: int = 0):
    """Per-epoch mean of `metric` over the final runs (repeats × seeds) with a bootstrap
    band, one line per optimizer. Diverged epochs (inf) are left out."""
    ax = new_axes(ax)
    final = curves[curves["phase"] == "final"]
    if final.empty:
        return empty_axes(ax, "no final runs")
    scale = display_scale(metric)
    for optimizer in optimizer_order(final["optimizer"]):
        rows = final[final["optimizer"] == optimizer]
        by_epoch = rows.pivot_table(index=["repeat", "seed"], columns="epoch", values=metric, aggfunc="mean")
        epochs, means, lows, highs = [], [], [], []
        for epoch in by_epoch.columns:
            values = by_epoch[epoch].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            if values.size == 0:
                continue
            low, high = bootstrap_ci(values, confidence, n_resamples=2000, seed=seed)
            epochs.append(epoch)
            means.append(values.mean())
            lows.append(low)
            highs.append(high)
        color = optimizer_color(optimizer)
        n_runs = by_epoch.shape[0]
        on_top = 3 if optimizer == BASELINE else 2
        ax.plot(epochs, np.array(means) * scale, color=color, lw=1.8, zorder=on_top,
                label=f"{optimizer} ({n_runs} runs)")
        ax.fill_between(epochs, np.array(lows) * scale, np.array(highs) * scale,
                        color=color, alpha=0.2, lw=0)
    style_axes(ax, metric, title or f"Final runs: mean and {confidence:.0%} bootstrap CI over runs",
           "epoch")
    ax.legend(fontsize=8, frameon=False)
    return ax


def plot_benchmark(per_seed: pd.DataFrame, metric: str = "test_loss", ax=None,
                   order: list[str] | None = None, title: str | None = None,
                   confidence: float = CONFIDENCE, seed: int = 0):
    """Mean final `metric` per optimizer with bootstrap CI error bars, one row
    per optimizer, best at the top (or in the given `order`)."""
    ax = new_axes(ax)
    values = {optimizer: rows[metric].to_numpy(dtype=float)
              for optimizer, rows in per_seed.groupby("optimizer")}
    values = {name: v[np.isfinite(v)] for name, v in values.items()}
    values = {name: v for name, v in values.items() if v.size}
    if not values:
        return empty_axes(ax, "no final runs")
    means = {name: v.mean() for name, v in values.items()}
    if order is None:
        order = sorted(means, key=means.get, reverse=higher_is_better(metric))
    order = [name for name in order if name in values]
    scale = display_scale(metric)
    for row, optimizer in enumerate(order):
        low, high = bootstrap_ci(values[optimizer], confidence, seed=seed)
        mean = means[optimizer] * scale
        ax.errorbar(mean, row, xerr=[[mean - low * scale], [high * scale - mean]], fmt="o",
                    color=optimizer_color(optimizer), ms=7, capsize=4, lw=1.8)
        ax.annotate(f"{mean:.2f}%" if scale == 100 else f"{mean:.4g}", (mean, row),
                    xytext=(0, 7), textcoords="offset points", ha="center", fontsize=8)
    if BASELINE in means:
        ax.axvline(means[BASELINE] * scale, color=optimizer_color(BASELINE), ls="--", lw=0.8,
                   alpha=0.6)
    ax.set_yticks(range(len(order)), order)
    ax.set_ylim(len(order) - 0.5, -0.6)
    readable = metric.replace("_acc", " accuracy").replace("_", " ")
    ax.set_title(title or f"Final {readable}: mean and {confidence:.0%} CI (dashed: adam)",
                 fontsize=10)
    ax.set_xlabel(AXIS_LABELS.get(metric, metric))
    ax.grid(True, axis="x", alpha=0.35)
    return ax
