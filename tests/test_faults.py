"""A run killed part-way (SIGKILL or Ctrl-C of the driver) is finished by --resume: finished
studies are kept, the interrupted one starts again, unfinished final runs continue, and every
trial appears exactly once."""
import json
import signal
import subprocess
import sys
import time

import optuna
import pandas as pd
import pytest

from analysis.journal import JOURNAL_FILE, open_journal
from conftest import ROOT, run_cli

TRIALS = 10
TUNING = ("tune-cgi/*/result.json",)  # during the second study
FINAL = ("final/*/result.json", "final/experiment_state-*.json")  # once Ray Tune has saved the final runs
KILLS = {  # id: (signal, files whose appearance triggers it, lose Ray Tune's state of final/)
    "sigkill-while-tuning": (signal.SIGKILL, TUNING, False),
    "ctrl-c-while-tuning": (signal.SIGINT, TUNING, False),
    "sigkill-in-final-runs": (signal.SIGKILL, FINAL, False),
    "sigkill-before-final-state-saved": (signal.SIGKILL, FINAL, True),
}


@pytest.mark.parametrize("kill", KILLS.values(), ids=KILLS.keys())
def test_killed_run_resumes_to_a_complete_run(kill, tmp_path):
    stop, trigger, lose_final_state = kill
    args = ["--cpus", "2", "--smoke", "--experiments", "cgi", "--num-samples", str(TRIALS),
            "--output", str(tmp_path), "--name", "killed"]
    driver = subprocess.Popen([sys.executable, str(ROOT / "run_all.py"), *args], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    experiment = tmp_path / "killed" / "cgi"
    deadline = time.monotonic() + 300
    while not all(any(experiment.glob(pattern)) for pattern in trigger):
        assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()
        time.sleep(0.01)  # a smoke study lasts about a second
    driver.send_signal(stop)
    out, err = driver.communicate(timeout=120)
    if stop == signal.SIGINT:
        assert driver.returncode == 130 and "--resume" in err, (driver.returncode, err[-3000:])
    else:
        assert driver.returncode == -signal.SIGKILL
    studies_done = {"adam"} if trigger == TUNING else {"adam", "cgi"}
    assert json.loads((experiment / "best.json").read_text()).keys() == studies_done
    assert not (experiment / "final.done").exists()  # killed before the final runs were done
    finished_study = (experiment / "tune-adam").stat().st_mtime_ns
    provenance = json.loads((tmp_path / "killed" / "run.json").read_text())["provenance"]
    if lose_final_state:  # as if killed after Ray Tune wrote tuner.pkl, before its first state snapshot
        for state in experiment.glob("final/*state-*.json"):
            state.unlink()

    resumed = run_cli("--resume", "--output", tmp_path, "--name", "killed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (experiment / "tune-adam").stat().st_mtime_ns == finished_study  # not re-run
    set_aside = {path.name for path in (experiment / "interrupted").glob("*")}
    assert set_aside == ({"tune-cgi.1"} if trigger == TUNING else {"final.1"} if lose_final_state else set())
    trials = pd.read_parquet(tmp_path / "killed" / "trials.parquet")
    tuned = trials[trials["phase"] == "tune"]
    assert tuned.groupby("optimizer")["trial_id"].nunique().to_dict() == {"adam": TRIALS, "cgi": TRIALS}
    assert not tuned.duplicated(["optimizer", "trial_id"]).any()
    curves = pd.read_parquet(tmp_path / "killed" / "curves.parquet")
    assert not curves.duplicated(["phase", "optimizer", "trial_id", "epoch"]).any()
    final = trials[trials["phase"] == "final"]
    assert sorted(zip(final["optimizer"], final["seed"])) == [("adam", 1), ("adam", 2), ("cgi", 1), ("cgi", 2)]
    assert (final["epochs"] == 3).all()
    run_file = json.loads((tmp_path / "killed" / "run.json").read_text())
    assert run_file["status"] == "complete" and run_file["provenance"] == provenance  # kept from the start
    journal = open_journal(tmp_path / "killed" / JOURNAL_FILE)
    assert {name: len(optuna.load_study(study_name=name, storage=journal).trials)
            for name in optuna.get_all_study_names(journal)} == {"cgi/adam/r0": TRIALS, "cgi/cgi/r0": TRIALS}
    assert (tmp_path / "killed" / "report.md").exists()


def test_ctrl_c_while_starting_exits_130_without_a_traceback(tmp_path):
    driver = subprocess.Popen([sys.executable, str(ROOT / "run_all.py"), "--cpus", "1", "--smoke", "--output",
                               str(tmp_path), "--name", "early"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)  # importing torch, Ray Tune and Optuna, before Ray has started
    driver.send_signal(signal.SIGINT)
    _, err = driver.communicate(timeout=120)
    assert driver.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "interrupted" in err
