"""Optimizer registry: the optimizers of the five seed write-ups, each wrapping Adam, plus plain Adam.

Other code reaches optimizers only through `build_optimizer`, `build_population`, `OPTIMIZERS` and
`HPARAMS`.
"""

from typing import Any

import torch

from .base import GradientTransformWrapper
from .cgi import CyclicalGradientInversion
from .gao import GradientAlignmentOptimizer
from .gns import GNSAdam
from .lrg import LRGAdam
from .population import PopulationAdam
from .low_rank import low_rank_approximation
from .svd import SVDGradientOptimizer

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "cgi": CyclicalGradientInversion,
    "gao": GradientAlignmentOptimizer,
    "gns": GNSAdam,
    "lrg": LRGAdam,
    "svd": SVDGradientOptimizer,
}

# Each optimizer's hyperparameters (beyond lr) and their defaults.
HPARAMS: dict[str, dict[str, Any]] = {
    "adam": {},
    "cgi": {"inversion_frequency": 10},
    "gao": {"beta": 0.9},
    "gns": {"norm_eps": 1e-8},
    "lrg": {"rank": 10},
    "svd": {"rank": 10},
}


def build_optimizer(name: str, params, lr: float, **hparams: Any) -> torch.optim.Optimizer:
    """The optimizer `name` over `params` with learning rate `lr`; Adam at torch defaults underneath."""
    if name not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer: {name!r} (known: {', '.join(OPTIMIZERS)})")
    unknown = sorted(set(hparams) - set(HPARAMS[name]))
    if unknown:
        expected = ", ".join(HPARAMS[name]) or "none"
        raise ValueError(
            f"Unknown hyperparameter(s) for {name!r}: {', '.join(unknown)} (expected: {expected})"
        )
    # A numpy lr (as tuners may pass) would make the checkpoint unloadable with weights_only=True.
    lr = lr if isinstance(lr, torch.Tensor) else float(lr)
    return OPTIMIZERS[name](params, lr=lr, **hparams)


def build_population(name: str, params: list[torch.Tensor], lrs: list[float],
                     hparams: list[dict[str, Any]]) -> PopulationAdam:
    """The optimizer `name` over a population: `params` stacked on a leading member axis [K, ...],
    member k with lr lrs[k] and hyperparameters hparams[k] (defaults filled in as build_optimizer does)."""
    members = [validated_member(name, lr, member) for lr, member in zip(lrs, hparams, strict=True)]
    stacked = {key: [member[key] for member in members] for key in HPARAMS[name]}
    transform = getattr(OPTIMIZERS[name], "transform_members", None)  # None: plain Adam
    return PopulationAdam(params, [float(lr) for lr in lrs], stacked, transform)


def validated_member(name: str, lr: float, hparams: dict[str, Any]) -> dict[str, Any]:
    """One member's hyperparameters, checked and normalised exactly as a single run's would be."""
    group = build_optimizer(name, [torch.zeros(1, requires_grad=True)], lr, **hparams).param_groups[0]
    return {key: group[key] for key in HPARAMS[name]}


__all__ = [
    "HPARAMS",
    "OPTIMIZERS",
    "PopulationAdam",
    "CyclicalGradientInversion",
    "GNSAdam",
    "GradientAlignmentOptimizer",
    "GradientTransformWrapper",
    "LRGAdam",
    "SVDGradientOptimizer",
    "build_optimizer",
    "build_population",
    "low_rank_approximation",
]
