"""Low-Rank Gradient Adam, LRG-Adam (seed 003_e7bee589ef485393.txt).

The write-up hypothesised that the useful update direction lies in a low-dimensional subspace, so a
low-rank approximation of the whole gradient filters out noise and gives a more robust update signal.

All gradients (params in param_groups order, skipping those without a gradient) are flattened and
concatenated into one vector of length N; n = ceil(sqrt(N)); the vector is zero-padded to n², reshaped
row-major to n x n, replaced by its truncated SVD of rank `rank` (the fast route of svd.py, within 1e-4
of the exact reconstruction), and the first N values are written back into the gradients; then the base
optimizer steps. rank >= n leaves the gradients unchanged.
"""

import math

import torch

from .svd import LowRankWrapper, low_rank_approximation


def low_rank_flat_gradient(grads: list[torch.Tensor], rank: int) -> torch.Tensor | None:
    """The rank-`rank` version of the concatenated gradients as one flat vector, or None if unchanged."""
    length = sum(grad.numel() for grad in grads)
    side = math.isqrt(length - 1) + 1  # ceil(sqrt(length)) without float rounding
    if rank >= side:
        return None
    padding = grads[0].new_zeros(side * side - length)
    padded = torch.cat([grad.reshape(-1) for grad in grads] + [padding])
    return low_rank_approximation(padded.view(side, side), rank).view(-1)[:length]


class LRGAdam(LowRankWrapper):
    @torch.inference_mode()  # cheaper than no_grad per operation; only temporaries are created
    def transform_gradients(self) -> None:
        # One matrix spans every group, so the groups must agree on its rank.
        ranks = {group["rank"] for group in self.param_groups}
        if len(ranks) > 1:
            raise ValueError(f"Invalid rank: lrg needs one rank for all param groups, got {sorted(ranks)}")
        grads = self.all_grads()
        if not grads:
            return
        low_rank = low_rank_flat_gradient(grads, ranks.pop())
        if low_rank is None:
            return
        chunks = low_rank.split([grad.numel() for grad in grads])
        torch._foreach_copy_(grads, [chunk.view_as(grad) for chunk, grad in zip(chunks, grads)])
