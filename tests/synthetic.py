"""A small synthetic run for the analysis tests: tune and final phases, repeats, spec.json files,
with known effects (an optimizer's loss floor shifted) and paired seeds sharing their noise."""
import json
import math

import numpy as np
import pandas as pd

from analysis.load import trials_from_curves

ALL_OPTIMIZERS = ["adam", "cgi", "gao", "gns", "lrg", "svd"]


def _curve_rows(experiment, optimizer, phase, trial_id, seed, epochs, floor, lr, rng,
                diverge=False, max_epochs=None, repeat=0, started_at=1e9):
    """A plausible loss curve: fast drop from ln(10) to `floor`, slight overfitting.
    Final runs also get the epoch-0 row measured before training."""
    final = phase == "final"
    e = np.arange(0 if final else 1, epochs + 1)
    val_loss = floor + (2.3 - floor) * np.exp(-e / 3) + 0.004 * e + rng.normal(0, 0.01, e.size)
    val_acc = np.clip(1 - val_loss / 2.6, 0, 1)
    diverged = np.zeros(e.size, dtype=bool)
    if diverge:
        val_loss[-1], diverged[-1] = np.inf, True
    epoch_time = 0.05 + 0.01 * (optimizer != "adam") + rng.uniform(0, 0.005, e.size)
    return pd.DataFrame({
        "experiment": experiment, "optimizer": optimizer, "phase": phase, "trial_id": trial_id,
        "seed": seed, "epoch": e, "train_loss": val_loss * 0.8, "val_loss": val_loss,
        "val_acc": val_acc, "test_loss": val_loss + 0.02 if final else np.nan,
        "test_acc": val_acc - 0.01 if final else np.nan, "diverged": diverged,
        "epoch_time": np.where(e == 0, 0.0, epoch_time), "node_id": "node0",
        "max_epochs": max_epochs, "lr": lr,
        "inversion_frequency": 98.0 if optimizer == "cgi" else np.nan,
        "beta": 0.9 if optimizer == "gao" else np.nan, "norm_eps": np.nan,
        "rank": 20.0 if optimizer in ("lrg", "svd") else np.nan,
        "study": f"{experiment}/{optimizer}/r{repeat}", "repeat": repeat, "reported_at": started_at + e,
    })


def synthetic_curves(experiment, optimizers, n_seeds, offsets=None, tune_trials=6,
                     tune_epochs=9, final_epochs=12, seed=0, repeats=1):
    """Tune trials stopped at ASHA-like rungs (one diverges) per repeat, and final runs per
    repeat and seed whose per-seed noise is shared across optimizers, as pairing by seed implies.
    offsets[optimizer] shifts that optimizer's loss floor (negative = better)."""
    rng = np.random.default_rng(seed)
    offsets = offsets or {}
    frames = []
    for optimizer in optimizers:
        for r in range(repeats):
            for t in range(tune_trials):
                lr = float(10 ** rng.uniform(-4, -1))
                floor = 0.45 + 0.15 * math.log10(lr / 0.005) ** 2
                epochs = [1, 3, tune_epochs, tune_epochs, 3, tune_epochs][t % 6]
                frames.append(_curve_rows(experiment, optimizer, "tune", f"{optimizer}_r{r}_t{t:02d}", t, epochs,
                                          floor, lr, rng, diverge=(t == 4), max_epochs=tune_epochs, repeat=r,
                                          started_at=1e9 + 100 * len(frames)))
    seed_effects = np.random.default_rng(seed + 1).normal(0, 0.03, n_seeds)
    for optimizer in optimizers:
        for r in range(repeats):
            for s in range(n_seeds):
                noise = np.random.default_rng(1000 + s)  # same noise for every optimizer
                frames.append(_curve_rows(experiment, optimizer, "final", f"{optimizer}_r{r}_f{s}", s, final_epochs,
                                          0.45 + seed_effects[s] + offsets.get(optimizer, 0.0), 0.005, noise,
                                          max_epochs=final_epochs, repeat=r, started_at=1e9 + 100 * len(frames)))
    return pd.concat(frames, ignore_index=True)


def trials_of(curves):
    """The trials frame as the loader writes it."""
    return trials_from_curves(curves)


def experiment_spec(name, optimizers, reported_verdict=None, metric="val_loss", primary=None):
    spec = {
        "name": name, "seed_file": "000_0bef21695cdf6d3c.txt", "title": f"Title of {name}",
        "hypothesis": f"{name} beats Adam.",
        "data": {"n_train": 4000, "n_test": 1000, "val_fraction": 0.2, "seed": 42},
        "model": {"hidden": [100, 100]}, "batch_size": 100,
        "optimizers": {o: {"lr": {"type": "loguniform", "low": 1e-5, "high": 0.1}} for o in optimizers},
        "tuning": {"num_samples": 6, "epochs": 9, "metric": metric, "mode": "max" if "acc" in metric else "min",
                   "grace_period": 1, "reduction_factor": 3, "repeats": 2},
        "final": {"epochs": 12, "seeds": 3},
        "reported": {"adam": {"lr": 0.0057}},
        "reported_metrics": {"adam": {"test_acc": 0.701}},
        "choices": ["Validation split taken from the training set."],
    }
    extra = {"cgi": {"inversion_frequency": {"type": "int", "low": 2, "high": 100}},
             "gao": {"beta": {"type": "uniform", "low": 0.8, "high": 0.999}},
             "lrg": {"rank": {"type": "int", "low": 1, "high": 124, "log": True}},
             "svd": {"rank": {"type": "int", "low": 1, "high": 100, "log": True}}}
    for optimizer in optimizers:
        spec["optimizers"][optimizer].update(extra.get(optimizer, {}))
    if "cgi" in optimizers:
        spec["reported"]["cgi"] = {"lr": 0.0053, "inversion_frequency": 98}
    if reported_verdict:
        spec["reported_verdict"] = reported_verdict
    if primary:
        spec["final"]["primary"] = primary
    return spec


def write_run(run_dir, experiments, provenance=None):
    """experiments: {name: (curves, spec or None)} -> writes the run folder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    curves = pd.concat([c for c, _ in experiments.values()], ignore_index=True)
    curves.to_parquet(run_dir / "curves.parquet")
    trials_of(curves).to_parquet(run_dir / "trials.parquet")
    for name, (_, spec) in experiments.items():
        if spec is not None:
            (run_dir / name).mkdir(exist_ok=True)
            (run_dir / name / "spec.json").write_text(json.dumps(spec))
    if provenance:
        (run_dir / "run.json").write_text(json.dumps({"status": "complete", "provenance": provenance}))
    return run_dir


PROVENANCE = {"versions": {"python": "3.12.1", "torch": "2.5.0", "ray": "2.60.0", "optuna": "4.1",
                           "numpy": "2.1", "pandas": "2.2"}, "git_commit": "abc1234", "cpus": 2, "nodes": 1,
              "address": None, "concurrency": {"cgi": 2, "benchmark": 2}}



def standard_run(folder):
    """cgi (adam, cgi) and the benchmark (all six), 2 repeats × 3 seeds each, with provenance."""
    return write_run(folder, {
        "cgi": (synthetic_curves("cgi", ["adam", "cgi"], 3, {"cgi": 0.01}, repeats=2),
                experiment_spec("cgi", ["adam", "cgi"], reported_verdict="not supported")),
        "benchmark": (synthetic_curves("benchmark", ALL_OPTIMIZERS, 3, {"gao": -0.05, "svd": 0.08, "lrg": 0.02},
                                       seed=3, repeats=2),
                      experiment_spec("benchmark", ALL_OPTIMIZERS)),
    }, provenance=PROVENANCE)
