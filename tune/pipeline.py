"""A run end to end: every study and final run of its experiments in one Ray Tune run.

Finished studies and final groups are never re-run. What a killed run left unfinished starts
again from its first trial: a study or a final run takes seconds, and a new Tune run that
continues no searcher state cannot restore half of one wrongly. Its results and Ray Tune's
folder are moved, not deleted, to interrupted/, where the results loader does not look.

The results are written by the driver as each report arrives (Ray Tune's own result.json files
reach trials/ only when Ray syncs its staging folder, so a killed run may not have them), and a
study or final group is recorded in done.json only once every epoch each of its trials reported
is found in them on disk. A write that fails ends the run (tune.ending); --resume continues it.
The folder's layout: tune.run_folder.
"""
import json
import sys
from pathlib import Path

from ray import tune as ray_tune

from models import load_data
from tune.ending import EXIT_WRITE_FAILED, end_run, ending_on_write_failure
from tune.experiments import ExperimentSpec
from tune.loop import as_tensors
from tune.plan import Plan, Study, plan_run
from tune.progress import Progress
from tune.run_folder import (BEST_FILE, DONE_FILE, INTERRUPTED, RESULTS_FOLDER, TRIALS_FOLDER, read_json, trial_name,
                             write_json)
from tune.study import MAX_FAILURES, StudyRouter, cluster_cpus, run_trials


class DoneRecord:
    """done.json: what is finished, written at once each time a study or final group finishes."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / DONE_FILE
        self.value = read_json(self.path, {"studies": {}, "finals": {}})

    def kept_trials(self) -> set[str]:
        units = [*self.value["studies"].values(), *self.value["finals"].values()]
        return {trial_id for unit in units for trial_id in unit["trials"]}

    def study_done(self, study: Study, best: dict, trial_ids: list[str]) -> None:
        self.value["studies"][study.name] = {"best": best, "trials": trial_ids}
        write_json(self.path, self.value)

    def final_done(self, name: str, trial_ids: list[str]) -> None:
        self.value["finals"][name] = {"trials": trial_ids}
        write_json(self.path, self.value)


def results_file(run_dir: Path, phase: str, trial_id: str) -> Path:
    return Path(run_dir) / RESULTS_FOLDER / f"{trial_name(phase, trial_id)}.jsonl"


class ResultLog(ray_tune.Callback):
    """results/<phase>-<trial id>.jsonl: each report of each trial, written and flushed as it arrives."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        (self.run_dir / RESULTS_FOLDER).mkdir(exist_ok=True)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        line = json.dumps({**result, "trial_id": trial.trial_id, "config": trial.config}, default=str)
        path = results_file(self.run_dir, trial.config["phase"], trial.trial_id)
        with ending_on_write_failure(path.parent), open(path, "a") as file:
            file.write(line + "\n")


def missing_epochs(path: Path, config: dict, last_epoch: int | None = None) -> str | None:
    """What `path` (a trial's logged reports) lacks of the epochs the trial reported, or None.

    A tuning trial must have every epoch up to `last_epoch`, the last one Ray Tune passed on; a
    final population every epoch of every seed, up to its budget or the epoch it diverged at."""
    first = 0 if config.get("eval_initial") else 1
    seen: dict = {}
    try:
        for line in path.read_text().splitlines():
            for row in json.loads(line).get("history", []):
                seen.setdefault(row.get("seed"), {})[row["epoch"]] = row.get("diverged", False)
    except (OSError, ValueError, KeyError, AttributeError) as error:
        return f"{path} is unreadable ({error})"
    if "seeds" in config:
        expected = {seed: min([config["epochs"], *(e for e, diverged in seen.get(seed, {}).items() if diverged)])
                    for seed in config["seeds"]}
    else:
        expected = {None: last_epoch}
    for member, last in expected.items():
        missing = sorted(set(range(first, last + 1)) - set(seen.get(member, {})))
        if missing:
            of = "" if member is None else f" of seed {member}"
            return f"{path} lacks epoch(s) {', '.join(map(str, missing[:5]))}{of}"
    return None


def require_on_disk(run_dir: Path, trial_id: str, config: dict, last_epoch: int | None = None) -> None:
    """End the run (see --resume) unless every epoch the trial reported is in its results file:
    nothing is recorded as done that is not on disk."""
    problem = missing_epochs(results_file(run_dir, config["phase"], trial_id), config, last_epoch)
    if problem:
        end_run(EXIT_WRITE_FAILED, f"results lost on disk: {problem}")


class FinalsDone(ray_tune.Callback):
    """Records a final group in done.json once its trials (one population per chunk of its seeds)
    have all ended with every epoch of every seed on disk. A trial given up after its retries is not
    recorded: the run then ends incomplete, and --resume tries the whole group again."""

    def __init__(self, run_dir: Path, done: DoneRecord, plan: Plan):
        self.run_dir, self.done = Path(run_dir), done
        self.group_seeds = {group.name: set(group.seeds) for group in plan.finals}
        self.ended: dict[str, dict[str, list]] = {}  # group name -> trial id -> its seeds

    def on_trial_complete(self, iteration, trials, trial, **info):
        if trial.config.get("phase") == "final":
            require_on_disk(self.run_dir, trial.trial_id, trial.config)
            name = trial.config["study"]
            ended = self.ended.setdefault(name, {})
            ended[trial.trial_id] = trial.config["seeds"]
            if {seed for seeds in ended.values() for seed in seeds} == self.group_seeds[name]:
                with ending_on_write_failure(self.run_dir):
                    self.done.final_done(name, sorted(ended))

    def on_trial_error(self, iteration, trials, trial, **info):
        print(f"warning: trial {trial.trial_id} ({trial.config.get('study')}) failed {MAX_FAILURES + 1} times "
              f"and was given up; its error.txt is in its folder", file=sys.stderr)


def set_aside_unfinished(run_dir: Path, keep: set[str]) -> None:
    """Move what a killed run left to interrupted/<folder>.N: Ray Tune's folder whole, and the
    results of every trial not in `keep` (those of finished studies and final groups)."""
    aside_root = Path(run_dir) / INTERRUPTED
    attempt = 1 + sum(1 for _ in aside_root.glob(f"{RESULTS_FOLDER}.*")) if aside_root.exists() else 1
    for name in (TRIALS_FOLDER, RESULTS_FOLDER):
        folder = Path(run_dir) / name
        if folder.exists():
            aside_root.mkdir(exist_ok=True)
            folder.rename(aside_root / f"{name}.{attempt}")
    aside = aside_root / f"{RESULTS_FOLDER}.{attempt}"
    if aside.exists():
        (Path(run_dir) / RESULTS_FOLDER).mkdir()
        for result in aside.iterdir():
            if result.stem.split("-", 1)[-1] in keep:
                result.rename(Path(run_dir) / RESULTS_FOLDER / result.name)


def write_best(run_dir: Path, specs: list[ExperimentSpec], plan: Plan, done: DoneRecord) -> None:
    """<experiment>/best.json: optimizer -> the best config of each repeat's study, in repeat order."""
    finished = done.value["studies"]
    for spec in specs:
        best = {}
        for study in plan.studies:
            if spec.name in study.experiments and study.name in finished:
                best.setdefault(study.optimizer, []).append(finished[study.name]["best"])
        folder = Path(run_dir) / spec.name
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / BEST_FILE, best)


def run_experiments(specs: list[ExperimentSpec], run_dir: Path, seed: int) -> tuple[Plan, list[str]]:
    """Tune and run the final runs of every experiment in `specs`, continuing what is done.
    Returns the plan and the names of the studies and final groups left unfinished (their trials failed)."""
    run_dir = Path(run_dir)
    plan = plan_run(specs, seed)
    done = DoneRecord(run_dir)
    set_aside_unfinished(run_dir, done.kept_trials())
    best = {name: study["best"] for name, study in done.value["studies"].items()}

    def study_done(study: Study, best_config: dict, results: dict[str, dict]) -> None:
        for trial_id, result in results.items():
            if not result["error"]:  # a trial given up after its retries counts as failed
                require_on_disk(run_dir, trial_id, study.trial_config({}), result.get("epoch", 0))
        with ending_on_write_failure(run_dir):
            done.study_done(study, best_config, sorted(results))
            write_best(run_dir, specs, plan, done)

    router = StudyRouter(plan, best, study_done, set(done.value["finals"]), cluster_cpus())
    if router.total_trials():
        datasets = {key: as_tensors(load_data(data)) for key, data in plan.datasets.items()}
        progress = Progress(router)
        run_trials(plan, run_dir, datasets, router, [ResultLog(run_dir), progress, FinalsDone(run_dir, done, plan)])
    with ending_on_write_failure(run_dir):
        write_best(run_dir, specs, plan, done)
    unfinished = [s.name for s in plan.studies if s.name not in done.value["studies"]] + \
                 [g.name for g in plan.finals if g.name not in done.value["finals"]]
    return plan, unfinished
