"""The Ray Tune side of the train loop: a function trainable, checkpointed if config["checkpoint"].

Each trial gets one CPU and torch one thread; the dataset arrives through the object store
(`tune.with_parameters`), never regenerated per trial.

A trial reports to Tune only at the epochs in config["report_epochs"] (ASHA's rungs and the
last epoch; default: every epoch). A Tune round trip costs more than an mnist1d epoch, and
ASHA decides only at its rungs, so its decisions are the same. Each report carries every epoch
since the previous one under "history", so no per-epoch metric is lost.

Tuning trials train for about a second and are not checkpointed: one that fails, or that a
killed run left unfinished, trains again from the start. Final runs are checkpointed at every
report (except the last) and resume from there.
"""
import tempfile
from pathlib import Path

import ray
import torch
from ray import tune

from tune.loop import train

CHECKPOINT_FILE = "state.pt"


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
    report_epochs = set(config.get("report_epochs") or range(config["epochs"] + 1))
    history = []

    def report(metrics: dict, get_state) -> None:
        history.append(metrics)
        last = metrics["epoch"] == config["epochs"] or metrics["diverged"]
        if metrics["epoch"] not in report_epochs and not last:
            return
        result = {**metrics, "node_id": node_id, "history": list(history)}
        history.clear()
        if last or not config.get("checkpoint", True):  # a finished trial is never resumed
            tune.report(result)
            return
        with tempfile.TemporaryDirectory() as folder:
            torch.save(get_state(), Path(folder) / CHECKPOINT_FILE)
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))

    train(config, data, report, state)


def trainable(data: dict):
    """`run_trial` bound to `data` (put in the object store once) and to one CPU."""
    return tune.with_resources(tune.with_parameters(run_trial, data=data), {"cpu": 1})
