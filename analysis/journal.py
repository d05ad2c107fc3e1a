"""A run's tuning trials as an Optuna journal, `<run>/optuna.journal`, for Optuna's own tools:

    storage = JournalStorage(JournalFileBackend("results/latest/optuna.journal"))
    optuna.load_study(study_name="cgi/adam/r0", storage=storage)
    python -m analysis dashboard results/latest          # optuna-dashboard on it

One Optuna study per tuning study, named `<experiment>/<optimizer>/r<repeat>` (a study shared by
several experiments is listed under each of them), its direction the spec's tuning mode. The
journal is built from the frames, not by the searches, so it holds exactly the tuning trials of
trials.parquet; it is rebuilt whole each time (a resumed run duplicates nothing). Per trial:

    params              the searched hyperparameters, with the search space's distributions
    value               the spec's objective (ExperimentSpec.objective) as trials.parquet has it
    intermediate values the spec's tuning metric at each epoch (non-finite ones left out)
    state               COMPLETE: trained the full budget; PRUNED: stopped by ASHA;
                        FAIL: diverged (its objective value kept in the user attribute of that name)
    user attributes     ray_trial_id, study (the tuning study it belongs to)
"""
import datetime as dt
import math
from pathlib import Path

import optuna
import pandas as pd
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from tune.run_folder import atomic_path
from tune.space import to_optuna

JOURNAL_FILE = "optuna.journal"
DIRECTIONS = {"min": "minimize", "max": "maximize"}


def study_name(experiment: str, optimizer: str, repeat: int) -> str:
    return f"{experiment}/{optimizer}/r{int(repeat)}"


def open_journal(path) -> JournalStorage:
    return JournalStorage(JournalFileBackend(str(path)))


def write_journal(run_dir, curves: pd.DataFrame, trials: pd.DataFrame, specs) -> Path:
    """Write `<run_dir>/optuna.journal` from the frames; `specs` are the run's ExperimentSpecs."""
    run = Path(run_dir)
    specs = {spec.name: spec for spec in specs}
    tuned = trials[trials["phase"] == "tune"]
    tuned = tuned.sort_values(["started_at", "trial_id"] if "started_at" in tuned.columns else ["trial_id"])
    epochs = curves[(curves["phase"] == "tune") & (curves["epoch"] > 0)]
    curve_of = dict(list(epochs.groupby(["experiment", "optimizer", "trial_id"])))
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with atomic_path(run / JOURNAL_FILE) as partial:
            storage = open_journal(partial)
            for (experiment, optimizer, repeat), group in tuned.groupby(["experiment", "optimizer", "repeat"]):
                if experiment not in specs:
                    raise ValueError(f"trials of experiment {experiment!r}, which has no spec in {run}")
                spec = specs[experiment]
                name = study_name(experiment, optimizer, repeat)
                study = optuna.create_study(study_name=name, storage=storage, direction=DIRECTIONS[spec.tuning.mode])
                distributions = to_optuna(spec.optimizers[optimizer])
                for row in group.to_dict("records"):
                    curve = curve_of.get((experiment, optimizer, row["trial_id"]), epochs.iloc[:0])
                    study.add_trial(_frozen_trial(row, curve, spec, distributions, name))
    finally:
        optuna.logging.set_verbosity(verbosity)
    return run / JOURNAL_FILE


def _frozen_trial(row: dict, curve: pd.DataFrame, spec, distributions: dict, name: str):
    value = float(row[spec.objective])
    attrs = {"ray_trial_id": row["trial_id"], "study": row.get("study") or name}
    if row["diverged"]:
        state, attrs[spec.objective], value = TrialState.FAIL, value, None
    else:
        state = TrialState.PRUNED if row["pruned"] else TrialState.COMPLETE
        value = value if math.isfinite(value) or state == TrialState.COMPLETE else None
    trial = optuna.trial.create_trial(
        state=state, value=value, distributions=distributions, user_attrs=attrs,
        params={key: _param(row[key], distribution) for key, distribution in distributions.items()},
        intermediate_values={int(epoch): float(metric) for epoch, metric in
                             zip(curve["epoch"], curve[spec.tuning.metric]) if math.isfinite(metric)})
    for attribute, column in (("datetime_start", "started_at"), ("datetime_complete", "ended_at")):
        if math.isfinite(row.get(column, math.nan)):
            setattr(trial, attribute, dt.datetime.fromtimestamp(row[column]))
    return trial


def _param(value, distribution):
    """A config column's value (the frames hold every knob as float) as the distribution's type."""
    if isinstance(distribution, IntDistribution):
        return int(round(value))
    if isinstance(distribution, CategoricalDistribution):
        return next(choice for choice in distribution.choices if choice == value)
    return float(value)
