"""Cyclical Gradient Inversion, CGI(Adam) (seed 000_0bef21695cdf6d3c.txt).

The write-up hypothesised that periodically inverting the gradient helps a model escape sharp local
minima and explore the loss landscape, leading to a better final solution.

Calls of step() are counted from 1 per param group (the count is kept in the group as "cgi_step", so it
is checkpointed); on every step t with t % inversion_frequency == 0 the group's gradients are negated
before the base step; all other steps are plain base-optimizer steps. In a population each member
counts its own steps.
"""

from collections.abc import Mapping
from typing import Any

import torch

from .base import GradientTransformWrapper, member_shaped, positive_int


def invert_members(grads: list[torch.Tensor], steps: list[int], frequencies: list[int]) -> None:
    """Negate member k's gradients (each [K, ...]) when steps[k] % frequencies[k] == 0.

    With one member the tensors may also come without the member axis (the single run's, as they are).
    """
    inverted = [step % frequency == 0 for step, frequency in zip(steps, frequencies)]
    if all(inverted):
        torch._foreach_neg_(grads)
    elif any(inverted):
        signs = torch.tensor([-1.0 if flip else 1.0 for flip in inverted], dtype=grads[0].dtype)
        torch._foreach_mul_(grads, [member_shaped(signs, grad) for grad in grads])


class CyclicalGradientInversion(GradientTransformWrapper):
    def __init__(
        self,
        params,
        lr: float = 1e-3,
        inversion_frequency: int = 10,
        base_class: type[torch.optim.Optimizer] = torch.optim.Adam,
        **base_kwargs: Any,
    ) -> None:
        super().__init__(params, lr, base_class, base_kwargs, inversion_frequency=inversion_frequency)

    @staticmethod
    def validate_hparams(hparams: Mapping[str, Any]) -> dict[str, Any]:
        return {"inversion_frequency": positive_int("inversion_frequency", hparams["inversion_frequency"])}

    def transform_gradients(self) -> None:
        for group in self.param_groups:
            group["cgi_step"] = group.get("cgi_step", 0) + 1
            grads = self.grads_of(group)
            if grads:
                invert_members(grads, [group["cgi_step"]], [group["inversion_frequency"]])

    @staticmethod
    def transform_members(grads, lrs, hparams, state):
        frequencies = hparams["inversion_frequency"]
        state["cgi_step"] = [step + 1 for step in state.get("cgi_step", [0] * len(frequencies))]
        invert_members(grads, state["cgi_step"], frequencies)
        return lrs
