"""Load a finished (or partly finished) run as tidy pandas frames; Ray need not be running.

    curves = load_run("results/latest")     one row per trial per epoch
    trials = load_trials("results/latest")  one row per trial

Both read `curves.parquet` / `trials.parquet` at the run's root or, if absent, Ray's own
experiment folders `<run>/<experiment>/{tune-<optimizer>,final}/<trial>/result.json`.

curves columns
    experiment, optimizer, phase ("tune" | "final"), trial_id, seed, epoch (from 1),
    train_loss, val_loss, val_acc, test_loss, test_acc (NaN while tuning: tuning never sees test;
    final runs also have an epoch-0 row, measured at initialisation, before any step),
    diverged (a diverged trial's last row has val_loss = inf), epoch_time (s of training),
    node_id (Ray node the trial ran on), max_epochs (the trial's budget),
    lr, inversion_frequency, beta, norm_eps, rank (NaN where the optimizer has no such knob)
trials columns
    experiment, optimizer, phase, trial_id, seed, the config columns, node_id,
    epochs (trained), train_loss, val_loss, val_acc, test_loss, test_acc (at its last epoch),
    best_val_loss, best_val_acc, diverged, pruned (stopped by ASHA before max_epochs),
    train_time (s, sum of epoch_time)
"""
import json
from pathlib import Path

import numpy as np
import pandas as pd

import optim

KEYS = ["experiment", "optimizer", "phase", "trial_id", "seed"]
CONFIG_COLUMNS = ["lr", *dict.fromkeys(name for hparams in optim.HPARAMS.values() for name in hparams)]
METRIC_COLUMNS = ["train_loss", "val_loss", "val_acc", "test_loss", "test_acc"]
CURVE_COLUMNS = [*KEYS, "epoch", *METRIC_COLUMNS, "diverged", "epoch_time", "node_id", "max_epochs", *CONFIG_COLUMNS]
TRIAL_COLUMNS = [*KEYS, *CONFIG_COLUMNS, "node_id", "epochs", *METRIC_COLUMNS, "best_val_loss", "best_val_acc",
                 "diverged", "pruned", "train_time"]
FINAL_FOLDER = "final"
TUNE_PREFIX = "tune-"


def _trial_rows(result_file: Path, experiment: str, phase: str) -> list[dict]:
    rows = []
    for line in result_file.read_text().splitlines():
        if not line.strip():
            continue
        try:
            result = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a killed process
        if "epoch" not in result:
            continue
        config = dict(result.get("config", {}))
        config.update(config.pop("run", {}))
        trial = {"experiment": experiment, "optimizer": config.get("optimizer"), "phase": phase,
                 "trial_id": result["trial_id"], "seed": config.get("seed", 0), "max_epochs": config.get("epochs"),
                 "node_id": result.get("node_id", ""), **{key: config.get(key, np.nan) for key in CONFIG_COLUMNS}}
        # a report carries every epoch since the previous report under "history"
        for epoch in result.get("history") or [result]:
            row = {**trial, **{key: epoch.get(key, np.nan) for key in ["epoch", *METRIC_COLUMNS, "epoch_time"]}}
            row["diverged"] = bool(epoch.get("diverged", False))
            rows.append(row)
    return rows


def curves_from_ray(experiment_folder: Path, experiment: str, phase: str) -> pd.DataFrame:
    """Per-epoch rows of one Ray Tune experiment folder."""
    rows = []
    for result_file in sorted(Path(experiment_folder).glob("*/result.json")):
        rows += _trial_rows(result_file, experiment, phase)
    return tidy_curves(pd.DataFrame(rows, columns=CURVE_COLUMNS))


def tidy_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """Column order and types fixed; a trial restored from a checkpoint re-reports the
    epochs after that checkpoint, so only the last report of each epoch is kept."""
    curves = curves.drop_duplicates(["experiment", "phase", "optimizer", "trial_id", "epoch"], keep="last")
    curves = curves.astype({"seed": "int64", "epoch": "int64", "diverged": "bool", "max_epochs": "int64"})
    curves[CONFIG_COLUMNS] = curves[CONFIG_COLUMNS].astype("float64")
    return curves.sort_values(["experiment", "phase", "optimizer", "trial_id", "epoch"]).reset_index(drop=True)[CURVE_COLUMNS]


def curves_from_run_folders(run: Path) -> pd.DataFrame:
    frames = []
    for folder in sorted(Path(run).glob("*/*/")):
        if folder.name == FINAL_FOLDER:
            frames.append(curves_from_ray(folder, folder.parent.name, "final"))
        elif folder.name.startswith(TUNE_PREFIX):
            frames.append(curves_from_ray(folder, folder.parent.name, "tune"))
    frames = [frame for frame in frames if not frame.empty]
    if not frames:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    return tidy_curves(pd.concat(frames, ignore_index=True))


def trials_from_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """One row per trial: its config, its last epoch's metrics and what ended it."""
    if curves.empty:
        return pd.DataFrame(columns=TRIAL_COLUMNS)
    groups = curves.groupby(["experiment", "phase", "optimizer", "trial_id"], sort=False)
    trials = groups.last()  # rows are sorted by epoch within a trial
    trials["epochs"] = groups["epoch"].max()
    trained = curves[curves["epoch"] > 0].groupby(["experiment", "phase", "optimizer", "trial_id"], sort=False)
    trials["best_val_loss"] = trained["val_loss"].min()
    trials["best_val_acc"] = trained["val_acc"].max()
    trials["diverged"] = groups["diverged"].any()
    trials["train_time"] = groups["epoch_time"].sum()
    trials = trials.reset_index()
    trials["pruned"] = ~trials["diverged"] & (trials["epochs"] < trials["max_epochs"])
    return trials[TRIAL_COLUMNS]


def with_repeat(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with its `repeat` column (the tuning repeat, from 0); frames written before
    tuning was repeated have none, and were repeat 0."""
    return frame if "repeat" in frame.columns else frame.assign(repeat=0)


def _checked_run(path) -> Path:
    run = Path(path)
    if not run.is_dir():
        raise FileNotFoundError(f"no run folder at {run}")
    return run


def load_run(path) -> pd.DataFrame:
    """The per-epoch frame of a run folder (see the module docstring for columns)."""
    run = _checked_run(path)
    if (run / "curves.parquet").exists():
        return pd.read_parquet(run / "curves.parquet")
    return curves_from_run_folders(run)


def load_trials(path) -> pd.DataFrame:
    """The per-trial frame of a run folder (see the module docstring for columns)."""
    run = _checked_run(path)
    if (run / "trials.parquet").exists():
        return pd.read_parquet(run / "trials.parquet")
    return trials_from_curves(load_run(run))


def write_frames(run: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rebuild curves.parquet and trials.parquet from Ray's folders of the run."""
    curves = curves_from_run_folders(run)
    trials = trials_from_curves(curves)
    curves.to_parquet(Path(run) / "curves.parquet", index=False)
    trials.to_parquet(Path(run) / "trials.parquet", index=False)
    return curves, trials
