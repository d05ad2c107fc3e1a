"""Ray Tune runs: a tuning study (OptunaSearch TPE + ASHA) and the paired final runs."""
import math
from pathlib import Path

from ray import tune
from ray.tune.logger import JsonLoggerCallback
from ray.tune.schedulers import ASHAScheduler
from ray.tune.schedulers.async_hyperband import _Bracket
from ray.tune.search.optuna import OptunaSearch

from tune.experiments import StudyBudget
from tune.progress import Progress
from tune.space import to_tune
from tune.trainable import trainable

MAX_FAILURES = 3  # a crashed trial (lost node, killed worker) is retried (a final run from its checkpoint)
FINAL_REPORT_EVERY = 10  # epochs between a final run's reports (and checkpoints)


def asha_milestones(budget: StudyBudget) -> list[int]:
    """The epochs at which ASHA (one bracket) compares trials, as ASHAScheduler derives them."""
    rungs = int(math.log(budget.epochs / budget.grace_period) / math.log(budget.reduction_factor) + 1)
    return [budget.grace_period * budget.reduction_factor ** k for k in range(rungs)]


class _PatientBracket(_Bracket):
    def cutoff(self, recorded):
        # No cut until `rf` trials reached the rung: Ray's ASHA compares with whatever arrived
        # first, so on a small study the second trial at a rung lives or dies by arrival order.
        return super().cutoff(recorded) if len(recorded) >= self.rf else None


class PatientASHA(ASHAScheduler):
    """ASHA that stops no trial at a rung before `reduction_factor` trials have reached it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for bracket in self._brackets:
            bracket.__class__ = _PatientBracket


def run_config(name: str, storage: Path, progress: Progress) -> tune.RunConfig:
    return tune.RunConfig(
        name=name,
        storage_path=str(Path(storage).resolve()),
        verbose=0,
        callbacks=[progress, JsonLoggerCallback()],
        failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
    )


def run_study(name: str, storage: Path, data, space: dict, fixed: dict, budget: StudyBudget,
              seed: int, max_concurrent: int | None, label: str = "", reuse_actors: bool = True) -> tune.ResultGrid:
    """Tune `space` (data, see tune.space) with every other config key taken from `fixed`.

    The search sees the validation split only. `max_concurrent` should be the CPUs available:
    without it OptunaSearch keeps a single trial pending and the other cores idle.
    (`fixed` may override "report_epochs"; `reuse_actors=False` is only for measuring.)
    """
    progress = Progress(label or name, budget.num_samples, budget.metric, budget.mode, budget.epochs)
    tuner = tune.Tuner(
        trainable(data),
        param_space={"report_epochs": asha_milestones(budget) + [budget.epochs], "checkpoint": False, **fixed,
                     "epochs": budget.epochs, "eval_test": False, **to_tune(space)},
        tune_config=tune.TuneConfig(
            metric=budget.metric,
            mode=budget.mode,
            search_alg=OptunaSearch(seed=seed),  # TPE is Optuna's default sampler
            scheduler=PatientASHA(time_attr="epoch", max_t=budget.epochs,
                                    grace_period=budget.grace_period, reduction_factor=budget.reduction_factor),
            num_samples=budget.num_samples,
            max_concurrent_trials=max_concurrent,
            reuse_actors=reuse_actors,
        ),
        run_config=run_config(name, storage, progress),
    )
    return tuner.fit()


def run_final(name: str, storage: Path, data, runs: list[dict], max_concurrent: int,
              label: str = "") -> tune.ResultGrid:
    """Train each full config in `runs` once (no search, no early stopping)."""
    progress = Progress(label or name, len(runs), "val_loss", "min", max(run["epochs"] for run in runs))
    runs = [{**run, "report_epochs": list(range(0, run["epochs"] + 1, FINAL_REPORT_EVERY))} for run in runs]
    tuner = tune.Tuner(
        trainable(data),
        param_space={"run": tune.grid_search(runs)},
        tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent, reuse_actors=True),
        run_config=run_config(name, storage, progress),
    )
    return tuner.fit()


def best_config(results: tune.ResultGrid, budget: StudyBudget, space: dict) -> dict:
    """The tuned values of the best trial among those that trained the full budget.

    Trials ASHA stopped early are compared only if none finished: a loss after 3 epochs
    is not comparable with one after 25.
    """
    finished = [r for r in results if r.metrics and r.metrics.get("epoch") == budget.epochs]
    candidates = finished or [r for r in results if r.metrics]
    sign = 1 if budget.mode == "min" else -1

    def score(result):
        value = result.metrics.get(budget.metric, math.nan)
        return sign * value if math.isfinite(value) else math.inf

    best = min(candidates, key=score)
    return {key: best.config[key] for key in space}
