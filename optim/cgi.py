"""Cyclical Gradient Inversion, CGI(Adam) (seed 000_0bef21695cdf6d3c.txt).

The write-up hypothesised that periodically inverting the gradient helps a model escape sharp local
minima and explore the loss landscape, leading to a better final solution.

Calls of step() are counted from 1 per param group (the count is kept in the group as "cgi_step", so it
is checkpointed); on every step t with t % inversion_frequency == 0 the group's gradients are negated
before the base step; all other steps are plain base-optimizer steps.
"""

from collections.abc import Mapping
from typing import Any

import torch

from .base import GradientTransformWrapper, positive_int


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

    def validate_hparams(self, hparams: Mapping[str, Any]) -> dict[str, Any]:
        return {"inversion_frequency": positive_int("inversion_frequency", hparams["inversion_frequency"])}

    def transform_gradients(self) -> None:
        for group in self.param_groups:
            group["cgi_step"] = group.get("cgi_step", 0) + 1
            if group["cgi_step"] % group["inversion_frequency"] == 0:
                grads = self.grads_of(group)
                if grads:
                    torch._foreach_neg_(grads)
