"""Imported by every worker of a Ray cluster we start, before it accepts work (see tune.warm).

It imports what a worker's first trial would: the trainable (torch, Ray Tune, the train loop) and
what a trial actor's constructor and first report import. That moves about 2.5 s of imports out of
its first trial. It trains nothing.
"""
import os
from pathlib import Path

from tune.warm import READY_DIR_VARIABLE


def import_what_trials_import() -> None:
    import tune.trainable  # noqa: F401 - torch, Ray Tune and the train loop
    from tune import ray_internals

    ray_internals.import_trial_actor_modules()


if READY_DIR_VARIABLE in os.environ:
    import_what_trials_import()
    Path(os.environ[READY_DIR_VARIABLE], str(os.getpid())).touch()
