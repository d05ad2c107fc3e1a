"""Adam over a population: K runs trained as one, each parameter stacked on a leading member axis [K, ...].

Every member has its own lr, hyperparameters and Adam state, and is stepped exactly as its single run
would be: the optimizer's rule (`transform_members` of its wrapper class, the same code the single run
applies with K = 1) rewrites the gradients member by member, then a member-axis Adam steps. That Adam
does torch.optim.Adam's arithmetic on CPU (its single-tensor form) op for op, at the defaults the
wrappers use (betas (0.9, 0.999), eps 1e-8, no weight decay), so it rounds as torch.optim.Adam does.
"""

import math
from collections.abc import Callable
from typing import Any

import torch

BETAS = (0.9, 0.999)
EPS = 1e-8

MemberTransform = Callable[[list[torch.Tensor], torch.Tensor, dict[str, list], dict[str, Any]], torch.Tensor]


def flatten_members(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Tensors [K, ...] side by side as one [K, N]: row k holds member k's values of every tensor."""
    return torch.cat([tensor.reshape(tensor.shape[0], math.prod(tensor.shape[1:])) for tensor in tensors], dim=1)


def member_views(flat: torch.Tensor, shapes: list[torch.Size]) -> list[torch.Tensor]:
    """The tensors that flatten_members joined, each [K, *shape], as views of `flat`."""
    parts = flat.split([math.prod(shape) for shape in shapes], dim=1)
    return [part.view(flat.shape[0], *shape) for part, shape in zip(parts, shapes)]


def adam_step(params, grads, exp_avg, exp_avg_sq, step: int, lrs: torch.Tensor) -> None:
    """torch.optim.Adam's update, op for op as its single-tensor form, of K members side by side (each
    tensor [K, N]), member k with lr lrs[k]; `step` counts from 1."""
    beta1, beta2 = BETAS
    exp_avg.lerp_(grads, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grads, grads, value=1 - beta2)
    denominator = exp_avg_sq.sqrt().div_((1 - beta2**step) ** 0.5).add_(EPS)
    step_sizes = (-lrs / (1 - beta1**step)).tolist()
    # addcdiv's value is one number, so each member's row gets its own; foreach makes that one call.
    torch._foreach_addcdiv_(params.unbind(), exp_avg.unbind(), denominator.unbind(), step_sizes)


def select_members(value: Any, index: torch.Tensor) -> Any:
    """The members `index` of a tensor (axis 0), a list of per-member numbers, or a container of those."""
    if isinstance(value, torch.Tensor):
        return value[index]
    if isinstance(value, dict):
        return {key: select_members(item, index) for key, item in value.items()}
    if value and isinstance(value[0], (torch.Tensor, list, dict)):
        return [select_members(item, index) for item in value]
    return [value[i] for i in index.tolist()]


class PopulationAdam:
    """Steps stacked tensors `params` (each [K, ...]); build it with optim.build_population.

    The parameters and Adam's moments are each kept as one [K, N] tensor, so that Adam's arithmetic is a
    few operations on all of them; `params` are views of it, updated in place by `step`.
    """

    def __init__(self, params: list[torch.Tensor], lrs: list[float], hparams: dict[str, list],
                 transform: MemberTransform | None = None) -> None:
        self.shapes = [param.shape[1:] for param in params]
        self.set_params(params)
        self.lrs = torch.tensor(lrs, dtype=torch.float64)
        self.hparams = hparams  # each hyperparameter as a list of K values
        self.transform = transform
        self.step_count = 0
        self.exp_avg = torch.zeros_like(self.flat_params)
        self.exp_avg_sq = torch.zeros_like(self.flat_params)
        self.rule_state: dict[str, Any] = {}

    def set_params(self, params: list[torch.Tensor]) -> None:
        """Take (a copy of) `params`, one stacked tensor [K, ...] per parameter."""
        self.flat_params = flatten_members(params)
        self.params = member_views(self.flat_params, self.shapes)

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor]) -> None:
        """Step every member with `grads` (one per parameter, alike in shape), which the rule may rewrite."""
        lrs = self.lrs if self.transform is None else self.transform(grads, self.lrs, self.hparams, self.rule_state)
        self.step_count += 1
        adam_step(self.flat_params, flatten_members(grads), self.exp_avg, self.exp_avg_sq, self.step_count, lrs)

    def keep(self, members: list[int]) -> None:
        """Go on with only these members (positions in the current population), e.g. when others diverged."""
        index = torch.tensor(members, dtype=torch.long)
        self.set_params([param[index] for param in self.params])
        self.lrs = self.lrs[index]
        self.hparams = select_members(self.hparams, index)
        self.exp_avg = self.exp_avg[index]
        self.exp_avg_sq = self.exp_avg_sq[index]
        self.rule_state = select_members(self.rule_state, index)

    def state_dict(self) -> dict[str, Any]:
        """Adam's and the rule's state, the moments one tensor [K, ...] per parameter (live tensors: copy to
        keep); loads with torch.load(weights_only=True)."""
        return {"step": self.step_count, "exp_avg": member_views(self.exp_avg, self.shapes),
                "exp_avg_sq": member_views(self.exp_avg_sq, self.shapes), "rule": self.rule_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = state["step"]
        self.exp_avg = flatten_members(state["exp_avg"])
        self.exp_avg_sq = flatten_members(state["exp_avg_sq"])
        self.rule_state = select_members(state["rule"], torch.arange(len(self.lrs)))
