"""Imported by every worker of a Ray cluster we start, before it accepts work (see tune.warm).

Importing the trainable and training one tiny epoch of every optimizer moves about 3 s of
imports out of the first trial each worker runs.
"""
import os
from pathlib import Path

import torch

import tune.trainable  # noqa: F401 - imports Ray Tune and the train loop
from optim import OPTIMIZERS
from tune.loop import train
from tune.warm import READY_DIR_VARIABLE, TRIAL_MARKER_SUFFIX, trial_actor_runtime_env


def warm_up() -> None:
    generator = torch.Generator().manual_seed(0)
    splits = {f"x_{split}": torch.randn(20, 40, generator=generator) for split in ("train", "val")}
    splits.update({f"y_{split}": torch.randint(0, 10, (20,), generator=generator) for split in ("train", "val")})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for name in OPTIMIZERS:
        train({"optimizer": name, "lr": 1e-3, "epochs": 1, "batch_size": 10}, splits)
    torch.set_num_threads(threads)


def started_for_trials() -> bool:
    """Ray started this worker with the environment of Ray Tune's trial actors."""
    return all(os.environ.get(name) == value for name, value in trial_actor_runtime_env()["env_vars"].items())


warm_up()
if os.environ.get(READY_DIR_VARIABLE):
    suffix = TRIAL_MARKER_SUFFIX if started_for_trials() else ""
    Path(os.environ[READY_DIR_VARIABLE], f"{os.getpid()}{suffix}").touch()
