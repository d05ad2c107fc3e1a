"""mnist1d generated offline, split into train / validation / test, cached as .npz.

The tuner only ever sees the validation split; the test split is kept for final evaluation.
"""
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tune.run_folder import atomic_path

DEFAULT_CACHE = Path(os.environ.get("MNIST1D_CACHE", Path.home() / ".cache" / "mnist1d-tune"))
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DataSpec:
    """Generation arguments. mnist1d's own defaults give 4000 train / 1000 test samples.

    The validation split is the last `val_fraction` of the (shuffled) train pool, so
    `n_train` counts train + validation samples, as the write-ups' "train samples" do.
    """

    n_train: int = 4000
    n_test: int = 1000
    val_fraction: float = 0.2
    seed: int = 42

    def __post_init__(self):
        if self.n_train < 20 or self.n_test < 10:
            raise ValueError(f"need n_train >= 20 and n_test >= 10, got {self.n_train} and {self.n_test}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")

    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Splits:
    """float32 inputs (n, 40) and int64 labels (n,) for each split."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {split: len(getattr(self, f"y_{split}")) for split in SPLITS}


def generate(spec: DataSpec) -> Splits:
    from mnist1d.data import get_dataset_args, make_dataset  # never get_dataset: it downloads a pickle

    args = get_dataset_args()
    args.num_samples = spec.n_train + spec.n_test
    args.train_split = spec.n_train / args.num_samples
    args.seed = spec.seed
    raw = make_dataset(args)
    x, y = raw["x"].astype(np.float32), raw["y"].astype(np.int64)
    n_val = max(1, round(len(y) * spec.val_fraction))
    return Splits(
        x_train=x[:-n_val], y_train=y[:-n_val],
        x_val=x[-n_val:], y_val=y[-n_val:],
        x_test=raw["x_test"].astype(np.float32), y_test=raw["y_test"].astype(np.int64),
    )


def load_data(spec: DataSpec = DataSpec(), cache_dir: Path | str | None = DEFAULT_CACHE) -> Splits:
    """The splits for `spec`, generated once and then read from `cache_dir` (None: no cache)."""
    if cache_dir is None:
        return generate(spec)
    path = Path(cache_dir) / f"mnist1d-{spec.key()}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as arrays:
            return Splits(**{name: arrays[name] for name in arrays.files})
    splits = generate(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as partial, open(partial, "wb") as file:  # a concurrent reader never sees half a file
        np.savez(file, **asdict(splits))
    return splits
