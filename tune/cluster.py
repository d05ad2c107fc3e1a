"""Start a quiet local Ray or connect to an existing cluster."""
import importlib
import logging
import os
from pathlib import Path

PACKAGES = ("optim", "models", "tune")


def quiet_environment() -> None:
    """Keep Ray's console output down; set before Ray is imported by anything that runs trials."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "60")
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def runtime_env() -> dict:
    """Ship the project's own packages to every worker, whatever directory it started in."""
    folders = [str(Path(importlib.import_module(name).__file__).parent) for name in PACKAGES]
    return {"py_modules": folders,
            "env_vars": {"PYTHONWARNINGS": "ignore::DeprecationWarning"}}


def start_local(cpus: int, dashboard: bool = False):
    """A one-machine Ray that listens on loopback only."""
    # Ray's single-machine mode (its default on macOS/Windows) binds every service to 127.0.0.1;
    # Ray reads this when first imported, so it must be set before that.
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray
    return ray.init(num_cpus=cpus, include_dashboard=dashboard, log_to_driver=False,
                    logging_level=logging.ERROR, runtime_env=runtime_env())


def cluster_cpus() -> int:
    import ray
    return int(ray.cluster_resources().get("CPU", 1))
