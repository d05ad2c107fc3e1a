"""One experiment of a run as its report section and figures see it: the typed spec, the
experiment's rows of the run's frames, and the primary metric the spec declares."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analysis import compare, metrics
from analysis.plots import optimizer_order
from analysis.text import METRIC_NAMES
from tune.experiments import ExperimentSpec


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
        return metrics.higher_is_better(self.selection)

    def describe(self) -> str:
        where = (f"each run's epoch of best {METRIC_NAMES[self.selection]} (early-stopped)"
                 if self.kind == "best_val_epoch" else "each run's final epoch")
        return f"{METRIC_NAMES[self.metric]} at {where}"


def primary_of(spec: ExperimentSpec) -> Primary:
    return Primary(spec.final.primary, spec.tuning.metric, spec.objective)


@dataclass(frozen=True)
class Experiment:
    """Everything one section and its figures are made from."""
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

    def ranked(self) -> list[str]:
        """The optimizers with final runs, best mean primary metric first."""
        return compare.ranked_by_mean(self.per_seed, self.primary.column, self.primary.higher_better, self.optimizers)


def experiment(name: str, spec: ExperimentSpec | Exception | None, curves: pd.DataFrame,
               trials: pd.DataFrame) -> Experiment:
    """One experiment from its spec (as analysis.load.load_specs gives it: a SpecError when
    spec.json is invalid, None when it is missing) and its rows of the run's frames."""
    problem = None
    if not isinstance(spec, ExperimentSpec):
        problem = f"spec.json is invalid ({spec})" if spec is not None else "spec.json is missing"
        spec = ExperimentSpec(name=name, title=name, seed_file="unknown", hypothesis="not recorded", optimizers={})
    primary = primary_of(spec)
    return Experiment(name=name, spec=spec, spec_problem=problem, curves=curves, trials=trials,
                      per_seed=compare.per_seed_metrics(curves, primary.selection), primary=primary,
                      optimizers=optimizer_order(set(spec.optimizers) | set(curves["optimizer"]) | set(trials["optimizer"])))
