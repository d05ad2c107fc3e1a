"""Adam over a population: K runs trained as one, each parameter stacked on a leading member axis [K, ...].

Every member has its own lr, hyperparameters and Adam state, and is stepped exactly as its single run
would be: the optimizer's rule (`transform_members` of its wrapper class, the same code the single run
applies with K = 1) rewrites the gradients member by member, then a member-axis Adam steps. That Adam
matches torch.optim.Adam at the defaults the wrappers use (betas (0.9, 0.999), eps 1e-8, no weight
decay) to float rounding.
"""

from collections.abc import Callable
from typing import Any

import torch

from .base import member_shaped

BETAS = (0.9, 0.999)
EPS = 1e-8

MemberTransform = Callable[[list[torch.Tensor], torch.Tensor, dict[str, list], dict[str, Any]], torch.Tensor]


def adam_step(params, grads, exp_avgs, exp_avg_sqs, step: int, lrs: torch.Tensor) -> None:
    """torch.optim.Adam's update with a per-member lr (`lrs` is [K]); `step` counts from 1."""
    beta1, beta2 = BETAS
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
    denominators = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denominators, (1 - beta2**step) ** 0.5)
    torch._foreach_add_(denominators, EPS)
    step_sizes = (-lrs / (1 - beta1**step)).to(params[0].dtype)
    # In addcdiv's order, (step size * exp_avg) / denominator, so that it rounds as torch.optim.Adam does.
    updates = torch._foreach_mul(exp_avgs, [member_shaped(step_sizes, param) for param in params])
    torch._foreach_div_(updates, denominators)
    torch._foreach_add_(params, updates)


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
    """Steps stacked tensors `params` (each [K, ...]); build it with optim.build_population."""

    def __init__(self, params: list[torch.Tensor], lrs: list[float], hparams: dict[str, list],
                 transform: MemberTransform | None = None) -> None:
        self.params = params
        self.lrs = torch.tensor(lrs, dtype=torch.float64)
        self.hparams = hparams  # each hyperparameter as a list of K values
        self.transform = transform
        self.step_count = 0
        self.exp_avgs = [torch.zeros_like(param) for param in params]
        self.exp_avg_sqs = [torch.zeros_like(param) for param in params]
        self.rule_state: dict[str, Any] = {}

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor]) -> None:
        """Step every member with `grads` (one per parameter, alike in shape), which the rule may rewrite."""
        lrs = self.lrs if self.transform is None else self.transform(grads, self.lrs, self.hparams, self.rule_state)
        self.step_count += 1
        adam_step(self.params, grads, self.exp_avgs, self.exp_avg_sqs, self.step_count, lrs)

    def keep(self, members: list[int]) -> None:
        """Go on with only these members (positions in the current population), e.g. when others diverged."""
        index = torch.tensor(members, dtype=torch.long)
        self.params = [param[index] for param in self.params]
        self.lrs = self.lrs[index]
        self.hparams = select_members(self.hparams, index)
        self.exp_avgs = select_members(self.exp_avgs, index)
        self.exp_avg_sqs = select_members(self.exp_avg_sqs, index)
        self.rule_state = select_members(self.rule_state, index)

    def state_dict(self) -> dict[str, Any]:
        """Adam's and the rule's state (live tensors: copy to keep); loads with torch.load(weights_only=True)."""
        return {"step": self.step_count, "exp_avg": self.exp_avgs, "exp_avg_sq": self.exp_avg_sqs,
                "rule": self.rule_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = state["step"]
        self.exp_avgs = [tensor.clone() for tensor in state["exp_avg"]]
        self.exp_avg_sqs = [tensor.clone() for tensor in state["exp_avg_sq"]]
        self.rule_state = select_members(state["rule"], torch.arange(len(self.lrs)))
