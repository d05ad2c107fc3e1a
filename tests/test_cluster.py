"""A real two-node Ray cluster on this machine, started with the `ray` CLI from other folders:
run_all.py --address spreads trials over both nodes, survives the worker node dying, and
refuses a wrong token or a dead address with one line."""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from conftest import run_cli


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TwoNodeCluster:
    """Started as README's "Run on a Ray cluster" says: the head node generates the token,
    and every node and the client export RAY_AUTH_MODE=token and RAY_AUTH_TOKEN."""

    def __init__(self, base: Path):
        self.base = base
        self.env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_AUTH_")}
        self.env.update({"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"})
        self.port = free_port()
        self.worker_manager_port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.head_dir, self.worker_dir = base / "head", base / "worker"
        self.head_dir.mkdir()
        self.worker_dir.mkdir()

    def ray(self, *args, cwd, env=None) -> str:
        # the `ray` CLI installed beside this interpreter, whatever PATH says
        cli = Path(sys.executable).parent / "ray"
        done = subprocess.run([str(cli), *args], cwd=cwd, env=env or self.env, check=True, capture_output=True,
                              text=True, timeout=120)
        return done.stdout

    def start(self):
        # `ray get-auth-token --generate` saves the token to ~/.ray/auth_token: a home of its own here
        home = self.base / "head-home"
        home.mkdir()
        self.env["RAY_AUTH_MODE"] = "token"
        self.token = self.ray("get-auth-token", "--generate", cwd=self.head_dir, env={**self.env, "HOME": str(home)})
        assert len(self.token) >= 32 and self.token.strip() == self.token
        self.env["RAY_AUTH_TOKEN"] = self.token
        self.ray("start", "--head", "--port", str(self.port), "--num-cpus", "1", "--include-dashboard=false",
                 "--disable-usage-stats", cwd=self.head_dir)
        self.ray("start", "--address", self.address, "--num-cpus", "1", "--node-manager-port",
                 str(self.worker_manager_port), "--disable-usage-stats", cwd=self.worker_dir)

    def processes(self, *markers):
        """Ray's processes of this cluster only (each carries its GCS port on its command line)."""
        found = []
        for process in psutil.process_iter(["cmdline"]):
            line = " ".join(process.info["cmdline"] or [])
            if all(marker in line for marker in markers):
                found.append(process)
        return found

    def kill(self, processes):
        for process in processes:
            for member in [*process.children(recursive=True), process]:
                try:
                    member.kill()
                except psutil.NoSuchProcess:
                    pass

    def stop_worker_node(self):
        raylets = self.processes("raylet", f"--node_manager_port={self.worker_manager_port}")
        assert len(raylets) == 1, "the worker node's raylet should be running"
        self.kill(raylets)

    def stop(self):
        self.kill(self.processes(str(self.port)))
        current = Path("/tmp/ray/ray_current_cluster")  # what `ray stop` would clear
        if current.exists() and current.read_text().strip().endswith(f":{self.port}"):
            current.unlink()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = TwoNodeCluster(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def run_on(cluster, *args, env=None, timeout=900):
    return run_cli("--address", cluster.address, *args, cwd=cluster.worker_dir, env=env or cluster.env, timeout=timeout)


# Trials long enough (about 8 s) that the worker node's first worker is ready before the head node's
# first trial ends: Ray Tune hands a trial whose worker is still starting to a worker that a finished
# trial freed, and drops the starting one, so with trials shorter than a cold start a node may get none.
SPREAD_SPEC = {"name": "spread", "title": "spread", "seed_file": "-", "hypothesis": "-",
               "optimizers": {"adam": {"lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2}},
                              "cgi": {"lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2}}},
               "tuning": {"num_samples": 2, "epochs": 600, "grace_period": 600, "repeats": 1},
               "final": {"epochs": 2, "seeds": 2}}


def test_trials_run_on_both_nodes_and_results_load(cluster, tmp_path):
    spec = tmp_path / "spread.json"
    spec.write_text(json.dumps(SPREAD_SPEC))
    result = run_on(cluster, "--spec", spec, "--output", tmp_path, "--name", "two")
    assert result.returncode == 0, result.stderr[-3000:]
    trials = pd.read_parquet(tmp_path / "two" / "trials.parquet")
    assert trials["node_id"].nunique() == 2, result.stdout[-2000:] + result.stderr[-3000:]
    assert (trials[trials["phase"] == "tune"].groupby("study").size() == 2).all()
    assert (tmp_path / "two" / "report.md").exists()


def test_wrong_token_is_refused_in_one_line(cluster, tmp_path):
    started = time.monotonic()
    result = run_on(cluster, "--smoke", "--output", tmp_path, env={**cluster.env, "RAY_AUTH_TOKEN": "not-the-token-" * 3})
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "token" in result.stderr
    assert time.monotonic() - started < 120
    assert list(tmp_path.iterdir()) == []


def test_worker_node_dying_mid_study_does_not_stop_the_run(cluster, tmp_path):
    """Last in this module: it leaves the cluster with its head node only."""
    driver = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent.parent / "run_all.py"), "--address", cluster.address,
         "--smoke", "--experiments", "cgi", "--num-samples", "6", "--output", str(tmp_path), "--name", "dies"],
        cwd=cluster.worker_dir, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list((tmp_path / "dies" / "results").glob("tune-*.jsonl")):
        assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()
        time.sleep(0.2)
    cluster.stop_worker_node()
    out, err = driver.communicate(timeout=900)
    assert driver.returncode == 0, err[-3000:]
    trials = pd.read_parquet(tmp_path / "dies" / "trials.parquet")
    counts = trials[trials["phase"] == "tune"].groupby("study")["trial_id"].nunique()
    assert (counts == 6).all() and len(counts) == 4, (counts, out[-2000:], err[-2000:])
    assert set(trials.loc[trials["phase"] == "final", "seed"]) == {1, 2}
