"""Does Ray Tune pay for itself on tiny mnist1d trials? Side by side in one process tree:

  (a) the write-ups' plain sequential Optuna study: TPE (seeded), no pruning, one process,
      one thread, the project's own train loop;
  (b) the project's Ray Tune study (OptunaSearch TPE + ASHA) with the same budget on --cpus CPUs.

Prints wall times, speedup wall(a)/wall(b), Tune CPU efficiency = sum of in-trial train time /
(wall(b) x CPUs), epochs trained and the best validation loss of each, then one summary line.
In-trial train time is the time spent inside the train loop: per trial, Ray Tune's own
time_total_s for (b) and the duration of each `train` call for (a).

Ray's start-up is timed apart: a cluster is started once per run_all.py, not once per study,
and it warms one trial worker per CPU (tune.warm). Only the first study of a cluster finds warm
workers; --levers measures Ray Tune as its docs show it, then adds our levers one at a time,
on cold workers, and finally again with warm ones.

    python benchmarks/tune_overhead.py --cpus 2
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import optuna  # noqa: E402
import torch  # noqa: E402

from analysis.load import curves_from_ray  # noqa: E402
from models import load_data  # noqa: E402
from tune.experiments import StudyBudget  # noqa: E402
from tune.loop import as_tensors, train  # noqa: E402

LR = {"type": "loguniform", "low": 1e-5, "high": 1e-1}


def plain_optuna(data, trials: int, epochs: int, seed: int) -> dict:
    """The seeds' loop: every trial trains to the end, one after another."""
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    train_time = 0.0

    def objective(trial):
        nonlocal train_time
        lr = trial.suggest_float("lr", LR["low"], LR["high"], log=True)
        started = time.perf_counter()
        history = train({"optimizer": "adam", "lr": lr, "epochs": epochs, "seed": seed}, data)
        train_time += time.perf_counter() - started
        return history[-1]["val_loss"]

    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    started = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    wall = time.perf_counter() - started
    return {"wall": wall, "cpus": 1, "train_time": train_time, "epochs": trials * epochs, "best": study.best_value}


# Ray Tune set up as its docs show it, then each lever of ours added in turn (--levers).
DOCS_STYLE = dict(reuse_actors=False, max_concurrent=None, every_epoch=True, checkpoint=True, all_loggers=True)
LEVERS = {
    "docs style: no actor reuse": {},
    "+ reuse_actors": dict(reuse_actors=True),
    "+ max_concurrent_trials=CPUs": dict(max_concurrent="cpus"),
    "+ report at ASHA rungs only": dict(every_epoch=False),
    "+ no checkpoints when tuning": dict(checkpoint=False),
    "+ JSON logger only": dict(all_loggers=False),
}


def cumulative_levers() -> dict[str, dict]:
    settings, levers = dict(DOCS_STYLE), {}
    for name, lever in LEVERS.items():
        settings = {**settings, **lever}
        levers[name] = settings
    return levers


def ray_tune(data, trials: int, epochs: int, seed: int, cpus: int, reuse_actors=True, max_concurrent="cpus",
             every_epoch=False, checkpoint=False, all_loggers=False, warm=False, label="(b) Ray Tune",
             grace_period=1, reduction_factor=3) -> dict:
    from tune.cluster import warm_trial_workers
    from tune.study import best_config, run_study

    if warm:
        warm_trial_workers(cpus)

    budget = StudyBudget(num_samples=trials, epochs=epochs, grace_period=grace_period, reduction_factor=reduction_factor)
    fixed = {"optimizer": "adam", "seed": seed, "checkpoint": checkpoint,
             **({"report_epochs": None} if every_epoch else {})}
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "0" if all_loggers else "1"
    with tempfile.TemporaryDirectory() as storage:
        started = time.perf_counter()
        results = run_study("tune-adam", Path(storage), data, {"lr": LR}, fixed, budget, seed,
                            cpus if max_concurrent == "cpus" else max_concurrent, label=label, reuse_actors=reuse_actors)
        wall = time.perf_counter() - started
        epochs_trained = len(curves_from_ray(Path(storage) / "tune-adam", "benchmark", "tune"))
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    best_lr = best_config(results, budget, {"lr": LR})["lr"]
    best = min(r.metrics["val_loss"] for r in results if r.config["lr"] == best_lr)
    # Tune's own clock of each trial: time inside the train loop, between its start and last report
    train_time = sum(r.metrics["time_total_s"] for r in results)
    return {"wall": wall, "cpus": cpus, "train_time": train_time, "epochs": epochs_trained, "best": best}


def efficiency(row: dict) -> float:
    return row["train_time"] / (row["wall"] * row["cpus"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpus", type=int, default=2, help="CPUs for the Ray Tune study (b)")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grace-period", type=int, default=StudyBudget.grace_period, help="ASHA grace period of (b)")
    parser.add_argument("--reduction-factor", type=int, default=StudyBudget.reduction_factor, help="ASHA reduction factor of (b)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of (b), each on freshly warmed workers; the table shows the median")
    parser.add_argument("--levers", action="store_true", help="also time Tune as its docs show it, adding our levers one by one")
    args = parser.parse_args()

    data = as_tensors(load_data())
    plain = plain_optuna(data, args.trials, args.epochs, args.seed)

    from tune.cluster import quiet_environment, start_local
    quiet_environment()
    started = time.perf_counter()
    start_local(args.cpus)
    ray_start = time.perf_counter() - started
    repeats = [ray_tune(data, args.trials, args.epochs, args.seed, args.cpus, warm=repeat > 0,
                        grace_period=args.grace_period, reduction_factor=args.reduction_factor)
               for repeat in range(args.repeats)]
    tuned = sorted(repeats, key=lambda row: row["wall"])[len(repeats) // 2]
    # Every study after the first of a cluster starts new, cold workers (see tune.warm)
    levers = {name: ray_tune(data, args.trials, args.epochs, args.seed, args.cpus, label=name, **settings)
              for name, settings in cumulative_levers().items()} if args.levers else {}
    if levers:
        levers["+ warm workers (= ours)"] = ray_tune(data, args.trials, args.epochs, args.seed, args.cpus,
                                                     label="warm", warm=True)

    print(f"\n{args.trials} Adam trials x {args.epochs} epochs, lr 1e-5..1e-1 log (Ray start-up with warm workers, not counted: {ray_start:.1f} s)")
    print(f"{'':34s}{'wall s':>8s}{'CPUs':>6s}{'train s':>9s}{'efficiency':>12s}{'epochs':>8s}{'best val loss':>15s}")
    rows = {"(a) plain Optuna loop": plain, **{f"    {name}": row for name, row in levers.items()},
            f"(b) ours, median of {len(repeats)}": tuned}
    for name, row in rows.items():
        print(f"{name:34s}{row['wall']:8.2f}{row['cpus']:6d}{row['train_time']:9.2f}{efficiency(row):12.2f}"
              f"{row['epochs']:8d}{row['best']:15.4f}")
    print("(b) each run: " + ", ".join(f"{row['wall']:.2f} s at efficiency {efficiency(row):.2f}" for row in repeats))
    speedup = plain["wall"] / tuned["wall"]
    print(f"speedup={speedup:.2f} efficiency={efficiency(tuned):.2f} best_ratio={tuned['best'] / plain['best']:.4f}")


if __name__ == "__main__":
    main()
