"""SVD Gradient optimizer, SVD(Adam) (seed 004_ea7f7794c844ae16.txt).

The write-up hypothesised that much of a gradient's complexity is noise, so reconstructing each
gradient matrix from only its top-k singular values gives a "denoised" gradient that improves training.

Every 2-D gradient is replaced by its best rank-`rank` approximation (truncated SVD); gradients of other
shapes, and any with `rank` >= min(shape), are left alone; then the base optimizer steps. In a
population each member's matrices are truncated on their own, with the member's rank.
The truncation is optim.low_rank's (shared with lrg).
"""

from collections.abc import Mapping
from typing import Any

import torch

from .base import GradientTransformWrapper, members_of, positive_int
from .low_rank import truncate_members


def truncate_matrix_grads(grads: list[torch.Tensor], ranks: list[int]) -> None:
    """svd's rule on a population's gradients (each [K, ...]): truncate every member's matrices."""
    for grad in grads:
        if grad.dim() == 3:
            truncate_members(grad, ranks)


class LowRankWrapper(GradientTransformWrapper):
    """A wrapper whose one hyperparameter is the rank of a low-rank gradient approximation (svd, lrg)."""

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        rank: int = 10,
        base_class: type[torch.optim.Optimizer] = torch.optim.Adam,
        **base_kwargs: Any,
    ) -> None:
        super().__init__(params, lr, base_class, base_kwargs, rank=rank)

    @staticmethod
    def validate_hparams(hparams: Mapping[str, Any]) -> dict[str, Any]:
        return {"rank": positive_int("rank", hparams["rank"])}


class SVDGradientOptimizer(LowRankWrapper):
    @torch.inference_mode()  # cheaper than no_grad per operation; only temporaries are created
    def transform_gradients(self) -> None:
        for group in self.param_groups:
            truncate_matrix_grads(members_of(self.grads_of(group)), [group["rank"]])

    @staticmethod
    def transform_members(grads, lrs, hparams, state):
        truncate_matrix_grads(grads, hparams["rank"])
        return lrs
