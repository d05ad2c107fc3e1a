"""Gradient-Norm Scaled Adam, GNS-Adam (seed 002_03d8c1fa14612007.txt).

The write-up hypothesised that scaling the learning rate inversely to the L2 norm of the gradients
(smaller steps where gradients are large, larger where they are small) gives more stable and possibly
faster convergence than a fixed learning rate.

Each step the total L2 norm |g| over all gradients of all groups is computed; the base step runs with
each group's lr set to lr / (|g| + norm_eps), and afterwards each group's lr is restored, so lr
schedulers keep acting on the unscaled lr. In a population each member's lr is scaled by its own
gradients' norm.
"""

import math
from collections.abc import Mapping
from typing import Any

import torch

from .base import GradientTransformWrapper, real_number


def member_grad_norms(grads: list[torch.Tensor], count: int) -> torch.Tensor:
    """The L2 norm [K] of each of `count` members' gradients (each [K, ...]) taken together; with one
    member the tensors may also come without the member axis (the single run's, as they are)."""
    return torch.linalg.vector_norm(torch.cat([grad.reshape(count, -1) for grad in grads], dim=1), dim=1)


def scaled_lr(lr, grad_norm, norm_eps):
    """The write-up's rule, for floats or per-member tensors alike."""
    return lr / (grad_norm + norm_eps)


class GNSAdam(GradientTransformWrapper):
    def __init__(
        self,
        params,
        lr: float = 1e-3,
        norm_eps: float = 1e-8,
        base_class: type[torch.optim.Optimizer] = torch.optim.Adam,
        **base_kwargs: Any,
    ) -> None:
        super().__init__(params, lr, base_class, base_kwargs, norm_eps=norm_eps)

    @staticmethod
    def validate_hparams(hparams: Mapping[str, Any]) -> dict[str, Any]:
        norm_eps = hparams["norm_eps"]
        return {"norm_eps": real_number("norm_eps", norm_eps, "finite and > 0", lambda e: 0.0 < e < math.inf)}

    def transformed_step(self) -> None:
        grads = self.all_grads()
        if not grads:
            self.base_optimizer.step()
            return
        total_norm = member_grad_norms(grads, 1).item()
        own_lrs = [group["lr"] for group in self.param_groups]
        for group in self.param_groups:
            group["lr"] = scaled_lr(group["lr"], total_norm, group["norm_eps"])
        try:
            self.base_optimizer.step()
        finally:
            for group, lr in zip(self.param_groups, own_lrs):
                group["lr"] = lr

    @staticmethod
    def transform_members(grads, lrs, hparams, state):
        norm_eps = torch.tensor(hparams["norm_eps"], dtype=lrs.dtype)
        return scaled_lr(lrs, member_grad_norms(grads, len(lrs)).to(lrs.dtype), norm_eps)
