"""Re-run the five optimizer write-ups as fair experiments, plus an all-optimizer benchmark.

    python run_all.py --cpus 16                 # every experiment on a local Ray with 16 CPUs
    python run_all.py --address auto            # on a running Ray cluster
    python run_all.py --experiments cgi,svd --smoke
"""
import argparse
import datetime as dt
import json
import os
import shutil
import sys
import textwrap
import threading
from pathlib import Path
from typing import NoReturn

from tune.run_folder import LATEST, RUN_FILE, atomic_path, read_json, write_json

MAX_CPUS = 100_000
EXIT_CODES = """exit codes: 0 complete; 1 incomplete (a study or final group failed: --resume retries it);
2 bad input, nothing started; 75 a write to the run folder failed (free space, then --resume);
130, 143, 129 interrupted by Ctrl-C, SIGTERM, SIGHUP (--resume continues)"""


class CliError(Exception):
    """Bad input: reported as one line on stderr with exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise CliError(message)


def count(at_most: int):
    """An argparse type: an integer from 1 to `at_most`."""
    def parse(text: str) -> int:
        from optim.base import positive_int

        try:
            return positive_int("value", int(text), at_most)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer from 1 to {at_most:,}, got {text!r}") from None
    return parse


def build_parser() -> argparse.ArgumentParser:
    from tune.experiments import LIMITS  # imports torch: not before main() runs (Ctrl-C while starting)

    budget_limits = textwrap.fill("budgets in a spec are integers from 1 to at most: " + ", ".join(
        f"{name} {limit:,}" for name, limit in LIMITS.items()), 100)
    parser = Parser(prog="run_all.py", description=__doc__.split("\n\n")[0], epilog=f"{budget_limits}.\n{EXIT_CODES}",
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--cpus", type=count(MAX_CPUS),
                       help=f"start a local Ray with this many CPUs, one trial each (default: all {os.cpu_count()} cores)")
    where.add_argument("--address", help="connect to a running Ray cluster instead: auto, host:port or ray://host:port")
    parser.add_argument("--experiments", default="all", help="comma-separated experiment names (see --list), or all (default: all)")
    parser.add_argument("--spec", action="append", type=Path, default=[], metavar="FILE",
                        help="run the experiment in this JSON spec file (repeatable; format: tune/specs/*.json); "
                             "with --spec and no --experiments only the spec's experiments run")
    parser.add_argument("--list", action="store_true", help="list the experiments and exit")
    parser.add_argument("--num-samples", type=count(LIMITS["num_samples"]),
                        help=f"tuning trials per optimizer, at most {LIMITS['num_samples']:,} (default: each spec's)")
    parser.add_argument("--seeds", type=count(LIMITS["seeds"]),
                        help=f"paired seeds of the final runs, at most {LIMITS['seeds']:,} (default: each spec's, 10)")
    parser.add_argument("--repeats", type=count(LIMITS["repeats"]),
                        help=f"independent tuning studies per optimizer, each with its own search seed, at most "
                             f"{LIMITS['repeats']} (default: each spec's, 3; --smoke: 2)")
    parser.add_argument("--smoke", action="store_true", help="tiny budgets for an end-to-end check in a few minutes (default: off)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the search and the tuning runs; final runs use seed+1..seed+N (default: 0)")
    parser.add_argument("--output", type=Path, default=Path("results"), help="folder that holds the runs (default: results)")
    parser.add_argument("--name", help="run folder name under --output (default: a timestamp)")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run --output/--name with its own settings")
    parser.add_argument("--dashboard", action="store_true", help="start Ray's dashboard with the local Ray (default: off)")
    return parser


def parse_args(argv):
    args = build_parser().parse_args(argv)
    if args.resume and not args.name:
        raise CliError("--resume needs --name of the run to continue")
    if args.name is not None and (args.name in ("", ".", "..", "latest") or "/" in args.name or os.sep in args.name):
        raise CliError(f"--name must be a plain folder name other than 'latest', got {args.name!r}")
    return args


def select_experiments(names_text: str, spec_files: list[Path], num_samples, seeds, smoke, repeats=None) -> list:
    """The experiments to run, budgets overridden alike for all. With --spec files and no
    --experiments, only the files' experiments run."""
    from tune.experiments import builtin_specs, load_spec

    specs = builtin_specs()
    extra = [load_spec(path) for path in spec_files]
    clash = [spec.name for spec in extra if spec.name in specs]
    if clash:
        raise CliError(f"--spec: experiment name {clash[0]!r} is taken by a built-in experiment; rename it")
    if names_text.strip() == "all":
        names = [] if extra else list(specs)
    else:
        names = [name.strip() for name in names_text.split(",")]
        if any(name == "" for name in names):
            raise CliError(f"--experiments: empty name in {names_text!r}; choose from {', '.join(specs)}")
    unknown = [name for name in names if name not in specs]
    if unknown:
        raise CliError(f"--experiments: unknown {', '.join(unknown)}; choose from {', '.join(specs)}")
    chosen = [specs[name] for name in dict.fromkeys(names)] + extra
    return [spec.with_budget(num_samples, seeds, smoke, repeats) for spec in chosen]


def list_experiments() -> None:
    from tune.experiments import builtin_specs

    for spec in builtin_specs().values():
        print(f"{spec.name:10s} {' vs '.join(spec.optimizers):32s} {spec.title}")


RUN_SETTINGS = ("experiments", "spec", "num_samples", "seeds", "repeats", "smoke", "seed")


def resumed_settings(args, run: Path) -> dict:
    """The settings the run was started with; flags that would change them are refused."""
    try:
        saved = json.loads((run / RUN_FILE).read_text())["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        raise CliError(f"--resume: {run} is not a run folder (no readable {RUN_FILE})") from None
    defaults = build_parser().parse_args([])
    changed = [key for key in RUN_SETTINGS if getattr(args, key) != getattr(defaults, key)]
    if changed:
        flags = ", ".join("--" + key.replace("_", "-") for key in changed)
        raise CliError(f"--resume continues {run} with its own settings; drop {flags}")
    return saved


def check_output(output: Path) -> None:
    """The output folder exists (or can be made) and takes files, before anything is started."""
    if output.exists() and not output.is_dir():
        raise CliError(f"--output {output} exists and is not a folder")
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = output / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise CliError(f"--output {output} is not writable: {error.strerror or error}") from None


def point_latest(run: Path) -> None:
    link = run.parent / LATEST
    if link.exists() and not link.is_symlink():
        return
    with atomic_path(link) as partial:
        partial.symlink_to(run.name)


def write_run_file(run: Path, settings: dict, status: str, provenance: dict | None = None) -> None:
    """run.json; without `provenance`, the one written before is kept."""
    if provenance is None:
        provenance = read_json(run / RUN_FILE, {}).get("provenance")
    write_json(run / RUN_FILE, {"settings": settings, "status": status, "argv": sys.argv[1:],
                                "updated": dt.datetime.now().isoformat(timespec="seconds"), "provenance": provenance})


def main(argv=None) -> int:
    args = parse_args(argv)
    from tune.experiments import SpecError

    if args.list:
        try:
            list_experiments()
        except SpecError as error:
            raise CliError(str(error)) from None
        return 0

    from tune.experiments import load_spec, save_spec
    from tune.run_folder import SPEC_FILE, RunFolderBusy, claim

    run = args.output / (args.name or dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
    try:
        if args.resume:
            settings = resumed_settings(args, run)
            specs = [load_spec(run / name / SPEC_FILE) for name in settings["experiments"]]
        else:
            specs = select_experiments(args.experiments, args.spec, args.num_samples, args.seeds, args.smoke,
                                       args.repeats)
            settings = {"experiments": [spec.name for spec in specs], "seed": args.seed,
                        "flags": {key: str(getattr(args, key)) for key in RUN_SETTINGS}}
    except SpecError as error:
        raise CliError(str(error)) from None
    check_output(args.output)
    try:
        claim(run, new=not args.resume)
    except RunFolderBusy as error:
        raise CliError(str(error)) from None

    from tune.ending import EXIT_WRITE_FAILED, end_on_signals, end_run, write_failure

    if not args.resume:
        try:
            for spec in specs:
                save_spec(spec, run)
            write_run_file(run, settings, "running")
        except (OSError, KeyboardInterrupt) as error:
            shutil.rmtree(run, ignore_errors=True)  # nothing ran yet: leave no half-made run behind
            if isinstance(error, KeyboardInterrupt):
                raise
            raise CliError(write_failure(error, run)) from None
    resume_command = f"python run_all.py --resume --output {args.output} --name {run.name}"
    end_on_signals(resume_command)
    try:
        run_and_report(args, run, specs, settings, resume_command)
    except OSError as error:
        end_run(EXIT_WRITE_FAILED, write_failure(error, run))


def import_analysis() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import analysis.report  # noqa: F401 - scipy.stats and matplotlib's pyplot


def run_and_report(args, run: Path, specs: list, settings: dict, resume_command: str) -> NoReturn:
    """Start or connect to Ray, run what is not done yet, then write the frames and the report."""
    from tune.cluster import (ClusterError, check_storage_shared, cluster_cpus, connect, provenance,
                              quiet_environment, start_local)
    from tune.ending import EXIT_INCOMPLETE, end_run, exit_now
    from tune.plan import plan_run
    from analysis.__main__ import rebuild
    from analysis.load import write_frames

    quiet_environment()
    threading.Thread(target=import_analysis, daemon=True).start()  # 2 s of imports, while Ray starts
    try:
        if args.address:
            connect(args.address)
        else:
            start_local(args.cpus or os.cpu_count(), args.dashboard)
        write_run_file(run, settings, "running", provenance(args.address, specs))
        if args.address:
            check_storage_shared(run)
    except ClusterError as error:
        if not args.resume:
            shutil.rmtree(run)  # nothing ran yet: leave no half-made run behind
        raise CliError(str(error)) from None
    point_latest(run)

    cpus = cluster_cpus()
    print(f"run folder {run}  ({cpus} CPUs)")
    print(plan_run(specs, settings["seed"]).summary(cpus), flush=True)
    from tune.pipeline import run_experiments  # imports Ray: only now, after start_local (tune.ray_internals)
    _, unfinished = run_experiments(specs, run, settings["seed"])
    curves, trials = write_frames(run)
    report = rebuild(run, curves, trials)
    write_run_file(run, settings, "incomplete" if unfinished else "complete")
    print(f"{len(trials)} trials, {len(curves)} epochs -> {run}/curves.parquet, trials.parquet")
    print(f"report: {report}")
    if unfinished:
        end_run(EXIT_INCOMPLETE, f"incomplete: {len(unfinished)} failed and given up: {', '.join(unfinished)}")
    exit_now(0)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CliError as error:
        print(f"run_all.py: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # Ctrl-C while starting, before the run folder was made (tune.ending)
        print("\nrun_all.py: interrupted before the run started", file=sys.stderr, flush=True)
        os._exit(130)
