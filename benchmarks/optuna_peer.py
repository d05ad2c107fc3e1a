"""The plain-Optuna peer of `run_all.py --experiments cgi`, and both timed as a user runs them.

The peer is what a skilled Optuna user would write for the cgi protocol without Ray: two worker
processes share one Optuna JournalStorage file; each study (adam, then cgi) gets the spec's 30
trials of 25 epochs from a seeded TPE sampler per worker and a MedianPruner, with the spec's search
spaces (tune.space.to_optuna) and objective (ExperimentSpec.objective: the best validation loss so
far), reported every epoch; then each study's best config is trained over the spec's 10 paired
seeds for 50 epochs in a two-process pool. The peer trains with the project's data and
`tune.loop.train`, the plain PyTorch loop (autograd, the optimizer's torch.optim wrapper) a user's
script would have; run_all.py trains every trial through `tune.loop.train_population` (a tuning
trial as a population of one, the final runs as one population per study).

Each side is timed from process start to exit: the peer as `optuna_peer.py --peer-only`, ours as
`run_all.py OURS_ARGS --output <tmp>`. The last line printed is
    peer_s=<peer wall s> ours_s=<ours wall s> ratio=<ours/peer>

    python benchmarks/optuna_peer.py                 # both
    python benchmarks/optuna_peer.py --skip-ours     # the peer only
"""
import argparse
import math
import multiprocessing
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OURS_ARGS = "--experiments cgi --cpus 2 --repeats 1"
EXPERIMENT = "cgi"
WORKERS = 2

_data = None  # each worker process's tensors (pool initializer)


def _start_worker(spec) -> None:
    global _data
    import torch

    from models import load_data
    from tune.loop import as_tensors

    torch.set_num_threads(1)
    _data = as_tensors(load_data(spec.data))


def suggest(trial, distributions: dict) -> dict:
    """Draw each hyperparameter from its Optuna distribution through the public suggest API."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    params = {}
    for name, dist in distributions.items():
        if isinstance(dist, IntDistribution):
            params[name] = trial.suggest_int(name, dist.low, dist.high, log=dist.log)
        elif isinstance(dist, CategoricalDistribution):
            params[name] = trial.suggest_categorical(name, dist.choices)
        else:
            params[name] = trial.suggest_float(name, dist.low, dist.high, log=dist.log)
    return params


def tune_worker(spec, optimizer: str, worker: int, journal: str, seed: int) -> None:
    """One worker's share of one study's trials."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from tune.loop import train
    from tune.space import to_optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    budget, distributions = spec.tuning, to_optuna(spec.optimizers[optimizer])
    sign = 1 if budget.mode == "min" else -1
    keep_best = spec.objective != budget.metric  # "best_val_loss": best so far, as our trials report

    def objective(trial):
        config = {**spec.fixed_config(), "optimizer": optimizer, **suggest(trial, distributions),
                  "epochs": budget.epochs, "seed": seed}
        value = math.inf * sign

        def on_epoch(metrics, get_state):
            nonlocal value
            current = metrics[budget.metric]
            value = min(value, current, key=lambda v: sign * v) if keep_best else current
            trial.report(value, metrics["epoch"])
            if trial.should_prune():
                raise optuna.TrialPruned()

        train(config, _data, on_epoch)
        return value

    study = optuna.load_study(study_name=optimizer, storage=JournalStorage(JournalFileBackend(journal)),
                              sampler=optuna.samplers.TPESampler(seed=seed + worker), pruner=optuna.pruners.MedianPruner())
    share = budget.num_samples // WORKERS + (worker < budget.num_samples % WORKERS)
    study.optimize(objective, n_trials=share)


def final_run(config: dict) -> dict:
    from tune.loop import train

    return {"optimizer": config["optimizer"], "seed": config["seed"], **train(config, _data)[-1]}


def run_peer(journal: str, seed: int) -> None:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from tune.experiments import builtin_specs

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = builtin_specs()[EXPERIMENT]
    storage = JournalStorage(JournalFileBackend(journal))
    direction = "minimize" if spec.tuning.mode == "min" else "maximize"
    for optimizer in spec.optimizers:
        optuna.create_study(study_name=optimizer, storage=storage, direction=direction)
    started = time.perf_counter()
    with multiprocessing.Pool(WORKERS, initializer=_start_worker, initargs=(spec,)) as pool:
        pool.starmap(tune_worker, [(spec, optimizer, worker, journal, seed)
                                   for optimizer in spec.optimizers for worker in range(WORKERS)])
        tuned = time.perf_counter()
        best = {}
        for optimizer in spec.optimizers:
            study = optuna.load_study(study_name=optimizer, storage=storage)
            states = [trial.state.name for trial in study.trials]
            best[optimizer] = study.best_trial.params
            print(f"peer tune {optimizer}: {len(states)} trials ({states.count('PRUNED')} pruned), "
                  f"best {spec.objective} {study.best_value:.4f} with {best[optimizer]}")
        runs = [{**spec.fixed_config(), "optimizer": optimizer, **best[optimizer], "epochs": spec.final.epochs,
                 "seed": seed + 1 + i, "eval_test": True, "eval_initial": True}
                for optimizer in spec.optimizers for i in range(spec.final.seeds)]
        results = pool.map(final_run, runs)
    for optimizer in spec.optimizers:
        losses = [result["test_loss"] for result in results if result["optimizer"] == optimizer]
        print(f"peer final {optimizer}: mean test loss {sum(losses) / len(losses):.4f} over {len(losses)} seeds")
    print(f"peer: tuning {tuned - started:.1f} s, final runs {time.perf_counter() - tuned:.1f} s")


def timed(command: list[str]) -> float:
    """Wall seconds of `command` from process start to exit; its output passes through."""
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"optuna_peer.py: {shlex.join(command)} failed with exit code {done.returncode}")
    return wall


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ours-args", default=OURS_ARGS, help=f"run_all.py's arguments, --output added (default: {OURS_ARGS})")
    parser.add_argument("--skip-ours", action="store_true", help="time the peer only")
    parser.add_argument("--seed", type=int, default=0, help="seeds the samplers and the runs, as run_all.py's (default: 0)")
    parser.add_argument("--peer-only", metavar="JOURNAL", help=argparse.SUPPRESS)  # the timed peer process
    args = parser.parse_args(argv)
    if args.peer_only:
        run_peer(args.peer_only, args.seed)
        return 0
    with tempfile.TemporaryDirectory(prefix="optuna-peer-") as folder:
        peer_s = timed([sys.executable, __file__, "--peer-only", str(Path(folder) / "peer.journal"), "--seed", str(args.seed)])
        print(f"peer (plain Optuna, {WORKERS} processes): {peer_s:.1f} s")
        if args.skip_ours:
            print(f"peer_s={peer_s:.1f} ours_s=- ratio=-")
            return 0
        ours_s = timed([sys.executable, "run_all.py", *shlex.split(args.ours_args), "--output", str(Path(folder) / "ours")])
        print(f"ours (run_all.py {args.ours_args}): {ours_s:.1f} s")
        print(f"peer_s={peer_s:.1f} ours_s={ours_s:.1f} ratio={ours_s / peer_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
