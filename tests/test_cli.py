"""run_all.py as a user runs it: help, refusals of bad input, and a real two-experiment smoke run."""
import pandas as pd
import pytest

from conftest import assert_refused, run_cli


def test_help_lists_every_flag_with_defaults():
    result = run_cli("--help")
    assert result.returncode == 0
    for flag in ("--cpus", "--address", "--num-samples", "--seeds", "--experiments", "--list", "--output",
                 "--name", "--smoke", "--seed", "--resume"):
        assert flag in result.stdout
    assert "default: results" in result.stdout


def test_list_names_every_experiment():
    result = run_cli("--list")
    assert result.returncode == 0
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["cgi", "gao", "gns", "lrg", "svd", "benchmark"]


@pytest.mark.parametrize("args, words", [
    (["--cpus", "0"], ["--cpus", "from 1 to"]),
    (["--num-samples", "-1"], ["--num-samples"]),
    (["--seeds", "zero"], ["--seeds"]),
    (["--frobnicate"], ["unrecognized", "--frobnicate"]),
    (["--experiments", "cgi,nope"], ["unknown", "nope"]),
    (["--experiments", ""], ["empty"]),
    (["--experiments", "cgi,"], ["empty"]),
    (["--name", "a/b"], ["--name"]),
    (["--resume"], ["--resume", "--name"]),
])
def test_bad_flags_are_refused_in_one_line(args, words, tmp_path):
    assert_refused(run_cli(*args, "--output", tmp_path), *words)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("results")
    result = run_cli("--cpus", "2", "--smoke", "--experiments", "cgi,gns", "--output", output, "--name", "smoke")
    assert result.returncode == 0, result.stderr[-3000:]
    return output, result


def test_smoke_run_leaves_frames_and_ray_folders(smoke_run):
    output, result = smoke_run
    run = output / "smoke"
    assert (output / "latest").resolve() == run.resolve()
    assert (run / "trials" / "tuner.pkl").exists()  # one Ray Tune run for every study and final run
    assert list((run / "trials").glob("tune-*/result.json")) and list((run / "trials").glob("final-*/result.json"))
    assert list((run / "results").glob("tune-*.jsonl")) and list((run / "results").glob("final-*.jsonl"))
    for experiment in ("cgi", "gns"):
        assert (run / experiment / "spec.json").exists() and (run / experiment / "best.json").exists()
    assert "Traceback" not in result.stdout + result.stderr


def test_smoke_frames_are_fair_and_paired(smoke_run):
    output, _ = smoke_run
    curves = pd.read_parquet(output / "smoke" / "curves.parquet")
    trials = pd.read_parquet(output / "smoke" / "trials.parquet")
    assert set(curves["phase"]) == {"tune", "final"}
    assert set(curves["experiment"]) == {"cgi", "gns"}
    tuned = trials[trials["phase"] == "tune"].groupby(["experiment", "optimizer", "repeat"]).size()
    assert (tuned == 3).all() and len(tuned) == 8  # --smoke: 2 repeats of 3 trials for every optimizer
    final = curves[curves["phase"] == "final"]
    assert set(final.groupby(["experiment", "optimizer", "repeat"])["seed"].nunique()) == {2}
    initial = final[final["epoch"] == 0].pivot_table(index=["experiment", "seed"], columns="optimizer", values="val_loss")
    for experiment, candidate in (("cgi", "cgi"), ("gns", "gns")):
        paired = initial.loc[experiment]
        assert (paired["adam"] == paired[candidate]).all()
    assert final["test_loss"].notna().all() and curves[curves["phase"] == "tune"]["test_loss"].isna().all()


def test_existing_run_is_not_overwritten(smoke_run):
    output, _ = smoke_run
    before = (output / "smoke" / "curves.parquet").stat().st_mtime_ns
    assert_refused(run_cli("--smoke", "--experiments", "cgi", "--output", output, "--name", "smoke"),
                   "already exists", "--resume")
    assert (output / "smoke" / "curves.parquet").stat().st_mtime_ns == before
