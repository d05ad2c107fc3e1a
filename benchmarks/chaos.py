"""Chaos soak: interrupt smoke runs at random moments in random ways, resume each, check nothing was lost.

Each of N runs is ended by one of SIGKILL, SIGTERM and SIGINT at a random moment of its run time,
or runs out of disk (a small tmpfs of random size, as root), and is then resumed (after freeing
space). Each resumed run is checked against an uninterrupted one of the same command:
- the same studies, each with the same number of tuning trials, every trial once;
- the same final runs, (optimizer, repeat, seed), each once;
- every epoch of every trial present (tuning 1..its last, final 0..budget);
- run.json says complete, and the report is written.
Trial ids are random per run, so tuning trials are compared by count per study.

    python benchmarks/chaos.py [--runs 20] [--seed 0] [--output DIR]

Prints one line per run, the failures, and last `runs=<n> intact=<k>`. Takes about a minute a run.
"""
import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import psutil

ROOT = Path(__file__).resolve().parent.parent
RUN_ARGS = ["--cpus", "2", "--smoke", "--experiments", "cgi,gns", "--num-samples", "4"]
FAULTS = ("SIGKILL", "SIGTERM", "SIGINT", "full disk")
DISK_SIZES_KB = (300, 600, 1200, 2400)
TIMEOUT_S = 600


def run_all(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run_all.py"), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=TIMEOUT_S)


def interrupted(output: Path, name: str, fault: str, after_s: float) -> tuple[str, list[str]]:
    """Start a run and end it by `fault`: what happened, in a few words, and the processes the run
    left behind although it could have stopped them (a SIGKILLed driver cannot; the soak kills those)."""
    driver = subprocess.Popen([sys.executable, str(ROOT / "run_all.py"), *RUN_ARGS, "--output", str(output),
                               "--name", name], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    started = []
    if fault == "full disk":
        _, err = driver.communicate(timeout=TIMEOUT_S)
    else:
        try:
            driver.wait(timeout=after_s)
        except subprocess.TimeoutExpired:
            started = psutil.Process(driver.pid).children(recursive=True)
            driver.send_signal(getattr(signal, fault))
        _, err = driver.communicate(timeout=TIMEOUT_S)
    _, alive = psutil.wait_procs(started, timeout=10)
    left = [process.name() for process in alive if process.status() != psutil.STATUS_ZOMBIE]
    for process in alive:
        process.kill()
    last = err.strip().splitlines()[-1] if err.strip() else ""
    return f"exit {driver.returncode}" + (f" ({last[:100]})" if last else ""), [] if fault == "SIGKILL" else left


def mount_tmpfs(folder: Path, size_kb: int) -> bool:
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


def summary(run: Path) -> dict:
    """What a finished run holds, in terms comparable across runs."""
    all_trials = pd.read_parquet(run / "trials.parquet")
    trials = all_trials.drop_duplicates(["study", "phase", "trial_id"])
    curves = pd.read_parquet(run / "curves.parquet").drop_duplicates(["study", "phase", "trial_id", "epoch"])
    tuned, final = trials[trials["phase"] == "tune"], trials[trials["phase"] == "final"]
    epochs = curves.groupby(["phase", "trial_id"])["epoch"].apply(sorted)
    final_budget = int(final["epochs"].max()) if len(final) else 0
    gaps = [trial for (phase, trial), trained in epochs.items()
            if trained != list(range(trained[0], trained[-1] + 1)) or trained[0] != (0 if phase == "final" else 1)
            or (phase == "final" and trained[-1] != final_budget and not curves.loc[
                curves["trial_id"] == trial, "diverged"].any())]
    return {
        "trials per study": tuned.groupby("study")["trial_id"].nunique().to_dict(),
        "final runs": sorted(zip(final["optimizer"], final["repeat"], final["seed"])),
        "duplicates": int(all_trials.duplicated(["experiment", "study", "phase", "trial_id"]).sum()),
        "trials with missing epochs": gaps,
        "status": json.loads((run / "run.json").read_text())["status"],
        "report": (run / "report.md").exists(),
    }


def differences(got: dict, expected: dict) -> list[str]:
    return [f"{key}: {got[key]!r} != {expected[key]!r}"[:300] for key in expected if got[key] != expected[key]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="of the faults and their moments")
    parser.add_argument("--output", type=Path, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    output = args.output or Path(tempfile.mkdtemp(prefix="chaos-"))
    output.mkdir(parents=True, exist_ok=True)

    start = time.monotonic()
    reference = run_all(*RUN_ARGS, "--output", output, "--name", "reference")
    reference_s = time.monotonic() - start
    if reference.returncode != 0:
        print(reference.stderr[-2000:], file=sys.stderr)
        return 1
    expected = summary(output / "reference")
    expected["duplicates"], expected["trials with missing epochs"] = 0, []
    print(f"reference run: {reference_s:.0f} s, {sum(expected['trials per study'].values())} tuning trials, "
          f"{len(expected['final runs'])} final runs", flush=True)

    failures, intact = [], 0
    can_mount = True
    for index in range(args.runs):
        fault = rng.choice(FAULTS if can_mount else FAULTS[:3])
        name, folder = f"run{index:02d}", output
        if fault == "full disk":
            folder = output / f"disk{index:02d}"
            folder.mkdir()
            size = rng.choice(DISK_SIZES_KB)
            if not mount_tmpfs(folder, size):
                can_mount, fault, folder = False, rng.choice(FAULTS[:3]), output
                print("(cannot mount a tmpfs here: faults are signals only)")
        after_s = rng.uniform(0.5, reference_s)
        what, left_behind = interrupted(folder, name, fault, after_s)
        if fault == "full disk":
            subprocess.run(["mount", "-o", "remount,size=200m", str(folder)], check=True)
            fault = f"full disk ({size} KB)"
        else:
            fault = f"{fault} at {after_s:.1f} s"
        resumed = run_all("--resume", "--output", folder, "--name", name)
        problems = [f"left processes running: {', '.join(left_behind)}"] if left_behind else []
        if resumed.returncode != 0:
            problems.append(f"resume exit {resumed.returncode}: {resumed.stderr.strip()[-300:]}")
        else:
            try:
                problems += differences(summary(folder / name), expected)
            except (OSError, ValueError, KeyError) as error:
                problems.append(f"cannot read the run: {error}")
        intact += not problems
        print(f"{name}: {fault}: {what}; resumed: {'intact' if not problems else 'NOT intact'}", flush=True)
        failures += [f"{name} ({fault}): {problem}" for problem in problems]
        if folder != output:
            subprocess.run(["umount", "--lazy", str(folder)], capture_output=True)
    for failure in failures:
        print(f"FAILED {failure}")
    if args.output is None:
        shutil.rmtree(output, ignore_errors=True)
    print(f"runs={args.runs} intact={intact}")
    return 0 if intact == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
