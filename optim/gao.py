"""Gradient Alignment Optimizer, GAO(Adam) (seed 001_fc171148c7a54458.txt).

The write-up hypothesised that taking larger steps when the gradient direction is consistent over time,
and smaller ones when it is erratic, gives faster and more stable convergence.

For each parameter with gradient g an EMA m of its past raw gradients is kept (in the base optimizer's
state as "alignment_ema", starting at zero). Each step: s = clamp(cos(g, m), 0, 1) over the flattened
tensors, with m as it was before this step (s = 1 while m or g is zero, e.g. on the first step); then
m <- beta * m + (1 - beta) * g with the raw g; then g is replaced by s * g and the base optimizer steps.
"""

from collections.abc import Mapping
from typing import Any

import torch

from .base import GradientTransformWrapper, real_number

EMA_KEY = "alignment_ema"


def alignment_scales(grads: list[torch.Tensor], emas: list[torch.Tensor]) -> list[float]:
    """clamp(cos(g, m), 0, 1) for each pair, or 1 where either tensor is zero."""
    dots = [torch.dot(g.reshape(-1), m.reshape(-1)) for g, m in zip(grads, emas)]
    norms = torch._foreach_norm(grads + emas)
    # One transfer, then the few scalars are combined in Python rather than by tiny tensor ops.
    numbers = torch.stack(dots + list(norms)).tolist()
    count = len(grads)
    scales = []
    for dot, grad_norm, ema_norm in zip(numbers, numbers[count : 2 * count], numbers[2 * count :]):
        norm_product = grad_norm * ema_norm
        scales.append(min(max(dot / norm_product, 0.0), 1.0) if norm_product > 0 else 1.0)
    return scales


class GradientAlignmentOptimizer(GradientTransformWrapper):
    def __init__(
        self,
        params,
        lr: float = 1e-3,
        beta: float = 0.9,
        base_class: type[torch.optim.Optimizer] = torch.optim.Adam,
        **base_kwargs: Any,
    ) -> None:
        super().__init__(params, lr, base_class, base_kwargs, beta=beta)

    def validate_hparams(self, hparams: Mapping[str, Any]) -> dict[str, Any]:
        return {"beta": real_number("beta", hparams["beta"], "0 <= beta < 1", lambda b: 0.0 <= b < 1.0)}

    def transformed_step(self) -> None:
        new_emas = []
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            emas = []
            for p in params:
                ema = self.state[p].get(EMA_KEY)
                if ema is None:
                    ema = torch.zeros_like(p.grad)
                    new_emas.append((p, ema))
                emas.append(ema)
            scales = alignment_scales(grads, emas)
            torch._foreach_lerp_(emas, grads, 1.0 - group["beta"])
            torch._foreach_mul_(grads, scales)
        self.base_optimizer.step()
        # Adam initialises a parameter's state only while it is empty, so a new EMA joins it afterwards.
        for p, ema in new_emas:
            self.state[p][EMA_KEY] = ema
