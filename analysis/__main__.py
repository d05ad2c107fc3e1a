"""Rebuild a run's frames (if missing), Optuna journal, figures and report.md:
    python -m analysis <run folder>
Serve optuna-dashboard on the run's journal, on this machine only (stop with Ctrl-C):
    python -m analysis dashboard <run folder> [--port N]
"""
import argparse
import sys
from pathlib import Path

from analysis.journal import JOURNAL_FILE, open_journal, write_journal
from analysis.load import CURVES_FILE, load_run, load_specs, load_trials, write_frames

PROG = "python -m analysis"
DASHBOARD_HOST = "127.0.0.1"


def fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def rebuild(run, curves=None, trials=None) -> Path:
    """The journal and report of a run as a command line writes them: figures drawn with the Agg
    backend (no display needed), frames rebuilt from Ray's folders when the parquet files are
    missing. run_all.py calls this too; returns the report's path."""
    import matplotlib

    matplotlib.use("Agg")
    from analysis.report import write_report

    run = Path(run)
    if curves is None:
        curves, trials = write_frames(run) if not (run / CURVES_FILE).exists() else (load_run(run), load_trials(run))
    specs = [spec for spec in load_specs(run).values() if not isinstance(spec, Exception)]
    write_journal(run, curves, trials, specs)
    return write_report(run, curves, trials)


def dashboard(run: Path, port: int) -> int:
    """optuna-dashboard on <run>/optuna.journal at 127.0.0.1:port until Ctrl-C."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    import optuna_dashboard

    if not run.is_dir():
        return fail(f"no run folder at {run}")
    if not (run / JOURNAL_FILE).is_file():
        return fail(f"{run} has no {JOURNAL_FILE}; write it with: {PROG} {run}")

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format, *args):  # no line per request
            pass

    try:
        server = make_server(DASHBOARD_HOST, port, optuna_dashboard.wsgi(open_journal(run / JOURNAL_FILE)),
                             handler_class=QuietHandler)
    except OSError as error:
        return fail(f"cannot listen on {DASHBOARD_HOST}:{port}: {error.strerror or error}")
    print(f"optuna-dashboard for {run / JOURNAL_FILE} at http://{DASHBOARD_HOST}:{port}/ (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def port_number(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"expected a port number 1..65535, got {text!r}")
    return int(text)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["dashboard"]:  # a run folder named "dashboard" is ./dashboard
        parser = argparse.ArgumentParser(prog=f"{PROG} dashboard", description=dashboard.__doc__)
        parser.add_argument("run", type=Path, help="a run folder, e.g. results/latest")
        parser.add_argument("--port", type=port_number, default=8080, help="port on 127.0.0.1 (default: 8080)")
        args = parser.parse_args(argv[1:])
        return dashboard(args.run, args.port)
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a run folder, e.g. results/latest")
    run = parser.parse_args(argv).run
    if not run.is_dir() or not any(run.glob("*/spec.json")):
        return fail(f"{run} is not a run folder (no <experiment>/spec.json)")
    print(f"wrote {rebuild(run)}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C before the dashboard serves
        sys.exit(130)
