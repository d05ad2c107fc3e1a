"""Gradient Alignment Optimizer, GAO(Adam) (seed 001_fc171148c7a54458.txt).

The write-up hypothesised that taking larger steps when the gradient direction is consistent over time,
and smaller ones when it is erratic, gives faster and more stable convergence.

For each parameter with gradient g an EMA m of its past raw gradients is kept (in the base optimizer's
state as "alignment_ema", starting at zero). Each step: s = clamp(cos(g, m), 0, 1) over the flattened
tensors, with m as it was before this step (s = 1 while m or g is zero, e.g. on the first step); then
m <- beta * m + (1 - beta) * g with the raw g; then g is replaced by s * g and the base optimizer steps.
In a population every member keeps its own EMAs, and its cosines use only its own tensors.
"""

from collections.abc import Mapping
from typing import Any

import torch

from .base import GradientTransformWrapper, member_shaped, real_number

EMA_KEY = "alignment_ema"


def clamped_cosine(dot: float, grad_norm: float, ema_norm: float) -> float:
    """clamp(cos(g, m), 0, 1), or 1 where either tensor is zero."""
    norm_product = grad_norm * ema_norm
    return min(max(dot / norm_product, 0.0), 1.0) if norm_product > 0 else 1.0


def member_rows(tensors: list[torch.Tensor], count: int) -> list[torch.Tensor]:
    """Each member's part of each tensor, flattened: tensor-major, then member."""
    if count == 1:  # fewer view operations per step for the single run
        return [tensor.reshape(-1) for tensor in tensors]
    return [row for tensor in tensors for row in tensor.reshape(count, -1).unbind()]


def align_members(grads: list[torch.Tensor], emas: list[torch.Tensor], betas: list[float]) -> None:
    """One GAO transform of each member's gradients and EMAs (each [K, ...]), member k with betas[k].

    With one member the tensors may also come without the member axis (the single run's, as they are).
    """
    count = len(betas)
    # vecdot rather than dot: BLAS's dot rounds differently where a member's row starts unaligned.
    dots = [torch.linalg.vecdot(grad.reshape(count, -1), ema.reshape(count, -1)) for grad, ema in zip(grads, emas)]
    norms = torch._foreach_norm(member_rows(grads, count) + member_rows(emas, count))
    # One transfer, then the few scalars are combined in Python rather than by tiny tensor ops.
    numbers = torch.cat(dots + [torch.stack(norms)]).tolist()
    pairs = len(norms) // 2
    scales = [clamped_cosine(*triple) for triple in zip(numbers, numbers[pairs : 2 * pairs], numbers[2 * pairs :])]
    if len(set(betas)) == 1:
        torch._foreach_lerp_(emas, grads, 1.0 - betas[0])
    else:
        weights = torch.tensor([1.0 - beta for beta in betas], dtype=grads[0].dtype)  # rounded as a scalar weight is
        for ema, grad in zip(emas, grads):
            ema.lerp_(grad, member_shaped(weights, ema))
    if count == 1:
        torch._foreach_mul_(grads, scales)
    else:
        for index, grad in enumerate(grads):
            member_scales = torch.tensor(scales[index * count : (index + 1) * count], dtype=grad.dtype)
            grad.mul_(member_shaped(member_scales, grad))


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

    @staticmethod
    def validate_hparams(hparams: Mapping[str, Any]) -> dict[str, Any]:
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
            align_members(grads, emas, [group["beta"]])
        self.base_optimizer.step()
        # Adam initialises a parameter's state only while it is empty, so a new EMA joins it afterwards.
        for p, ema in new_emas:
            self.state[p][EMA_KEY] = ema

    @staticmethod
    def transform_members(grads, lrs, hparams, state):
        if EMA_KEY not in state:
            state[EMA_KEY] = [torch.zeros_like(grad) for grad in grads]
        align_members(grads, state[EMA_KEY], hparams["beta"])
        return lrs
