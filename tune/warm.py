"""Warm worker processes, so that the first trials start in milliseconds, not seconds.

Ray Tune runs trials in actor processes. A new process spends about 2.5 s importing torch and Ray
Tune, while a tuning trial trains in about a second. On a cluster we start ourselves:

- Ray starts one idle worker per CPU when the cluster starts, and Ray Tune's trial actors take
  them: they ask for no runtime environment of their own (tune.ray_internals), and the
  environment variables Tune would have given them are in every worker's environment instead;
- every worker imports `tune.preload` before it accepts work (Ray's `preload_python_modules`):
  it imports the trainable and what Ray Tune's trial actor constructor and first report import;
  it trains nothing.

So the workers warm up while Ray is still starting. A worker Ray starts later (for example for a
second Ray Tune run in the same cluster, as in the tests) warms up the same way before it takes
its first trial.

Both rely on Ray internals (tune.ray_internals): on another Ray version trials still run, only
slower.
"""
import tempfile
import time
from pathlib import Path

READY_DIR_VARIABLE = "MNIST1D_TUNE_WARM_DIR"  # each warmed worker leaves a file named by its pid there
READY_DIR_PREFIX = "mnist1d-tune-warm-"
PRELOAD_MODULE = "tune.preload"
KEEP_IDLE_S = 600


def new_ready_dir() -> Path:
    """A new temporary folder for the warmed workers to check in."""
    return Path(tempfile.mkdtemp(prefix=READY_DIR_PREFIX))


def warmed_pids(ready_dir: Path) -> set[int]:
    """The process ids of the workers that have warmed up so far."""
    return {int(path.name) for path in ready_dir.iterdir()}


def wait_until_warm(ready_dir: Path, count: int, timeout_s: float) -> set[int]:
    """Wait until `count` workers have warmed up (or the timeout); their pids."""
    deadline = time.monotonic() + timeout_s
    while True:
        warmed = warmed_pids(ready_dir)
        if len(warmed) >= count or time.monotonic() > deadline:
            return warmed
        time.sleep(0.05)
