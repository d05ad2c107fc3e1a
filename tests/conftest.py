"""Shared fixtures: real mnist1d data and one real local Ray for the in-process tests."""
import ipaddress
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import torch

from models import DataSpec, load_data

ROOT = Path(__file__).resolve().parent.parent
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data():
    return load_data(DataSpec())


@pytest.fixture(scope="session")
def ray_session():
    """The local Ray run_all.py starts, with 2 CPUs; yields its context."""
    import ray
    from tune.cluster import quiet_environment, start_local

    quiet_environment()
    context = start_local(cpus=2)
    yield context
    ray.shutdown()


def run_cli(*args, cwd=ROOT, env=None, timeout=600) -> subprocess.CompletedProcess:
    """run_all.py as a user runs it."""
    return subprocess.run([sys.executable, str(ROOT / "run_all.py"), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_refused(result, *words):
    """Bad input: one line on stderr naming the problem, exit code 2, no traceback."""
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def listening_addresses() -> list:
    """The addresses this process and its children (a local Ray's services and workers) listen on."""
    me = psutil.Process()
    listening = []
    for process in [me, *me.children(recursive=True)]:
        try:
            listening += [c.laddr for c in process.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
        except psutil.NoSuchProcess:
            continue
    return listening


def is_loopback(address) -> bool:
    return address.ip == "::ffff:127.0.0.1" or ipaddress.ip_address(address.ip).is_loopback
