"""Rebuild a run's frames (if missing), figures and report.md:  python -m analysis <run folder>"""
import argparse
import sys
from pathlib import Path


def rebuild(run, curves=None, trials=None) -> Path:
    """The report of a run as a command line writes it: figures drawn with the Agg backend
    (no display needed), frames rebuilt from Ray's folders when the parquet files are
    missing. run_all.py calls this too."""
    import matplotlib

    matplotlib.use("Agg")
    from analysis.load import write_frames
    from analysis.report import write_report

    if curves is None and not (Path(run) / "curves.parquet").exists():
        curves, trials = write_frames(Path(run))
    return write_report(run, curves, trials)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__)
    parser.add_argument("run", type=Path, help="a run folder, e.g. results/latest")
    args = parser.parse_args(argv)
    if not args.run.is_dir() or not any(args.run.glob("*/spec.json")):
        print(f"python -m analysis: error: {args.run} is not a run folder (no <experiment>/spec.json)", file=sys.stderr)
        return 2
    print(f"wrote {rebuild(args.run)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
