"""The report of a small synthetic run folder (tune + final phases, repeats, spec.json files) and
`python -m analysis`: what report.md says, its verdicts, and (once) that it writes its figures."""

import re

import matplotlib

matplotlib.use("Agg")  # noqa: E402  (tests are an entry point: they choose the backend)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from analysis import metrics  # noqa: E402
from analysis.__main__ import main as analysis_main  # noqa: E402
from analysis.report import write_report  # noqa: E402
from synthetic import ALL_OPTIMIZERS, experiment_spec, standard_run, synthetic_curves, trials_of, write_run  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return standard_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def report_text(run_dir):
    return write_report(run_dir).read_text()


def _verdict_line(text):
    return re.search(r"\*\*Verdict: ([a-z ]+)\*\*", text).group(1)


def test_report_names_everything(run_dir, report_text):
    for name in ["cgi", "benchmark"]:
        assert f"## {name}:" in report_text
    for optimizer in ALL_OPTIMIZERS:
        assert f"| {optimizer} |" in report_text
    assert report_text.index("## cgi:") < report_text.index("## benchmark:")
    assert "Verdict rule" in report_text and "Title of cgi" in report_text
    assert "000_0bef21695cdf6d3c.txt" in report_text
    assert "70.10%" in report_text  # the write-up's reported Adam accuracy
    assert "r0: 98; r1: 98" in report_text  # each repeat's config


def test_report_names_primary_correction_method_and_divergence(report_text):
    words = " ".join(report_text.split())
    assert "test loss at each run's epoch of best validation loss (early-stopped)" in report_text
    assert "`final.primary` = best_val_epoch" in report_text
    assert "Holm–Bonferroni" in report_text and "p (Holm)" in report_text
    assert "two-level percentile bootstrap" in words and "scipy.stats.permutation_test" in words
    assert f"p < {metrics.ALPHA}" in report_text
    assert "diverged (tuning)" in report_text and "diverged (final)" in report_text
    # every repeat has one diverged trial of 6, and no final run diverged
    cgi = report_text.split("## cgi:")[1].split("## benchmark:")[0]
    assert "| cgi | 12 (2 repeats) | 4 | 2/12 | 0/6 |" in cgi
    assert "**Provenance:** python 3.12.1, torch 2.5.0" in report_text and "git abc1234" in report_text


def test_report_verdicts_and_figures(run_dir, report_text):
    verdicts = re.findall(r"\*\*(supported|not supported|inconclusive)\*\*", report_text)
    assert len(verdicts) >= 6  # cgi + five benchmark candidates (summary and sections)
    assert "cannot be reached" in report_text  # 3 seeds can never give p < 0.05
    assert "The write-up concluded the hypothesis was **not supported**" in report_text
    for link in ["cgi/comparison.png", "cgi/tuning.png", "cgi/budget.png", "cgi/sensitivity.png",
                 "benchmark/comparison.png", "benchmark/sensitivity.png", "benchmark.png"]:
        assert f"({link})" in report_text and (run_dir / link).exists()
    assert "Best tuning objective (best_val_loss) found after n trials" in report_text


def test_report_supported_and_equivalent(tmp_path):
    better = synthetic_curves("better", ["adam", "cgi"], 8, {"cgi": -0.06})
    same = synthetic_curves("same", ["adam", "cgi"], 3, {"cgi": 0.0})
    run = write_run(tmp_path, {"better": (better, experiment_spec("better", ["adam", "cgi"], "supported")),
                               "same": (same, experiment_spec("same", ["adam", "cgi"]))})
    text = write_report(run).read_text()
    assert "**Provenance:**" not in text
    better_section, same_section = text.split("## better:")[1].split("## same:")
    assert _verdict_line(better_section) == "supported"
    assert "we agree" in better_section
    assert _verdict_line(same_section) == "not supported"
    assert "no practical benefit" in same_section


def test_report_without_final_runs_or_specs(tmp_path):
    curves = synthetic_curves("cgi", ["adam", "cgi"], 2)
    curves = curves[curves["phase"] == "tune"]
    orphan = synthetic_curves("orphan", ["adam", "svd"], 2)
    run = write_run(tmp_path, {"cgi": (curves, experiment_spec("cgi", ["adam", "cgi"])), "orphan": (orphan, None)})
    text = write_report(run).read_text()
    assert "No final runs" in text and "spec.json is missing" in text
    assert "best tune trial" in text and "(cgi/tuning.png)" in text and "(cgi/comparison.png)" not in text


def test_report_on_empty_folder(tmp_path):
    assert "none found" in write_report(tmp_path).read_text()


def test_report_accuracy_metric_and_diverged_final_run(tmp_path):
    curves = synthetic_curves("gns", ["adam", "gns"], 4, {"gns": 0.02})
    last = curves.index[(curves["trial_id"] == "gns_r0_f1")][-1]
    curves.loc[last, ["val_loss", "test_loss", "diverged"]] = [np.inf, np.inf, True]
    spec = experiment_spec("gns", ["adam", "gns"], "not supported", metric="val_acc")
    text = write_report(write_run(tmp_path, {"gns": (curves, spec)})).read_text()
    assert "test accuracy at best-val epoch (primary)" in text and " pp [" in text
    # behaviour changed: the diverged run is kept as the worst value, and counted against gns
    assert "| gns | 4 (1 × 4) |" in text and "1/4 / 0/4" in text
    assert "diverged in 25% of its final runs" in text


def test_cli_rebuilds_the_report_from_edited_frames(tmp_path, capsys):
    run = write_run(tmp_path, {"cgi": (synthetic_curves("cgi", ["adam", "cgi"], 3, repeats=2),
                                       experiment_spec("cgi", ["adam", "cgi"], primary="final_epoch"))})
    assert analysis_main([str(run)]) == 0 and "report.md" in capsys.readouterr().out
    assert "0/6 / 0/6" in (run / "report.md").read_text()
    curves = pd.read_parquet(run / "curves.parquet")
    curves.loc[curves.index[curves["trial_id"] == "cgi_r1_f0"][-1], ["test_loss", "diverged"]] = [np.inf, True]
    curves.to_parquet(run / "curves.parquet")
    trials_of(curves).to_parquet(run / "trials.parquet")
    assert analysis_main([str(run)]) == 0
    text = (run / "report.md").read_text()
    assert "1/6 / 0/6" in text and "`final.primary` = final_epoch" in text
    assert "final-epoch test loss (primary)" in text
