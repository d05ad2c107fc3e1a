"""Truncated SVD of gradient matrices: the best rank-k approximation, computed fast and checked.

Reference: the exact truncation from `torch.linalg.svd` in float64, `exact_low_rank_approximation`.

`low_rank_approximation` computes the same from the Gram matrix of the shorter side, cheaper than the
SVD, by one of three fast routes (`fast_route` picks it from the shape): a float64 `eigh`
(`_float64_projection`), a float32 `eigh` refined in float64 (`_refined_projection`), or a Chebyshev
subspace iteration (`_filtered_projection`).

Error bound: on every call the route estimates a bound on its result's relative Frobenius distance
from the exact truncation, from rounding, the Ritz residuals and the singular-value gap at the cut
(each route's docstring derives its terms). The result is used only if that estimate is at most
FAST_ROUTE_TOLERANCE; otherwise, or if the route fails, the float64 route is tried, then the exact
SVD is computed. The optimizers
promise 1e-4, which tests check against `torch.linalg.svd`; the tolerance is ten times tighter
because the estimates are partly first-order. As the gap at the cut closes the estimates
grow without bound, so where the truncation is not unique (equal singular values at the cut) the
result is the exact SVD's. Non-finite matrices are returned unchanged.

`truncate_members` truncates a population's matrices ([K, rows, cols]), members of one rank batched
through one route.

Why this module is long (over 400 lines): each fast route comes with the check that bounds its error,
and the checks are much of the code; a route without its check would give no guarantee.
"""

import math

import torch

# Largest estimated relative (Frobenius) error of a fast route's result (see the module docstring).
FAST_ROUTE_TOLERANCE = 1e-5
# Up to this many rows (of the wide orientation) a float64 `eigh` is cheaper than a float32 one plus the
# float64 refinement; measured crossover on the benchmark machine is about 90.
FLOAT64_EIGH_MAX_ROWS = 96
# Extra eigenvectors refined alongside the wanted ones, so that a wanted direction needs to be told apart
# precisely only from directions outside this larger set, with a wider gap.
OVERSAMPLING = 10
# The refined route is taken only when the span it refines is at most this share of the rows. With a
# wider span, on the MLP's 100 x 100 and 124 x 124 gradients, its check failed on most calls (svd's
# 100 x 100 layer at ranks 60-72: every call), each then paying the exact SVD on top; the float64
# `eigh` costs about what the refined route does there and passes.
REFINED_MAX_SPAN_SHARE = 0.25
# The subspace-iteration route (_filtered_projection) handles wide matrices with at least
# FILTERED_MIN_ROWS rows (measured crossover with the float64 `eigh` is about 70) when its subspace, the
# wanted vectors plus SUBSPACE_OVERSAMPLING, fills at most FILTERED_MAX_SHARE of them. Above 0.4, on the
# MLP's gradients the gap the filter works with is small: svd's 100 x 100 layer at rank 34 failed the
# check on 69% of calls, and lrg at ranks 37-40 cost a quarter more than with the float64 `eigh`.
SUBSPACE_OVERSAMPLING = 14
FILTERED_MIN_ROWS = 72
FILTERED_MAX_SHARE = 0.4
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
    `torch.linalg.svd`. When a route's error estimate is too large, the float64 route is tried (about
    half the cost of the SVD on the MLP's matrices, and its check rarely fails), then the exact float64
    SVD is used.
    """
    rows, cols = matrix.shape
    if rank >= min(rows, cols):
        return matrix.clone()
    return _approximation(matrix, rank, tolerance, [fast_route(min(rows, cols), rank, matrix.dtype), "float64"])


def _approximation(matrix: torch.Tensor, rank: int, tolerance: float, routes: list[str]) -> torch.Tensor:
    """The first of `routes` to pass its check, else the exact SVD's; rank < min(matrix.shape)."""
    if matrix.shape[0] > matrix.shape[1]:
        return _approximation(matrix.T, rank, tolerance, routes).T
    a = matrix.double()
    for route in dict.fromkeys(routes):
        try:
            if route == "filtered":
                result = _filtered_projection(a, matrix.float(), rank, tolerance)
            elif route == "float64":
                result = _float64_projection(a, rank, tolerance)
            else:
                result = _refined_projection(a, rank, tolerance)
        except torch.linalg.LinAlgError:
            result = None
        if result is not None:
            return result.to(matrix.dtype)
    if not torch.isfinite(matrix).all():
        return matrix.clone()
    return exact_low_rank_approximation(matrix, rank)


def fast_route(rows: int, rank: int, dtype: torch.dtype) -> str:
    """Which fast route low_rank_approximation takes for a wide matrix with `rows` rows."""
    if FILTERED_MIN_ROWS <= rows and rank + SUBSPACE_OVERSAMPLING <= FILTERED_MAX_SHARE * rows:
        return "filtered"
    span = min(rank, rows - rank) + OVERSAMPLING
    if rows <= FLOAT64_EIGH_MAX_ROWS or dtype == torch.float64 or span > REFINED_MAX_SPAN_SHARE * rows:
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
    result, accepted = _filtered_projections(a, single, rank, tolerance)
    return result if accepted[0] else None


def _filtered_projections(
    a: torch.Tensor, single: torch.Tensor, rank: int, tolerance: float
) -> tuple[torch.Tensor, list[bool]]:
    """_filtered_projection of one matrix ([rows, cols]) or of a batch ([K, rows, cols]) at once: the
    truncations (float32) and whether each is accepted. One matrix runs on 2-D operations, as cheap as
    a route written for it alone; a batch runs each step for all its matrices together."""
    rows, cols = a.shape[-2:]
    size = rank + SUBSPACE_OVERSAMPLING
    gram = _mm(single, single.mT)
    basis = torch.linalg.qr(_mm(gram, gram @ _start_block(rows, size, a.device))).Q
    product = _mm(gram, basis)
    # One transfer: each matrix's energy (the Gram matrix's trace) and the block's Rayleigh quotients.
    numbers = torch.cat([gram.diagonal(dim1=-2, dim2=-1).sum(-1).reshape(-1, 1),
                         torch.linalg.vecdot(basis, product, dim=-2).reshape(-1, size)], dim=1).tolist()
    energies = [row[0] for row in numbers]
    plans = [_filter_plan(sorted(row[1:], reverse=True), row[0], rank) for row in numbers]
    accepted = [plan is not None for plan in plans]
    if not any(accepted):
        return single, accepted
    bounds = [plan[0] if plan else 1.0 for plan in plans]  # a stand-in where there is no plan
    degrees = [plan[1] if plan else 1 for plan in plans]
    # x = I - 2 M / b (its sign only flips signs); the Gram matrix is overwritten with 2x.
    double_x = gram.mul_(_per_matrix([-4 / bound for bound in bounds], gram))
    double_x.diagonal(dim1=-2, dim2=-1).add_(2)
    x_basis = _add_scaled(basis, product, _per_matrix([-2 / bound for bound in bounds], basis))
    roundings = [(rows + cols) * torch.finfo(torch.float64).eps * energy for energy in energies]
    count = len(plans)
    vectors = values = right = None
    taus = [0.0] * count
    pending = [member for member in range(count) if accepted[member]]
    for attempt in range(2):
        if not pending:
            break
        everyone = len(pending) == count
        index = None if everyone else torch.tensor(pending)
        take = (lambda tensor: tensor) if everyone else (lambda tensor: tensor[index])
        ritz = _ritz_pairs(take(a), _chebyshev_bases(take(double_x), take(basis), take(x_basis),
                                                     [degrees[member] for member in pending]))
        if everyone:
            vectors, values, right = ritz[:3]
        else:
            if vectors is None:
                vectors, values, right = (torch.zeros((count, *part.shape[1:]), dtype=part.dtype) for part in ritz[:3])
            vectors[index], values[index], right[index] = ritz[:3]
        retry = []
        member_values, member_residuals = (part.reshape(len(pending), -1).tolist() for part in (ritz[1], ritz[3]))
        for member, ritz_values, residuals in zip(pending, member_values, member_residuals):
            estimate = _error_estimate(ritz_values, residuals, rank, bounds[member], roundings[member])
            if estimate is None or (attempt and estimate[0] > tolerance):
                accepted[member] = False
            elif estimate[0] > tolerance:
                retry.append(member)
            else:
                taus[member] = estimate[1]
        # Filter on from the Ritz vectors, the best basis at hand.
        pending = retry
        if len(pending) == count:
            basis = vectors.float()
            x_basis = _addmm(basis, double_x, basis, beta=0, alpha=0.5)
        elif pending:
            index = torch.tensor(pending)
            basis[index] = vectors[index].float()
            x_basis[index] = _addmm(basis[index], double_x[index], basis[index], beta=0, alpha=0.5)
        for member in pending:
            degrees[member] = FILTER_RETRY_DEGREE

    # τ I - M + Y Θ Yᵀ with M = (2 I - double_x) b / 4; built in float32, so τ is lowered by a bound on
    # the rounding of the check.
    ritz_vectors = vectors.float()
    check = _addmm(double_x, ritz_vectors * values.float().unsqueeze(-2), ritz_vectors.mT,
                   beta=_per_matrix([bound / 4 for bound in bounds], double_x), in_place=True)  # double_x's last use
    shifts = [tau - bound / 2 - 2 * (rows + cols) * torch.finfo(torch.float32).eps * energy
              for tau, bound, energy in zip(taus, bounds, energies)]
    check.diagonal(dim1=-2, dim2=-1).add_(_per_matrix(shifts, check, trailing=1))
    failed = torch.linalg.cholesky_ex(check, upper=True).info.reshape(-1).tolist()  # upper: no transposing copy
    accepted = [ok and not fail for ok, fail in zip(accepted, failed)]
    top = slice(size - rank, size)
    return _mm(ritz_vectors[..., top], right[..., top].mT.float()), accepted


def _mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b for matrices or batches; bmm, as `@` would copy transposed batched operands."""
    return torch.mm(a, b) if a.dim() == 2 else torch.bmm(a, b)


def _addmm(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor, beta=1.0, alpha=1.0, in_place=False) -> torch.Tensor:
    """beta c + alpha a b for matrices or batches, in c's memory if `in_place`; a batch's beta may be a
    per-matrix tensor."""
    if a.dim() == 2:
        return c.addmm_(a, b, beta=beta, alpha=alpha) if in_place else torch.addmm(c, a, b, beta=beta, alpha=alpha)
    if isinstance(beta, torch.Tensor):
        c, beta = (c.mul_(beta) if in_place else c * beta), 1.0
    return c.baddbmm_(a, b, beta=beta, alpha=alpha) if in_place else torch.baddbmm(c, a, b, beta=beta, alpha=alpha)


def _add_scaled(c: torch.Tensor, a: torch.Tensor, factor) -> torch.Tensor:
    """c + factor a, with a float factor or a per-matrix tensor."""
    return torch.addcmul(c, a, factor) if isinstance(factor, torch.Tensor) else torch.add(c, a, alpha=factor)


def _per_matrix(values: list[float], like: torch.Tensor, trailing: int = 2):
    """One value per matrix: a float for a single matrix, else a [K, 1, ...] tensor (`trailing` ones)."""
    if like.dim() == 2:
        return values[0]
    return torch.tensor(values, dtype=like.dtype).view(-1, *[1] * trailing)


def _filter_plan(quotients: list[float], energy: float, rank: int) -> tuple[float, int] | None:
    """The Chebyshev filter's bound b and degree for a block with Rayleigh quotients `quotients`
    (descending), or None if the route cannot work."""
    if not (math.isfinite(energy) and quotients[0] > 0):
        return None
    b = max(quotients[-1], quotients[0] * 1e-4)  # kept away from zero for matrices of low rank
    # T_d grows like e^(d acosh(y)) at y = 2 λ / b - 1 > 1; the Rayleigh quotients estimate λ_k.
    growth = 2 * quotients[rank - 1] / b - 1
    if growth <= 1:
        return None
    degree = math.ceil(FILTER_EFFORT / math.acosh(growth))
    return (b, degree) if degree <= MAX_FILTER_DEGREE else None


def _ritz_pairs(a: torch.Tensor, basis: torch.Tensor):
    """Rayleigh-Ritz of A Aᵀ in the float64 `basis`: Ritz vectors, values (ascending), Aᵀ y_i, and the
    residual norms |A Aᵀ y_i - θ_i y_i|."""
    coords = _mm(basis.mT, a)
    values, rotation = torch.linalg.eigh(_mm(coords, coords.mT))  # ascending
    vectors = _mm(basis, rotation)
    right = _mm(coords.mT, rotation)  # Aᵀ y_i
    residuals = torch.linalg.vector_norm(_addmm(vectors * values.unsqueeze(-2), a, right, beta=-1, in_place=True), dim=-2)
    return vectors, values, right, residuals


def _chebyshev_bases(double_x: torch.Tensor, basis: torch.Tensor, x_basis: torch.Tensor,
                     degrees: list[int]) -> torch.Tensor:
    """_chebyshev_basis of each matrix, those of one degree together."""
    if len(set(degrees)) == 1:
        return _chebyshev_basis(double_x, basis, x_basis, degrees[0])
    result = torch.empty(basis.shape, dtype=torch.float64)
    for degree in sorted(set(degrees)):
        index = torch.tensor([member for member, member_degree in enumerate(degrees) if member_degree == degree])
        result[index] = _chebyshev_basis(double_x[index], basis[index], x_basis[index], degree)
    return result


def _chebyshev_basis(
    double_x: torch.Tensor, basis: torch.Tensor, x_basis: torch.Tensor, degree: int
) -> torch.Tensor:
    """An orthonormal float64 basis of T_degree(x) `basis`, given double_x = 2x and x_basis = x `basis`
    (matrices, or batches of them).

    T_{j+1} = 2x T_j - T_{j-1}. Every 4 degrees at most the block is orthonormalised and the polynomial
    restarted, before the largest eigenvalues swamp the wanted ones in float32.
    """
    count = math.ceil(degree / 4)
    for index in range(count):
        if index:
            basis = torch.linalg.qr(current).Q
            x_basis = _addmm(basis, double_x, basis, beta=0, alpha=0.5)
        previous, current = basis, x_basis
        for _ in range((degree + index) // count - 1):
            previous, current = current, _addmm(previous, double_x, current, beta=-1)
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
        # Without a positive gap a direction may be mixed completely: count it with angle 1 (also
        # when the gap is so small that its square underflows to 0).
        gap_sq = gap * gap if gap > 0 else 0.0
        angle_sq = min(residual / gap_sq, 1.0) if gap_sq > 0 else 1.0
        error_sq += angle_sq * (max(value, 0.0) + outside)
    return result if error_sq <= tolerance**2 * result_energy else None


def truncate_members(matrices: torch.Tensor, ranks: list[int]) -> None:
    """Replace each member's matrix (`matrices` is [K, rows, cols]) by its rank-ranks[k] truncation,
    in place, as low_rank_approximation computes it; a rank >= min(rows, cols) leaves it alone.

    Several members of one rank go through low_rank_approximation's fast route together, batched (the
    float64 or the subspace-iteration route); the others one by one, and any it does not accept on
    to the fallbacks low_rank_approximation would take next.
    """
    rows, cols = matrices.shape[-2:]
    for rank in sorted(set(ranks)):
        members = [member for member, member_rank in enumerate(ranks) if member_rank == rank]
        if rank >= min(rows, cols):
            continue
        routes = [fast_route(min(rows, cols), rank, matrices.dtype), "float64"]
        if len(members) > 1 and routes[0] != "refined":
            members = _batched_truncation(matrices, members, rank)
            routes = routes[1:] if routes[0] != "float64" else []  # what it tried is not tried again
        for member in members:
            matrices[member].copy_(_approximation(matrices[member], rank, FAST_ROUTE_TOLERANCE, routes))


def _batched_truncation(matrices: torch.Tensor, members: list[int], rank: int) -> list[int]:
    """Truncate `members` of `matrices` through low_rank_approximation's fast route for them, batched;
    returns those it did not accept."""
    tall = matrices.shape[-2] > matrices.shape[-1]
    chosen = matrices if len(members) == len(matrices) else matrices[members]
    wide = chosen.mT if tall else chosen
    try:
        if fast_route(wide.shape[-2], rank, wide.dtype) == "filtered":
            results, accepted = _filtered_projections(wide.double(), wide.float(), rank, FAST_ROUTE_TOLERANCE)
        else:
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

