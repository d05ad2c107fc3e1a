"""Optimizer registry: one OptimInfo record per optimizer, registered by name.

Registered here: plain Adam and the optimizers of the five seed write-ups, each wrapping Adam. Other
code reaches optimizers only through REGISTRY (the records), `build_optimizer` and `build_population`:
spec validation, the results' config columns, the report's figures and formatting, the benchmarks'
targets and the registry-wide tests all read the record. An optimizer defined outside this package
registers itself with `register` when its module is imported (a spec names the module under "imports").
"""

from dataclasses import dataclass, field
from typing import Any

import torch

from .base import GradientTransformWrapper
from .cgi import CyclicalGradientInversion
from .gao import GradientAlignmentOptimizer
from .gns import GNSAdam
from .low_rank import low_rank_approximation
from .lrg import LRGAdam
from .population import PopulationAdam
from .svd import SVDGradientOptimizer


@dataclass(frozen=True)
class Hyperparameter:
    """A hyperparameter beyond lr. Which values are valid is the optimizer's own `validate_hparams` to
    say (see OptimInfo.validated)."""

    default: int | float  # as in the optimizer's signature
    integer: bool = False
    log: bool = False  # searched on a log scale
    search: tuple[float, float] | None = None  # default search range (its write-up's); None: kept at default

    def space(self) -> dict:
        """The default search range as a search-space entry (tune.space)."""
        low, high = self.search
        if self.integer:
            return {"type": "int", "low": low, "high": high, "log": self.log}
        return {"type": "loguniform" if self.log else "uniform", "low": low, "high": high}


@dataclass(frozen=True)
class OptimInfo:
    """Everything the project knows about one optimizer."""

    name: str
    optimizer: type[torch.optim.Optimizer]  # built as optimizer(params, lr=lr, **hparams)
    color: str  # in every figure
    step_time_target: float  # most a full training step may take, relative to Adam's (benchmarks/optimizer_step.py)
    # most one member of a population of 10 may take, relative to a single run (benchmarks/population.py)
    member_time_target: float = 0.5
    hparams: dict[str, Hyperparameter] = field(default_factory=dict)

    def validated(self, hparams: dict[str, Any]) -> dict[str, Any]:
        """`hparams`, the others at their defaults, checked and normalised by the optimizer's own static
        `validate_hparams` (ValueError naming a bad value); an optimizer without one takes them as given."""
        values = {name: hparam.default for name, hparam in self.hparams.items()} | dict(hparams)
        validate = getattr(self.optimizer, "validate_hparams", None)
        return validate(values) if validate else values

    def default_space(self) -> dict:
        """The hyperparameters that have a default search range, as a search space (without lr)."""
        return {name: hparam.space() for name, hparam in self.hparams.items() if hparam.search}


REGISTRY: dict[str, OptimInfo] = {}


def register(info: OptimInfo) -> OptimInfo:
    """Make the optimizer buildable by name; a name taken by another record is refused."""
    if REGISTRY.get(info.name, info) != info:
        raise ValueError(f"Optimizer {info.name!r} is already registered")
    REGISTRY[info.name] = info
    return info


register(OptimInfo("adam", torch.optim.Adam, color="#333333", step_time_target=1.0, member_time_target=0.35))
register(OptimInfo("cgi", CyclicalGradientInversion, color="#1f77b4", step_time_target=1.05,
                   hparams={"inversion_frequency": Hyperparameter(10, integer=True, search=(2, 100))}))
register(OptimInfo("gao", GradientAlignmentOptimizer, color="#ff7f0e", step_time_target=1.3,
                   hparams={"beta": Hyperparameter(0.9, search=(0.8, 0.999))}))
register(OptimInfo("gns", GNSAdam, color="#2ca02c", step_time_target=1.1,
                   hparams={"norm_eps": Hyperparameter(1e-8, log=True)}))
register(OptimInfo("lrg", LRGAdam, color="#d62728", step_time_target=2.5,
                   hparams={"rank": Hyperparameter(10, integer=True, log=True, search=(1, 124))}))
register(OptimInfo("svd", SVDGradientOptimizer, color="#9467bd", step_time_target=2.5,
                   hparams={"rank": Hyperparameter(10, integer=True, log=True, search=(1, 100))}))


def optimizer_info(name: str) -> OptimInfo:
    """The record of `name`, or ValueError naming the registered ones."""
    if name not in REGISTRY:
        raise ValueError(f"Unknown optimizer: {name!r} (known: {', '.join(REGISTRY)})")
    return REGISTRY[name]


def known_hparams(name: str, hparams: dict[str, Any]) -> OptimInfo:
    """The record of `name`, or ValueError naming any of `hparams` it does not have."""
    info = optimizer_info(name)
    unknown = sorted(set(hparams) - set(info.hparams))
    if unknown:
        expected = ", ".join(info.hparams) or "none"
        raise ValueError(
            f"Unknown hyperparameter(s) for {name!r}: {', '.join(unknown)} (expected: {expected})"
        )
    return info


def build_optimizer(name: str, params, lr: float, **hparams: Any) -> torch.optim.Optimizer:
    """The optimizer `name` over `params` with learning rate `lr`; Adam at torch defaults underneath."""
    info = known_hparams(name, hparams)
    # A numpy lr (as tuners may pass) would make the checkpoint unloadable with weights_only=True.
    lr = lr if isinstance(lr, torch.Tensor) else float(lr)
    return info.optimizer(params, lr=lr, **hparams)


def build_population(name: str, params: list[torch.Tensor], lrs: list[float],
                     hparams: list[dict[str, Any]]) -> PopulationAdam:
    """The optimizer `name` over a population: `params` stacked on a leading member axis [K, ...],
    member k with lr lrs[k] and hyperparameters hparams[k] (defaults filled in as build_optimizer does)."""
    members = [validated_member(name, lr, member) for lr, member in zip(lrs, hparams, strict=True)]
    info = optimizer_info(name)
    stacked = {key: [member[key] for member in members] for key in info.hparams}
    transform = getattr(info.optimizer, "transform_members", None)  # None: plain Adam
    return PopulationAdam(params, [float(lr) for lr in lrs], stacked, transform)


def validated_member(name: str, lr: float, hparams: dict[str, Any]) -> dict[str, Any]:
    """One member's hyperparameters, checked and normalised by the optimizer's own `validate_hparams`, as a
    single run's are. No optimizer is built: a process's first torch optimizer imports torch's compiler
    stack (1.5 s), which no population needs."""
    info = known_hparams(name, hparams)
    if not float(lr) >= 0:
        raise ValueError(f"Invalid learning rate: {lr}")
    return info.validated(hparams)


__all__ = [
    "REGISTRY",
    "Hyperparameter",
    "OptimInfo",
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
    "optimizer_info",
    "register",
]
