"""Every use of Ray's private API in the project, behind one check of the Ray version.

They were written for Ray WRITTEN_FOR (requirements.txt pins it). On any other version
`available()` is False, ONE warning says what is off, and the project falls back to Ray's public
behaviour (the functions used only for warm workers are called only when `available()`):

- warm trial workers (tune.warm): `ray.init`'s `_system_config` (`preload_python_modules`, how
  long idle workers live), the environment Ray Tune gives its trial actors
  (ray.tune.execution.class_cache) and what a trial actor imports -> off: each trial worker
  imports torch and Ray Tune when its first trial starts, about 2.5 s more per worker;
- the quiet cluster (`_system_config`: no metrics, no task events; unless --dashboard, no
  dashboard, autoscaler monitor or log monitor process, `ray._private.node.Node`) -> off: Ray's
  defaults, about 1.5 s longer to start;
- the early --dashboard check (ray._private.utils) -> off: Ray reports missing dashboard
  packages itself, after it started;
- trial retries (ray.tune.execution.tune_controller): a late error of a trial's failed actor
  counts as a failure but does not give up a trial already queued to run again
  (`requeued_trials_survive_late_errors`) -> off: when a node dies, a trial may be given up with
  retries left;
- loopback only: Ray binds every service to 127.0.0.1 when RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
  is set when Ray is first imported (the public switch of its single-machine mode, named in its
  own messages); run_all.py imports Ray only after start_local set it. If Ray was imported
  earlier (as in the tests), on WRITTEN_FOR we patch the constant Ray read then. There is no
  public equivalent (`ray.init(_node_ip_address="127.0.0.1")` turns loopback into the machine's
  address), so on another version that case gets a warning of its own: Ray listens on every
  interface.

Ray Tune's searcher and scheduler (tune.study: StudyRouter, PatientASHA) use public interfaces
only (Searcher, ConcurrencyLimiter, FIFOScheduler, TrialScheduler): they work on every version.
"""
import contextlib
import functools
import logging
import os
import sys

WRITTEN_FOR = "2.60.0"
SINGLE_MACHINE_VARIABLE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"

log = logging.getLogger(__name__)


@functools.cache
def available() -> bool:
    """Ray is the version these internals were written for; otherwise warns, once per process."""
    import ray

    if ray.__version__ == WRITTEN_FOR:
        return True
    log.warning("Ray %s is not the %s this project was written for: warm trial workers, the quiet cluster "
                "settings, the early --dashboard check and the trial retry fix are off; runs will be slower, "
                "not wrong",
                ray.__version__, WRITTEN_FOR)
    return False


def listen_on_loopback_only() -> None:
    """Make the Ray this process starts next bind its services to 127.0.0.1 only."""
    imported = "ray" in sys.modules
    os.environ[SINGLE_MACHINE_VARIABLE] = "0"  # read when Ray is first imported
    if not imported:
        return
    if available():
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
    else:
        log.warning("Ray was imported before the local cluster started, so its services listen on every "
                    "interface; import Ray only after tune.cluster.start_local to keep them on 127.0.0.1")


def dashboard_dependency_error() -> ImportError | None:
    """Why Ray's dashboard cannot start (its packages are missing), None if it can or if unknown."""
    if not available():
        return None
    from ray._private.utils import get_dashboard_dependency_error

    return get_dashboard_dependency_error()


def init_options(preload_modules: list[str], keep_idle_s: int, quiet: bool) -> dict:
    """Private `ray.init` options: every worker imports `preload_modules` before it accepts work, and
    an idle worker is kept `keep_idle_s` (Ray's default, 1 s, can end the workers Ray starts with
    the cluster while they still import); `quiet`: no process spends CPU on metrics and task events
    (they feed only the dashboard)."""
    if not available():
        return {}
    quiet_config = {"enable_metrics_collection": False, "task_events_report_interval_ms": 0} if quiet else {}
    return {"_system_config": {"preload_python_modules": preload_modules,
                               "idle_worker_killing_time_threshold_ms": keep_idle_s * 1000, **quiet_config}}


@contextlib.contextmanager
def no_helper_processes():
    """While in effect, a Ray this process starts has no dashboard, autoscaler monitor or log monitor
    process. With include_dashboard=False Ray still starts a dashboard (for usage statistics only)
    and waits for it, about 1 s, before it starts the raylet; the monitors watch for an autoscaler
    and forward workers' output to the driver (off: log_to_driver=False). Nothing here uses them,
    and their start-up competes with the first workers' for CPU."""
    from ray._private.node import Node

    skipped = ("start_api_server", "start_monitor", "start_log_monitor")
    originals = {name: getattr(Node, name) for name in skipped}
    for name in skipped:
        setattr(Node, name, lambda self, **kwargs: None)
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(Node, name, original)


def trial_actors_take_prestarted_workers() -> dict[str, str]:
    """Make Ray Tune ask for no runtime environment for its trial actors, so that they take the idle
    workers Ray starts with the cluster (one per CPU) instead of new ones; returns the environment
    variables Tune would have given them (ray.tune.execution.class_cache), which the caller gives
    every worker of its cluster instead."""
    from ray.tune.execution import class_cache

    propagated = {name: os.environ[name] for name in class_cache.ENV_VARS_TO_PROPAGATE if name in os.environ}
    env_vars = {**class_cache.DEFAULT_ENV_VARS, **propagated}
    class_cache.DEFAULT_ENV_VARS, class_cache.ENV_VARS_TO_PROPAGATE = {}, set()
    return env_vars


def import_trial_actor_modules() -> None:
    """Import what a Ray Tune trial actor imports in its constructor and at its first report."""
    import ray.air._internal.torch_utils  # noqa: F401 - the first report imports it (and ray.dag)
    from ray.tune.utils.log import disable_ipython

    # the trial actor's constructor calls it; it imports IPython where that is installed (as
    # with Jupyter), 0.2 s that would otherwise delay the study's first trials
    disable_ipython()


def requeued_trials_survive_late_errors() -> None:
    """Keep Ray Tune from giving up a trial on an error that arrives after the trial was queued again.

    When a node dies, several calls to one trial actor fail at once. Ray Tune 2.60 queues the trial
    again on the first error (status PENDING) but retries only trials that are RUNNING, so the next
    error gives it up, whatever max_failures says (seen in test_cluster: a tuning trial given up
    after two failures, max_failures 3). Such an error is counted against max_failures like any;
    while failures are left, the trial stays queued."""
    if not available():
        return
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.experiment import Trial

    original = TuneController._process_trial_failure
    if getattr(original, "keeps_requeued_trials", False):
        return

    def process_trial_failure(controller, trial, exception):
        if trial.status == Trial.PENDING and trial.run_metadata.num_failures < trial.max_failures:
            trial.handle_error(exception)
            return
        original(controller, trial, exception)

    process_trial_failure.keeps_requeued_trials = True
    TuneController._process_trial_failure = process_trial_failure
