"""One experiment end to end: a tuning study per optimizer, then paired final runs.

Layout under the run folder:
    <experiment>/spec.json           the spec as run (budgets after any CLI override)
    <experiment>/tune-<optimizer>/   Ray's experiment folder of that optimizer's study
    <experiment>/best.json           each finished study's best config (marks it finished)
    <experiment>/final/              Ray's experiment folder of the final runs
    <experiment>/interrupted/        what a killed run left that is not continued (see below)

Finished studies are never re-run. A study a killed run left unfinished starts again from its
first trial: a study takes seconds, its trials are not checkpointed, and Ray Tune's restore
of a search depends on its searcher's state and the run's state having been saved together.
Unfinished final runs continue from their checkpoints through Ray Tune's restore, unless the
run was killed before Ray Tune first saved its state: then they start again too.
"""
import json
import sys
from pathlib import Path

from ray import tune

from models import load_data
from tune.experiments import SPEC_FILE, ExperimentSpec, save_spec
from tune.loop import as_tensors
from tune.study import MAX_FAILURES, best_config, run_final, run_study
from tune.trainable import trainable

FINAL = "final"
FINAL_DONE = "final.done"
INTERRUPTED = "interrupted"


def final_seeds(spec: ExperimentSpec, base_seed: int) -> list[int]:
    """Seed i gives every optimizer the same initial weights and batch order; the tuning
    trials use `base_seed` itself, so the final runs are fresh draws."""
    return [base_seed + 1 + i for i in range(spec.final.seeds)]


def final_runs(spec: ExperimentSpec, best: dict[str, dict], base_seed: int) -> list[dict]:
    return [
        {**spec.fixed_config(), "optimizer": name, **best[name], "epochs": spec.final.epochs,
         "seed": seed, "eval_test": True, "eval_initial": True}
        for name in spec.optimizers for seed in final_seeds(spec, base_seed)
    ]


def _read_json(path: Path, default):
    return json.loads(path.read_text()) if path.exists() else default


def write_json(path: Path, value) -> None:
    """Write `value` so that a process killed meanwhile leaves the previous file whole."""
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(value, indent=2) + "\n")
    partial.replace(path)


def set_aside(folder: Path) -> None:
    """Move a Ray run folder that will not be continued to <experiment>/interrupted/, out of the results."""
    if not folder.exists():
        return
    aside = folder.parent / INTERRUPTED
    aside.mkdir(exist_ok=True)
    tries = sum(1 for _ in aside.glob(f"{folder.name}.*"))
    folder.rename(aside / f"{folder.name}.{tries + 1}")


def restorable(folder: Path) -> bool:
    """Ray Tune saved the Tuner, the run's state and its trial generator's state there. A run
    killed before its first state snapshot has tuner.pkl alone: restored, it would have an
    empty search space, and without the generator's state it would create no further trials."""
    return all(any(folder.glob(pattern)) for pattern in ("tuner.pkl", "experiment_state-*.json",
                                                         "basic-variant-state-*.json"))


def warn_of_errors(results: tune.ResultGrid, folder: Path) -> None:
    if results.errors:
        print(f"warning: {len(results.errors)} trial(s) of {folder} failed {MAX_FAILURES + 1} times and were "
              f"given up; their error.txt files are under that folder", file=sys.stderr)


def continue_final_runs(folder: Path, data, runs: list[dict]) -> bool:
    """Continue the final runs a killed run left in `folder`; False if Ray Tune cannot, or
    did not bring back every one of `runs`."""
    if not restorable(folder):
        return False
    results = tune.Tuner.restore(str(folder), trainable(data), resume_unfinished=True, resume_errored=True).fit()
    warn_of_errors(results, folder)
    planned = {(run["optimizer"], run["seed"]) for run in runs}
    missing = planned - {(result.config["run"]["optimizer"], result.config["run"]["seed"]) for result in results}
    if missing:
        print(f"warning: {folder} was restored without the final runs {sorted(missing)}; "
              "running all final runs again", file=sys.stderr)
    return not missing


def run_experiment(spec: ExperimentSpec, run_dir: Path, cpus: int, seed: int) -> None:
    folder = Path(run_dir) / spec.name
    if not (folder / SPEC_FILE).exists():
        save_spec(spec, run_dir)
    data = as_tensors(load_data(spec.data))
    fixed = {**spec.fixed_config(), "seed": seed}

    best_file = folder / "best.json"
    best = _read_json(best_file, {})
    for name, space in spec.optimizers.items():
        if name in best:
            continue
        label = f"{spec.name}: tune {name}"
        study = folder / f"tune-{name}"
        set_aside(study)  # left unfinished by a killed run
        results = run_study(study.name, folder, data, space, {**fixed, "optimizer": name}, spec.tuning, seed,
                            cpus, label)
        warn_of_errors(results, study)
        best[name] = best_config(results, spec.tuning, space)
        write_json(best_file, best)

    if not (folder / FINAL_DONE).exists():
        runs = final_runs(spec, best, seed)
        if not continue_final_runs(folder / FINAL, data, runs):
            set_aside(folder / FINAL)
            warn_of_errors(run_final(FINAL, folder, data, runs, cpus, f"{spec.name}: final"), folder / FINAL)
        (folder / FINAL_DONE).touch()
