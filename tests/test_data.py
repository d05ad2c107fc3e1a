import socket

import numpy as np
import pytest

import models.data
from models import DataSpec, load_data


def test_shapes_and_sizes(data):
    assert data.sizes() == {"train": 3200, "val": 800, "test": 1000}
    for split in ("train", "val", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        assert x.shape == (len(y), 40) and x.dtype == np.float32
        assert y.dtype == np.int64 and set(np.unique(y)) <= set(range(10))


def test_sizes_follow_the_spec(tmp_path):
    small = load_data(DataSpec(n_train=1000, n_test=500, val_fraction=0.1), cache_dir=tmp_path)
    assert small.sizes() == {"train": 900, "val": 100, "test": 500}


def test_splits_are_disjoint(data):
    rows = {split: {row.tobytes() for row in getattr(data, f"x_{split}")} for split in ("train", "val", "test")}
    assert not rows["train"] & rows["val"]
    assert not rows["train"] & rows["test"]
    assert not rows["val"] & rows["test"]


def test_generation_is_deterministic_and_seeded(tmp_path):
    spec = DataSpec(n_train=500, n_test=100)
    first, second = load_data(spec, cache_dir=None), load_data(spec, cache_dir=None)
    assert all(np.array_equal(a, b) for a, b in zip(vars(first).values(), vars(second).values()))
    other = load_data(DataSpec(n_train=500, n_test=100, seed=7), cache_dir=None)
    assert not np.array_equal(first.x_train, other.x_train)


def test_cache_round_trip_reads_npz_without_regenerating(tmp_path, monkeypatch):
    spec = DataSpec(n_train=500, n_test=100)
    made = load_data(spec, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1 and spec.key() in files[0].name
    monkeypatch.setattr(models.data, "generate", lambda spec: pytest.fail("regenerated despite the cache"))
    cached = load_data(spec, cache_dir=tmp_path)
    assert all(np.array_equal(a, b) for a, b in zip(vars(made).values(), vars(cached).values()))
    # a different spec is a different cache entry
    assert DataSpec(n_train=500, n_test=100, seed=1).key() != spec.key()


def test_generation_needs_no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("data generation tried to open a network connection")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert load_data(DataSpec(n_train=200, n_test=50), cache_dir=None).sizes()["test"] == 50


@pytest.mark.parametrize("bad", [dict(n_train=0), dict(n_test=1), dict(val_fraction=0), dict(val_fraction=1.5)])
def test_bad_data_spec_raises(bad):
    with pytest.raises(ValueError):
        DataSpec(**bad)
