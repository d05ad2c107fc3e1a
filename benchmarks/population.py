"""Cost of training one member in a population (tune.loop.train_population) against one single run (train).

For each registered optimizer, on the real mnist1d data (models.DataSpec() defaults) with the default
MLP, batches of 100 and the optimizer's default hyperparameters, in one process with one thread: a
single run of one epoch, and populations of 10 and of 30 members (seeds 1..k) of one epoch, each timed
as a whole call (set-up, the epoch, validation). The three take turns, in an order rotated each repeat;
the ratio (population time / k / single-run time) is taken within each repeat, so that the load of a
shared machine, which drifts, cancels, and the median over repeats is reported.

    python benchmarks/population.py [--repeats N] [--ranks 34 54 72]

--ranks adds lrg and svd rows at those ranks (final runs train the ranks their studies picked, which
take other routes of optim.low_rank than the default 10).

The last line is `per_member_ratio_adam=<x> per_member_ratio_max=<y>` for populations of 10.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import optim  # noqa: E402
from models import DataSpec, load_data  # noqa: E402
from tune.loop import as_tensors, train, train_population  # noqa: E402

SIZES = (10, 30)  # the first is the one each record's member_time_target applies to


def configs(name: str, count: int, hparams: dict) -> list[dict]:
    return [{"optimizer": name, "lr": 1e-3, "seed": seed, "epochs": 1, **hparams} for seed in range(1, count + 1)]


def timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def measure(name: str, hparams: dict, tensors: dict, repeats: int) -> dict:
    """Seconds of a single run and of each population size per repeat, timed in turns."""
    runs = {"single": lambda: train(configs(name, 1, hparams)[0], tensors)}
    runs.update({count: (lambda count=count: train_population(configs(name, count, hparams), tensors))
                 for count in SIZES})
    for run in runs.values():  # warm-up
        run()
    times = {key: [] for key in runs}
    keys = list(runs)
    for repeat in range(repeats):
        shift = repeat % len(keys)
        for key in keys[shift:] + keys[:shift]:
            times[key].append(timed(runs[key]))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of each run (default 5)")
    parser.add_argument("--ranks", type=int, nargs="*", default=[],
                        help="also lrg and svd at these ranks (e.g. those their studies picked); not in the last line")
    args = parser.parse_args()

    torch.set_num_threads(1)
    tensors = as_tensors(load_data(DataSpec()))
    print(f"Medians of {args.repeats} interleaved repeats, 1 thread, MLP 40-100-100-10, batches of 100, "
          f"{len(tensors['y_train'])} training samples, one epoch per call.\n")
    print("| optimizer | single run (ms) | k=10 per member (ms) | ratio k=10 | target | k=30 per member (ms) | ratio k=30 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    ratios = {}
    cases = [(name, {}) for name in optim.REGISTRY] + [(name, {"rank": rank}) for rank in args.ranks for name in ("lrg", "svd")]
    for name, hparams in cases:
        times = measure(name, hparams, tensors, args.repeats)
        single = statistics.median(times["single"])
        per_member = {count: statistics.median(times[count]) / count for count in SIZES}
        ratio = {count: statistics.median(population / count / one for population, one in zip(times[count], times["single"]))
                 for count in SIZES}
        over = goal = ""
        if not hparams:  # the targets are for the default hyperparameters
            target = optim.optimizer_info(name).member_time_target
            ratios[name], goal = ratio[10], f"<= {target:.2f}"
            over = "" if ratio[10] <= target else " (over)"
        label = name + "".join(f" {key}={value}" for key, value in hparams.items())
        print(f"| {label} | {single * 1e3:.1f} | {per_member[10] * 1e3:.1f} | {ratio[10]:.2f}{over} | {goal} | "
              f"{per_member[30] * 1e3:.1f} | {ratio[30]:.2f} |", flush=True)
    print(f"\nper_member_ratio_adam={ratios['adam']:.3f} per_member_ratio_max={max(ratios.values()):.3f}")


if __name__ == "__main__":
    main()
