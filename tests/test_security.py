"""A local Ray started by the project listens on loopback only and serves no dashboard; a file
that would run code when unpickled, put wherever the project reads data, a run or a checkpoint,
is refused and never run."""
import pathlib
import pickle

import psutil
import pytest
from ray import tune as ray_tune

from analysis.__main__ import main as analysis_main
from conftest import assert_refused, is_loopback, listening_addresses, run_cli
from models import DataSpec, load_data
from tune.trainable import CHECKPOINT_FILE, load_state


def test_local_ray_listens_on_loopback_only(ray_session):
    listening = listening_addresses()
    assert listening, "Ray's services should be listening somewhere"
    for address in listening:
        assert is_loopback(address), address
    assert 8265 not in {address.port for address in listening}  # Ray's dashboard port


def test_no_dashboard_unless_asked(ray_session):
    assert not ray_session.dashboard_url
    commands = [" ".join(process.cmdline()) for process in psutil.Process().children(recursive=True)]
    assert not [command for command in commands if "dashboard/dashboard.py" in command]


class Planted:
    """Unpickled, it creates the file `marker`: proof that the pickle ran."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def plant(path: pathlib.Path, marker: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(Planted(marker)))


@pytest.fixture
def marker(tmp_path):
    """The file a planted pickle would create; checked first that unpickling one does create it."""
    pickle.loads(pickle.dumps(Planted(tmp_path / "probe")))
    assert (tmp_path / "probe").exists()
    return tmp_path / "the-pickle-ran"


def test_a_cached_dataset_replaced_by_a_pickle_is_refused(marker, tmp_path):
    spec = DataSpec(n_train=200, n_test=50)
    plant(tmp_path / "cache" / f"mnist1d-{spec.key()}.npz", marker)
    with pytest.raises(ValueError, match="pickle"):
        load_data(spec, cache_dir=tmp_path / "cache")
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch, about the planted pickle
def test_a_checkpoint_replaced_by_a_pickle_is_refused(marker, tmp_path):
    plant(tmp_path / "checkpoint" / CHECKPOINT_FILE, marker)
    with pytest.raises(pickle.UnpicklingError):
        load_state(ray_tune.Checkpoint.from_directory(tmp_path / "checkpoint"))
    assert not marker.exists()


def test_a_run_folder_of_pickles_is_refused(marker, tmp_path):
    """Every file the analysis and --resume read, replaced by the planted pickle."""
    run = tmp_path / "results" / "planted"
    for name in ("run.json", "done.json", "curves.parquet", "trials.parquet", "cgi/spec.json", "cgi/best.json",
                 "results/tune-00000.jsonl", "results/final-00001.jsonl"):
        plant(run / name, marker)
    with pytest.raises(ValueError):
        analysis_main([str(run)])
    (run / "curves.parquet").unlink()  # the analysis then rebuilds the frames from the logged results
    with pytest.raises(ValueError):
        analysis_main([str(run)])
    assert_refused(run_cli("--resume", "--name", "planted", "--output", run.parent), "not a run folder")
    assert not marker.exists()
