"""Writes <run>/report.md from curves.parquet / trials.parquet and the experiments' spec.json
files alone (run.json adds a provenance line when present): the verdict rule, a summary of
every verdict, and one section per experiment (analysis.sections) with its figures
(analysis.figures). The figures need a matplotlib backend: command-line entry points choose
Agg (analysis.__main__.rebuild).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis import compare, sections
from analysis.experiment import Experiment, experiment
from analysis.figures import save_figures
from analysis.load import load_provenance, load_run, load_specs, load_trials
from analysis.metrics import (ALPHA, BOOTSTRAP_METHOD, CONFIDENCE, EQUIVALENCE_FRACTION, MIN_PAIRS,
                              N_PERMUTATIONS, N_RESAMPLES)
from analysis.text import fmt_difference, fmt_p, table
from tune.experiments import BASELINE, BENCHMARK
from tune.run_folder import REPORT_FILE, atomic_path

EXACT_SEEDS = N_PERMUTATIONS.bit_length() - 1  # 2**n sign patterns fit in N_PERMUTATIONS

VERDICT_RULE = f"""\
**Verdict rule.** The primary metric is the test metric matching the tuning metric, taken as
each spec's `final.primary` declares: `best_val_epoch` (the default) takes every final run at
its epoch of best validation metric (early stopping), `final_epoch` at its last epoch; each
section and the summary say which. A run that diverged (or has no finite value) is the worst
outcome for its seed: it is never dropped, but takes the worst finite value of that metric among
the experiment's final runs, so it ranks last. Each optimizer's best config from each of its R
independent tuning repeats is retrained on the same S paired seeds; d_i is the difference
(candidate − Adam) of seed i's repeat-averaged values. The CI is the {CONFIDENCE:.0%} two-level
{BOOTSTRAP_METHOD} bootstrap CI of mean d ({N_RESAMPLES:,} resamples: seeds drawn jointly, keeping the
pairing, and each optimizer's repeats drawn independently, so disagreeing tunings widen it;
with R = 1 it is the paired {BOOTSTRAP_METHOD} interval of scipy.stats.bootstrap). p is the two-sided
sign-flip permutation p of mean d (scipy.stats.permutation_test, permutation_type='samples';
exact up to {EXACT_SEEDS} seeds), adjusted by the Holm–Bonferroni correction across the candidates
of the same experiment (the benchmark's five; one candidate is left unadjusted). In this order:
**inconclusive** if fewer than {MIN_PAIRS} paired seeds are usable; **not supported** if the
candidate diverged in a larger share of its final runs than Adam; **supported** if the adjusted
p < {ALPHA} and the CI lies on the candidate's side of 0; **not supported** if the adjusted
p < {ALPHA} and the CI lies on Adam's side, or if the whole CI lies within ±δ, δ =
{EQUIVALENCE_FRACTION:.0%} of Adam's mean (no practical benefit); **inconclusive** otherwise. P(better) is
the share of paired seeds on which the candidate's repeat mean is better (ties count half).
Per-optimizer intervals are scipy.stats.bootstrap {BOOTSTRAP_METHOD} intervals of the mean over runs.
With few seeds percentile intervals are too narrow; the permutation p, which cannot fall below
2^(1−n) for n seeds (times the number of candidates after Holm), guards against that."""


def provenance_line(provenance: dict | None) -> list[str]:
    """run.json's provenance in one line, or nothing."""
    if not provenance:
        return []
    versions = ", ".join(f"{k} {v}" for k, v in (provenance.get("versions") or {}).items())
    where = provenance.get("address") or "a local Ray"
    concurrency = ", ".join(f"{k} {v}" for k, v in (provenance.get("concurrency") or {}).items())
    parts = [versions, f"git {provenance.get('git_commit') or 'unknown'}",
             f"{provenance.get('cpus')} CPUs on {provenance.get('nodes')} node(s) of {where}",
             f"trials at once per study: {concurrency}" if concurrency else ""]
    return ["**Provenance:** " + "; ".join(p for p in parts if p) + ".", ""]


def experiment_section(run_dir: Path, ex: Experiment) -> tuple[list[str], list]:
    """Markdown lines of one experiment and its comparisons (for the summary)."""
    s, p = ex.spec, ex.primary
    budget = compare.budget_curves(ex.trials, p.objective, p.higher_better)
    comparisons = compare.compare_experiment(ex.per_seed, p.column, [o for o in ex.optimizers if o != BASELINE],
                                             BASELINE, p.higher_better,
                                             fmt=lambda value: fmt_difference(p.metric, value).lstrip("+"))
    lines = [f"## {ex.name}: {s.title}", "", f"- **Write-up:** `{s.seed_file}`", f"- **Hypothesis:** {s.hypothesis}",
             f"- **Primary metric:** {p.describe()} (`final.primary` = {p.kind}; "
             f"{'higher' if p.higher_better else 'lower'} is better).", "", "### Protocol", ""]
    lines += sections.protocol(ex)
    lines += ["### Best hyperparameters", ""] + sections.hyperparameters(ex) + ["### Results", ""]
    lines += sections.results(ex) if len(ex.per_seed) else ["No final runs: only tuning results are available.", ""]
    lines += ["### Tuning, divergence and cost", ""] + sections.tuning_and_cost(ex, budget)
    lines += ["### Paired comparison against Adam", ""]
    lines += sections.comparison(ex, comparisons, single=ex.name != BENCHMARK and len(comparisons) == 1)
    links = save_figures(run_dir, ex, budget)
    lines += ["### Figures", ""] + ([f"{link}\n" for link in links] or ["No figures: no runs.", ""])
    return lines, comparisons


def summary(rows: list[tuple[Experiment, object]]) -> list[str]:
    if not rows:
        return ["No paired comparisons could be made (no final runs of Adam and a candidate).", ""]
    cells = []
    for ex, c in rows:
        low, high = c.ci
        reported = ex.spec.reported_verdict if ex.name != BENCHMARK else ""
        cells.append([ex.name, c.candidate, ex.primary.describe(),
                      f"{fmt_difference(c.metric, c.mean_difference)} [{fmt_difference(c.metric, low)}, "
                      f"{fmt_difference(c.metric, high)}]", f"{c.diverged[0]}/{c.runs[0]} / {c.diverged[1]}/{c.runs[1]}",
                      fmt_p(c.p_value), fmt_p(c.p_adjusted), f"**{c.verdict}**", reported or "—"])
    return table(["experiment", "candidate", "primary metric", f"mean difference (candidate − Adam) [{sections.CI_LEVEL} CI]",
                  "diverged final runs (candidate / Adam)", "p", "p (Holm)", "our verdict", "write-up's verdict"], cells)


def write_report(run_dir, curves: pd.DataFrame | None = None, trials: pd.DataFrame | None = None) -> Path:
    """Write <run_dir>/report.md (and the figures it links) and return its path."""
    run_dir = Path(run_dir)
    curves = load_run(run_dir) if curves is None else curves
    trials = load_trials(run_dir) if trials is None else trials
    specs = load_specs(run_dir)
    names = sorted(set(specs) | set(curves["experiment"]) | set(trials["experiment"]),
                   key=lambda name: (name == BENCHMARK, name))
    body, rows = [], []
    for name in names:
        ex = experiment(name, specs.get(name), curves[curves["experiment"] == name],
                        trials[trials["experiment"] == name])
        lines, comparisons = experiment_section(run_dir, ex)
        body += lines
        rows += [(ex, c) for c in comparisons]
    header = [f"# Re-run report: {run_dir.name}", "", *provenance_line(load_provenance(run_dir)),
              "Each write-up's optimizer against tuned Adam on mnist1d, every optimizer tuned with the same "
              "budget in independent repeats, then each repeat's best config retrained on paired seeds.", "",
              "Experiments: " + (", ".join(names) or "none found") + ".", "", VERDICT_RULE, "", "## Summary", ""]
    path = run_dir / REPORT_FILE
    with atomic_path(path) as partial:
        partial.write_text("\n".join(header + summary(rows) + body))
    return path
