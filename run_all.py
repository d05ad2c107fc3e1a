"""Re-run the five optimizer write-ups as fair experiments, plus an all-optimizer benchmark.

    python run_all.py --cpus 16                 # every experiment on a local Ray with 16 CPUs
    python run_all.py --address auto            # on a running Ray cluster
    python run_all.py --experiments cgi,svd --smoke
"""
import argparse
import datetime as dt
import json
import os
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
    parser = Parser(prog="run_all.py", description=__doc__.split("\n\n")[0],
                    formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--cpus", type=positive_int, default=os.cpu_count(),
                       help="start a local Ray with this many CPUs (one trial per CPU)")
    where.add_argument("--address", help="connect to a running Ray cluster instead: auto, host:port or ray://host:port")
    parser.add_argument("--experiments", default="all", help="comma-separated experiment names (see --list), or all")
    parser.add_argument("--list", action="store_true", help="list the experiments and exit")
    parser.add_argument("--num-samples", type=positive_int, help="tuning trials per optimizer (default: each spec's)")
    parser.add_argument("--seeds", type=positive_int, help="paired seeds of the final runs (default: each spec's, 10)")
    parser.add_argument("--smoke", action="store_true", help="tiny budgets: an end-to-end check in a few minutes")
    parser.add_argument("--seed", type=int, default=0, help="seeds the search and the runs; final runs use seed+1..seed+N")
    parser.add_argument("--output", type=Path, default=Path("results"), help="folder that holds the runs")
    parser.add_argument("--name", help="run folder name under --output (default: a timestamp)")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run --output/--name")
    parser.add_argument("--dashboard", action="store_true", help="start Ray's dashboard with the local Ray")
    return parser


def parse_args(argv):
    args = build_parser().parse_args(argv)
    if args.resume and not args.name:
        raise CliError("--resume needs --name of the run to continue")
    if args.name is not None and (args.name in ("", ".", "..", "latest") or "/" in args.name or os.sep in args.name):
        raise CliError(f"--name must be a plain folder name other than 'latest', got {args.name!r}")
    return args


def select_experiments(args) -> list:
    from tune.experiments import builtin_specs

    specs = builtin_specs()
    names = [name.strip() for name in args.experiments.split(",")]
    if args.experiments.strip() == "all":
        names = list(specs)
    if not names or any(name == "" for name in names):
        raise CliError(f"--experiments: empty name in {args.experiments!r}; choose from {', '.join(specs)}")
    unknown = [name for name in names if name not in specs]
    if unknown:
        raise CliError(f"--experiments: unknown {', '.join(unknown)}; choose from {', '.join(specs)}")
    return [specs[name].with_budget(args.num_samples, args.seeds, args.smoke) for name in dict.fromkeys(names)]


def list_experiments() -> None:
    from tune.experiments import builtin_specs

    for spec in builtin_specs().values():
        print(f"{spec.name:10s} {' vs '.join(spec.optimizers):32s} {spec.title}")


def prepare_run_folder(args) -> Path:
    output = args.output
    if output.exists() and not output.is_dir():
        raise CliError(f"--output {output} exists and is not a folder")
    name = args.name or dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run = output / name
    if args.resume:
        if not (run / RUN_FILE).exists():
            raise CliError(f"--resume: {run} is not a run folder (no {RUN_FILE})")
        return run
    if run.exists():
        raise CliError(f"{run} already exists; pass --resume to continue it or choose another --name")
    try:
        run.mkdir(parents=True)
    except OSError as error:
        raise CliError(f"cannot create the run folder {run}: {error.strerror}") from None
    return run


def point_latest(run: Path) -> None:
    link = run.parent / "latest"
    if link.exists() and not link.is_symlink():
        return
    temporary = run.parent / f".latest.{os.getpid()}"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(run.name)
    temporary.replace(link)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list:
        list_experiments()
        return 0
    from tune.experiments import SpecError

    try:
        specs = select_experiments(args)
    except SpecError as error:
        raise CliError(str(error)) from None
    run = prepare_run_folder(args)
    if not args.resume:
        (run / RUN_FILE).write_text(json.dumps({"argv": sys.argv[1:], "experiments": [s.name for s in specs]}, indent=2))
    point_latest(run)

    from tune.cluster import cluster_cpus, quiet_environment, start_local
    from tune.pipeline import run_experiment
    from analysis.load import write_frames
    from analysis.report import write_report

    quiet_environment()
    start_local(args.cpus, args.dashboard)
    cpus = cluster_cpus()
    print(f"run folder {run}  ({cpus} CPUs, experiments {', '.join(s.name for s in specs)})")
    for spec in specs:
        run_experiment(spec, run, cpus, args.seed)
    curves, trials = write_frames(run)
    report = write_report(run, curves, trials)
    print(f"done: {len(trials)} trials, {len(curves)} epochs -> {run}/curves.parquet, trials.parquet")
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CliError as error:
        print(f"run_all.py: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("\ninterrupted: continue with --resume --name <this run>", file=sys.stderr)
        sys.exit(130)
