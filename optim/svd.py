"""SVD Gradient optimizer, SVD(Adam) (seed 004_ea7f7794c844ae16.txt).

The write-up hypothesised that much of a gradient's complexity is noise, so reconstructing each
gradient matrix from only its top-k singular values gives a "denoised" gradient that improves training.

Every 2-D gradient is replaced by its best rank-`rank` approximation (truncated SVD); gradients of other
shapes, and any with `rank` >= min(shape), are left alone; then the base optimizer steps. In a
population each member's matrices are truncated on their own, with the member's rank.
This module also holds the fast truncated-SVD reconstruction shared with lrg.
"""

import math
from collections.abc import Mapping
from typing import Any

import torch

from .base import GradientTransformWrapper, members_of, positive_int

# Largest estimated relative (Frobenius) error of a fast route before the exact SVD is used instead;
# ten times below the 1e-4 the optimizers promise, because the estimates are partly first-order.
FAST_ROUTE_TOLERANCE = 1e-5
# Up to this many rows (of the wide orientation) a float64 `eigh` is cheaper than a float32 one plus the
# float64 refinement; measured crossover on the benchmark machine is about 90.
FLOAT64_EIGH_MAX_ROWS = 96
# Extra eigenvectors refined alongside the wanted ones, so that a wanted direction needs to be told apart
# precisely only from directions outside this larger set, with a wider gap.
OVERSAMPLING = 10
# The subspace-iteration route (_filtered_projection) handles wide matrices with at least
# FILTERED_MIN_ROWS rows (measured crossover with the float64 `eigh` is about 70) when its subspace, the
# wanted vectors plus SUBSPACE_OVERSAMPLING, fills at most half of them.
SUBSPACE_OVERSAMPLING = 14
FILTERED_MIN_ROWS = 72
# Its Chebyshev filter gets the degree that should shrink the unwanted part of the subspace by about
# e^FILTER_EFFORT, at most MAX_FILTER_DEGREE; if the result misses the tolerance, FILTER_RETRY_DEGREE
# more degrees are tried once. On the MLP's gradients 1-15% of calls need the retry.
FILTER_EFFORT = 15.0
MAX_FILTER_DEGREE = 24
FILTER_RETRY_DEGREE = 4

_start_blocks: dict[tuple[int, int, torch.device], torch.Tensor] = {}


def exact_low_rank_approximation(matrix: torch.Tensor, rank: int) -> torch.Tensor:
    """Truncated-SVD reconstruction computed in float64."""
    u, s, vh = torch.linalg.svd(matrix.double(), full_matrices=False)
    return ((u[:, :rank] * s[:rank]) @ vh[:rank]).to(matrix.dtype)


@torch.no_grad()
def low_rank_approximation(
    matrix: torch.Tensor, rank: int, tolerance: float = FAST_ROUTE_TOLERANCE
) -> torch.Tensor:
    """The best rank-`rank` approximation of a 2-D tensor: its SVD truncated to the top `rank` values.

    Matches the exact float64 reconstruction within `tolerance` relative Frobenius error (an estimate,
    checked on every call; tests check 1e-4). Non-finite matrices are returned unchanged. Not
    differentiable.
    The fast routes work on the Gram matrix of the shorter side, which is cheaper than
    `torch.linalg.svd`; when a route's error estimate is too large, the exact float64 SVD is used.
    """
    rows, cols = matrix.shape
    if rank >= min(rows, cols):
        return matrix.clone()
    if rows > cols:
        return low_rank_approximation(matrix.T, rank, tolerance).T
    a = matrix.double()
    route = fast_route(rows, rank, matrix.dtype)
    try:
        if route == "filtered":
            result = _filtered_projection(a, matrix.float(), rank, tolerance)
        elif route == "float64":
            result = _float64_projection(a, rank, tolerance)
        else:
            result = _refined_projection(a, rank, tolerance)
    except torch.linalg.LinAlgError:
        result = None
    if result is None:
        if not torch.isfinite(matrix).all():
            return matrix.clone()
        return exact_low_rank_approximation(matrix, rank)
    return result.to(matrix.dtype)


def fast_route(rows: int, rank: int, dtype: torch.dtype) -> str:
    """Which fast route low_rank_approximation takes for a wide matrix with `rows` rows."""
    if FILTERED_MIN_ROWS <= rows and 2 * (rank + SUBSPACE_OVERSAMPLING) <= rows:
        return "filtered"
    if rows <= FLOAT64_EIGH_MAX_ROWS or dtype == torch.float64:
        return "float64"
    return "refined"


def _start_block(rows: int, size: int, device: torch.device) -> torch.Tensor:
    """A fixed Gaussian rows x size float32 block: the same on every call, so that training stays
    reproducible."""
    key = (rows, size, device)
    if key not in _start_blocks:
        generator = torch.Generator().manual_seed(0)
        _start_blocks[key] = torch.randn(rows, size, generator=generator, dtype=torch.float32).to(device)
    return _start_blocks[key]


def _filtered_projection(
    a: torch.Tensor, single: torch.Tensor, rank: int, tolerance: float
) -> torch.Tensor | None:
    """A's rank-`rank` truncation from a float32 subspace iteration refined in float64, or None if its
    error estimate is too large.

    `a` is wide and float64, `single` the same in float32. A block of rank + SUBSPACE_OVERSAMPLING vectors
    is pushed towards the top eigenvectors of M = A Aᵀ by a Chebyshev polynomial of M, which stays small
    on [0, b] for b about the block's smallest eigenvalue and grows fast above it. In float64,
    Rayleigh-Ritz picks the Ritz pairs (θ_i, y_i) inside the block; their residuals
    r_i = M y_i - θ_i y_i measure how far the block is from containing the wanted eigenvectors.

    The check: a Cholesky factorisation of τ I - (M - Y Θ Yᵀ) proves that M has at most `size`
    eigenvalues above τ (by Weyl, as Y Θ Yᵀ has rank `size`). Then the part of each wanted y_i outside the
    eigenvectors above τ is at most |r_i| / (θ_i - τ), and moves the result by that angle times
    sqrt(θ_i + τ). Inside them, the residuals couple y_i to an unwanted Ritz vector y_j to second order,
    |r_i| |r_j| / ((θ_i - τ)(θ_i - θ_j)), to which float64 rounding adds its own over θ_i - θ_j.
    """
    rows, cols = a.shape
    size = rank + SUBSPACE_OVERSAMPLING
    gram = single @ single.T
    total_energy = gram.trace().item()
    basis = torch.linalg.qr(gram @ (gram @ _start_block(rows, size, a.device))).Q
    product = gram @ basis
    quotients = sorted(torch.linalg.vecdot(basis, product, dim=0).tolist(), reverse=True)
    if not (math.isfinite(total_energy) and quotients[0] > 0):
        return None
    b = max(quotients[-1], quotients[0] * 1e-4)  # kept away from zero for matrices of low rank
    # T_d grows like e^(d acosh(y)) at y = 2 λ / b - 1 > 1; the Rayleigh quotients estimate λ_k.
    growth = 2 * quotients[rank - 1] / b - 1
    if growth <= 1:
        return None
    degree = math.ceil(FILTER_EFFORT / math.acosh(growth))
    if degree > MAX_FILTER_DEGREE:
        return None
    # x = I - 2 M / b (its sign only flips signs); the Gram matrix is overwritten with 2x.
    double_x = gram.mul_(-4 / b)
    double_x.diagonal().add_(2)
    x_basis = torch.add(basis, product, alpha=-2 / b)
    rounding = (rows + cols) * torch.finfo(torch.float64).eps * total_energy
    for attempt in range(2):
        basis = _chebyshev_basis(double_x, basis, x_basis, degree)
        coords = basis.T @ a
        values, rotation = torch.linalg.eigh(coords @ coords.T)  # ascending
        vectors = basis @ rotation
        right = coords.T @ rotation  # Aᵀ y_i
        residuals = torch.linalg.vector_norm(torch.addmm(vectors * values, a, right, beta=-1), dim=0)
        estimate = _error_estimate(values.tolist(), residuals.tolist(), rank, b, rounding)
        if estimate is None:
            return None
        error, tau = estimate
        if error <= tolerance:
            break
        if attempt:
            return None
        # Filter on from the Ritz vectors, the best basis at hand.
        basis = vectors.float()
        x_basis = torch.addmm(basis, double_x, basis, beta=0, alpha=0.5)
        degree = FILTER_RETRY_DEGREE

    # τ I - M + Y Θ Yᵀ with M = (2 I - double_x) b / 4; built in float32, so τ is lowered by a bound on
    # the rounding of the check.
    ritz = vectors.float()
    check = torch.addmm(double_x, ritz * values.float(), ritz.T, beta=b / 4)
    check.diagonal().add_(tau - b / 2 - 2 * (rows + cols) * torch.finfo(torch.float32).eps * total_energy)
    if torch.linalg.cholesky_ex(check, upper=True).info.item():  # upper: no transposing copy
        return None
    top = slice(size - rank, size)
    return ritz[:, top] @ right[:, top].T.float()


def _chebyshev_basis(
    double_x: torch.Tensor, basis: torch.Tensor, x_basis: torch.Tensor, degree: int
) -> torch.Tensor:
    """An orthonormal float64 basis of T_degree(x) `basis`, given double_x = 2x and x_basis = x `basis`.

    T_{j+1} = 2x T_j - T_{j-1}. Every 4 degrees at most the block is orthonormalised and the polynomial
    restarted, before the largest eigenvalues swamp the wanted ones in float32.
    """
    count = math.ceil(degree / 4)
    for index in range(count):
        if index:
            basis = torch.linalg.qr(current).Q
            x_basis = torch.addmm(basis, double_x, basis, beta=0, alpha=0.5)
        previous, current = basis, x_basis
        for _ in range((degree + index) // count - 1):
            previous, current = current, torch.addmm(previous, double_x, current, beta=-1)
    return torch.linalg.qr(current.double()).Q


def _error_estimate(
    values: list[float], residuals: list[float], rank: int, b: float, rounding: float
) -> tuple[float, float] | None:
    """The estimated relative error of the top-`rank` Ritz truncation and the τ it assumes, or None if θ_k
    is not separated from the rest. `values` ascend; see _filtered_projection for the terms."""
    size = len(values)
    wanted, unwanted = values[size - rank :], values[: size - rank]
    kth = wanted[0]
    # The filter leaves the eigenvalues below about b unresolved, so τ is put between b and θ_k.
    tau = math.sqrt(kth * b)
    if kth <= tau:
        return None
    outside_sq = [(r / (value - tau)) ** 2 for value, r in zip(wanted, residuals[size - rank :])]
    error_sq = sum(min(angle_sq, 1.0) * (value + tau) for angle_sq, value in zip(outside_sq, wanted))
    # The coupling through y_j, over all wanted y_i at once; θ_i - θ_j >= θ_k - θ_j, and
    # (x + y)² <= 2x² + 2y² splits off rounding.
    coupling_sq = rounding_sq = 0.0
    for value, r in zip(unwanted, residuals[: size - rank]):
        if value >= kth:
            return None
        weight = (wanted[-1] + max(value, 0.0)) / (kth - value) ** 2
        coupling_sq += r**2 * weight
        rounding_sq += rounding**2 * weight
    error_sq += 2 * min(sum(outside_sq), 1.0) * coupling_sq + 2 * rank * rounding_sq
    return math.sqrt(error_sq / sum(wanted)), tau


def _float64_projection(a: torch.Tensor, rank: int, tolerance: float) -> torch.Tensor | None:
    """A's rank-`rank` truncation U Uᵀ A from a float64 `eigh` of A Aᵀ, or None if rounding could
    spoil it; `a` is wide and float64. See _float64_projections."""
    result, accepted = _float64_projections(a.unsqueeze(0), rank, tolerance)
    return result[0] if accepted[0] else None


def _float64_projections(a: torch.Tensor, rank: int, tolerance: float) -> tuple[torch.Tensor, list[bool]]:
    """Each matrix's rank-`rank` truncation U Uᵀ A from a float64 `eigh` of A Aᵀ (`a` is [K, rows, cols],
    wide and float64), and for each whether it is accepted: not if rounding could spoil it.

    Forming A Aᵀ and `eigh`'s backward error perturb it by at most about (rows + cols) * eps * |A|²,
    which to first order moves the truncation by at most that over the singular-value gap σ_k - σ_{k+1}.
    """
    rows, cols = a.shape[-2:]
    # bmm: `@` would copy transposed batched operands.
    eigenvalues, eigenvectors = torch.linalg.eigh(torch.bmm(a, a.mT))  # ascending
    top = eigenvectors[..., rows - rank :]
    result = torch.bmm(top, torch.bmm(top.mT, a))
    accepted = []
    for values in eigenvalues.tolist():
        squared = [max(value, 0.0) for value in values]
        rounding = (rows + cols) * torch.finfo(torch.float64).eps * sum(squared)
        gap = math.sqrt(squared[rows - rank]) - math.sqrt(squared[rows - rank - 1])
        accepted.append(rounding <= tolerance * gap * math.sqrt(sum(squared[rows - rank :])))
    return result, accepted


def _refined_projection(a: torch.Tensor, rank: int, tolerance: float) -> torch.Tensor | None:
    """A's rank-`rank` truncation from a float32 `eigh` of A Aᵀ refined in float64, or None if its
    error estimate is too large.

    `a` is wide and float64; the eigenpairs of A Aᵀ are its left singular vectors and squared singular
    values. When rank <= rows / 2 the result is U Uᵀ A for the top `rank` vectors, otherwise
    A - W Wᵀ A for the bottom rows - rank. Squaring A squares its condition number, so float32 vectors
    can be off where singular values are close; they are refined in float64: the wanted ones plus
    OVERSAMPLING neighbours are orthonormalised, and a Rayleigh-Ritz step on A Aᵀ inside their span picks
    the wanted directions exactly within it. What remains is their coupling to directions outside the
    span: the Ritz residual r_i = A Aᵀ y_i - θ_i y_i tilts y_i by about |r_i| / gap_i, gap_i separating
    θ_i from the eigenvalues outside, which moves the result by that angle times sqrt(θ_i + λ_outside).
    """
    rows = a.shape[0]
    single = a.float()
    eigenvalues, eigenvectors = torch.linalg.eigh(single @ single.T)  # ascending
    keep_top = rank <= rows - rank
    count = rank if keep_top else rows - rank
    size = min(count + OVERSAMPLING, rows)
    span = slice(rows - size, rows) if keep_top else slice(0, size)
    picked = slice(size - count, size) if keep_top else slice(0, count)

    basis = torch.linalg.qr(eigenvectors[:, span].double()).Q
    coords = basis.T @ a
    ritz_values, ritz_vectors = torch.linalg.eigh(coords @ coords.T)
    values, rotation = ritz_values[picked], ritz_vectors[:, picked]
    vectors, vector_coords = basis @ rotation, rotation.T @ coords
    part = vectors @ vector_coords
    result = part if keep_top else a - part
    if size == rows:
        return result  # the span is everything, so Rayleigh-Ritz alone is exact

    residual_sq = torch.linalg.vector_norm(a @ vector_coords.T - vectors * values, dim=0).square()
    outside_index = rows - size - 1 if keep_top else size
    # One transfer of the few numbers the estimate needs, then plain Python arithmetic.
    numbers = torch.cat([
        torch.stack([eigenvalues[outside_index], eigenvalues[-1]]).double(),
        torch.linalg.vector_norm(a).square().reshape(1),
        ritz_values,
        residual_sq,
    ]).tolist()
    outside, largest, total_energy = numbers[:3]
    ritz_list = numbers[3 : 3 + size]
    value_list, residual_list = ritz_list[picked], numbers[3 + size :]

    # Computed eigenvalues are off by up to about rows * eps * λ_max; widen the outside range by that.
    slack = rows * torch.finfo(eigenvalues.dtype).eps * max(largest, 0.0)
    if keep_top:
        # The Ritz values sum to the energy inside the span, so the rest bounds any outside eigenvalue.
        outside = max(min(outside + slack, total_energy - sum(ritz_list)), 0.0)
        result_energy = sum(value_list)
    else:
        outside = max(outside - slack, 0.0)
        result_energy = total_energy - sum(value_list)
    error_sq = 0.0
    for value, residual in zip(value_list, residual_list):
        gap = value - outside if keep_top else outside - value
        # Without a positive gap a direction may be mixed completely: count it with angle 1.
        angle_sq = min(residual / gap**2, 1.0) if gap > 0 else 1.0
        error_sq += angle_sq * (max(value, 0.0) + outside)
    return result if error_sq <= tolerance**2 * result_energy else None


def truncate_members(matrices: torch.Tensor, ranks: list[int]) -> None:
    """Replace each member's matrix (`matrices` is [K, rows, cols]) by its rank-ranks[k] truncation,
    in place, as low_rank_approximation computes it; a rank >= min(rows, cols) leaves it alone.

    Several members that low_rank_approximation would send down the float64 route go through it
    together, batched; the others, and any the batched route does not accept, one by one.
    """
    rows, cols = matrices.shape[-2:]
    for rank in sorted(set(ranks)):
        members = [member for member, member_rank in enumerate(ranks) if member_rank == rank]
        if rank >= min(rows, cols):
            continue
        if len(members) > 1 and fast_route(min(rows, cols), rank, matrices.dtype) == "float64":
            members = _float64_truncation(matrices, members, rank)
        for member in members:
            matrices[member].copy_(low_rank_approximation(matrices[member], rank))


def _float64_truncation(matrices: torch.Tensor, members: list[int], rank: int) -> list[int]:
    """Truncate `members` of `matrices` through the batched float64 route; returns those it left."""
    tall = matrices.shape[-2] > matrices.shape[-1]
    chosen = matrices if len(members) == len(matrices) else matrices[members]
    wide = chosen.mT if tall else chosen
    try:
        results, accepted = _float64_projections(wide.double(), rank, FAST_ROUTE_TOLERANCE)
    except torch.linalg.LinAlgError:  # e.g. a non-finite matrix: low_rank_approximation handles it
        return members
    if tall:
        results = results.mT
    if all(accepted) and chosen is matrices:
        matrices.copy_(results)
        return []
    for member, result, ok in zip(members, results, accepted):
        if ok:
            matrices[member].copy_(result)
    return [member for member, ok in zip(members, accepted) if not ok]


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

    def validate_hparams(self, hparams: Mapping[str, Any]) -> dict[str, Any]:
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
