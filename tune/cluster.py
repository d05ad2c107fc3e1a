"""Start a quiet local Ray, or connect to an existing cluster and check it can run the job."""
import contextlib
import importlib
import logging
import os
import platform
import re
import socket
import subprocess
import sys
import uuid
from pathlib import Path

from tune import ray_internals, warm
from tune.ending import keeping_signal_handlers, remove_at_exit

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("optim", "models", "tune")
_warm_dir: Path | None = None  # where the warmed trial workers of the cluster we started check in
CONNECT_TIMEOUT_S = 60
ADDRESS = re.compile(r"^(?:ray://)?(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:]+\]):(?P<port>\d{1,5})$")


class ClusterError(Exception):
    """The cluster cannot be used; the message says why and what to do."""


def quiet_environment() -> None:
    """Keep Ray's console output down; set before Ray is imported by anything that runs trials."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "60")
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    # Ctrl-C stops the driver at once (run_all.exit_on_interrupt), not after Ray Tune's own
    # graceful stop, which would return from the study and start the next one
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    # Ray Tune's CSV and TensorBoard loggers cost the driver a quarter of its CPU on tiny trials;
    # the JSON logger (result.json, for Ray's own ExperimentAnalysis) is added back in tune.study
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def runtime_env() -> dict:
    """Ship the project's own packages to every worker, whatever directory it started in."""
    folders = [str(Path(importlib.import_module(name).__file__).parent) for name in PACKAGES]
    return {"py_modules": folders, "env_vars": {"PYTHONWARNINGS": "ignore::DeprecationWarning"}}


def start_local(cpus: int, dashboard: bool = False):
    """A one-machine Ray that listens on loopback only, with one warm trial worker per CPU."""
    ray_internals.listen_on_loopback_only()
    import ray
    if dashboard and ray_internals.dashboard_dependency_error():
        raise ClusterError("--dashboard needs Ray's dashboard packages: pip install 'ray[default]==2.60.0'")
    # Local workers inherit our environment: the project's packages come from PYTHONPATH, not from
    # a runtime environment, whose hash would keep the workers Ray starts with the cluster from
    # taking trials (tune.warm).
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    internals = ray_internals.available()
    global _warm_dir
    _warm_dir = warm.new_ready_dir() if internals else None
    if _warm_dir:
        remove_at_exit(_warm_dir)
    worker_environment = {**ray_internals.trial_actors_take_prestarted_workers(),
                          warm.READY_DIR_VARIABLE: str(_warm_dir)} if internals else {}
    os.environ.update(worker_environment)  # the raylet, and so every worker, inherits them
    quiet = not dashboard
    try:
        with keeping_signal_handlers(), (ray_internals.no_helper_processes() if internals and quiet
                                         else contextlib.nullcontext()):
            context = ray.init(address="local", num_cpus=cpus, include_dashboard=dashboard, log_to_driver=False,
                               logging_level=logging.ERROR,
                               **ray_internals.init_options([warm.PRELOAD_MODULE], warm.KEEP_IDLE_S, quiet))
    finally:
        for name in worker_environment:
            del os.environ[name]
    if _warm_dir:
        warm.wait_until_warm(_warm_dir, cpus, timeout_s=60)
    return context


def warmed_workers() -> set[int]:
    """The process ids of the trial workers warmed so far on the cluster start_local started."""
    return warm.warmed_pids(_warm_dir) if _warm_dir else set()


def check_address(address: str) -> None:
    """Refuse a malformed address, and one where nothing listens, in seconds, not minutes."""
    if address == "auto":
        return
    match = ADDRESS.match(address)
    if not match or not 0 < int(match["port"]) < 65536:
        raise ClusterError(f"--address {address!r} is not auto, host:port or ray://host:port")
    host = match["host"].strip("[]")
    try:
        socket.create_connection((host, int(match["port"])), timeout=5).close()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ClusterError(f"--address {address}: no Ray cluster reachable there ({reason})") from None


PROBE = """
import logging, sys, ray
try:
    ray.init(address=sys.argv[1], logging_level=logging.ERROR, log_to_driver=False)
except Exception as error:
    print("PROBE-FAILED", type(error).__name__, str(error).splitlines()[0] if str(error) else "")
    sys.exit(1)
print("PROBE-OK", int(ray.cluster_resources().get("CPU", 0)))
"""


def probe(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Connect once in a child process: Ray's own connect retries for minutes and prints to stderr."""
    try:
        done = subprocess.run([sys.executable, "-c", PROBE, address], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ClusterError(f"--address {address}: no Ray cluster answered within {timeout:.0f} s") from None
    output = done.stdout + done.stderr
    if "PROBE-OK" in done.stdout:
        if int(done.stdout.split("PROBE-OK")[1].split()[0]) < 1:
            raise ClusterError(f"--address {address}: the cluster has no CPUs to run trials on")
        return
    if "InvalidAuthToken" in output or "authentication" in output.lower():
        raise ClusterError(f"--address {address}: the cluster refused our token; set RAY_AUTH_MODE=token and "
                           "RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) to the cluster's token (ray get-auth-token on the head)")
    failure = next((line for line in done.stdout.splitlines() if line.startswith("PROBE-FAILED")), "")
    reason = failure.removeprefix("PROBE-FAILED").strip() or "Ray could not connect"
    raise ClusterError(f"--address {address}: {reason}")


def connect(address: str):
    import ray

    check_address(address)
    probe(address)
    with keeping_signal_handlers():
        return ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR, runtime_env=runtime_env())


def cluster_cpus() -> int:
    import ray
    return int(ray.cluster_resources().get("CPU", 1))


def cpu_nodes() -> list[dict]:
    """The alive nodes of the connected cluster that can run trials."""
    import ray
    return [node for node in ray.nodes() if node["Alive"] and node["Resources"].get("CPU", 0) > 0]


def git_commit(timeout: float = 5) -> str | None:
    """The project's commit, when its code is a git checkout (not merely inside another one)."""
    try:
        done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--show-toplevel", "HEAD"],
                              capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = done.stdout.splitlines()
    if done.returncode != 0 or len(lines) != 2 or Path(lines[0]).resolve() != ROOT:
        return None
    return lines[1]


def provenance(address: str | None, specs) -> dict:
    """What a run ran with, for run.json: library versions, the project's commit, the connected
    cluster's size, the --address as given and each experiment's tuning concurrency."""
    import numpy
    import optuna
    import pandas
    import ray
    import torch

    versions = {"python": platform.python_version(), "torch": torch.__version__, "ray": ray.__version__,
                "optuna": optuna.__version__, "numpy": numpy.__version__, "pandas": pandas.__version__}
    return {"versions": versions, "git_commit": git_commit(), "cpus": cluster_cpus(), "nodes": len(cpu_nodes()),
            "address": address, "concurrency": {spec.name: spec.tuning.concurrency for spec in specs}}


def check_storage_shared(folder: Path) -> None:
    """Every alive node must see `folder`: Ray Tune writes results and checkpoints there from
    the workers, so it has to be a shared filesystem path on a multi-node cluster."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    marker = Path(folder).resolve() / f".visible-{uuid.uuid4().hex}"
    marker.write_text("")
    try:
        @ray.remote(num_cpus=0)
        def sees(path: str) -> bool:
            return os.path.exists(path)

        nodes = cpu_nodes()
        checks = [sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
                  .remote(str(marker)) for node in nodes]
        blind = [node["NodeManagerAddress"] for node, seen in zip(nodes, ray.get(checks, timeout=120)) if not seen]
    finally:
        marker.unlink(missing_ok=True)
    if blind:
        raise ClusterError(f"--output {folder} is not visible from node(s) {', '.join(blind)}: "
                           "use a folder on a filesystem shared by every node")
