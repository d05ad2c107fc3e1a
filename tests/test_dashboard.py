"""A run's Optuna journal and optuna-dashboard on it, as a user meets them after a real
`run_all.py --smoke` run: the journal holds exactly the tuning trials of trials.parquet, the
dashboard lists every study with its trials over HTTP, and run.json says what the run ran with."""
import json
import math
import signal
import subprocess
import sys
import time
import urllib.request

import optuna
import pandas as pd
import pytest

from analysis.journal import JOURNAL_FILE, open_journal, study_name
from conftest import ROOT, assert_refused, run_cli
from test_cluster import free_port
from tune.experiments import builtin_specs, load_spec
from tune.space import to_optuna, to_tune

STATES = {"COMPLETE": optuna.trial.TrialState.COMPLETE, "PRUNED": optuna.trial.TrialState.PRUNED,
          "FAIL": optuna.trial.TrialState.FAIL}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    output = tmp_path_factory.mktemp("results")
    result = run_cli("--smoke", "--experiments", "lrg", "--cpus", "2", "--output", output, "--name", "smoke")
    assert result.returncode == 0, result.stderr[-3000:]
    return output / "smoke"


def studies_of(run) -> dict[str, pd.DataFrame]:
    """The tuning trials of trials.parquet by journal study name."""
    trials = pd.read_parquet(run / "trials.parquet")
    tuned = trials[trials["phase"] == "tune"]
    return {study_name(*key): group for key, group in tuned.groupby(["experiment", "optimizer", "repeat"])}


def tuned_best(run, experiment: str, optimizer: str, repeat: int) -> dict:
    """The config the pipeline chose from a tuning study (best.json: optimizer -> one config per repeat)."""
    return json.loads((run / experiment / "best.json").read_text())[optimizer][repeat]


def expected_state(row) -> optuna.trial.TrialState:
    return STATES["FAIL" if row["diverged"] else "PRUNED" if row["pruned"] else "COMPLETE"]


def test_journal_holds_exactly_the_tuning_trials(run):
    storage = open_journal(run / JOURNAL_FILE)
    expected = studies_of(run)
    assert sorted(optuna.get_all_study_names(storage)) == sorted(expected) != []
    curves = pd.read_parquet(run / "curves.parquet")
    for name, rows in expected.items():
        experiment, optimizer, _ = name.split("/")
        spec = load_spec(run / experiment / "spec.json")
        study = optuna.load_study(study_name=name, storage=storage)
        assert study.direction.name == {"min": "MINIMIZE", "max": "MAXIMIZE"}[spec.tuning.mode]
        journal = {trial.user_attrs["ray_trial_id"]: trial for trial in study.trials}
        assert len(study.trials) == len(rows) and set(journal) == set(rows["trial_id"])
        for row in rows.to_dict("records"):
            trial = journal[row["trial_id"]]
            assert trial.state == expected_state(row)
            assert trial.distributions == to_optuna(spec.optimizers[optimizer])
            for key, value in trial.params.items():
                assert value == pytest.approx(row[key])
            if trial.state != optuna.trial.TrialState.FAIL:
                assert trial.value == pytest.approx(row[spec.objective])
            epochs = curves[(curves["phase"] == "tune") & (curves["trial_id"] == row["trial_id"]) & (curves["epoch"] > 0)]
            assert trial.intermediate_values == pytest.approx(
                {int(e): v for e, v in zip(epochs["epoch"], epochs[spec.tuning.metric]) if math.isfinite(v)})


def test_journal_best_trial_is_the_chosen_config(run):
    storage = open_journal(run / JOURNAL_FILE)
    for name in studies_of(run):
        experiment, optimizer, repeat = name.split("/")
        best = optuna.load_study(study_name=name, storage=storage).best_trial
        chosen = tuned_best(run, experiment, optimizer, int(repeat[1:]))
        assert best.params == pytest.approx(chosen), name


def test_rebuilding_the_journal_duplicates_nothing(run):
    before = {name: len(rows) for name, rows in studies_of(run).items()}
    result = subprocess.run([sys.executable, "-m", "analysis", str(run)], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    storage = open_journal(run / JOURNAL_FILE)
    after = {name: len(optuna.load_study(study_name=name, storage=storage).trials) for name in before}
    assert after == before
    assert [path.name for path in run.iterdir() if "journal" in path.name] == [JOURNAL_FILE]  # no leftovers


def get(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read()


def test_dashboard_serves_every_study_with_its_trials(run):
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "analysis", "dashboard", str(run), "--port", str(port)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.communicate()
            try:
                status, page = get(f"{base}/dashboard")
                break
            except OSError:
                assert time.monotonic() < deadline, "the dashboard did not answer within 60 s"
                time.sleep(0.5)
        assert status == 200 and b"<html" in page.lower()
        studies = json.loads(get(f"{base}/api/studies")[1])["study_summaries"]
        listed = {study["study_name"]: len(json.loads(get(f"{base}/api/studies/{study['study_id']}")[1])["trials"])
                  for study in studies}
        assert listed == {name: len(rows) for name, rows in studies_of(run).items()}
    finally:
        server.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = server.communicate(timeout=30)
    assert server.returncode in (0, 130), err
    assert "Traceback" not in err
    assert f"http://127.0.0.1:{port}" in out


def test_dashboard_refuses_a_missing_run_or_journal(tmp_path):
    def dashboard(folder):
        return subprocess.run([sys.executable, "-m", "analysis", "dashboard", str(folder)], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    assert_refused(dashboard(tmp_path / "nope"), "no run folder")
    assert_refused(dashboard(tmp_path), JOURNAL_FILE)


def test_run_json_records_provenance(run):
    provenance = json.loads((run / "run.json").read_text())["provenance"]
    import numpy, ray, torch  # noqa: E401
    assert provenance["versions"] == {
        "python": ".".join(map(str, sys.version_info[:3])), "torch": torch.__version__, "ray": ray.__version__,
        "optuna": optuna.__version__, "numpy": numpy.__version__, "pandas": pd.__version__}
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert provenance["git_commit"] == (head.stdout.strip() if head.returncode == 0 else None)
    assert {key: provenance[key] for key in ("cpus", "nodes", "address", "concurrency")} == {
        "cpus": 2, "nodes": 1, "address": None, "concurrency": {"lrg": 2}}


def test_no_git_commit_outside_a_checkout(tmp_path, monkeypatch):
    import tune.cluster
    monkeypatch.setattr(tune.cluster, "ROOT", tmp_path)
    assert tune.cluster.git_commit() is None


@pytest.mark.parametrize("name", builtin_specs())
def test_optuna_space_matches_the_tune_space(name):
    for space in builtin_specs()[name].optimizers.values():
        optuna_space, tune_space = to_optuna(space), to_tune(space)
        for key, dist in space.items():
            low, high = optuna_space[key].low, optuna_space[key].high
            if dist["type"] == "int":  # Tune's upper bound is exclusive
                assert (low, high + 1) == (tune_space[key].lower, tune_space[key].upper)
            else:
                assert (low, high) == (tune_space[key].lower, tune_space[key].upper)
            assert optuna_space[key].log == (dist["type"] == "loguniform" or bool(dist.get("log")))
