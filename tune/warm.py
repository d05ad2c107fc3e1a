"""Warm worker processes, so that a study's trials start in milliseconds, not seconds.

Ray Tune runs each study's trials in new actor processes. A new process spends about 2 s
importing torch and Ray Tune and another 1.5 s when it builds its first optimizer (torch imports
torch._dynamo then), while a whole mnist1d trial trains in about a second. On a cluster we
start ourselves:

- every Ray worker imports `tune.preload` before it accepts work (Ray's `preload_python_modules`):
  a worker for trials imports the trainable, builds one optimizer (torch imports torch._dynamo
  then) and imports what Ray Tune's trial actor constructor and first report import; it trains
  nothing;
- `prestart()` asks the raylet, when Ray starts, for one such worker per CPU with the runtime
  environment Ray Tune gives its trial actors, so the first study's actors find them ready.

Later studies still start new workers: Ray Tune ends a study by killing its actors, and workers
prestarted right after a study were measured to slow the next one down (their start-up raced
the new actors' and Ray started extra workers).

Both rely on Ray internals (tune.ray_internals): on another Ray version, or if a call fails,
trials still run, only slower.
"""
import atexit
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

from tune import ray_internals

PRELOAD_MODULE = "tune.preload"
READY_DIR_VARIABLE = "MNIST1D_TUNE_WARM_DIR"  # each warmed worker leaves a file named by its pid there
TRIAL_ENV_VARIABLE = "MNIST1D_TUNE_TRIAL_ENV"  # the variables by which a worker knows it is for trials
KEEP_ALIVE_S = 600


def worker_environment(ready_dir: Path) -> dict:
    """Environment variables the workers of a cluster we start need to find out they are for trials."""
    return {READY_DIR_VARIABLE: str(ready_dir), TRIAL_ENV_VARIABLE: json.dumps(ray_internals.trial_actor_env_vars())}


def prestart(count: int) -> bool:
    """Ask the raylet of our node for `count` idle trial workers; False if it could not be asked."""
    try:
        ray_internals.prestart_workers(count, ray_internals.trial_actor_env_vars(), KEEP_ALIVE_S)
        return True
    except Exception as error:  # noqa: BLE001 - an optimisation; trials run without it
        logging.getLogger(__name__).debug("could not prestart workers: %s", error)
        return False


def new_ready_dir() -> Path:
    """A folder for the warmed workers to check in, removed when this process exits."""
    ready_dir = Path(tempfile.mkdtemp(prefix="mnist1d-tune-warm-"))
    atexit.register(shutil.rmtree, ready_dir, True)
    return ready_dir


def warmed_pids(ready_dir: Path) -> set[int]:
    """The process ids of the trial workers that have warmed up so far."""
    return {int(path.name) for path in ready_dir.iterdir()}


def wait_until_warm(ready_dir: Path, already: set[int], count: int, timeout_s: float) -> set[int]:
    """Wait until `count` trial workers beyond `already` have warmed up (or the timeout); their pids."""
    deadline = time.monotonic() + timeout_s
    while True:
        new = warmed_pids(ready_dir) - already
        if len(new) >= count or time.monotonic() > deadline:
            return new
        time.sleep(0.05)
