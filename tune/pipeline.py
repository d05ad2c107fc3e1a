"""One experiment end to end: a tuning study per optimizer, then paired final runs.

Layout under the run folder:
    <experiment>/spec.json           the spec as run (budgets after any CLI override)
    <experiment>/tune-<optimizer>/   Ray's experiment folder of that optimizer's study
    <experiment>/best.json           each finished study's best config (marks it finished)
    <experiment>/final/              Ray's experiment folder of the final runs
Finished studies are never re-run; an interrupted Ray run continues from its own state.
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


def _write_json(path: Path, value) -> None:
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(value, indent=2) + "\n")
    partial.replace(path)


def _fit(folder: Path, fresh, data) -> tune.ResultGrid:
    """Continue the Ray run saved in `folder` if there is one, else start `fresh()`."""
    if (folder / "tuner.pkl").exists():
        results = tune.Tuner.restore(str(folder), trainable(data), resume_unfinished=True, resume_errored=True).fit()
    else:
        results = fresh()
    if results.errors:
        print(f"warning: {len(results.errors)} trial(s) of {folder} failed {MAX_FAILURES + 1} times and were "
              f"given up; their error.txt files are under that folder", file=sys.stderr)
    return results


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
        results = _fit(study, lambda: run_study(study.name, folder, data, space, {**fixed, "optimizer": name},
                                                spec.tuning, seed, cpus, label), data)
        best[name] = best_config(results, spec.tuning, space)
        _write_json(best_file, best)

    if not (folder / FINAL_DONE).exists():
        runs = final_runs(spec, best, seed)
        _fit(folder / FINAL, lambda: run_final(FINAL, folder, data, runs, cpus, f"{spec.name}: final"), data)
        (folder / FINAL_DONE).touch()
