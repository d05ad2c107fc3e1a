"""A run killed part-way (SIGKILL or Ctrl-C of the driver) is finished by --resume: finished
studies are kept, the interrupted one continues, and every trial appears exactly once."""
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from conftest import ROOT, run_cli

TRIALS = 10


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["sigkill", "ctrl-c"])
def test_killed_run_resumes_to_a_complete_run(stop, tmp_path):
    args = ["--cpus", "2", "--smoke", "--experiments", "cgi", "--num-samples", str(TRIALS),
            "--output", str(tmp_path), "--name", "killed"]
    driver = subprocess.Popen([sys.executable, str(ROOT / "run_all.py"), *args], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    experiment = tmp_path / "killed" / "cgi"
    deadline = time.monotonic() + 300
    while not list(experiment.glob("tune-cgi/*/result.json")):  # kill during the second study
        assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()
        time.sleep(0.01)  # a smoke study lasts about a second
    driver.send_signal(stop)
    out, err = driver.communicate(timeout=120)
    if stop == signal.SIGINT:
        assert driver.returncode == 130 and "--resume" in err
    assert json.loads((experiment / "best.json").read_text()).keys() == {"adam"}
    finished_study = (experiment / "tune-adam").stat().st_mtime_ns

    resumed = run_cli("--resume", "--output", tmp_path, "--name", "killed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (experiment / "tune-adam").stat().st_mtime_ns == finished_study  # not re-run
    trials = pd.read_parquet(tmp_path / "killed" / "trials.parquet")
    tuned = trials[trials["phase"] == "tune"]
    assert tuned.groupby("optimizer")["trial_id"].nunique().to_dict() == {"adam": TRIALS, "cgi": TRIALS}
    assert not tuned.duplicated(["optimizer", "trial_id"]).any()
    curves = pd.read_parquet(tmp_path / "killed" / "curves.parquet")
    assert not curves.duplicated(["phase", "optimizer", "trial_id", "epoch"]).any()
    final = trials[trials["phase"] == "final"]
    assert sorted(final["seed"]) == [1, 1, 2, 2] and (final["epochs"] == 3).all()
    assert json.loads((tmp_path / "killed" / "run.json").read_text())["status"] == "complete"
    assert (tmp_path / "killed" / "report.md").exists()
