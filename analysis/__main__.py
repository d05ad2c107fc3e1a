"""Rebuild a run's frames (if missing), figures and report.md:  python -m analysis <run folder>"""
import argparse
import sys
from pathlib import Path

from analysis.load import write_frames
from analysis.report import write_report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__)
    parser.add_argument("run", type=Path, help="a run folder, e.g. results/latest")
    args = parser.parse_args(argv)
    if not args.run.is_dir() or not any(args.run.glob("*/spec.json")):
        print(f"python -m analysis: error: {args.run} is not a run folder (no <experiment>/spec.json)", file=sys.stderr)
        return 2
    if not (args.run / "curves.parquet").exists():
        write_frames(args.run)
    print(f"wrote {write_report(args.run)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
