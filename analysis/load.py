"""Load a finished (or partly finished) run as tidy pandas frames; Ray need not be running.

    curves = load_run("results/latest")     one row per trial per epoch
    trials = load_trials("results/latest")  one row per trial

Both read `curves.parquet` / `trials.parquet` at the run's root or, if absent, the reports the
run logged, `<run>/results/<phase>-<trial id>.jsonl` (one Ray Tune result per line). A study or final run shared by several
experiments appears under each of them, with the same `study` and `trial_id`.

curves columns
    experiment, optimizer, phase ("tune" | "final"),
    study ("<experiment>/<optimizer>/r<repeat>" of the first experiment that contains the study
    or final group), repeat (the tuning repeat, from 0; a final run trains that repeat's best config),
    trial_id, seed, epoch (from 1),
    train_loss, val_loss, val_acc, test_loss, test_acc (NaN while tuning: tuning never sees test;
    final runs also have an epoch-0 row, measured at initialisation, before any step),
    diverged (a diverged trial's last row has val_loss = inf), epoch_time (s of training),
    node_id (Ray node the trial ran on), max_epochs (the trial's budget),
    reported_at (Unix s of the report that carried the epoch),
    lr, then every registered optimizer's hyperparameters (NaN where the optimizer has no such knob)
trials columns
    experiment, optimizer, phase, study, repeat, trial_id, seed, the config columns, node_id,
    epochs (trained), train_loss, val_loss, val_acc, test_loss, test_acc (at its last epoch),
    best_val_loss, best_val_acc, diverged, pruned (stopped by ASHA before max_epochs),
    train_time (s, sum of epoch_time), started_at and ended_at (Unix s of its first and last report)
"""
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import optim
from tune.run_folder import CURVES_FILE, RESULTS_FOLDER, RUN_FILE, SPEC_FILE, TRIALS_FILE, atomic_path

KEYS = ["experiment", "optimizer", "phase", "study", "repeat", "trial_id", "seed"]
CONFIG_COLUMNS = ["lr", *dict.fromkeys(name for info in optim.REGISTRY.values() for name in info.hparams)]
METRIC_COLUMNS = ["train_loss", "val_loss", "val_acc", "test_loss", "test_acc"]
CURVE_COLUMNS = [*KEYS, "epoch", *METRIC_COLUMNS, "diverged", "epoch_time", "node_id", "max_epochs", "reported_at",
                 *CONFIG_COLUMNS]
TRIAL_COLUMNS = [*KEYS, *CONFIG_COLUMNS, "node_id", "epochs", *METRIC_COLUMNS, "best_val_loss", "best_val_acc",
                 "diverged", "pruned", "train_time", "started_at", "ended_at"]
TRIAL_ORDER = ["experiment", "phase", "optimizer", "trial_id"]


def _trial_rows(result_file: Path) -> list[dict]:
    rows = []
    try:
        lines = result_file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        warnings.warn(f"skipped unreadable results file {result_file}: {error}", stacklevel=3)
        return []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            result = json.loads(line)
        except json.JSONDecodeError:
            warnings.warn(f"skipped line {number} of {result_file}: not JSON (cut short?)", stacklevel=3)
            continue
        if "epoch" not in result:
            continue
        config = result.get("config", {})
        trial = {"optimizer": config.get("optimizer"), "phase": config.get("phase"), "study": config.get("study"),
                 "repeat": config.get("repeat", 0), "trial_id": result["trial_id"], "seed": config.get("seed", 0),
                 "max_epochs": config.get("epochs"), "node_id": result.get("node_id", ""),
                 "reported_at": result.get("reported_at", np.nan),
                 **{key: config.get(key, np.nan) for key in CONFIG_COLUMNS}}
        # a report carries every epoch since the previous report under "history"
        for epoch in result.get("history") or [result]:
            row = {**trial, **{key: epoch.get(key, np.nan) for key in ["epoch", *METRIC_COLUMNS, "epoch_time"]}}
            if "seed" in epoch:  # a member of a population: one trial of the frames per seed
                row.update(seed=epoch["seed"], trial_id=f"{result['trial_id']}_s{epoch['seed']}")
            row["diverged"] = bool(epoch.get("diverged", False))
            rows += [{**row, "experiment": experiment} for experiment in config.get("experiments", [])]
    return rows


def curves_from_results(results_folder: Path) -> pd.DataFrame:
    """Per-epoch rows of the run's logged reports."""
    rows = []
    for result_file in sorted(Path(results_folder).glob("*.jsonl")):
        rows += _trial_rows(result_file)
    return tidy_curves(pd.DataFrame(rows, columns=CURVE_COLUMNS))


def tidy_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """Column order and types fixed; a trial restored from a checkpoint re-reports the
    epochs after that checkpoint, so only the last report of each epoch is kept."""
    curves = curves.drop_duplicates([*TRIAL_ORDER, "epoch"], keep="last")
    curves = curves.astype({"seed": "int64", "repeat": "int64", "epoch": "int64", "diverged": "bool",
                            "max_epochs": "int64", "reported_at": "float64"})
    curves[CONFIG_COLUMNS] = curves[CONFIG_COLUMNS].astype("float64")
    return curves.sort_values([*TRIAL_ORDER, "epoch"]).reset_index(drop=True)[CURVE_COLUMNS]


def curves_from_run_folders(run: Path) -> pd.DataFrame:
    return curves_from_results(Path(run) / RESULTS_FOLDER)


def trials_from_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """One row per trial: its config, its last epoch's metrics and what ended it."""
    if curves.empty:
        return pd.DataFrame(columns=TRIAL_COLUMNS)
    groups = curves.groupby(TRIAL_ORDER, sort=False)
    trials = groups.last()  # rows are sorted by epoch within a trial
    trials["epochs"] = groups["epoch"].max()
    trials["started_at"], trials["ended_at"] = groups["reported_at"].min(), groups["reported_at"].max()
    trained = curves[curves["epoch"] > 0].groupby(TRIAL_ORDER, sort=False)
    trials["best_val_loss"] = trained["val_loss"].min()
    trials["best_val_acc"] = trained["val_acc"].max()
    trials["diverged"] = groups["diverged"].any()
    trials["train_time"] = groups["epoch_time"].sum()
    trials = trials.reset_index()
    trials["pruned"] = ~trials["diverged"] & (trials["epochs"] < trials["max_epochs"])
    return trials[TRIAL_COLUMNS]


def _checked_run(path) -> Path:
    run = Path(path)
    if not run.is_dir():
        raise FileNotFoundError(f"no run folder at {run}")
    return run


def load_run(path) -> pd.DataFrame:
    """The per-epoch frame of a run folder (see the module docstring for columns)."""
    run = _checked_run(path)
    if (run / CURVES_FILE).exists():
        return pd.read_parquet(run / CURVES_FILE)
    return curves_from_run_folders(run)


def load_trials(path) -> pd.DataFrame:
    """The per-trial frame of a run folder (see the module docstring for columns)."""
    run = _checked_run(path)
    if (run / TRIALS_FILE).exists():
        return pd.read_parquet(run / TRIALS_FILE)
    return trials_from_curves(load_run(run))


def write_frames(run: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rebuild curves.parquet and trials.parquet from Ray's folders of the run."""
    curves = curves_from_run_folders(run)
    trials = trials_from_curves(curves)
    for frame, name in ((curves, CURVES_FILE), (trials, TRIALS_FILE)):
        with atomic_path(Path(run) / name) as partial:
            frame.to_parquet(partial, index=False)
    return curves, trials


def load_specs(path) -> dict:
    """Every <run>/<experiment>/spec.json as a typed tune.experiments.ExperimentSpec, keyed by
    folder name; a spec that fails validation maps to the SpecError saying why."""
    from tune.experiments import SpecError, load_spec

    specs = {}
    for file in sorted(_checked_run(path).glob(f"*/{SPEC_FILE}")):
        try:
            specs[file.parent.name] = load_spec(file)
        except SpecError as error:
            specs[file.parent.name] = error
    return specs


def load_provenance(path) -> dict | None:
    """run.json's "provenance" (versions, git commit, CPUs, nodes, address, concurrency), if any."""
    try:
        provenance = json.loads((Path(path) / RUN_FILE).read_text()).get("provenance")
    except (OSError, ValueError, AttributeError):
        return None
    return provenance if isinstance(provenance, dict) else None
