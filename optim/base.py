"""Shared base for optimizers that rewrite the gradients and then step a wrapped base optimizer.

The wrapper IS a torch.optim.Optimizer whose `param_groups` and `state` are the base optimizer's own
objects, so lr schedulers, `zero_grad` and checkpoints all act on the base optimizer. A wrapper's
hyperparameters live in every param group (added with setdefault, like the base optimizer's own keys),
and any buffers it keeps live in the base optimizer's `state`, so `state_dict()` carries everything.
"""

import numbers
import operator
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch.optim import Optimizer


def invalid_hparam(name: str, value: Any, requirement: str) -> ValueError:
    return ValueError(f"Invalid {name}: {value!r} (must be {requirement})")


def positive_int(name: str, value: Any, at_most: int | None = None) -> int:
    """`value` as an int, or ValueError naming it unless it is an integer >= 1 (numpy ints are fine)
    and at most `at_most`. The project's one check of a count: hyperparameters, spec budgets, CLI flags."""
    try:
        as_int = operator.index(value)
    except TypeError:
        as_int = None
    if as_int is None or isinstance(value, bool) or as_int < 1:
        raise invalid_hparam(name, value, "an integer >= 1")
    if at_most is not None and as_int > at_most:
        raise invalid_hparam(name, value, f"at most {at_most:,}")
    return as_int


def real_number(name: str, value: Any, requirement: str, is_valid: Callable[[float], bool]) -> float:
    """`value` as a float, or ValueError naming it unless it is a real number passing `is_valid`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not is_valid(float(value)):
        raise invalid_hparam(name, value, requirement)
    return float(value)


def member_shaped(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-member `values` of shape [K] viewed as [K, 1, ..., 1], to broadcast over `like` ([K, ...])."""
    return values.view(-1, *[1] * (like.dim() - 1))


def members_of(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """A single run's tensors as a population of one: views with a leading member axis of size 1."""
    return [tensor.unsqueeze(0) for tensor in tensors]


class GradientTransformWrapper(Optimizer):
    """Base for wrappers: subclasses override `transform_gradients`, or `transformed_step` for more.

    A wrapper's rule is written once on tensors with a leading member axis (K members, each its own
    run); the single run applies it with K = 1, to its gradients viewed with a member axis (`members_of`)
    or, where the rule says it needs none for one member, as they are (cheaper per step).
    `transform_members` applies it to a population, as optim.population.PopulationAdam calls it.
    """

    def __init__(
        self,
        params,
        lr: float,
        base_class: type[Optimizer],
        base_kwargs: Mapping[str, Any],
        **hparams: Any,
    ) -> None:
        self.hparams = self.validate_hparams(hparams)
        self.base_optimizer = base_class(params, lr=lr, **base_kwargs)
        # Optimizer.__init__ would build param_groups and state of our own; __setstate__ only sets up
        # torch's hook registries and the profiling wrapper around step(), which is what we need.
        Optimizer.__setstate__(self, {"defaults": {**self.base_optimizer.defaults, **self.hparams}})
        for group in self.param_groups:
            self._add_hparams(group)

    @staticmethod
    def validate_hparams(hparams: Mapping[str, Any]) -> dict[str, Any]:
        """Return the wrapper's hyperparameters normalised, raising ValueError naming a bad one.
        Static, so that a spec's ranges are checked against it without building an optimizer."""
        raise NotImplementedError

    def _add_hparams(self, group: dict[str, Any]) -> None:
        for name, value in self.hparams.items():
            group.setdefault(name, value)
        # Normalised to plain Python numbers, so that checkpoints load with weights_only=True.
        group.update(self.validate_hparams({name: group[name] for name in self.hparams}))

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.base_optimizer.param_groups

    @property
    def state(self):
        return self.base_optimizer.state

    def __getstate__(self) -> dict[str, Any]:
        # Optimizer's version would pickle only defaults/state/param_groups and lose the base optimizer.
        return self.__dict__.copy()

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self.base_optimizer.add_param_group(param_group)
        self._add_hparams(self.param_groups[-1])

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base_optimizer.zero_grad(set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # The base optimizer replaces its param_groups and state; the properties above follow it.
        self.base_optimizer.load_state_dict(state_dict)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            # The closure recomputes the gradients, so it runs here, before they are transformed,
            # rather than inside the base optimizer's step.
            with torch.enable_grad():
                loss = closure()
        self.transformed_step()
        return loss

    def transformed_step(self) -> None:
        """Rewrite the gradients, then step the base optimizer."""
        self.transform_gradients()
        self.base_optimizer.step()

    def transform_gradients(self) -> None:
        """Rewrite each parameter's `.grad` in place."""
        raise NotImplementedError

    @staticmethod
    def transform_members(
        grads: list[torch.Tensor], lrs: torch.Tensor, hparams: Mapping[str, list], state: dict[str, Any]
    ) -> torch.Tensor:
        """Rewrite the population's gradients (each [K, ...]) in place, member by member; return the
        members' lrs [K] for this step. `hparams` holds each hyperparameter as a list of K values;
        `state` is the rule's own, kept between steps (lists or tensors with K entries on axis 0)."""
        raise NotImplementedError

    def grads_of(self, group: Mapping[str, Any]) -> list[torch.Tensor]:
        return [p.grad for p in group["params"] if p.grad is not None]

    def all_grads(self) -> list[torch.Tensor]:
        """Every gradient, in param_groups order."""
        return [grad for group in self.param_groups for grad in self.grads_of(group)]
