"""Low-Rank Gradient Adam, LRG-Adam (seed 003_e7bee589ef485393.txt).

The write-up hypothesised that the useful update direction lies in a low-dimensional subspace, so a
low-rank approximation of the whole gradient filters out noise and gives a more robust update signal.

All gradients (params in param_groups order, skipping those without a gradient) are flattened and
concatenated into one vector of length N; n = ceil(sqrt(N)); the vector is zero-padded to n², reshaped
row-major to n x n, replaced by its truncated SVD of rank `rank` (optim.low_rank's, within 1e-4
of the exact reconstruction), and the first N values are written back into the gradients; then the base
optimizer steps. rank >= n leaves the gradients unchanged. In a population each member's gradients
make their own matrix.
"""

import math

import torch

from .low_rank import truncate_members
from .svd import LowRankWrapper


def low_rank_flat_members(grads: list[torch.Tensor], ranks: list[int]) -> None:
    """lrg's rule on gradients with a leading member axis (each [K, ...]), in place: member k's gradients,
    flattened together, padded and made square, are replaced by their rank-ranks[k] version. With one
    member the tensors may also come without the member axis (the single run's, as they are)."""
    count = len(ranks)
    rows = [grad.reshape(count, -1) for grad in grads]
    length = sum(row.shape[1] for row in rows)
    side = math.isqrt(length - 1) + 1  # ceil(sqrt(length)) without float rounding
    if all(rank >= side for rank in ranks):
        return
    padding = rows[0].new_zeros(count, side * side - length)
    matrices = torch.cat(rows + [padding], dim=1).view(count, side, side)
    truncate_members(matrices, ranks)
    chunks = matrices.view(count, -1)[:, :length].split([row.shape[1] for row in rows], dim=1)
    torch._foreach_copy_(grads, [chunk.reshape(grad.shape) for chunk, grad in zip(chunks, grads)])


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
        low_rank_flat_members(grads, [ranks.pop()])

    @staticmethod
    def transform_members(grads, lrs, hparams, state):
        low_rank_flat_members(grads, hparams["rank"])
        return lrs
