"""The Ray Tune side of the train loop: a function trainable, checkpointed if config["checkpoint"].

Each trial gets one CPU and torch one thread; the datasets of the run arrive through the object
store (`ray.tune.with_parameters`), never regenerated per trial; config["data"] names a trial's own.

A trial reports to Tune only at the epochs in config["report_epochs"] (ASHA's rungs and the
last epoch; default: every epoch). A Tune round trip costs more than an mnist1d epoch, and
ASHA decides only at its rungs, so its decisions are the same. Each report carries every epoch
since the previous one under "history", so no per-epoch metric is lost, the validation metrics'
best so far ("best_val_loss", "best_val_acc": what an early-stopped search optimises; the worst
value once the run diverged) and "reported_at" (Unix s).

Tuning trials train for about a second and are not checkpointed: one that fails, or that a
killed run left unfinished, trains again from the start. Final runs are checkpointed at every
report (except the last) and resume from there.
"""
import importlib
import math
import tempfile
import time
from pathlib import Path

import ray
import torch
from ray import tune as ray_tune

from tune.loop import train_population

CHECKPOINT_FILE = "state.pt"


def best_so_far(best: dict, metrics: dict) -> dict:
    """The validation metrics' best values over the epochs so far; a diverged run has the worst."""
    if metrics["diverged"]:
        return {"best_val_loss": math.inf, "best_val_acc": 0.0}
    return {"best_val_loss": min(best.get("best_val_loss", math.inf), metrics["val_loss"]),
            "best_val_acc": max(best.get("best_val_acc", 0.0), metrics["val_acc"])}


def report_with_checkpoint(result: dict, state: dict | None) -> None:
    """ray.tune.report, with `state` as the trial's checkpoint unless it is None."""
    if state is None:
        ray_tune.report(result)
        return
    with tempfile.TemporaryDirectory() as folder:
        torch.save(state, Path(folder) / CHECKPOINT_FILE)
        ray_tune.report(result, checkpoint=ray_tune.Checkpoint.from_directory(folder))


def restored_state() -> dict | None:
    """The training state of the checkpoint Ray Tune restored this trial from, if any."""
    return load_state(ray_tune.get_checkpoint())


def load_state(checkpoint: ray_tune.Checkpoint | None) -> dict | None:
    """The training state in `checkpoint`: tensors and plain values only (weights_only), so a
    tampered file is refused, never run."""
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        return torch.load(Path(folder) / CHECKPOINT_FILE, weights_only=True)


def run_trial(config: dict, datasets: dict) -> None:
    """A tuning trial (a population of one), or a final group (config["seeds"]: one member per seed)."""
    torch.set_num_threads(1)
    for module in config.get("imports", ()):  # they register optimizers defined outside optim/
        importlib.import_module(module)
    data = datasets[config["data"]]
    node = {"node_id": ray.get_runtime_context().get_node_id()}
    if "seeds" in config:
        run_population(config, data, node)
        return
    report_epochs = set(config.get("report_epochs") or range(config["epochs"] + 1))
    history, best = [], {}

    def report(rows: list[dict], get_state) -> None:
        metrics = rows[0]
        history.append(metrics)
        if metrics["epoch"] > 0:
            best.update(best_so_far(best, metrics))
        last = metrics["epoch"] == config["epochs"] or metrics["diverged"]
        if metrics["epoch"] not in report_epochs and not last:
            return
        result = {**metrics, **best, **node, "history": list(history), "reported_at": time.time()}
        history.clear()
        # a finished trial is never resumed
        report_with_checkpoint(result, get_state() if config.get("checkpoint", True) and not last else None)

    train_population([config], data, report, restored_state())


def run_population(config: dict, data: dict, node: dict) -> None:
    """Every seed of config["seeds"] as one member of a population (tune.loop.train_population).
    Each history row carries its member's "seed"; the last report comes when every member stopped."""
    configs = [{**config, "seed": seed} for seed in config["seeds"]]
    history = []

    def report(rows: list, get_state) -> None:
        rows = [{**row, "seed": member["seed"]} for row, member in zip(rows, configs) if row is not None]
        history.extend(rows)
        epoch = rows[0]["epoch"]
        if epoch in config["report_epochs"] and epoch < config["epochs"]:
            report_with_checkpoint({"epoch": epoch, **node, "history": list(history), "reported_at": time.time()},
                                   get_state())
            history.clear()

    train_population(configs, data, report, restored_state())
    last_epoch = max((row["epoch"] for row in history), default=config["epochs"])
    ray_tune.report({"epoch": last_epoch, **node, "history": history, "reported_at": time.time()})


def trainable(datasets: dict):
    """`run_trial` bound to `datasets` (data key -> tensors, put in the object store once) and to one CPU."""
    return ray_tune.with_resources(ray_tune.with_parameters(run_trial, datasets=datasets), {"cpu": 1})
