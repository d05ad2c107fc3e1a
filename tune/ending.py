"""Ending a run at once, the same way whatever ends it: Ctrl-C, SIGTERM, SIGHUP, or a write that failed.

One line on stderr saying why and how to continue, the local Ray processes this driver started
stopped by PID, and an exit code a batch system can tell apart. Everything --resume needs is on
disk at every moment, so nothing is lost by ending anywhere.

A KeyboardInterrupt is not enough: Ray Tune's threads keep a normal exit waiting, and one raised
inside Ray's code can be swallowed there (seen: a run that went on to finish after Ctrl-C). Ray's
own SIGTERM handler in the driver aborts with a C++ stack dump; ours replaces it.
"""
import atexit
import os
import shutil
import signal
import sys
from contextlib import contextmanager

import psutil

# exit codes (README); 2 is bad input, refused before anything starts
EXIT_INCOMPLETE = 1  # the run ended, but some study or final group failed: --resume retries it
EXIT_WRITE_FAILED = 75  # EX_TEMPFAIL: a write to the run folder failed (full disk, ...); free space, then --resume
SIGNAL_EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}

_resume_command = ""
_folders_to_remove: list[str] = []


def remove_at_exit(folder) -> None:
    """Remove `folder` when this process exits, normally or through exit_now (whose os._exit skips atexit)."""
    _folders_to_remove.append(str(folder))
    atexit.register(shutil.rmtree, str(folder), True)


def end_run(code: int, reason: str):
    """Say why the run ends and how to continue it, stop the local Ray, exit with `code`."""
    sys.stdout.flush()
    hint = f"; continue with: {_resume_command}" if _resume_command else ""
    print(f"\n{reason}{hint}", file=sys.stderr, flush=True)
    exit_now(code)


def exit_now(code: int):
    """Stop the local Ray and exit with `code` at once: everything the run writes is on disk by now,
    and Ray's orderly shutdown (ray.shutdown at exit) would take seconds more."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        _silence_terminal()  # Ray's threads in this process log from C++ as its cluster goes away
        stop_started_processes()
        for folder in _folders_to_remove:
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        os._exit(code)


def _silence_terminal() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    for descriptor in (1, 2):
        os.dup2(devnull, descriptor)


def stop_started_processes() -> None:
    """Kill every process this one started (the local Ray's, if it started one), by PID. A connected
    cluster's processes are not ours and are left alone. No grace period: once its raylet is gone,
    Ray's own threads in this process would end it first, with their exit code."""
    for process in psutil.Process().children(recursive=True):  # all listed first: Ray's agents outlive the raylet
        try:
            process.kill()
        except psutil.Error:
            pass


def end_on_signals(resume_command: str) -> None:
    """From now on Ctrl-C, SIGTERM and SIGHUP end the run at once, each with its exit code."""
    global _resume_command
    _resume_command = resume_command
    for signum, code in SIGNAL_EXIT_CODES.items():
        name = signal.Signals(signum).name
        signal.signal(signum, lambda *_, code=code, name=name: end_run(code, f"interrupted ({name})"))


@contextmanager
def keeping_signal_handlers():
    """Ray's driver sets its own SIGTERM handler (sys.exit(15)) while it starts; the run's (end_on_signals)
    stay, and a signal that arrives meanwhile waits (blocked) until they are back."""
    signals = tuple(SIGNAL_EXIT_CODES)
    kept = {signum: signal.getsignal(signum) for signum in signals}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        for signum, handler in kept.items():
            if handler is not None:
                signal.signal(signum, handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)


@contextmanager
def ending_on_write_failure(folder):
    """A failed write to `folder` (in the run folder) ends the run (EXIT_WRITE_FAILED) naming it and the cause.

    Used around the driver's writes inside Ray Tune's callbacks, where an exception would be
    swallowed or leave Tune waiting."""
    try:
        yield
    except OSError as error:
        end_run(EXIT_WRITE_FAILED, write_failure(error, folder))


def write_failure(error: OSError, folder) -> str:
    """One line naming the folder a write failed in and why."""
    where = os.path.dirname(error.filename) if error.filename else folder
    return f"cannot write to {where}: {error.strerror or error}"
