"""tune.ray_internals: on the Ray version it was written for, a local Ray's trials run on the workers
it started with, warmed, and a trial is given up only past max_failures; on any other, a real run
completes with one warning, no warm workers, still on loopback only."""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import ray

from conftest import ROOT
from tune import cluster, ray_internals
from tune.run_folder import RESULTS_FOLDER
from tune.warm import READY_DIR_PREFIX, READY_DIR_VARIABLE

RUN_AND_SHOW_WORKERS = """
import json, runpy, sys
sys.path.insert(0, "tests")
from conftest import is_loopback, listening_addresses
from tune import cluster, ray_internals

if sys.argv.pop(1) == "as-another-ray":
    ray_internals.WRITTEN_FOR = "0.0.0"  # as if the installed Ray were not the one it was written for
import tune.ending
tune.ending.exit_now = sys.exit  # end as a normal exit, so that the cluster can be looked at below
sys.argv = ["run_all.py", *sys.argv[1:]]
try:
    runpy.run_path("run_all.py", run_name="__main__")
except SystemExit as end:
    print("RESULT", json.dumps({"exit": end.code, "warm_workers": sorted(cluster.warmed_workers()),
                                "not_loopback": [str(a) for a in listening_addresses() if not is_loopback(a)]}))
"""


def run_and_show_workers(mode: str, folder) -> tuple[dict, subprocess.CompletedProcess]:
    """A smoke run of run_all.py; its exit code, the workers that warmed up and any address not on loopback."""
    done = subprocess.run([sys.executable, "-c", RUN_AND_SHOW_WORKERS, mode, "--smoke", "--experiments", "cgi",
                           "--repeats", "1", "--cpus", "2", "--output", str(folder), "--name", "run"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    result = json.loads(done.stdout.split("RESULT", 1)[1]) if "RESULT" in done.stdout else {}
    assert result.get("exit") == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert (folder / "run" / "report.md").exists()
    return result, done


def test_on_the_pinned_ray_the_internals_are_on(ray_session):
    assert ray.__version__ == ray_internals.WRITTEN_FOR and ray_internals.available()
    assert len(cluster.warmed_workers()) >= 2  # start_local warmed one trial worker per CPU


def test_trials_run_on_the_workers_ray_started_with_warmed(tmp_path):
    result, _ = run_and_show_workers("as-pinned-ray", tmp_path)
    trial_pids = {json.loads(line)["pid"] for path in (tmp_path / "run" / RESULTS_FOLDER).glob("*.jsonl")
                  for line in path.read_text().splitlines()}
    # every worker of the cluster warms up before its first task, so two means Ray started no other
    assert len(result["warm_workers"]) == 2
    assert trial_pids == set(result["warm_workers"])


def test_on_another_ray_a_run_completes_without_them(tmp_path):
    result, done = run_and_show_workers("as-another-ray", tmp_path)
    warnings = [line for line in done.stderr.splitlines() if "written for" in line]
    assert len(warnings) == 1 and "Ray 2.60.0 is not the 0.0.0" in warnings[0], done.stderr
    assert result["warm_workers"] == []
    assert result["not_loopback"] == []


def test_preloading_a_trial_worker_imports_and_trains_nothing(tmp_path):
    """What Ray's preload_python_modules does in a new worker Ray started for trial actors."""
    script = ("import sys, tune.loop\n"
              "def refuse(*args, **kwargs): raise AssertionError('trained at import')\n"
              "tune.loop.train = tune.loop.train_population = refuse\n"
              "import tune.preload\n"
              "print(' '.join(name for name in ('ray.tune', 'tune.trainable') if name in sys.modules))\n")
    env = {**os.environ, READY_DIR_VARIABLE: str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ray.tune", "tune.trainable"]  # what a first trial would import
    assert len(list(tmp_path.iterdir())) == 1  # it checked in as warm


def test_the_warm_workers_folder_goes_when_the_run_ends():
    """exit_now ends a run with os._exit, which skips atexit: the temporary folder must still go."""
    script = ("from tune import cluster, ending\n"
              "cluster.start_local(1)\n"
              "print(len(cluster.warmed_workers()), flush=True)\n"
              "ending.exit_now(0)\n")
    before = set(Path(tempfile.gettempdir()).glob(f"{READY_DIR_PREFIX}*"))
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.split() == ["1"], done.stdout + done.stderr[-2000:]
    assert set(Path(tempfile.gettempdir()).glob(f"{READY_DIR_PREFIX}*")) - before == set()


def test_a_late_error_of_a_requeued_trial_counts_but_does_not_give_it_up(ray_session, tmp_path):
    """When a node dies, several calls to one trial actor fail together. A real TuneController and
    Trial; Ray Tune 2.60 alone gives the trial up on the second error, retries left or not."""
    from ray.exceptions import RayActorError
    from ray.train._internal.storage import StorageContext
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.experiment import Trial

    ray_internals.requeued_trials_survive_late_errors()
    storage = StorageContext(storage_path=str(tmp_path), experiment_dir_name="late")
    controller = TuneController(storage=storage)
    trial = Trial("__fake", stub=True, storage=storage, max_failures=2)
    trial.storage.trial_dir_name = "trial"
    Path(trial.local_path).mkdir(parents=True)
    controller.add_trial(trial)
    controller._set_trial_status(trial, Trial.RUNNING)  # as when its actor runs it
    statuses = []
    for _ in range(3):
        controller._process_trial_failure(trial, RayActorError())
        statuses.append(trial.status)
    assert statuses == [Trial.PENDING, Trial.PENDING, Trial.ERROR]  # given up only past max_failures
    assert trial.run_metadata.num_failures == 3
