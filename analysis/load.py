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


def with_study_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with `repeat`, `study` and (trials) `started_at`, filled in once for frames
    written before those columns existed: repeat 0, study "<experiment>/<optimizer>/r0", and
    trials started in trial_id order."""
    frame = frame.copy()
    if "repeat" not in frame:
        frame["repeat"] = 0
    if "study" not in frame:
        frame["study"] = [f"{e}/{o}/r{r}" for e, o, r in zip(frame["experiment"], frame["optimizer"], frame["repeat"])]
    if "started_at" not in frame and "epochs" in frame:  # a trials frame
        order = frame.sort_values("trial_id", kind="stable").groupby(["experiment", "study", "phase"]).cumcount()
        frame["started_at"] = order.reindex(frame.index).astype(float)
    return frame


def load_specs(path) -> dict:
    """Every <run>/<experiment>/spec.json as a typed tune.experiments.ExperimentSpec, keyed by
    folder name; a spec that fails validation maps to the SpecError saying why."""
    from tune.experiments import SPEC_FILE, SpecError, load_spec

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
        provenance = json.loads((Path(path) / "run.json").read_text()).get("provenance")
    except (OSError, ValueError, AttributeError):
        return None
    return provenance if isinstance(provenance, dict) else None
