"""The run folder: the names in it, writing into it without leaving half a file, and one run at a time.

    <output>/<name>/
        run.json                   settings, provenance, status ("running", "incomplete", "complete")
        results/                   every trial's reports, one JSON line each: tune-<id>.jsonl, final-<id>.jsonl
        trials/                    Ray Tune's own experiment folder (synced from Ray's staging folder at times)
        done.json                  each finished study (best config, its trials) and final group (its trials)
        <experiment>/spec.json     the spec as run (budgets after any CLI override)
        <experiment>/best.json     each optimizer's best config per repeat, once its studies finished
        interrupted/               what a killed run left that is not continued (tune.pipeline)
        curves.parquet, trials.parquet, report.md, figures/, optuna.journal   (analysis)
        .lock                      held by the process running the folder (claim)
    <output>/latest -> <name>
"""
import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path

RUN_FILE = "run.json"
RESULTS_FOLDER = "results"  # our own log of every trial's reports (tune.pipeline.ResultLog)
TRIALS_FOLDER = "trials"  # Ray Tune's experiment folder of the run's trials
DONE_FILE = "done.json"
SPEC_FILE = "spec.json"
BEST_FILE = "best.json"
INTERRUPTED = "interrupted"
LATEST = "latest"
CURVES_FILE = "curves.parquet"
TRIALS_FILE = "trials.parquet"
REPORT_FILE = "report.md"
LOCK_FILE = ".lock"


class RunFolderBusy(Exception):
    """The run folder exists already, or another process is running it; the message says which."""


def trial_name(phase: str, trial_id: str) -> str:
    """A trial's folder (Ray Tune's) and results file (ours): tune-<id> or final-<id>."""
    return f"{phase}-{trial_id}"


@contextmanager
def atomic_path(path: Path):
    """A temporary path beside `path` to write to; it replaces `path` only once the block ends without
    an error, so a process killed or a disk filled meanwhile leaves the previous file whole, never half of one."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield partial
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def write_json(path: Path, value) -> None:
    with atomic_path(path) as partial:
        partial.write_text(json.dumps(value, indent=2) + "\n")


def read_json(path: Path, default):
    return json.loads(path.read_text()) if path.exists() else default


_held_locks = []  # open for the life of the process: the lock ends when the process does, however it ends


def claim(run: Path, new: bool) -> None:
    """Make `run` this process's alone: create it (if `new`; atomically, so that of two runs started
    with one name only one gets it) and lock it for as long as this process lives."""
    if new:
        try:
            run.mkdir()
        except FileExistsError:
            raise RunFolderBusy(f"{run} already exists; pass --resume to continue it or choose another --name") from None
    lock = open(run / LOCK_FILE, "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        lock.close()
        raise RunFolderBusy(f"{run} is being run by {holder}; wait for it to end") from None
    lock.truncate(0)
    lock.write(f"pid {os.getpid()}")
    lock.flush()
    _held_locks.append(lock)
