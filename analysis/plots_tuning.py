"""Figures of the tuning studies: trial curves, budget curves and the sensitivity to every
tuned hyperparameter. Like analysis.plots, every function takes `ax=None` (or `axes=None`)
and returns the axes; nothing is shown or saved here.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import matplotlib.transforms as mtransforms
import numpy as np
import pandas as pd

from analysis.plots import (AXIS_LABELS, display_scale, empty_axes, new_axes, optimizer_color,
                            optimizer_order, plain_log_labeller, style_axes)


def plot_tuning_curves(curves: pd.DataFrame, metric: str = "val_loss", ax=None, title: str | None = None):
    """Every tune trial's `metric` per epoch, as long as ASHA let it run.
    A cross marks the last finite point of a diverged trial."""
    ax = new_axes(ax)
    tuning = curves[curves["phase"] == "tune"]
    if tuning.empty:
        return empty_axes(ax, "no tune trials")
    scale = display_scale(metric)
    for optimizer in optimizer_order(tuning["optimizer"]):
        color = optimizer_color(optimizer)
        trials = tuning[tuning["optimizer"] == optimizer]
        for _, trial in trials.groupby(["study", "trial_id"]):
            trial = trial.sort_values("epoch")
            values = trial[metric].to_numpy(dtype=float) * scale
            finite = np.isfinite(values)
            ax.plot(trial["epoch"][finite], values[finite], color=color, lw=0.8, alpha=0.45)
            if trial["diverged"].any() and finite.any():
                ax.plot(trial["epoch"][finite].iloc[-1], values[finite][-1], "x", color=color, ms=6, mew=1.5)
        n_trials = len(trials[["study", "trial_id"]].drop_duplicates())
        ax.plot([], [], color=color, lw=1.5, label=f"{optimizer} ({n_trials} trials)")
    ax.plot([], [], "x", color="grey", label="diverged")
    style_axes(ax, metric, title or "Tune trials as ASHA stopped them", "epoch")
    ax.legend(fontsize=8, frameon=False)
    return ax


def plot_budget(budget: pd.DataFrame, objective: str, ax=None, title: str | None = None):
    """Best `objective` found after n tuning trials (analysis.compare.budget_curves): mean
    over repeats as a line, min–max over repeats as a band."""
    ax = new_axes(ax)
    if budget.empty:
        return empty_axes(ax, "no tune trials")
    scale = display_scale(objective)
    for optimizer in optimizer_order(budget["optimizer"]):
        rows = budget[budget["optimizer"] == optimizer]
        color = optimizer_color(optimizer)
        ax.plot(rows["n"], rows["mean"] * scale, color=color, lw=1.8, drawstyle="steps-post",
                label=f"{optimizer} ({rows['repeats'].iloc[0]} repeats)")
        ax.fill_between(rows["n"], rows["low"] * scale, rows["high"] * scale, color=color, alpha=0.2, lw=0,
                        step="post")
    style_axes(ax, objective, title or "Best objective after n trials: mean over repeats, band min–max",
               "trials run (in the order they started)")
    ax.xaxis.set_major_locator(mticker.MaxNLocator(integer=True))
    ax.legend(fontsize=8, frameon=False)
    return ax


def _hparam_axis(ax, name: str, dist: dict):
    """x scale, ticks and label for one search-space dimension; returns a value -> x mapping."""
    kind = dist["type"]
    if kind == "choice":
        positions = {value: i for i, value in enumerate(dist["values"])}
        ax.set_xticks(range(len(positions)), [str(v) for v in positions])
        ax.set_xlim(-0.5, len(positions) - 0.5)
        ax.set_xlabel(f"{name} (choice)")
        return lambda values: np.array([positions.get(v, np.nan) for v in values], dtype=float)
    log = kind == "loguniform" or bool(dist.get("log"))
    if log:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(mticker.NullFormatter())
    if kind == "int":
        if log:
            ax.xaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}" if v >= 1 and v == int(v) else ""))
        else:
            ax.xaxis.set_major_locator(mticker.MaxNLocator(integer=True))
    ax.set_xlabel(f"{name} ({'integer, ' if kind == 'int' else ''}{'log scale' if log else 'linear'})")
    return lambda values: np.asarray(values, dtype=float)


def plot_hparam(trials: pd.DataFrame, name: str, dist: dict, objective: str, best: pd.Index,
                ax=None, color: str = "grey", title: str | None = None):
    """One optimizer's tuning objective against one hyperparameter. Filled: trained the full
    budget; hollow: stopped by ASHA; crosses on the top edge: diverged; stars: `best` (the
    trial each repeat chose)."""
    ax = new_axes(ax)
    to_x = _hparam_axis(ax, name, dist)
    if trials.empty:
        return empty_axes(ax, "no tune trials")
    scale = display_scale(objective)
    x = to_x(trials[name].to_numpy())
    y = trials[objective].to_numpy(dtype=float) * scale
    diverged = trials["diverged"].to_numpy(dtype=bool) | ~np.isfinite(y)
    pruned = trials["pruned"].to_numpy(dtype=bool) & ~diverged
    full = ~diverged & ~pruned
    ax.scatter(x[full], y[full], s=22, color=color, label="full budget")
    ax.scatter(x[pruned], y[pruned], s=22, facecolors="none", edgecolors=color, label="stopped by ASHA")
    top_edge = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
    ax.scatter(x[diverged], np.full(diverged.sum(), 0.96), marker="x", s=26, color=color,
               transform=top_edge, label="diverged (top edge)")
    chosen = trials.index.isin(best)
    ax.scatter(x[chosen], y[chosen], marker="*", s=200, color=color, edgecolors="black",
               linewidths=0.8, zorder=3, label="best trial (each repeat)")
    ax.set_title(title or name, fontsize=9)
    ax.set_ylabel(AXIS_LABELS.get(objective, objective), fontsize=8)
    if "loss" in objective:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(plain_log_labeller(ax))
        ax.yaxis.set_minor_formatter(plain_log_labeller(ax))
    finite = y[np.isfinite(y) & ~diverged]
    if finite.size:  # leave room for the diverged row at 96 % height
        low, high = finite.min(), finite.max()
        if ax.get_yscale() == "log":
            ax.set_ylim(low / 1.1, high * (high / low) ** 0.15 * 1.05)
        else:
            spread = max(high - low, 1e-9)
            ax.set_ylim(low - 0.05 * spread, high + 0.15 * spread)
    ax.grid(True, alpha=0.3)
    return ax


def plot_sensitivity(trials: pd.DataFrame, spaces: dict, objective: str, best: pd.Index,
                     axes=None, title: str | None = None):
    """One row per optimizer, one panel per hyperparameter of its search space (`spaces`:
    optimizer -> {name: distribution}). Returns the 2-D array of axes; unused ones are hidden."""
    tuning = trials[trials["phase"] == "tune"]
    optimizers = [o for o in optimizer_order(spaces) if spaces[o]]
    columns = max((len(spaces[o]) for o in optimizers), default=1)
    if axes is None:
        figure, axes = plt.subplots(max(len(optimizers), 1), columns, squeeze=False, layout="constrained",
                                    figsize=(4.2 * columns, 3.0 * max(len(optimizers), 1)))
        if title:
            figure.suptitle(title, fontsize=11)
    for row, optimizer in enumerate(optimizers):
        rows = tuning[tuning["optimizer"] == optimizer]
        for column, (name, dist) in enumerate(spaces[optimizer].items()):
            plot_hparam(rows, name, dist, objective, best, ax=axes[row, column],
                        color=optimizer_color(optimizer), title=f"{optimizer}: {name}")
        for column in range(len(spaces[optimizer]), columns):
            axes[row, column].set_visible(False)
    if optimizers:
        axes[0, 0].figure.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncol=4,
                                 fontsize=8, frameon=False)
    return axes
