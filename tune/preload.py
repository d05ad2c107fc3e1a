"""Imported by every worker of a Ray cluster we start, before it accepts work (see tune.warm).

A worker started for Ray Tune's trial actors imports the trainable, trains one tiny epoch of every
optimizer and imports what a trial actor's constructor and first report import, which moves about
3 s of imports out of its first trial; other workers skip it.
"""
import json
import os
from pathlib import Path

from tune.warm import READY_DIR_VARIABLE, TRIAL_ENV_VARIABLE


def started_for_trials() -> bool:
    """Ray started this worker with the environment variables of Ray Tune's trial actors."""
    expected = json.loads(os.environ.get(TRIAL_ENV_VARIABLE, "{}"))
    return bool(expected) and all(os.environ.get(name) == value for name, value in expected.items())


def warm_up() -> None:
    import ray.air._internal.torch_utils  # noqa: F401 - a trial's first report imports it (and ray.dag)
    import torch
    from ray.tune.utils.log import disable_ipython

    import tune.trainable  # noqa: F401 - Ray Tune and the train loop
    from optim import REGISTRY
    from tune.loop import train

    generator = torch.Generator().manual_seed(0)
    splits = {f"x_{split}": torch.randn(20, 40, generator=generator) for split in ("train", "val")}
    splits.update({f"y_{split}": torch.randint(0, 10, (20,), generator=generator) for split in ("train", "val")})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for name in REGISTRY:
        train({"optimizer": name, "lr": 1e-3, "epochs": 1, "batch_size": 10}, splits)
    torch.set_num_threads(threads)
    # Ray Tune calls it in every trial actor's constructor; it imports IPython where that is installed
    # (as with Jupyter), 0.2 s that would otherwise delay the study's first trials
    disable_ipython()


if started_for_trials():
    warm_up()
    Path(os.environ[READY_DIR_VARIABLE], str(os.getpid())).touch()
