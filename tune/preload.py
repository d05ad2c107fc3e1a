"""Imported by every worker of a Ray cluster we start, before it accepts work (see tune.warm).

A worker started for Ray Tune's trial actors imports what its first trial would: the trainable,
torch's compiler stack (which the first optimizer a process builds imports) and what a trial
actor's constructor and first report import. That moves about 3 s of imports out of its first
trial. It trains nothing; other workers skip it.
"""
import json
import os
from pathlib import Path

from tune.warm import READY_DIR_VARIABLE, TRIAL_ENV_VARIABLE


def started_for_trials() -> bool:
    """Ray started this worker with the environment variables of Ray Tune's trial actors."""
    expected = json.loads(os.environ.get(TRIAL_ENV_VARIABLE, "{}"))
    return bool(expected) and all(os.environ.get(name) == value for name, value in expected.items())


def import_what_trials_import() -> None:
    import torch

    import tune.trainable  # noqa: F401 - Ray Tune and the train loop
    from tune import ray_internals

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # imports torch._dynamo, 1.2 s; steps nothing
    ray_internals.import_trial_actor_modules()


if started_for_trials():
    import_what_trials_import()
    Path(os.environ[READY_DIR_VARIABLE], str(os.getpid())).touch()
