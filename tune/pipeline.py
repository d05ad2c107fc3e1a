"""A run end to end: every study and final run of its experiments in one Ray Tune run.

Layout under the run folder:
    results/                   every trial's reports, one JSON line each: tune-<id>.jsonl, final-<id>.jsonl
    trials/                    Ray Tune's own experiment folder (synced from Ray's staging folder at times)
    done.json                  each finished study (best config, its trials) and final group (its trials)
    <experiment>/spec.json     the spec as run (budgets after any CLI override)
    <experiment>/best.json     each optimizer's best config per repeat, once its studies finished
    interrupted/               what a killed run left that is not continued (see below)

Finished studies and final groups are never re-run. What a killed run left unfinished starts
again from its first trial: a study or a final run takes seconds, and a new Tune run that
continues no searcher state cannot restore half of one wrongly. Its results and Ray Tune's
folder are moved, not deleted, to interrupted/, where the results loader does not look.

The results are written by the driver as each report arrives, before the study or final group
they belong to is recorded in done.json: Ray Tune's own result.json files reach trials/ only when
Ray syncs its staging folder, so a killed run may not have them.
"""
import json
import sys
from pathlib import Path

from ray import tune as ray_tune

from models import load_data
from tune.experiments import ExperimentSpec
from tune.loop import as_tensors
from tune.plan import RESULTS_FOLDER, TRIALS_FOLDER, Plan, Study, plan_run, trial_name
from tune.progress import Progress
from tune.study import MAX_FAILURES, StudyRouter, run_trials

DONE_FILE = "done.json"
BEST_FILE = "best.json"
INTERRUPTED = "interrupted"


def read_json(path: Path, default):
    return json.loads(path.read_text()) if path.exists() else default


def write_json(path: Path, value) -> None:
    """Write `value` so that a process killed meanwhile leaves the previous file whole."""
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(value, indent=2) + "\n")
    partial.replace(path)


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


class ResultLog(ray_tune.Callback):
    """results/<phase>-<trial id>.jsonl: each report of each trial, written and flushed as it arrives."""

    def __init__(self, run_dir: Path):
        self.folder = Path(run_dir) / RESULTS_FOLDER
        self.folder.mkdir(exist_ok=True)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        line = json.dumps({**result, "trial_id": trial.trial_id, "config": trial.config}, default=str)
        with open(self.folder / f"{trial_name(trial.config, trial.trial_id)}.jsonl", "a") as file:
            file.write(line + "\n")


class FinalsDone(ray_tune.Callback):
    """Records a final group in done.json once its trial (one population of its seeds) has ended."""

    def __init__(self, done: DoneRecord):
        self.done = done

    def on_trial_complete(self, iteration, trials, trial, **info):
        if trial.config.get("phase") == "final":
            self.done.final_done(trial.config["study"], [trial.trial_id])

    def on_trial_error(self, iteration, trials, trial, **info):
        print(f"warning: trial {trial.trial_id} ({trial.config.get('study')}) failed {MAX_FAILURES + 1} times "
              f"and was given up; its error.txt is in its folder", file=sys.stderr)
        self.on_trial_complete(iteration, trials, trial)


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


def run_experiments(specs: list[ExperimentSpec], run_dir: Path, seed: int) -> Plan:
    """Tune and run the final runs of every experiment in `specs`, continuing what is done."""
    run_dir = Path(run_dir)
    plan = plan_run(specs, seed)
    done = DoneRecord(run_dir)
    set_aside_unfinished(run_dir, done.kept_trials())
    best = {name: study["best"] for name, study in done.value["studies"].items()}

    def study_done(study: Study, best_config: dict, trial_ids: list[str]) -> None:
        done.study_done(study, best_config, trial_ids)
        write_best(run_dir, specs, plan, done)

    router = StudyRouter(plan, best, study_done, set(done.value["finals"]))
    if router.total_trials():
        datasets = {key: as_tensors(load_data(data)) for key, data in plan.datasets.items()}
        progress = Progress(router)
        run_trials(plan, run_dir, datasets, router, [ResultLog(run_dir), progress, FinalsDone(done)])
    write_best(run_dir, specs, plan, done)
    missing = [s.name for s in plan.studies if s.name not in done.value["studies"]] + \
              [g.name for g in plan.finals if g.name not in done.value["finals"]]
    if missing:
        print(f"warning: not finished: {', '.join(missing)}", file=sys.stderr)
    return plan
