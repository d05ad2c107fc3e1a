"""A run killed part-way (SIGKILL, SIGTERM, Ctrl-C), or stopped by a full disk, is finished by
--resume: finished studies and final groups are kept, unfinished ones start again, and every
trial appears exactly once. Two runs never share a run folder."""
import json
import signal
import subprocess
import sys
import time

import optuna
import pandas as pd
import psutil
import pytest

from analysis.journal import JOURNAL_FILE, open_journal
from conftest import ROOT, run_cli

TRIALS = 10
KILLS = {  # id: (signal, the file whose appearance under the run folder triggers it)
    "sigkill-while-tuning": (signal.SIGKILL, "done.json"),  # once a first study has finished
    "ctrl-c-while-tuning": (signal.SIGINT, "done.json"),
    "sigterm-while-tuning": (signal.SIGTERM, "done.json"),
    "sigkill-in-final-runs": (signal.SIGKILL, "results/final-*.jsonl"),
}
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}


def start_run(output, name, *extra) -> subprocess.Popen:
    args = ["--cpus", "2", "--smoke", "--experiments", "cgi", "--output", str(output), "--name", name, *extra]
    return subprocess.Popen([sys.executable, str(ROOT / "run_all.py"), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(driver: subprocess.Popen, run, pattern: str) -> None:
    deadline = time.monotonic() + 300
    while not any(run.glob(pattern)):
        assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()
        time.sleep(0.01)  # a smoke study lasts about a second


@pytest.mark.parametrize("kill", KILLS.values(), ids=KILLS.keys())
def test_killed_run_resumes_to_a_complete_run(kill, tmp_path):
    stop, trigger = kill
    driver = start_run(tmp_path, "killed", "--num-samples", str(TRIALS))
    run = tmp_path / "killed"
    wait_for(driver, run, trigger)
    started = psutil.Process(driver.pid).children(recursive=True)  # the local Ray's processes
    driver.send_signal(stop)
    out, err = driver.communicate(timeout=120)
    if stop in EXIT_CODES:  # one line with the resume command, no Ray stack dump, Ray gone
        assert driver.returncode == EXIT_CODES[stop], (driver.returncode, err[-3000:])
        assert err.strip().splitlines() == [f"interrupted ({stop.name}); continue with: python run_all.py "
                                            f"--resume --output {tmp_path} --name killed"]
        _, alive = psutil.wait_procs(started, timeout=10)  # killed at once, gone once the kernel has ended them
        assert started and not [process for process in alive if process.status() != psutil.STATUS_ZOMBIE]
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


def test_a_full_disk_ends_the_run_in_one_line_and_resume_completes_it(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        driver = start_run(disk, "full")
        _, err = driver.communicate(timeout=300)
        assert driver.returncode == 75, err[-3000:]
        [line] = err.strip().splitlines()  # which write fails first varies: the results, done.json, ...
        assert line.startswith(f"cannot write to {disk / 'full'}") and line.endswith(
            f": No space left on device; continue with: python run_all.py --resume --output {disk} --name full"), line
        subprocess.run(["mount", "-o", "remount,size=100m", str(disk)], check=True)  # space freed

        resumed = run_cli("--resume", "--output", disk, "--name", "full")
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        run = disk / "full"
        assert json.loads((run / "run.json").read_text())["status"] == "complete"
        trials = pd.read_parquet(run / "trials.parquet")
        tuned = trials[trials["phase"] == "tune"]
        assert tuned.groupby("study")["trial_id"].nunique().to_dict() == {
            f"cgi/{name}/r{repeat}": 3 for name in ("adam", "cgi") for repeat in (0, 1)}
        final = trials[trials["phase"] == "final"]
        assert sorted(zip(final["optimizer"], final["repeat"], final["seed"])) == \
            [(name, repeat, seed) for name in ("adam", "cgi") for repeat in (0, 1) for seed in (1, 2)]
        curves = pd.read_parquet(run / "curves.parquet")
        epochs = curves.groupby(["phase", "trial_id"])["epoch"].apply(list)
        assert all(epochs.loc["final"].map(lambda trained: trained == [0, 1, 2, 3]))
        assert all(epochs.loc["tune"].map(lambda trained: trained == list(range(1, len(trained) + 1))))
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], capture_output=True)


def test_two_runs_started_at_once_with_one_name_make_one_run(tmp_path):
    drivers = [start_run(tmp_path, "race") for _ in range(2)]
    deadline = time.monotonic() + 120
    while all(driver.poll() is None for driver in drivers):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    loser = next(driver for driver in drivers if driver.poll() is not None)
    out, err = loser.communicate()
    assert loser.returncode == 2 and out == "", (out, err)  # refused before it started anything
    assert err.strip().splitlines() == [f"run_all.py: error: {tmp_path / 'race'} already exists; pass --resume "
                                        "to continue it or choose another --name"]
    winner = next(driver for driver in drivers if driver is not loser)
    wait_for(winner, tmp_path / "race", "results/tune-*.jsonl")  # the winner runs the folder's run
    winner.send_signal(signal.SIGTERM)
    _, err = winner.communicate(timeout=120)
    assert winner.returncode == 143, err[-3000:]
    assert json.loads((tmp_path / "race" / "run.json").read_text())["status"] == "running"  # to be resumed


def test_a_resume_of_a_run_still_running_is_refused(tmp_path):
    driver = start_run(tmp_path, "busy", "--num-samples", str(TRIALS))
    wait_for(driver, tmp_path / "busy", "run.json")
    second = run_cli("--resume", "--output", tmp_path, "--name", "busy")
    assert second.returncode == 2 and "is being run by pid" in second.stderr, second.stderr
    driver.send_signal(signal.SIGTERM)
    driver.communicate(timeout=120)
    assert driver.returncode == 143


def test_a_result_file_missing_an_epoch_is_not_done(tmp_path):
    from tune.pipeline import missing_epochs

    log = tmp_path / "final-x.jsonl"
    config = {"phase": "final", "seeds": [1, 2], "epochs": 3, "eval_initial": True}
    report = lambda *rows: json.dumps({"history": [{"seed": s, "epoch": e, "diverged": d} for s, e, d in rows]})
    log.write_text(report((1, 0, False), (2, 0, False), (1, 1, False), (2, 1, True)) + "\n" +
                   report((1, 2, False), (1, 3, False)) + "\n")
    assert missing_epochs(log, config) is None  # seed 2 diverged at epoch 1 and stopped there
    log.write_text(report((1, 0, False), (2, 0, False), (1, 1, False), (2, 1, True), (1, 3, False)) + "\n")
    assert "lacks epoch(s) 2 of seed 1" in missing_epochs(log, config)


def test_the_loader_warns_about_unreadable_reports(tmp_path):
    from analysis.load import curves_from_results

    good = {"trial_id": "t", "epoch": 1, "config": {"optimizer": "adam", "phase": "tune", "epochs": 1,
                                                      "experiments": ["cgi"]}, "history": [{"epoch": 1}]}
    (tmp_path / "tune-t.jsonl").write_text(json.dumps(good) + "\n{\"trial_id\": \"t\", \"epo\n")
    with pytest.warns(UserWarning, match="line 2 of .*tune-t.jsonl"):
        curves = curves_from_results(tmp_path)
    assert len(curves) == 1
