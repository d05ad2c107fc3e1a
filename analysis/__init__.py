"""Turn a finished run into frames, statistics, figures and a report; Ray need not be running."""
from analysis.load import load_run, load_trials

__all__ = ["load_run", "load_trials"]
