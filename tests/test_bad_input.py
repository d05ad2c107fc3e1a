"""Every bad input gets one line on stderr saying what is wrong, exit code 2, no traceback,
and leaves every file of an earlier run as it was."""
import hashlib
import json
import socket
from pathlib import Path

import pytest

from conftest import assert_refused, run_cli
from tune.experiments import SPEC_DIR
from tune.ray_internals import dashboard_dependency_error

GOOD_SPEC = json.loads((SPEC_DIR / "svd.json").read_text())


def spec_file(folder: Path, name: str = "mine", **changes) -> Path:
    spec = json.loads(json.dumps(GOOD_SPEC))
    spec["name"] = name
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = spec
        for key in parents:
            node = node[key]
        if value is None:
            del node[leaf]
        else:
            node[leaf] = value
    file = folder / f"spec-{abs(hash((name, json.dumps(changes, sort_keys=True))))}.json"
    file.write_text(json.dumps(spec))
    return file


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # free now, and nothing will listen there


@pytest.fixture
def output(tmp_path):
    """An output folder holding an earlier run, whose files must survive every refusal."""
    earlier = tmp_path / "results" / "earlier"
    (earlier / "cgi").mkdir(parents=True)
    (earlier / "run.json").write_text(json.dumps({"settings": {"experiments": ["cgi"], "seed": 0}, "status": "complete"}))
    (earlier / "cgi" / "spec.json").write_text(json.dumps({**GOOD_SPEC, "name": "cgi"}))
    (earlier / "curves.parquet").write_bytes(b"earlier results")
    (tmp_path / "results" / "notarun").mkdir()
    return tmp_path / "results"


def snapshot(folder: Path) -> dict:
    return {str(path): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


CASES = {
    "cpus zero": (["--cpus", "0"], ["--cpus"]),
    "cpus negative": (["--cpus", "-3"], ["--cpus"]),
    "num-samples zero": (["--num-samples", "0"], ["--num-samples"]),
    "num-samples negative": (["--num-samples", "-1"], ["--num-samples"]),
    "seeds not a number": (["--seeds", "abc"], ["--seeds"]),
    "seed not a number": (["--seed", "1.5"], ["--seed"]),
    "unknown flag": (["--frobnicate"], ["--frobnicate"]),
    "unknown experiment": (["--experiments", "cgi,nope"], ["nope"]),
    "empty experiment list": (["--experiments", ""], ["empty"]),
    "cpus and address together": (["--cpus", "2", "--address", "auto"], ["--address", "--cpus"]),
    "malformed address": (["--address", "not an address"], ["--address"]),
    "address port out of range": (["--address", "ray://127.0.0.1:70000"], ["--address"]),
    "unreachable address": (["--address", f"127.0.0.1:{closed_port()}"], ["reachable"]),
    "resume without name": (["--resume"], ["--resume", "--name"]),
    "resume of a folder that is not a run": (["--resume", "--name", "notarun"], ["not a run folder"]),
    "resume of a missing folder": (["--resume", "--name", "missing"], ["not a run folder"]),
    "resume changing the run's settings": (["--resume", "--name", "earlier", "--seeds", "3"], ["--seeds"]),
    "existing run without resume": (["--name", "earlier", "--experiments", "cgi"], ["already exists", "--resume"]),
    "name that is a path": (["--name", "../elsewhere"], ["--name"]),
    "name latest": (["--name", "latest"], ["--name"]),
    "seeds beyond the bound": (["--seeds", "1000000000"], ["--seeds", "1,000"]),
    "num-samples beyond the bound": (["--num-samples", "10001"], ["--num-samples", "10,000"]),
    "repeats beyond the bound": (["--repeats", "101"], ["--repeats", "100"]),
    "cpus beyond the bound": (["--cpus", "100001"], ["--cpus"]),
}

SPEC_CASES = {
    "spec search min above max": ({"optimizers__svd__rank": {"type": "int", "low": 50, "high": 5}}, ["rank", "below"]),
    "spec rank 0": ({"optimizers__svd__rank": {"type": "int", "low": 0, "high": 5}}, ["rank", ">= 1"]),
    "spec unknown optimizer": ({"optimizers__sgdx": {"lr": GOOD_SPEC["optimizers"]["adam"]["lr"]}}, ["sgdx"]),
    "spec without the adam baseline": ({"optimizers__adam": None}, ["adam"]),
    "spec lr range unequal": ({"optimizers__svd__lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1}}, ["same lr range"]),
    "spec grace period beyond epochs": ({"tuning__grace_period": 99}, ["grace_period"]),
    "spec metric and mode contradict": ({"tuning__mode": "max"}, ["mode"]),
    "spec zero seeds": ({"final__seeds": 0}, ["seeds"]),
    "spec seeds beyond the bound": ({"final__seeds": 1_000_000_000}, ["final.seeds", "at most 1,000"]),
    "spec trials beyond the bound": ({"tuning__num_samples": 10_001}, ["num_samples", "at most"]),
    "spec tuning epochs beyond the bound": ({"tuning__epochs": 10**6}, ["tuning.epochs", "at most"]),
    "spec final epochs beyond the bound": ({"final__epochs": 10**6}, ["final.epochs", "at most"]),
    "spec repeats beyond the bound": ({"tuning__repeats": 1000}, ["repeats", "at most 100"]),
    "spec concurrency beyond the bound": ({"tuning__concurrency": 10**6}, ["concurrency", "at most"]),
    "spec name that is a path": ({"name": "../up"}, ["name"]),
    "spec unknown hyperparameter": ({"optimizers__svd__momentum": {"type": "uniform", "low": 0, "high": 1}}, ["momentum"]),
}


@pytest.mark.parametrize("args, words", CASES.values(), ids=CASES.keys())
def test_bad_flags(args, words, output):
    before = snapshot(output)
    assert_refused(run_cli(*args, "--smoke", "--output", output), *words)
    assert snapshot(output) == before
    assert sorted(path.name for path in output.iterdir()) == ["earlier", "notarun"]


@pytest.mark.skipif(not dashboard_dependency_error(), reason="Ray's dashboard packages are installed")
def test_dashboard_without_its_packages(output):
    before = snapshot(output)
    assert_refused(run_cli("--dashboard", "--smoke", "--output", output), "--dashboard", "ray[default]")
    assert snapshot(output) == before


@pytest.mark.parametrize("changes, words", SPEC_CASES.values(), ids=SPEC_CASES.keys())
def test_bad_specs(changes, words, output, tmp_path):
    before = snapshot(output)
    assert_refused(run_cli("--spec", spec_file(tmp_path, **changes), "--smoke", "--output", output), *words)
    assert snapshot(output) == before


def test_unreadable_spec_files(output, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{ not json")
    assert_refused(run_cli("--spec", broken, "--output", output), "broken.json")
    assert_refused(run_cli("--spec", tmp_path / "missing.json", "--output", output), "missing.json")
    assert_refused(run_cli("--spec", spec_file(tmp_path, name="svd"), "--output", output), "svd", "taken")
    assert_refused(run_cli("--spec", spec_file(tmp_path), "--experiments", "cgi,", "--output", output), "empty")


def test_output_that_cannot_hold_runs(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("not a folder")
    assert_refused(run_cli("--smoke", "--output", a_file), "--output", "not a folder")
    assert_refused(run_cli("--smoke", "--output", a_file / "below"), "--output")
    assert_refused(run_cli("--smoke", "--output", "/proc/no-runs-here"), "--output", "not writable")
    assert a_file.read_text() == "not a folder"


def test_a_good_spec_file_is_accepted_by_list_and_validation(tmp_path):
    from tune.experiments import load_spec

    assert load_spec(spec_file(tmp_path)).name == "mine"


def test_spec_files_choose_what_runs(tmp_path):
    import run_all

    mine = spec_file(tmp_path)
    assert [s.name for s in run_all.select_experiments("all", [mine], None, None, False)] == ["mine"]
    both = run_all.select_experiments("cgi", [mine], 4, 3, False)
    assert [s.name for s in both] == ["cgi", "mine"]
    assert {(s.tuning.num_samples, s.final.seeds) for s in both} == {(4, 3)}
    assert len(run_all.select_experiments("all", [], None, None, True)) == 6
