"""Every registered optimizer as a torch optimizer, the defining property of each seed optimizer, and
the truncated SVD (optim.low_rank) of lrg and svd. The records themselves: tests/test_registry.py."""

import copy
import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import optim
import optim.low_rank
from optim.low_rank import low_rank_approximation

NAMES = list(optim.REGISTRY)
# Small enough that the tiny test model's gradients are actually transformed.
TEST_HPARAMS = {"cgi": {"inversion_frequency": 3}, "lrg": {"rank": 3}, "svd": {"rank": 2}}


def make_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))


def make_batches(count: int, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(16, 8, generator=generator), torch.randint(0, 4, (16,), generator=generator))
        for _ in range(count)
    ]


def build(name: str, model: torch.nn.Module, lr: float = 1e-2) -> torch.optim.Optimizer:
    return optim.build_optimizer(name, model.parameters(), lr, **TEST_HPARAMS.get(name, {}))


def train(model, optimizer, batches) -> None:
    for inputs, targets in batches:
        optimizer.zero_grad()
        F.cross_entropy(model(inputs), targets).backward()
        optimizer.step()


def truncated_svd(matrix: torch.Tensor, rank: int) -> torch.Tensor:
    u, s, vh = torch.linalg.svd(matrix.double(), full_matrices=False)
    return (u[:, :rank] * s[:rank]) @ vh[:rank]


def relative_error(approximation: torch.Tensor, reference: torch.Tensor) -> float:
    return ((approximation.double() - reference).norm() / reference.norm()).item()


# --- every registered optimizer ---------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_step_with_closure_reduces_loss(name):
    model = make_model()
    optimizer = build(name, model)
    inputs, targets = make_batches(1)[0]

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs), targets)
        loss.backward()
        return loss

    initial = closure().item()
    for _ in range(5):
        returned = optimizer.step(closure)
    assert isinstance(returned, torch.Tensor)
    assert F.cross_entropy(model(inputs), targets).item() < initial


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_round_trip_continues_bit_for_bit(name):
    batches = make_batches(8)
    model = make_model()
    optimizer = build(name, model)
    train(model, optimizer, batches)

    interrupted = make_model()
    interrupted_optimizer = build(name, interrupted)
    train(interrupted, interrupted_optimizer, batches[:4])
    buffer = io.BytesIO()
    torch.save({"model": interrupted.state_dict(), "optimizer": interrupted_optimizer.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)

    resumed = make_model(seed=123)
    resumed_optimizer = build(name, resumed)
    resumed.load_state_dict(checkpoint["model"])
    resumed_optimizer.load_state_dict(checkpoint["optimizer"])
    train(resumed, resumed_optimizer, batches[4:])

    for expected, actual in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(expected, actual)
    if name != "adam":
        assert resumed_optimizer.param_groups is resumed_optimizer.base_optimizer.param_groups
        assert resumed_optimizer.state is resumed_optimizer.base_optimizer.state


@pytest.mark.parametrize(
    ("name", "lr", "hparams", "message"),
    [
        ("adam", -1.0, {}, "-1.0"),
        ("cgi", 1e-3, {"inversion_frequency": 0}, "inversion_frequency: 0"),
        ("cgi", 1e-3, {"inversion_frequency": 2.5}, "inversion_frequency: 2.5"),
        ("gao", 1e-3, {"beta": 1.0}, "beta: 1.0"),
        ("gao", 1e-3, {"beta": -0.1}, "beta: -0.1"),
        ("gns", 1e-3, {"norm_eps": 0.0}, "norm_eps: 0.0"),
        ("lrg", 1e-3, {"rank": 0}, "rank: 0"),
        ("svd", 1e-3, {"rank": True}, "rank: True"),
        ("sgd", 1e-3, {}, "'sgd'"),
        ("cgi", 1e-3, {"beta": 0.9}, "beta"),
        ("adam", 1e-3, {"rank": 3}, "rank"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_value(name, lr, hparams, message):
    with pytest.raises(ValueError) as error:
        optim.build_optimizer(name, make_model().parameters(), lr, **hparams)
    assert message in str(error.value)


@pytest.mark.parametrize("name", [name for name in NAMES if name != "adam"])
def test_wrappers_reject_negative_lr_and_bad_group_overrides(name):
    with pytest.raises(ValueError, match="-0.5"):
        optim.build_optimizer(name, make_model().parameters(), -0.5)
    for hparam in optim.REGISTRY[name].hparams:
        groups = [{"params": make_model().parameters(), hparam: "not a number"}]
        with pytest.raises(ValueError, match=hparam):
            optim.build_optimizer(name, groups, 1e-3)


@pytest.mark.parametrize("name", NAMES)
def test_numpy_lr_and_hparams_still_give_a_weights_only_checkpoint(name):
    hparams = {key: (np.int64 if hparam.integer else np.float32)(TEST_HPARAMS.get(name, {}).get(key, hparam.default))
               for key, hparam in optim.REGISTRY[name].hparams.items()}
    model = make_model()
    optimizer = optim.build_optimizer(name, model.parameters(), np.float64(1e-2), **hparams)
    train(model, optimizer, make_batches(2))
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True)["param_groups"][0]["lr"] == pytest.approx(1e-2)


@pytest.mark.parametrize("name", NAMES)
def test_lr_scheduler_on_the_wrapper_changes_the_base_lr(name):
    model = make_model()
    optimizer = build(name, model, lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    base = getattr(optimizer, "base_optimizer", optimizer)
    for epoch in range(2):
        train(model, optimizer, make_batches(1, seed=epoch))
        scheduler.step()
    assert base.param_groups[0]["lr"] == pytest.approx(0.025)
    train(model, optimizer, make_batches(1))  # gns must restore the scheduled lr after its step
    assert base.param_groups[0]["lr"] == pytest.approx(0.025)


@pytest.mark.parametrize("name", [name for name in NAMES if name != "adam"])
def test_wrapper_zero_grad_add_param_group_and_deepcopy(name):
    model = make_model()
    optimizer = build(name, model)
    train(model, optimizer, make_batches(1))
    optimizer.zero_grad()
    assert all(p.grad is None for p in model.parameters())

    extra = torch.nn.Parameter(torch.ones(3, 3))
    optimizer.add_param_group({"params": [extra]})
    assert optimizer.param_groups[-1].keys() >= set(optim.REGISTRY[name].hparams) | {"lr", "betas"}

    duplicate = copy.deepcopy(optimizer)
    assert duplicate.param_groups is duplicate.base_optimizer.param_groups
    assert duplicate.param_groups is not optimizer.param_groups


# --- each optimizer's defining property -------------------------------------------------------------


def test_cgi_negates_exactly_every_kth_step():
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(5, generator=generator)
    param, reference = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    optimizer = optim.CyclicalGradientInversion([param], lr=0.1, inversion_frequency=3)
    adam = torch.optim.Adam([reference], lr=0.1)
    for step in range(1, 8):
        grad = torch.randn(5, generator=generator)
        param.grad = grad.clone()
        reference.grad = -grad if step % 3 == 0 else grad.clone()
        optimizer.step()
        adam.step()
        assert torch.equal(param, reference), f"step {step}"
    assert optimizer.param_groups[0]["cgi_step"] == 7


def test_gao_scales_each_gradient_by_clamped_cosine_with_the_pre_step_ema():
    beta = 0.5
    param, other = torch.nn.Parameter(torch.zeros(5)), torch.nn.Parameter(torch.zeros(2))
    optimizer = optim.GradientAlignmentOptimizer([param, other], lr=0.1, beta=beta)
    reference = [torch.nn.Parameter(torch.zeros(5)), torch.nn.Parameter(torch.zeros(2))]
    adam = torch.optim.Adam(reference, lr=0.1)

    g1 = torch.tensor([1.0, 2.0, 0.0, 0.0, 0.0])
    g3 = torch.tensor([-1.0, 0.0, 3.0, 0.0, 0.0])
    ema_after_2 = beta * (1 - beta) * g1 + (1 - beta) * -g1
    expected_s3 = torch.dot(g3, ema_after_2) / (g3.norm() * ema_after_2.norm())
    ema_after_3 = beta * ema_after_2 + (1 - beta) * g3
    assert 0 < expected_s3 < 0.2 < torch.dot(g3, ema_after_3) / (g3.norm() * ema_after_3.norm())

    other_grad = torch.tensor([1.0, 1.0])
    # step 1: the EMA is zero, so s = 1; step 2: -g1 opposes the EMA, so s clamps to 0;
    # step 3: s comes from the EMA before the step.
    for grad, expected_scale in [(g1, 1.0), (-g1, 0.0), (g3, expected_s3.item())]:
        param.grad, other.grad = grad.clone(), other_grad.clone()
        optimizer.step()
        torch.testing.assert_close(param.grad, expected_scale * grad)
        torch.testing.assert_close(other.grad, other_grad)  # always aligned with its own EMA
        reference[0].grad, reference[1].grad = expected_scale * grad, other_grad.clone()
        adam.step()
        torch.testing.assert_close(param, reference[0])
    torch.testing.assert_close(optimizer.state[param]["alignment_ema"], ema_after_3)


def test_gns_steps_adam_with_lr_over_total_grad_norm_and_restores_lr():
    generator = torch.Generator().manual_seed(0)
    starts = [torch.randn(4, 3, generator=generator), torch.randn(6, generator=generator)]
    params = [torch.nn.Parameter(start.clone()) for start in starts]
    references = [torch.nn.Parameter(start.clone()) for start in starts]
    lrs, norm_eps = (0.1, 0.01), 1e-3
    groups = [{"params": [params[0]], "lr": lrs[0]}, {"params": [params[1]], "lr": lrs[1]}]
    optimizer = optim.GNSAdam(groups, lr=1.0, norm_eps=norm_eps)
    adam = torch.optim.Adam([{"params": [references[0]]}, {"params": [references[1]]}])
    for _ in range(3):
        grads = [torch.randn(p.shape, generator=generator) * 0.3 for p in params]
        total_norm = math.sqrt(sum(g.double().square().sum().item() for g in grads))
        for param, reference, grad in zip(params, references, grads):
            param.grad, reference.grad = grad.clone(), grad.clone()
        for group, lr in zip(adam.param_groups, lrs):
            group["lr"] = lr / (total_norm + norm_eps)
        optimizer.step()
        adam.step()
        assert [group["lr"] for group in optimizer.param_groups] == list(lrs)
        for param, reference in zip(params, references):
            torch.testing.assert_close(param, reference)


def test_lrg_concatenates_pads_and_reshapes_row_major():
    generator = torch.Generator().manual_seed(0)
    shapes = [(2, 3), (5,), (4,)]  # 10 values with grads -> side 4, 6 zeros of padding
    params = [torch.nn.Parameter(torch.zeros(shape)) for shape in shapes]
    unused = torch.nn.Parameter(torch.zeros(7))  # no gradient: skipped
    optimizer = optim.LRGAdam([params[0], unused, params[2]], rank=1)
    grads = [torch.randn(shape, generator=generator) for shape in shapes]
    params[0].grad, params[2].grad = grads[0].clone(), grads[2].clone()

    optimizer.transform_gradients()

    flat = torch.cat([grads[0].reshape(-1), grads[2]])
    matrix = torch.cat([flat, torch.zeros(16 - flat.numel())]).view(4, 4)
    expected = truncated_svd(matrix, 1).reshape(-1)[: flat.numel()].float()
    torch.testing.assert_close(torch.cat([params[0].grad.reshape(-1), params[2].grad]), expected)
    assert unused.grad is None


@pytest.mark.parametrize("rank", [15, 16, 100])
def test_lrg_rank_at_least_the_side_leaves_gradients_unchanged(rank):
    model = make_model()  # 212 values -> side 15
    inputs, targets = make_batches(1)[0]
    F.cross_entropy(model(inputs), targets).backward()
    before = [p.grad.clone() for p in model.parameters()]
    optim.LRGAdam(model.parameters(), rank=rank).transform_gradients()
    for expected, param in zip(before, model.parameters()):
        assert torch.equal(param.grad, expected)


def test_lrg_needs_one_rank_for_all_groups():
    first, second = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(3))
    optimizer = optim.LRGAdam([{"params": [first]}, {"params": [second], "rank": 2}], rank=1)
    first.grad, second.grad = torch.ones(3), torch.ones(3)
    with pytest.raises(ValueError, match="rank"):
        optimizer.step()


def test_svd_truncates_each_matrix_gradient_and_leaves_other_shapes():
    generator = torch.Generator().manual_seed(0)
    shapes = {"weight": (6, 8), "bias": (6,), "kernel": (2, 3, 4), "thin": (2, 9)}
    params = {key: torch.nn.Parameter(torch.zeros(shape)) for key, shape in shapes.items()}
    grads = {key: torch.randn(shape, generator=generator) for key, shape in shapes.items()}
    for key, param in params.items():
        param.grad = grads[key].clone()
    optimizer = optim.SVDGradientOptimizer(params.values(), rank=2)

    optimizer.transform_gradients()

    weight_grad = params["weight"].grad
    assert torch.linalg.matrix_rank(weight_grad).item() == 2
    torch.testing.assert_close(weight_grad, truncated_svd(grads["weight"], 2).float())
    for key in ("bias", "kernel", "thin"):  # thin: rank 2 >= min(2, 9)
        assert torch.equal(params[key].grad, grads[key])


# --- the truncated SVD of lrg and svd (optim.low_rank) against exact torch.linalg.svd ----------------


def default_mlp_gradients() -> dict[str, torch.Tensor]:
    """Gradients of the default MLP (40 -> 100 -> 100 -> 10) on batches of 100, as lrg and svd see them,
    at initialisation and after 50 Adam steps."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(40, 100),
        torch.nn.ReLU(),
        torch.nn.Linear(100, 100),
        torch.nn.ReLU(),
        torch.nn.Linear(100, 10),
    )
    adam = torch.optim.Adam(model.parameters(), lr=1e-3)
    gradients = {}
    for step in range(51):
        adam.zero_grad()
        F.cross_entropy(model(torch.randn(100, 40)), torch.randint(0, 10, (100,))).backward()
        if step in (0, 50):
            flat = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
            side = math.isqrt(flat.numel() - 1) + 1
            padded = torch.cat([flat, flat.new_zeros(side * side - flat.numel())]).view(side, side)
            gradients[f"lrg matrix, step {step}"] = padded
            gradients[f"hidden weight, step {step}"] = model[2].weight.grad.clone()
            gradients[f"input weight, step {step}"] = model[0].weight.grad.clone()
        adam.step()
    return gradients


def sample_matrices() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    q1, _ = torch.linalg.qr(torch.randn(124, 124, generator=generator))
    q2, _ = torch.linalg.qr(torch.randn(124, 124, generator=generator))
    clustered = torch.cat([torch.ones(15), torch.full((109,), 0.1)])
    clustered += 1e-6 * torch.rand(124, generator=generator)
    low_rank = torch.randn(124, 20, generator=generator) @ torch.randn(20, 124, generator=generator)
    return {
        **default_mlp_gradients(),
        "gaussian": torch.randn(124, 124, generator=generator),
        "wide": torch.randn(30, 124, generator=generator),
        "tall": torch.randn(100, 40, generator=generator),
        "decaying spectrum": q1 @ torch.diag(torch.logspace(0, -6, 124)) @ q2.T,
        "low rank plus noise": low_rank + 1e-3 * torch.randn(124, 124, generator=generator),
        "clustered spectrum": q1 @ torch.diag(clustered) @ q2.T,
        "rank 5": torch.randn(124, 5, generator=generator) @ torch.randn(5, 124, generator=generator),
    }


def matrix_with_singular_values(singular_values: torch.Tensor, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    size = singular_values.numel()
    u, _ = torch.linalg.qr(torch.randn(size, size, generator=generator, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(size, size, generator=generator, dtype=torch.float64))
    return u @ torch.diag(singular_values.double()) @ v.T


def test_low_rank_approximation_matches_exact_truncated_svd():
    for name, matrix in sample_matrices().items():
        for rank in (1, 5, 10, 20, 60, 100, 120, 123):
            if rank >= min(matrix.shape):
                continue
            approximation = low_rank_approximation(matrix, rank)
            assert approximation.dtype == matrix.dtype and approximation.shape == matrix.shape
            error = relative_error(approximation, truncated_svd(matrix, rank))
            assert error <= 1e-4, f"{name}, rank {rank}: relative error {error:.1e}"


def test_low_rank_approximation_is_accurate_where_a_fast_route_alone_would_miss():
    # Inside a cluster of singular values equal to 1e-5 relative, float32 Gram eigenvectors are mixed (the
    # refined route); at a cut between equal singular values the truncation is not unique and a route
    # would pick any one. Without the error check (tolerance=inf) each case misses; with it, the exact
    # SVD is used.
    generator = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(20, 20, generator=generator, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(30, 20, generator=generator, dtype=torch.float64))
    equal_few_rows = u @ torch.diag(torch.tensor([3.0, 2.0, 1.0, 1.0] + [0.5] * 16, dtype=torch.float64)) @ v.T
    equal_many_rows = matrix_with_singular_values(
        torch.cat([torch.linspace(4, 2, 9), torch.ones(2), torch.linspace(0.5, 0.01, 113)]))  # σ_10 = σ_11
    cases = [(sample_matrices()["clustered spectrum"], 110), (equal_few_rows, 3), (equal_many_rows, 10)]
    for matrix, rank in cases:
        reference = truncated_svd(matrix, rank)
        assert relative_error(low_rank_approximation(matrix, rank, tolerance=math.inf), reference) > 1e-4
        assert relative_error(low_rank_approximation(matrix, rank), reference) <= 1e-4


@pytest.mark.parametrize("shape", [(20, 30), (124, 124)])  # the float64 and the subspace-iteration route
def test_low_rank_approximation_passes_non_finite_and_zero_matrices_through(shape):
    for bad in (float("nan"), float("inf")):
        matrix = torch.randn(shape)
        matrix[3, 4] = bad
        torch.testing.assert_close(low_rank_approximation(matrix, 2), matrix, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(low_rank_approximation(torch.zeros(shape), 2), torch.zeros(shape))


def test_low_rank_approximation_is_deterministic():
    # Training must be reproducible: the same matrix gives the same bits, whatever was computed before.
    gradients = default_mlp_gradients()
    for name in ("lrg matrix, step 0", "hidden weight, step 50", "input weight, step 0"):
        first = low_rank_approximation(gradients[name], 10)
        low_rank_approximation(torch.randn(80, 90), 7)
        assert torch.equal(low_rank_approximation(gradients[name], 10), first)


# --- the subspace-iteration route's error check (large matrices, small ranks) ------------------------


def test_subspace_route_estimate_holds_when_the_filter_is_cut_short(monkeypatch):
    # Too few filter degrees leave the block unconverged: whenever the route still answers, its error
    # estimate must have been an upper bound.
    monkeypatch.setattr(optim.low_rank, "FILTER_RETRY_DEGREE", 1)
    gradients = default_mlp_gradients()
    matrices = [gradients["lrg matrix, step 50"], gradients["hidden weight, step 0"]]
    matrices += [sample_matrices()[name] for name in ("gaussian", "decaying spectrum", "low rank plus noise")]
    answered = 0
    for effort in (2.0, 4.0, 6.0, 9.0):
        monkeypatch.setattr(optim.low_rank, "FILTER_EFFORT", effort)
        for matrix in matrices:
            for tolerance in (1e-3, 1e-4, 1e-5):
                result = optim.low_rank._filtered_projection(matrix.double(), matrix.float(), 10, tolerance)
                if result is not None:
                    answered += 1
                    assert relative_error(result, truncated_svd(matrix, 10)) <= tolerance
    assert answered >= 20  # the bound was put to the test


def test_subspace_route_stays_accurate_when_its_block_misses_a_top_direction(monkeypatch):
    # An exactly invariant block without the top singular direction has tiny residuals; only the
    # Cholesky check can notice that an eigenvalue above τ lies outside it.
    matrix = matrix_with_singular_values(torch.logspace(0, -2, 124)).float()
    reference = truncated_svd(matrix, 10)
    u = torch.linalg.svd(matrix.double()).U
    for block in (u[:, :24], u[:, 1:25]):
        monkeypatch.setattr(optim.low_rank, "_chebyshev_basis", lambda *args, block=block: block.clone())
        assert relative_error(low_rank_approximation(matrix, 10), reference) <= 1e-4


def test_batched_truncation_of_members_matches_exact_truncated_svd():
    # Members of one shape with their own ranks, as svd and lrg populations truncate them: those of one
    # rank are truncated together, batched; a member alone with its rank on its own.
    matrices = sample_matrices()
    gradients = default_mlp_gradients()
    groups = [
        [matrices["tall"], gradients["input weight, step 0"], gradients["input weight, step 50"]],
        [matrices["wide"], matrices["wide"].flip(0), 2 * matrices["wide"]],
        [gradients["lrg matrix, step 0"], gradients["lrg matrix, step 50"], matrices["decaying spectrum"]],
        [gradients["hidden weight, step 0"], gradients["hidden weight, step 50"], gradients["hidden weight, step 0"].T],
    ]
    for group in groups:
        for ranks in ([10, 10, 5], [2, 2, 2]):
            stacked = torch.stack(group)
            optim.low_rank.truncate_members(stacked, ranks)
            for member, (matrix, rank) in enumerate(zip(group, ranks)):
                assert relative_error(stacked[member], truncated_svd(matrix, rank)) <= 1e-4, (member, rank)


@pytest.mark.parametrize("shape", [(20, 30), (124, 124)])  # the float64 and the subspace-iteration route
def test_batched_truncation_leaves_non_finite_members_to_the_single_route(shape):
    generator = torch.Generator().manual_seed(0)
    stacked = torch.randn(3, *shape, generator=generator)
    stacked[1, 3, 4] = float("nan")
    expected = [low_rank_approximation(matrix, 2) for matrix in stacked]
    optim.low_rank.truncate_members(stacked, [2, 2, 2])
    for member in range(3):
        torch.testing.assert_close(stacked[member], expected[member], equal_nan=True)
