"""One live status line per Ray Tune run instead of Ray's own console tables."""
import math
import sys
import time

from ray import tune


class Progress(tune.Callback):
    """Shows trials done / running / pruned / diverged and the best value so far.

    On a terminal the line is redrawn in place; in a log it is printed at most every
    `log_every` seconds and once at the end, so a long run stays readable.
    """

    def __init__(self, label: str, total: int, metric: str, mode: str, max_epochs: int, log_every: float = 15.0):
        self.label, self.total, self.metric, self.mode, self.max_epochs = label, total, metric, mode, max_epochs
        self.log_every, self.last_print = log_every, 0.0
        self.done = self.pruned = self.diverged = 0
        self.best = math.nan
        self.finished_trials: set[str] = set()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        value = result.get(self.metric)
        if result.get("epoch", 1) > 0 and value is not None and math.isfinite(value):
            if math.isnan(self.best) or (value < self.best if self.mode == "min" else value > self.best):
                self.best = value
        self._show(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        if trial.trial_id in self.finished_trials:
            return
        self.finished_trials.add(trial.trial_id)
        last = trial.last_result or {}
        self.done += 1
        if last.get("diverged"):
            self.diverged += 1
        elif last.get("epoch", self.max_epochs) < self.max_epochs:
            self.pruned += 1
        self._show(trials)

    def on_experiment_end(self, trials, **info):
        self._show(trials, final=True)

    def line(self, running: int) -> str:
        best = "-" if math.isnan(self.best) else f"{self.best:.4g}"
        return (f"{self.label}: {self.done}/{self.total} done ({self.pruned} pruned, "
                f"{self.diverged} diverged), {running} running, best {self.metric} {best}")

    def _show(self, trials, final: bool = False) -> None:
        running = sum(trial.status == "RUNNING" for trial in trials)
        text = self.line(running)
        # sys.stdout is looked up at each write: Ray pickles callbacks with the run's state
        if sys.stdout.isatty():
            sys.stdout.write("\r" + text.ljust(100) + ("\n" if final else ""))
        elif final or time.monotonic() - self.last_print >= self.log_every:
            sys.stdout.write(text + "\n")
            self.last_print = time.monotonic()
        sys.stdout.flush()
