"""The Ray Tune side of the train loop: a function trainable with checkpoints.

Each trial gets one CPU and torch one thread; the dataset arrives through the object store
(`tune.with_parameters`), never regenerated per trial.
"""
import tempfile
from pathlib import Path

import ray
import torch
from ray import tune

from tune.loop import train

CHECKPOINT_FILE = "state.pt"
CHECKPOINT_EVERY = 5  # epochs; a few lost epochs of a sub-second trial cost less than saving each one


def run_trial(config: dict, data: dict) -> None:
    torch.set_num_threads(1)
    config = {**config, **config.get("run", {})}  # final runs carry their whole config under "run"
    config.pop("run", None)
    state = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / CHECKPOINT_FILE, weights_only=True)
    node_id = ray.get_runtime_context().get_node_id()
    every = config.get("checkpoint_every", CHECKPOINT_EVERY)

    def report(metrics: dict, get_state) -> None:
        metrics = {**metrics, "node_id": node_id}
        if metrics["epoch"] % every and metrics["epoch"] < config["epochs"] and not metrics["diverged"]:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            torch.save(get_state(), Path(folder) / CHECKPOINT_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    train(config, data, report, state)


def trainable(data: dict):
    """`run_trial` bound to `data` (put in the object store once) and to one CPU."""
    return tune.with_resources(tune.with_parameters(run_trial, data=data), {"cpu": 1})
