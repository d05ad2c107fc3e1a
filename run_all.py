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
import signal
import sys
from pathlib import Path

RUN_FILE = "run.json"


class CliError(Exception):
    """Bad input: reported as one line on stderr with exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise CliError(message)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="run_all.py", description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--cpus", type=positive_int,
                       help=f"start a local Ray with this many CPUs, one trial each (default: all {os.cpu_count()} cores)")
    where.add_argument("--address", help="connect to a running Ray cluster instead: auto, host:port or ray://host:port")
    parser.add_argument("--experiments", default="all", help="comma-separated experiment names (see --list), or all (default: all)")
    parser.add_argument("--spec", action="append", type=Path, default=[], metavar="FILE",
                        help="run the experiment in this JSON spec file (repeatable; format: tune/specs/*.json); "
                             "with --spec and no --experiments only the spec's experiments run")
    parser.add_argument("--list", action="store_true", help="list the experiments and exit")
    parser.add_argument("--num-samples", type=positive_int, help="tuning trials per optimizer (default: each spec's)")
    parser.add_argument("--seeds", type=positive_int, help="paired seeds of the final runs (default: each spec's, 10)")
    parser.add_argument("--repeats", type=positive_int,
                        help="independent tuning studies per optimizer, each with its own search seed (default: each spec's, 3; --smoke: 2)")
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
    link = run.parent / "latest"
    if link.exists() and not link.is_symlink():
        return
    temporary = run.parent / f".latest.{os.getpid()}"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(run.name)
    temporary.replace(link)


def write_run_file(run: Path, settings: dict, status: str, provenance: dict | None = None) -> None:
    """run.json; without `provenance`, the one written when the run started is kept."""
    from tune.pipeline import write_json

    if provenance is None:
        provenance = json.loads((run / RUN_FILE).read_text()).get("provenance")
    write_json(run / RUN_FILE, {"settings": settings, "status": status, "argv": sys.argv[1:],
                                "updated": dt.datetime.now().isoformat(timespec="seconds"), "provenance": provenance})


def exit_on_interrupt(resume_command: str) -> None:
    """From now on Ctrl-C ends the run at once with exit code 130 and says how to continue it.

    Everything --resume needs is on disk at every moment. A KeyboardInterrupt is not enough:
    Ray Tune's threads keep a normal exit waiting, and one raised inside Ray's code can be
    swallowed there (seen: a run that went on to finish after Ctrl-C)."""
    def stop(signum, frame):
        sys.stdout.flush()
        print(f"\ninterrupted; continue with: {resume_command}", file=sys.stderr, flush=True)
        os._exit(130)

    signal.signal(signal.SIGINT, stop)


def main(argv=None) -> int:
    args = parse_args(argv)
    from tune.experiments import SpecError

    if args.list:
        try:
            list_experiments()
        except SpecError as error:
            raise CliError(str(error)) from None
        return 0

    from tune.experiments import SPEC_FILE, load_spec, save_spec

    run = args.output / (args.name or dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
    try:
        if args.resume:
            settings = resumed_settings(args, run)
            specs = [load_spec(run / name / SPEC_FILE) for name in settings["experiments"]]
        else:
            if run.exists():
                raise CliError(f"{run} already exists; pass --resume to continue it or choose another --name")
            specs = select_experiments(args.experiments, args.spec, args.num_samples, args.seeds, args.smoke,
                                       args.repeats)
            settings = {"experiments": [spec.name for spec in specs], "seed": args.seed,
                        "flags": {key: str(getattr(args, key)) for key in RUN_SETTINGS}}
    except SpecError as error:
        raise CliError(str(error)) from None
    check_output(args.output)

    from tune.cluster import (ClusterError, check_storage_shared, cluster_cpus, connect, provenance,
                              quiet_environment, start_local)
    from analysis.__main__ import rebuild
    from analysis.load import write_frames

    quiet_environment()
    try:
        if args.address:
            connect(args.address)
        else:
            start_local(args.cpus or os.cpu_count(), args.dashboard)
        run.mkdir(exist_ok=args.resume)
        if not args.resume:
            for spec in specs:
                save_spec(spec, run)
            write_run_file(run, settings, "running", provenance(args.address, specs))
        if args.address:
            check_storage_shared(run)
    except ClusterError as error:
        if not args.resume and run.exists():
            shutil.rmtree(run)  # nothing ran yet: leave no half-made run behind
        raise CliError(str(error)) from None
    point_latest(run)

    cpus = cluster_cpus()
    print(f"run folder {run}  ({cpus} CPUs, experiments {', '.join(s.name for s in specs)})")
    exit_on_interrupt(f"python run_all.py --resume --output {args.output} --name {run.name}")
    from tune.pipeline import run_experiments  # imports Ray: only now, after start_local (tune.ray_internals)
    run_experiments(specs, run, settings["seed"])
    curves, trials = write_frames(run)
    report = rebuild(run, curves, trials)
    write_run_file(run, settings, "complete")
    print(f"done: {len(trials)} trials, {len(curves)} epochs -> {run}/curves.parquet, trials.parquet")
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CliError as error:
        print(f"run_all.py: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # Ctrl-C while starting, before the run has begun (exit_on_interrupt)
        print("\nrun_all.py: interrupted before the run started", file=sys.stderr, flush=True)
        os._exit(130)  # a half-started Ray keeps a normal exit waiting
