"""The work of a run, planned from its experiment specs before anything starts.

A study is one tuning run of one optimizer: (experiment protocol, optimizer, repeat). A final group
is the paired final runs of one study's best config. Work that is the same in several experiments
(the same data, model, search space, budget, search seed and repeat; e.g. Adam under the cgi
protocol, which cgi, gao and the benchmark share) is planned once, under a content key, and
listed with every experiment that contains it.
"""
import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np

from tune.experiments import ExperimentSpec, StudyBudget

FINAL_REPORT_EVERY = 10  # epochs between a final run's reports (and checkpoints)
# For the time estimate of a plan, measured in the default run on the 2-core reference machine
# (2026-12-01, README): CPU seconds per tuning epoch, overheads included; the share of the tuning
# epochs ASHA lets trials train; CPU seconds per epoch of one member of a final population.
TUNING_EPOCH_CPU_S = 0.044
ASHA_SHARE = 0.39
FINAL_MEMBER_EPOCH_CPU_S = 0.027
RUN_FIXED_S = 20  # starting Ray and warm workers, writing the report


def content_key(value) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def search_seed(base_seed: int, repeat: int) -> int:
    """Repeat r's seed of the search and of its tuning runs, derived from --seed and r alone."""
    return int(np.random.SeedSequence([base_seed, repeat]).generate_state(1)[0] % 2**31)


def final_seeds(spec: ExperimentSpec, base_seed: int) -> list[int]:
    """Seed i gives every optimizer and every repeat the same initial weights and batch order;
    the tuning trials use seeds derived otherwise, so the final runs are fresh draws."""
    return [base_seed + 1 + i for i in range(spec.final.seeds)]


def asha_milestones(budget: StudyBudget) -> list[int]:
    """The epochs at which ASHA compares trials: grace_period * reduction_factor**k below the budget."""
    milestones, epoch = [], budget.grace_period
    while epoch < budget.epochs:
        milestones.append(epoch)
        epoch *= budget.reduction_factor
    return milestones


@dataclass
class Study:
    name: str  # "<experiment>/<optimizer>/r<repeat>" of the first experiment that contains it
    key: str
    experiments: list
    optimizer: str
    repeat: int
    space: dict  # data, see tune.space
    budget: StudyBudget
    objective: str  # the result key the search optimises (ExperimentSpec.objective)
    seed: int  # of the search and of the tuning runs
    data: str  # key of the dataset (see Plan.datasets)
    fixed: dict  # every config key of a trial but the searched ones

    def trial_config(self, params: dict) -> dict:
        return {**self.fixed, **params, "phase": "tune", "study": self.name, "repeat": self.repeat,
                "experiments": self.experiments, "data": self.data}


@dataclass
class FinalGroup:
    name: str  # "<experiment>/<optimizer>/r<repeat>" of the first experiment that contains it
    key: str
    experiments: list
    study: str  # the name of the study whose best config it trains
    repeat: int
    seeds: list
    data: str
    fixed: dict  # the final runs' config without the tuned values and the seed

    def trial_configs(self, best: dict, chunks: int = 1) -> list[dict]:
        """One trial per chunk of the seeds (seed_chunks), each training its seeds as one population
        (tune.loop.train_population)."""
        return [{**self.fixed, **best, "seeds": seeds, "phase": "final", "study": self.name, "repeat": self.repeat,
                 "experiments": self.experiments, "data": self.data} for seeds in seed_chunks(self.seeds, chunks)]


def seed_chunks(seeds: list, chunks: int) -> list[list]:
    """`seeds` in `chunks` contiguous parts whose sizes differ by at most one; fewer parts if there are
    fewer seeds."""
    count = max(1, min(chunks, len(seeds)))
    size, extra = divmod(len(seeds), count)
    bounds = [index * size + min(index, extra) for index in range(count + 1)]
    return [seeds[start:end] for start, end in zip(bounds, bounds[1:])]


def final_trial_count(groups: list, chunks: int) -> int:
    """How many trials final `groups` are handed out as, each split into `chunks` (seed_chunks)."""
    return sum(len(seed_chunks(group.seeds, chunks)) for group in groups)


def chunks_per_group(cpus: int, groups: int) -> int:
    """Trials per final group: one, or where the cluster has more CPUs than final groups, as many as
    keep every CPU training. A member trains the same in any population (tune.loop.train_population),
    so the results do not depend on it."""
    return max(1, cpus // max(1, groups))


@dataclass
class Plan:
    studies: list
    finals: list
    datasets: dict  # data key -> DataSpec

    def summary(self, cpus: int) -> str:
        """The plan in one line: its size, its epochs at most, and about how long it takes on `cpus`."""
        trials = sum(study.budget.num_samples for study in self.studies)
        tuning_epochs = sum(study.budget.num_samples * study.budget.epochs for study in self.studies)
        runs = sum(len(group.seeds) for group in self.finals)
        final_epochs = sum(len(group.seeds) * group.fixed["epochs"] for group in self.finals)
        seconds = RUN_FIXED_S + (tuning_epochs * ASHA_SHARE * TUNING_EPOCH_CPU_S + final_epochs * FINAL_MEMBER_EPOCH_CPU_S) / cpus
        experiments = {name for study in self.studies for name in study.experiments}
        populations = final_trial_count(self.finals, chunks_per_group(cpus, len(self.finals)))
        return (f"plan: {len(experiments)} experiments, {len(self.studies)} studies, {trials:,} tuning trials, "
                f"{runs:,} final runs in {populations} populations; at most {tuning_epochs + final_epochs:,} "
                f"epochs; about {_duration(seconds)} on {cpus} CPUs")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def plan_run(specs: list[ExperimentSpec], base_seed: int) -> Plan:
    studies: dict[str, Study] = {}
    finals: dict[str, FinalGroup] = {}
    datasets = {}
    for spec in specs:
        data = spec.data.key()
        datasets[data] = spec.data
        model = {**spec.fixed_config(), "data": asdict(spec.data)}
        for optimizer, space in spec.optimizers.items():
            for repeat in range(spec.tuning.repeats):
                seed = search_seed(base_seed, repeat)
                budget = spec.tuning
                key = content_key([model, optimizer, space, asdict(budget), spec.objective, seed, repeat])
                name = f"{spec.name}/{optimizer}/r{repeat}"
                # "imports": the modules a trial's worker imports to register the optimizer (tune.trainable)
                shared = {**spec.fixed_config(), "optimizer": optimizer, "imports": list(spec.imports)}
                fixed = {**shared, "seed": seed, "epochs": budget.epochs, "eval_test": False, "checkpoint": False,
                         "report_epochs": asha_milestones(budget) + [budget.epochs]}
                study = studies.setdefault(key, Study(name, key, [], optimizer, repeat, space, budget,
                                                      spec.objective, seed, data, fixed))
                study.experiments.append(spec.name)

                seeds = final_seeds(spec, base_seed)
                final_key = content_key([key, spec.final.epochs, seeds])
                final_fixed = {**shared, "epochs": spec.final.epochs, "eval_test": True, "eval_initial": True,
                               "checkpoint": True,
                               "report_epochs": list(range(0, spec.final.epochs + 1, FINAL_REPORT_EVERY))}
                group = finals.setdefault(final_key, FinalGroup(name, final_key, [], study.name, repeat, seeds,
                                                                data, final_fixed))
                group.experiments.append(spec.name)
    return Plan(list(studies.values()), list(finals.values()), datasets)
