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
# the run folder's own subfolders (layout: tune.pipeline)
TRIALS_FOLDER = "trials"  # Ray Tune's experiment folder of the run's trials
RESULTS_FOLDER = "results"  # our own log of every trial's reports (tune.pipeline.ResultLog)


def trial_name(config: dict, trial_id: str) -> str:
    """A trial's folder (Ray Tune's) and results file (ours): tune-<id> or final-<id>."""
    return f"{config['phase']}-{trial_id}"


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

    def trial_config(self, best: dict) -> dict:
        """One trial trains every seed of the group, as one population (tune.loop.train_population)."""
        return {**self.fixed, **best, "seeds": self.seeds, "phase": "final", "study": self.name, "repeat": self.repeat,
                "experiments": self.experiments, "data": self.data}


@dataclass
class Plan:
    studies: list
    finals: list
    datasets: dict  # data key -> DataSpec


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
