"""A local Ray started by the project listens on loopback only and serves no dashboard;
data and results are never unpickled from outside the run folder."""
import pathlib

from conftest import ROOT, is_loopback, listening_addresses


def test_local_ray_listens_on_loopback_only(ray_session):
    listening = listening_addresses()
    assert listening, "Ray's services should be listening somewhere"
    for address in listening:
        assert is_loopback(address), address
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
