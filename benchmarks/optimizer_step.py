"""Per-step time of each registered optimizer relative to Adam, on the default MLP and batches of 100,
against its record's step_time_target (optim.REGISTRY).

Every optimizer trains its own copy of the MLP (40 -> 100 -> 100 -> 10, ReLU) in one process with one
thread. The optimizers take turns step by step, in an order rotated each round so drift and ordering
cancel, and medians are compared. Two measures per optimizer: a full training step
(zero_grad + forward + backward + step) and step() alone (gradient transform + base optimizer step).
For scale, it then times the dense decompositions lrg and svd are built on, applied to the 124 x 124
matrix lrg makes of the MLP's gradient.

    python benchmarks/optimizer_step.py [--steps N]
"""

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import optim  # noqa: E402

WARMUP_STEPS = 20
BATCH_SIZE = 100
DISTINCT_BATCHES = 32  # cycled, so that gradients keep changing as in real training


def make_mlp() -> torch.nn.Sequential:
    return torch.nn.Sequential(
        torch.nn.Linear(40, 100),
        torch.nn.ReLU(),
        torch.nn.Linear(100, 100),
        torch.nn.ReLU(),
        torch.nn.Linear(100, 10),
    )


def timed_step(model, optimizer, inputs, targets) -> tuple[int, int, float]:
    """One training step; returns (full step ns, step() ns, loss)."""
    start = time.perf_counter_ns()
    optimizer.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(inputs), targets)
    loss.backward()
    before_step = time.perf_counter_ns()
    optimizer.step()
    end = time.perf_counter_ns()
    return end - start, end - before_step, loss.item()


def lrg_matrix(model, inputs, targets) -> torch.Tensor:
    """The MLP's gradient, flattened, zero-padded and reshaped to a square as lrg does."""
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(inputs), targets).backward()
    flat = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    side = math.isqrt(flat.numel() - 1) + 1
    return torch.cat([flat, flat.new_zeros(side * side - flat.numel())]).view(side, side)


def timed_ns(function, *args) -> int:
    start = time.perf_counter_ns()
    function(*args)
    return time.perf_counter_ns() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="timed steps per optimizer (default 400)")
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    initial_model = make_mlp()
    batches = [
        (torch.randn(BATCH_SIZE, 40), torch.randint(0, 10, (BATCH_SIZE,))) for _ in range(DISTINCT_BATCHES)
    ]
    matrix = lrg_matrix(initial_model, *batches[0])
    references = {
        "torch.linalg.svd": lambda: torch.linalg.svd(matrix, full_matrices=False),
        "torch.linalg.eigh of A Aᵀ": lambda: torch.linalg.eigh(matrix @ matrix.T),
        "optim.low_rank_approximation, rank 10": lambda: optim.low_rank_approximation(matrix, 10),
    }

    names = list(optim.REGISTRY)
    step_targets = {name: info.step_time_target for name, info in optim.REGISTRY.items()}
    runs = {}
    for name in names:
        model = make_mlp()
        model.load_state_dict(initial_model.state_dict())
        runs[name] = (model, optim.build_optimizer(name, model.parameters(), args.lr))
    full_ns = {name: [] for name in names}
    step_ns = {name: [] for name in names}
    reference_ns = {label: [] for label in references}
    losses = {name: [] for name in names}

    for round_index in range(WARMUP_STEPS + args.steps):
        inputs, targets = batches[round_index % DISTINCT_BATCHES]
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            full, step, loss = timed_step(*runs[name], inputs, targets)
            losses[name].append(loss)
            if round_index >= WARMUP_STEPS:
                full_ns[name].append(full)
                step_ns[name].append(step)
    # Timed after the optimizers, so as not to disturb them.
    for round_index in range(WARMUP_STEPS + args.steps):
        for label, function in references.items():
            elapsed = timed_ns(function)
            if round_index >= WARMUP_STEPS:
                reference_ns[label].append(elapsed)

    full_us = {name: statistics.median(full_ns[name]) / 1e3 for name in names}
    step_us = {name: statistics.median(step_ns[name]) / 1e3 for name in names}
    print(
        f"Median over {args.steps} interleaved steps, 1 thread, MLP 40-100-100-10, "
        f"batches of {BATCH_SIZE} random samples."
    )
    print("Target applies to the full training step (zero_grad + forward + backward + step).\n")
    print("| optimizer | full step (µs) | full step / Adam | target | step() alone (µs) | step() / Adam |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in names:
        print(
            f"| {name} | {full_us[name]:.0f} | {full_us[name] / full_us['adam']:.2f}x | "
            f"<= {step_targets[name]:.2f}x | {step_us[name]:.0f} | {step_us[name] / step_us['adam']:.2f}x |"
        )
    print(f"\nFor scale, on lrg's {matrix.shape[0]} x {matrix.shape[1]} gradient matrix:\n")
    print("| computation | µs | in Adam step() times |")
    print("|---|---:|---:|")
    for label, times in reference_ns.items():
        median_us = statistics.median(times) / 1e3
        print(f"| {label} | {median_us:.0f} | {median_us / step_us['adam']:.2f} |")
    print()
    for name in names:
        ratio = full_us[name] / full_us["adam"]
        verdict = "ok" if ratio <= step_targets[name] or name == "adam" else "OVER TARGET"
        print(
            f"{name}: full step {ratio:.2f}x Adam (target <= {step_targets[name]:.2f}x, {verdict}), "
            f"step() {step_us[name] / step_us['adam']:.2f}x, "
            f"loss {losses[name][0]:.4f} -> {losses[name][-1]:.4f} after {len(losses[name])} steps"
        )


if __name__ == "__main__":
    main()
