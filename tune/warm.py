"""Warm worker processes, so that a study's trials start in milliseconds, not seconds.

Ray Tune runs each study's trials in new actor processes. A new process spends about 2 s
importing torch and Ray Tune and another 1.5 s when it builds its first optimizer (torch imports
torch._dynamo then), while a whole mnist1d trial trains in about a second. On a cluster we
start ourselves:

- every Ray worker imports `tune.preload` before it accepts work (Ray's `preload_python_modules`):
  a worker for trials imports the trainable, trains one tiny epoch of every optimizer, and imports
  what Ray Tune's trial actor constructor and first report import;
- `prestart()` asks the raylet, when Ray starts, for one such worker per CPU with the runtime
  environment Ray Tune gives its trial actors, so the first study's actors find them ready.

Later studies still start new workers: Ray Tune ends a study by killing its actors, and workers
prestarted right after a study were measured to slow the next one down (their start-up raced
the new actors' and Ray started extra workers).

Both rely on Ray internals (the raylet's PrestartWorkers call, Ray Tune's actor environment);
if either fails, trials still run, only slower.
"""
import json
import logging
import os
import time
from pathlib import Path

PRELOAD_MODULE = "tune.preload"
READY_DIR_VARIABLE = "MNIST1D_TUNE_WARM_DIR"  # each warmed worker leaves a file named by its pid there
TRIAL_ENV_VARIABLE = "MNIST1D_TUNE_TRIAL_ENV"  # the variables by which a worker knows it is for trials
KEEP_ALIVE_S = 600


def local_system_config(dashboard: bool) -> dict:
    """The `_system_config` of a cluster we start: every worker imports PRELOAD_MODULE and, unless
    the dashboard is wanted, no process spends CPU collecting metrics and task events for it."""
    quiet = {} if dashboard else {"enable_metrics_collection": False, "task_events_report_interval_ms": 0}
    return {"preload_python_modules": [PRELOAD_MODULE], **quiet}


def worker_environment(ready_dir: Path) -> dict:
    """Environment variables the workers of a cluster we start need to find out they are for trials."""
    return {READY_DIR_VARIABLE: str(ready_dir), TRIAL_ENV_VARIABLE: json.dumps(trial_actor_runtime_env()["env_vars"])}


def trial_actor_runtime_env() -> dict:
    """The runtime environment Ray Tune gives trial actors (ray.tune.execution.class_cache)."""
    from ray.tune.execution import class_cache

    propagated = {name: os.environ[name] for name in class_cache.ENV_VARS_TO_PROPAGATE if name in os.environ}
    return {"env_vars": {**class_cache.DEFAULT_ENV_VARS, **propagated}}


def prestart(count: int) -> bool:
    """Ask the raylet of our node for `count` idle trial workers; False if it could not be asked."""
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
            num_workers=count,
            keep_alive_duration_secs=KEEP_ALIVE_S,
        )
        node_manager_pb2_grpc.NodeManagerServiceStub(channel).PrestartWorkers(request, timeout=10)
        return True
    except Exception as error:  # noqa: BLE001 - an optimisation; trials run without it
        logging.getLogger(__name__).debug("could not prestart workers: %s", error)
        return False


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
