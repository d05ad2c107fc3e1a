"""Formatting for the report: numbers, intervals, p-values, search spaces and markdown tables.
Strings only; no statistics here."""

from __future__ import annotations

import numpy as np

import optim
from analysis.metrics import higher_is_better

METRIC_NAMES = {"test_loss": "test loss", "test_acc": "test accuracy",
                "val_loss": "validation loss", "val_acc": "validation accuracy",
                "best_val_loss": "best validation loss so far", "best_val_acc": "best validation accuracy so far"}
# the per-seed columns (analysis.compare.per_seed_metrics) a report or figure shows
COLUMN_NAMES = {"best_test_loss": "test loss at best-val epoch", "best_test_acc": "test accuracy at best-val epoch",
                "test_loss": "final-epoch test loss", "test_acc": "final-epoch test accuracy"}


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


def fmt_hparam(optimizer: str, name: str, value, space: dict | None = None) -> str:
    """A hyperparameter's value for the report; an integer one (by its search space or its optimizer's
    record) without decimals."""
    if _is_missing(value):
        return "—"
    if isinstance(value, (int, float, np.number)):
        hparams = optim.REGISTRY[optimizer].hparams if optimizer in optim.REGISTRY else {}
        integral = (space or {}).get("type") == "int" or (name in hparams and hparams[name].integer)
        if integral and float(value).is_integer():
            return str(int(value))
        return f"{float(value):.3g}"
    return str(value)


def fmt_space(space: dict) -> str:
    """A validated search-space entry (tune.space) in words."""
    kind = space["type"]
    if kind == "choice":
        return "one of " + ", ".join(str(v) for v in space["values"])
    names = {"loguniform": "log-uniform", "uniform": "uniform", "int": "integer"}
    log = " (log scale)" if kind == "int" and space.get("log") else ""
    return f"{names[kind]} [{space['low']}, {space['high']}]{log}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines + [""]

