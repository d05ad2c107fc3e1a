"""tune.ray_internals: on the Ray version it was written for, a local Ray has warm trial workers;
on any other, a real run completes with one warning, no warm workers, still on loopback only."""
import json
import os
import subprocess
import sys

import ray

from conftest import ROOT
from tune import cluster, ray_internals
from tune.warm import READY_DIR_VARIABLE, TRIAL_ENV_VARIABLE

AS_ANOTHER_RAY = """
import json, runpy, sys
sys.path.insert(0, "tests")
from conftest import is_loopback, listening_addresses
from tune import cluster, ray_internals

ray_internals.WRITTEN_FOR = "0.0.0"  # as if the installed Ray were not the one it was written for
import tune.ending
tune.ending.exit_now = sys.exit  # end as a normal exit, so that the cluster can be looked at below
sys.argv = ["run_all.py", *sys.argv[1:]]
try:
    runpy.run_path("run_all.py", run_name="__main__")
except SystemExit as end:
    print("RESULT", json.dumps({"exit": end.code, "warm_workers": len(cluster.warmed_workers()),
                                "not_loopback": [str(a) for a in listening_addresses() if not is_loopback(a)]}))
"""


def test_on_the_pinned_ray_the_internals_are_on(ray_session):
    assert ray.__version__ == ray_internals.WRITTEN_FOR and ray_internals.available()
    assert len(cluster.warmed_workers()) >= 2  # start_local warmed one trial worker per CPU


def test_on_another_ray_a_run_completes_without_them(tmp_path):
    done = subprocess.run([sys.executable, "-c", AS_ANOTHER_RAY, "--smoke", "--experiments", "cgi", "--repeats", "1",
                           "--cpus", "2", "--output", str(tmp_path), "--name", "other"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    result = json.loads(done.stdout.split("RESULT", 1)[1]) if "RESULT" in done.stdout else {}
    assert result.get("exit") == 0, done.stdout[-2000:] + done.stderr[-3000:]
    warnings = [line for line in done.stderr.splitlines() if "written for" in line]
    assert len(warnings) == 1 and "Ray 2.60.0 is not the 0.0.0" in warnings[0], done.stderr
    assert result["warm_workers"] == 0
    assert result["not_loopback"] == []
    assert (tmp_path / "other" / "report.md").exists()


def test_preloading_a_trial_worker_imports_and_trains_nothing(tmp_path):
    """What Ray's preload_python_modules does in a new worker Ray started for trial actors."""
    script = ("import sys, tune.loop\n"
              "def refuse(*args, **kwargs): raise AssertionError('trained at import')\n"
              "tune.loop.train = tune.loop.train_population = refuse\n"
              "import tune.preload\n"
              "print(' '.join(name for name in ('torch._dynamo', 'tune.trainable') if name in sys.modules))\n")
    trial_env = ray_internals.trial_actor_env_vars()
    env = {**os.environ, **trial_env, TRIAL_ENV_VARIABLE: json.dumps(trial_env), READY_DIR_VARIABLE: str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["torch._dynamo", "tune.trainable"]  # what a first trial would import
    assert len(list(tmp_path.iterdir())) == 1  # it checked in as warm
