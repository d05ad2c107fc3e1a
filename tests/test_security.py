"""A local Ray started by the project listens on loopback only and serves no dashboard;
data and results are never unpickled from outside the run folder."""
import ipaddress
import pathlib

import psutil

from conftest import ROOT

LOOPBACK_V4_IN_V6 = "::ffff:127.0.0.1"


def ray_processes():
    me = psutil.Process()
    return [me, *me.children(recursive=True)]


def test_local_ray_listens_on_loopback_only(ray_session):
    listening = []
    for process in ray_processes():
        try:
            listening += [c.laddr for c in process.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
        except psutil.NoSuchProcess:
            continue
    assert listening, "Ray's services should be listening somewhere"
    for address in listening:
        assert address.ip == LOOPBACK_V4_IN_V6 or ipaddress.ip_address(address.ip).is_loopback, address
    assert 8265 not in {address.port for address in listening}  # Ray's dashboard port


def test_no_dashboard_unless_asked(ray_session):
    assert ray_session.dashboard_url == ""


def test_project_code_never_unpickles():
    sources = [path for folder in ("models", "tune", "analysis", "optim") for path in (ROOT / folder).rglob("*.py")]
    sources.append(ROOT / "run_all.py")
    for path in sources:
        text = pathlib.Path(path).read_text()
        assert "pickle.load" not in text and "allow_pickle=True" not in text, path
        if "torch.load(" in text:
            assert text.count("torch.load(") == text.count("weights_only=True"), path
