"""The default run's final phase, as run_all runs it now and as it ran before populations, side by side.

Both variants train the same final runs (every final group of the chosen experiments' plan: each
study's best config over the paired seeds) on one local Ray (`tune.cluster.start_local`, warm
workers), each in a Ray Tune run made by `tune.study.run_trials` with the product's StudyRouter
(waiting runs costliest first) and its ResultLog and FinalsDone callbacks:
- now: one trial per final group, its seeds trained as one population (`tune.trainable`);
- before: one trial per seed, trained alone by `tune.loop.train` (autograd and the optimizer's
  torch.optim class), reporting and checkpointing at the same epochs; the final runs' trainable
  before populations, the only thing this benchmark swaps.

The best configs are a finished run's (`--best-from <run folder>`, its done.json), else lr 1e-3 with
every searched hyperparameter at its default. To cancel the drift of a shared machine the variants
take turns experiment by experiment (a group several experiments share runs with the first), in an
order that alternates; each turn is timed from Tuner start to end.

    python benchmarks/final_phase.py [--cpus 2] [--experiments cgi,lrg] [--best-from results/latest]

The last line is `before_s=<x> now_s=<y> speedup=<before/now>`.
"""
import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tune import cluster  # noqa: E402

cluster.quiet_environment()

import torch  # noqa: E402
from ray import tune as ray_tune  # noqa: E402

import optim  # noqa: E402
from models import load_data  # noqa: E402
from tune import study as tune_study  # noqa: E402
from tune.experiments import builtin_specs  # noqa: E402
from tune.loop import as_tensors, train  # noqa: E402
from tune.pipeline import DoneRecord, FinalsDone, ResultLog  # noqa: E402
from tune.plan import Plan, plan_run  # noqa: E402
from tune.run_folder import DONE_FILE, read_json  # noqa: E402
from tune.trainable import report_with_checkpoint, restored_state, trainable  # noqa: E402


def train_alone(config: dict, datasets: dict) -> None:
    """A final run as before populations: the group's one seed trained alone by tune.loop.train,
    reported (with a checkpoint) at the population trial's epochs, in its format."""
    torch.set_num_threads(1)
    (seed,) = config["seeds"]
    history = []

    def report(metrics: dict, get_state) -> None:
        history.append({**metrics, "seed": seed})
        epoch = metrics["epoch"]
        if epoch in config["report_epochs"] and epoch < config["epochs"] and not metrics["diverged"]:
            report_with_checkpoint({"epoch": epoch, "history": list(history), "reported_at": time.time()}, get_state())
            history.clear()

    rows = train({**config, "seed": seed}, datasets[config["data"]], report, restored_state())
    ray_tune.report({"epoch": rows[-1]["epoch"], "history": history, "reported_at": time.time()})


def one_trial_per_seed(datasets: dict):
    return ray_tune.with_resources(ray_tune.with_parameters(train_alone, datasets=datasets), {"cpu": 1})


def default_best(plan: Plan) -> dict[str, dict]:
    """lr 1e-3 and every other searched hyperparameter at its default, for every study."""
    return {study.name: {name: 1e-3 if name == "lr" else optim.optimizer_info(study.optimizer).hparams[name].default
                         for name in study.space} for study in plan.studies}


def run_finals(plan: Plan, groups: list, best: dict, datasets: dict, folder: Path, per_seed: bool) -> float:
    """Seconds to run `groups` in one Ray Tune run: as populations, or (per_seed) one trial per seed."""
    if per_seed:
        groups = [replace(group, name=f"{group.name}/s{seed}", seeds=[seed]) for group in groups for seed in group.seeds]
    part = Plan(studies=[], finals=groups, datasets=plan.datasets)
    router = tune_study.StudyRouter(part, best, on_study_done=None, finals_done=set(), cpus=tune_study.cluster_cpus())
    folder.mkdir(parents=True)
    tune_study.trainable = one_trial_per_seed if per_seed else trainable  # what run_trials trains
    try:
        started = time.perf_counter()
        tune_study.run_trials(part, folder, datasets, router,
                              [ResultLog(folder), FinalsDone(folder, DoneRecord(folder), part)])
        elapsed = time.perf_counter() - started
    finally:
        tune_study.trainable = trainable
    finished = len(read_json(folder / DONE_FILE, {"finals": {}})["finals"])
    if finished != len(groups):
        sys.exit(f"only {finished} of {len(groups)} final groups finished; their trials are in {folder}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--experiments", default=",".join(builtin_specs()), help="comma-separated (default: all six)")
    parser.add_argument("--best-from", type=Path, help="a finished run folder whose best configs to train")
    args = parser.parse_args()

    specs = builtin_specs()
    plan = plan_run([specs[name] for name in args.experiments.split(",")], base_seed=0)
    best = default_best(plan)
    if args.best_from:
        finished = read_json(args.best_from / DONE_FILE, {"studies": {}})["studies"]
        best.update({name: study["best"] for name, study in finished.items()})
    cluster.start_local(args.cpus)
    datasets = {key: as_tensors(load_data(data)) for key, data in plan.datasets.items()}
    member_epochs = {}
    for group in plan.finals:
        member_epochs.setdefault(group.experiments[0], []).append(len(group.seeds) * group.fixed["epochs"])

    print(f"{len(plan.finals)} final groups, {sum(map(sum, member_epochs.values())):,} member-epochs at most, "
          f"{args.cpus} CPUs, best configs from {args.best_from or 'defaults'}\n")
    print("| experiment | groups | member-epochs | before (s) | now (s) | before / now |")
    print("|---|---:|---:|---:|---:|---:|")
    totals = {"before": 0.0, "now": 0.0}
    root = tempfile.mkdtemp(prefix="final-phase-")
    for turn, experiment in enumerate(member_epochs):
        groups = [group for group in plan.finals if group.experiments[0] == experiment]
        seconds = {}
        for variant in (("before", "now") if turn % 2 == 0 else ("now", "before")):
            seconds[variant] = run_finals(plan, groups, best, datasets, Path(root) / f"{experiment}-{variant}",
                                          per_seed=variant == "before")
            totals[variant] += seconds[variant]
        print(f"| {experiment} | {len(groups)} | {sum(member_epochs[experiment]):,} | {seconds['before']:.1f} | "
              f"{seconds['now']:.1f} | {seconds['before'] / seconds['now']:.2f} |", flush=True)
    shutil.rmtree(root)
    print(f"\nbefore_s={totals['before']:.1f} now_s={totals['now']:.1f} speedup={totals['before'] / totals['now']:.2f}")


if __name__ == "__main__":
    main()
