"""One live status line for a run's Ray Tune run instead of Ray's own console tables."""
import sys
import time

from ray import tune as ray_tune


class Progress(ray_tune.Callback):
    """Shows studies and final runs done, trials pruned / diverged, and trials running.

    On a terminal the line is redrawn in place; in a log it is printed at most every
    `log_every` seconds and once at the end, so a long run stays readable.
    """

    def __init__(self, router, log_every: float = 15.0):
        self.studies = len(router.studies)
        self.tune_total, self.final_total = router.tuning_trials(), router.final_trials()
        self.log_every, self.last_print = log_every, 0.0
        self.ended = {"tune": set(), "final": set()}
        self.pruned = self.diverged = 0

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._show(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        phase = trial.config.get("phase", "tune")
        if trial.trial_id in self.ended[phase]:
            return
        self.ended[phase].add(trial.trial_id)
        last = trial.last_result or {}
        if last.get("diverged"):
            self.diverged += 1
        elif phase == "tune" and last.get("epoch", 0) < trial.config["epochs"]:
            self.pruned += 1
        self._show(trials)

    def on_experiment_end(self, trials, **info):
        self._show(trials, final=True)

    def line(self, running: int) -> str:
        return (f"tuning {len(self.ended['tune'])}/{self.tune_total} trials of {self.studies} studies "
                f"({self.pruned} pruned, {self.diverged} diverged), final populations {len(self.ended['final'])}/"
                f"{self.final_total}, {running} running")

    def _show(self, trials, final: bool = False) -> None:
        running = sum(trial.status == "RUNNING" for trial in trials)
        text = self.line(running)
        # sys.stdout is looked up at each write: Ray pickles callbacks with the run's state
        if sys.stdout.isatty():
            sys.stdout.write("\r" + text.ljust(110) + ("\n" if final else ""))
        elif final or time.monotonic() - self.last_print >= self.log_every:
            sys.stdout.write(text + "\n")
            self.last_print = time.monotonic()
        sys.stdout.flush()
