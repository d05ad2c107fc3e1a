"""A run killed part-way (SIGKILL or Ctrl-C of the driver) is finished by --resume: finished
studies and final groups are kept, unfinished ones start again, and every trial appears exactly once."""
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
KILLS = {  # id: (signal, the file whose appearance under the run folder triggers it)
    "sigkill-while-tuning": (signal.SIGKILL, "done.json"),  # once a first study has finished
    "ctrl-c-while-tuning": (signal.SIGINT, "done.json"),
    "sigkill-in-final-runs": (signal.SIGKILL, "results/final-*.jsonl"),
}


@pytest.mark.parametrize("kill", KILLS.values(), ids=KILLS.keys())
def test_killed_run_resumes_to_a_complete_run(kill, tmp_path):
    stop, trigger = kill
    args = ["--cpus", "2", "--smoke", "--experiments", "cgi", "--num-samples", str(TRIALS),
            "--output", str(tmp_path), "--name", "killed"]
    driver = subprocess.Popen([sys.executable, str(ROOT / "run_all.py"), *args], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = tmp_path / "killed"
    deadline = time.monotonic() + 300
    while not any(run.glob(trigger)):
        assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()
        time.sleep(0.01)  # a smoke study lasts about a second
    driver.send_signal(stop)
    out, err = driver.communicate(timeout=120)
    if stop == signal.SIGINT:
        assert driver.returncode == 130 and "--resume" in err, (driver.returncode, err[-3000:])
    else:
        assert driver.returncode == -signal.SIGKILL
    kept = json.loads((run / "done.json").read_text())["studies"]
    assert kept and (run / "run.json").exists() and not (run / "trials.parquet").exists()
    provenance = json.loads((run / "run.json").read_text())["provenance"]

    resumed = run_cli("--resume", "--output", tmp_path, "--name", "killed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = pd.read_parquet(run / "trials.parquet")
    tuned = trials[trials["phase"] == "tune"]
    for name, study in kept.items():  # finished studies are not re-run
        assert set(tuned.loc[tuned["study"] == name, "trial_id"]) == set(study["trials"])
    assert (tuned.groupby("study")["trial_id"].nunique() == TRIALS).all() and tuned["study"].nunique() == 4
    assert not tuned.duplicated(["study", "trial_id"]).any()
    curves = pd.read_parquet(run / "curves.parquet")
    assert not curves.duplicated(["phase", "trial_id", "epoch"]).any()
    final = trials[trials["phase"] == "final"]
    assert sorted(zip(final["optimizer"], final["repeat"], final["seed"])) == \
        [(name, repeat, seed) for name in ("adam", "cgi") for repeat in (0, 1) for seed in (1, 2)]
    assert (final["epochs"] == 3).all()
    run_file = json.loads((run / "run.json").read_text())
    assert run_file["status"] == "complete" and run_file["provenance"] == provenance  # kept from the start
    journal = open_journal(run / JOURNAL_FILE)
    assert {name: len(optuna.load_study(study_name=name, storage=journal).trials)
            for name in optuna.get_all_study_names(journal)} == {
        f"cgi/{name}/r{repeat}": TRIALS for name in ("adam", "cgi") for repeat in (0, 1)}
    assert (run / "report.md").exists()


def test_ctrl_c_while_starting_exits_130_without_a_traceback(tmp_path):
    driver = subprocess.Popen([sys.executable, str(ROOT / "run_all.py"), "--cpus", "1", "--smoke", "--output",
                               str(tmp_path), "--name", "early"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)  # importing torch, Ray Tune and Optuna, before Ray has started
    driver.send_signal(signal.SIGINT)
    _, err = driver.communicate(timeout=120)
    assert driver.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "interrupted" in err
