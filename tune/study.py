"""Every study and final run of a run in ONE Ray Tune run, built on Tune's public extension points.

- `StudyRouter` (a Searcher) asks one seeded OptunaSearch (TPE) per study for each new trial, each
  behind its own ConcurrencyLimiter: a study never has more than `tuning.concurrency` trials
  running, however many CPUs there are, so TPE sees the same experiment on 2 cores or 200; more
  CPUs run more studies at once. When a study's last trial ends, its best config is recorded
  and its final runs are handed out next, while other studies still tune: one population trial
  per final group, or per chunk of its seeds where the cluster has more CPUs than final groups
  (tune.plan.chunks_per_group); of those waiting, the costliest first, so that no long one is left
  running alone at the end.
- `StudySchedulers` (a TrialScheduler) keeps one patient ASHA per study, and none for final runs.

One Tune run pays Ray Tune's fixed costs (start-up, new trial workers) once, not once per study.
"""
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import ray
from ray import tune as ray_tune
from ray.tune.logger import JsonLoggerCallback
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.tune.search.optuna import OptunaSearch

import optim
from tune import ray_internals
from tune.plan import Plan, Study, asha_milestones, chunks_per_group, final_trial_count
from tune.run_folder import TRIALS_FOLDER, trial_name
from tune.space import to_optuna
from tune.trainable import trainable

MAX_FAILURES = 3  # a crashed trial (lost node, killed worker) is retried (a final run from its checkpoint)



class PatientASHA:
    """One study's asynchronous successive halving: at each rung a trial goes on only if its
    objective is within the best 1/reduction_factor of those recorded there before it. No trial
    is cut before `reduction_factor` trials reached the rung: with fewer, Ray's ASHA would compare
    with whatever arrived first, and on a small study a trial would live or die by arrival order."""

    def __init__(self, study: Study):
        self.objective, self.sign = study.objective, 1 if study.budget.mode == "max" else -1
        self.rf = study.budget.reduction_factor
        self.rungs = {milestone: {} for milestone in asha_milestones(study.budget)}

    def decide(self, trial_id: str, result: dict) -> str:
        value = self.sign * result.get(self.objective, math.nan)
        value = value if math.isfinite(value) else math.nan  # nanpercentile ignores it; it never passes
        for milestone in sorted(self.rungs, reverse=True):
            recorded = self.rungs[milestone]
            if result["epoch"] < milestone or trial_id in recorded:
                continue
            earlier = list(recorded.values())
            recorded[trial_id] = value
            if len(earlier) < self.rf:
                return TrialScheduler.CONTINUE
            cutoff = np.nanpercentile(earlier, (1 - 1 / self.rf) * 100)
            return TrialScheduler.STOP if not value >= cutoff else TrialScheduler.CONTINUE
        return TrialScheduler.CONTINUE


def final_cost(config: dict) -> float:
    """A final group's expected cost: members x epochs x its optimizer's step time budget relative to
    Adam's (optim.OptimInfo.step_time_target)."""
    return len(config["seeds"]) * config["epochs"] * optim.optimizer_info(config["optimizer"]).step_time_target


class StudySchedulers(FIFOScheduler):
    """Routes each tuning trial's results to its own study's PatientASHA; final runs run to the end."""

    def __init__(self, studies: list[Study]):
        super().__init__()
        self.asha = {study.name: PatientASHA(study) for study in studies}

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if trial.config.get("phase") != "tune" or result.get("diverged"):
            return TrialScheduler.CONTINUE
        return self.asha[trial.config["study"]].decide(trial.trial_id, result)


class StudyRouter(Searcher):
    """Hands out the trials of every unfinished study, then each study's final runs.

    `on_study_done(study, best_config, results)` is called when a study's last trial ended, with
    each of its trials' last result (trial id -> result, "error" true if it was given up). `cpus`:
    the cluster's, which sets how many trials each final group is split into.
    """

    def __init__(self, plan: Plan, best: dict[str, dict], on_study_done: Callable, finals_done: set[str],
                 cpus: int = 1):
        super().__init__()
        self.studies = [study for study in plan.studies if study.name not in best]
        self.best = dict(best)
        self.on_study_done = on_study_done
        self.searchers = {study.name: ConcurrencyLimiter(
            OptunaSearch(space=to_optuna(study.space), metric=study.objective, mode=study.budget.mode,
                         seed=study.seed), max_concurrent=study.budget.concurrency) for study in self.studies}
        self.issued = {study.name: 0 for study in self.studies}
        self.results: dict[str, dict[str, dict]] = {study.name: {} for study in self.studies}  # last results
        self.finals = [group for group in plan.finals if group.name not in finals_done]
        self.chunks = chunks_per_group(cpus, len(self.finals))
        self.pending_runs: list[dict] = []
        self.trial_study: dict[str, Study] = {}
        self.params: dict[str, dict] = {}  # the searched values of each tuning trial
        self.release_finals()  # of studies a previous attempt finished

    def tuning_trials(self) -> int:
        return sum(study.budget.num_samples for study in self.studies)

    def final_trials(self) -> int:
        return len(self.pending_runs) + final_trial_count(self.finals, self.chunks)

    def total_trials(self) -> int:
        return self.tuning_trials() + self.final_trials()

    def suggest(self, trial_id: str):
        for study in self.studies:
            if self.issued[study.name] == study.budget.num_samples:
                continue
            params = self.searchers[study.name].suggest(trial_id)
            if params is not None:
                self.issued[study.name] += 1
                self.trial_study[trial_id] = study
                self.params[trial_id] = params
                return study.trial_config(params)
        if self.pending_runs:
            # longest first, so that no long population is left running alone at the end
            return self.pending_runs.pop(self.pending_runs.index(max(self.pending_runs, key=final_cost)))
        if not self.finals and all(self.issued[s.name] == s.budget.num_samples for s in self.studies):
            return Searcher.FINISHED
        return None  # wait for a study's trial to end

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.trial_study:
            self.searchers[self.trial_study[trial_id].name].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        study = self.trial_study.pop(trial_id, None)
        if study is None:
            return  # a final run
        name = study.name
        self.searchers[name].on_trial_complete(trial_id, result, error=error)
        self.results[name][trial_id] = {**(result or {}), "params": self.params.pop(trial_id), "error": error}
        if len(self.results[name]) == study.budget.num_samples:
            self.best[name] = best_config(self.results[name], study)
            self.on_study_done(study, self.best[name], self.results[name])
            self.release_finals()

    def release_finals(self) -> None:
        for group in [group for group in self.finals if group.study in self.best]:
            self.pending_runs.extend(group.trial_configs(self.best[group.study], self.chunks))
            self.finals.remove(group)


def best_config(results: dict[str, dict], study: Study) -> dict:
    """The tuned values ("params") of the best trial among those that trained the full budget.

    Trials ASHA stopped early are compared only if none finished: a loss after 3 epochs
    is not comparable with one after 25.
    """
    reported = [result for result in results.values() if result.get("epoch")]
    finished = [result for result in reported if result["epoch"] == study.budget.epochs]
    sign = 1 if study.budget.mode == "min" else -1

    def score(result):
        value = result.get(study.objective, math.nan)
        return sign * value if math.isfinite(value) else math.inf

    best = min(finished or reported or list(results.values()), key=score)
    return best["params"]


def cluster_cpus() -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def run_trials(plan: Plan, folder: Path, datasets: dict, router: StudyRouter, callbacks: list) -> ray_tune.ResultGrid:
    """One Ray Tune run of everything `router` hands out, in `folder`/TRIALS_FOLDER."""
    ray_internals.requeued_trials_survive_late_errors()
    # With a custom searcher Ray Tune keeps one trial pending at a time: a trial waiting for a new
    # worker (a cold node) blocks every other, and the trials then all run on the warm workers.
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", str(cluster_cpus()))
    tuner = ray_tune.Tuner(
        trainable(datasets),
        tune_config=ray_tune.TuneConfig(search_alg=router, scheduler=StudySchedulers(plan.studies),
                                        num_samples=router.total_trials(), reuse_actors=True,
                                        trial_dirname_creator=lambda trial: trial_name(trial.config["phase"], trial.trial_id)),
        run_config=ray_tune.RunConfig(
            name=TRIALS_FOLDER,
            storage_path=str(Path(folder).resolve()),
            verbose=0,
            callbacks=[*callbacks, JsonLoggerCallback()],
            failure_config=ray_tune.FailureConfig(max_failures=MAX_FAILURES),
            checkpoint_config=ray_tune.CheckpointConfig(num_to_keep=1),
        ),
    )
    return tuner.fit()
