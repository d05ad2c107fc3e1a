"""Warm worker processes, so that a study's trials start in milliseconds, not seconds.

Ray Tune runs each study's trials in new actor processes. A new process spends about 2 s
importing torch and Ray Tune and another 1.3 s in torch's lazy imports at the first optimizer
step, while a whole mnist1d trial trains in about a second. On a cluster we start ourselves:

- every Ray worker imports `tune.preload` before it accepts work (Ray's `preload_python_modules`):
  the trainable, and one tiny epoch of every optimizer;
- `prestart(n)` asks the raylet for n such workers with the runtime environment Ray Tune gives
  its trial actors, so they are idle and ready when the next study asks for actors. It is called
  when Ray starts and after every study (Ray Tune ends a study by killing its actors).

Both rely on Ray internals (the raylet's PrestartWorkers call, Ray Tune's actor environment);
if either fails, trials still run, only slower.
"""
import logging
import os
import time
from pathlib import Path

PRELOAD_MODULE = "tune.preload"
READY_DIR_VARIABLE = "MNIST1D_TUNE_WARM_DIR"  # each warmed worker leaves a file named by its pid there
TRIAL_MARKER_SUFFIX = ".trial"  # ... with this suffix if it was started for trial actors
KEEP_ALIVE_S = 3600

_ready_dir: Path | None = None  # set once we started a cluster whose workers preload PRELOAD_MODULE
_workers = 0  # how many trial workers to keep ready: the cluster's CPUs


def local_system_config() -> dict:
    """The `_system_config` that makes every worker of a cluster we start warm itself up."""
    return {"preload_python_modules": [PRELOAD_MODULE]}


def enable(ready_dir: Path, workers: int) -> None:
    """The cluster just started preloads PRELOAD_MODULE; its workers report to `ready_dir`."""
    global _ready_dir, _workers
    _ready_dir, _workers = ready_dir, workers


def trial_actor_runtime_env() -> dict:
    """The runtime environment Ray Tune gives trial actors (ray.tune.execution.class_cache)."""
    from ray.tune.execution import class_cache

    propagated = {name: os.environ[name] for name in class_cache.ENV_VARS_TO_PROPAGATE if name in os.environ}
    return {"env_vars": {**class_cache.DEFAULT_ENV_VARS, **propagated}}


def prestart() -> bool:
    """Ask our local raylet for one idle trial worker per CPU; False if it could not be asked."""
    if _ready_dir is None:
        return False
    try:
        import ray
        from ray._private.grpc_utils import init_grpc_channel
        from ray._private.utils import get_runtime_env_info
        from ray.core.generated import node_manager_pb2, node_manager_pb2_grpc
        from ray.runtime_env import RuntimeEnv

        node = ray._private.worker.global_worker.node
        channel = init_grpc_channel(f"{node.node_ip_address}:{node.node_manager_port}")
        request = node_manager_pb2.PrestartWorkersRequest(
            language=0,  # Python
            job_id=bytes.fromhex(ray.get_runtime_context().get_job_id()),
            runtime_env_info=get_runtime_env_info(RuntimeEnv(**trial_actor_runtime_env())),
            num_workers=_workers,
            keep_alive_duration_secs=KEEP_ALIVE_S,
        )
        node_manager_pb2_grpc.NodeManagerServiceStub(channel).PrestartWorkers(request, timeout=10)
        return True
    except Exception as error:  # noqa: BLE001 - an optimisation; trials run without it
        logging.getLogger(__name__).debug("could not prestart workers: %s", error)
        return False


def wait_until_warm(timeout_s: float = 120) -> int:
    """Block until one trial worker per CPU finished warming up (or the timeout); returns how many did."""
    deadline = time.monotonic() + timeout_s
    while True:
        warmed = len(list(_ready_dir.glob(f"*{TRIAL_MARKER_SUFFIX}"))) if _ready_dir is not None else 0
        if warmed >= _workers or time.monotonic() > deadline:
            return warmed
        time.sleep(0.05)

