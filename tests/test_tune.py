"""A real Ray Tune + OptunaSearch + ASHA study, read back with Ray's results and with load_run."""
import math

import pytest

from analysis.load import CURVE_COLUMNS, curves_from_ray, trials_from_curves
from tune.loop import as_tensors
from tune.experiments import StudyBudget
from ray.tune.schedulers import ASHAScheduler

from tune.cluster import warm_trial_workers
from tune.study import PatientASHA, asha_milestones, best_config, run_final, run_study
from tune.space import to_tune, validate_space

LR = {"lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1}}


@pytest.fixture(scope="module")
def study(ray_session, data, tmp_path_factory):
    storage = tmp_path_factory.mktemp("study")
    budget = StudyBudget(num_samples=6, epochs=4, grace_period=1, reduction_factor=2)
    results = run_study("tune-adam", storage, as_tensors(data), LR, {"optimizer": "adam", "seed": 0},
                        budget, seed=0, max_concurrent=2)
    return storage, budget, results


def test_study_runs_every_trial_on_validation_only(study):
    storage, budget, results = study
    assert len(results) == budget.num_samples and not results.errors
    for result in results:
        assert 1e-4 <= result.config["lr"] <= 1e-1
        assert result.config["eval_test"] is False
        reports = result.metrics_dataframe
        assert set(reports["epoch"]) <= set(result.config["report_epochs"])
        assert {"train_loss", "val_loss", "val_acc", "diverged", "node_id", "history"} <= set(reports.columns)
        assert "test_loss" not in reports.columns
        epochs = [epoch["epoch"] for report in reports["history"] for epoch in report]
        assert epochs == list(range(1, result.metrics["epoch"] + 1))  # every epoch, once


def test_tuning_trials_write_no_checkpoints(study):
    storage, _, _ = study
    assert list(storage.rglob("result.json")) and not list(storage.rglob("checkpoint_*"))


def test_a_study_runs_on_warm_workers_when_there_are_some(ray_session, data, tmp_path):
    warmed = warm_trial_workers(2)
    assert len(warmed) == 2
    budget = StudyBudget(num_samples=4, epochs=2, grace_period=1, reduction_factor=2)
    results = run_study("tune-adam", tmp_path, as_tensors(data), LR, {"optimizer": "adam", "seed": 0},
                        budget, seed=0, max_concurrent=2)
    assert {result.metrics["pid"] for result in results} == warmed  # no trial waited for a new process


def test_reports_fall_exactly_on_ashas_rungs():
    budget = StudyBudget(num_samples=1, epochs=25, grace_period=1, reduction_factor=3)
    assert asha_milestones(budget) == [1, 3, 9]
    for epochs, grace, factor in [(25, 1, 3), (20, 2, 2), (15, 1, 4), (100, 3, 3), (3, 1, 3)]:
        budget = StudyBudget(num_samples=1, epochs=epochs, grace_period=grace, reduction_factor=factor)
        scheduler = ASHAScheduler(time_attr="epoch", max_t=epochs, grace_period=grace, reduction_factor=factor)
        rungs = sorted(milestone for milestone, _ in scheduler._brackets[0]._rungs)
        assert asha_milestones(budget) == rungs


def test_asha_stops_poor_trials_and_tpe_is_seeded(study):
    storage, budget, results = study
    epochs = [result.metrics["epoch"] for result in results]
    assert max(epochs) == budget.epochs
    assert min(epochs) < budget.epochs, "ASHA (reduction factor 2) should stop some of 6 trials early"
    assert len({result.config["lr"] for result in results}) == budget.num_samples


def test_best_config_comes_from_a_full_budget_trial(study):
    storage, budget, results = study
    best = best_config(results, budget, LR)
    full = [r for r in results if r.metrics["epoch"] == budget.epochs]
    assert best["lr"] == min(full, key=lambda r: r.metrics["val_loss"]).config["lr"]


def test_curves_from_the_ray_folder(study):
    storage, budget, results = study
    curves = curves_from_ray(storage / "tune-adam", "demo", "tune")
    assert list(curves.columns) == CURVE_COLUMNS
    assert curves["trial_id"].nunique() == budget.num_samples
    assert len(curves) == sum(result.metrics["epoch"] for result in results)
    trials = trials_from_curves(curves)
    assert len(trials) == budget.num_samples
    assert trials["pruned"].sum() == sum(r.metrics["epoch"] < budget.epochs for r in results)
    assert curves["test_loss"].isna().all()


def test_final_runs_are_paired_and_see_test(ray_session, data, tmp_path):
    runs = [{"optimizer": "adam", "lr": lr, "epochs": 2, "seed": seed, "eval_test": True, "eval_initial": True}
            for lr in (1e-3, 1e-2) for seed in (1, 2)]
    results = run_final("final", tmp_path, as_tensors(data), runs, max_concurrent=2)
    assert len(results) == 4 and not results.errors
    curves = curves_from_ray(tmp_path / "final", "demo", "final")
    initial = curves[curves["epoch"] == 0].set_index(["seed", "lr"])["val_loss"].unstack()
    assert (initial[1e-3] == initial[1e-2]).all()  # seed i: same initial weights for every config
    assert initial.loc[1].iloc[0] != initial.loc[2].iloc[0]
    assert curves.loc[curves["epoch"] == 2, "test_acc"].between(0, 1).all()


def test_space_conversion_keeps_int_bounds_inclusive():
    space = {"rank": {"type": "int", "low": 2, "high": 3}}
    validate_space(space)
    domain = to_tune(space)["rank"]
    assert {domain.sample() for _ in range(200)} == {2, 3}


@pytest.mark.parametrize("bad", [
    {}, {"lr": {"type": "loguniform", "low": 0, "high": 1}}, {"lr": {"type": "uniform", "low": 2, "high": 1}},
    {"lr": {"type": "gaussian"}}, {"lr": {"type": "int", "low": 1.5, "high": 3}}, {"lr": {"type": "choice", "values": []}},
])
def test_bad_spaces_raise(bad):
    with pytest.raises(ValueError):
        validate_space(bad)


def test_diverging_trials_are_reported_not_crashed(ray_session, data, tmp_path):
    space = {"lr": {"type": "loguniform", "low": 1e29, "high": 1e30}}
    results = run_study("tune-wild", tmp_path, as_tensors(data), space, {"optimizer": "adam"},
                        StudyBudget(num_samples=2, epochs=5), seed=0, max_concurrent=2)
    assert not results.errors
    assert all(r.metrics["diverged"] and math.isinf(r.metrics["val_loss"]) for r in results)


def test_asha_waits_for_reduction_factor_trials_before_stopping_any():
    from types import SimpleNamespace

    scheduler = PatientASHA(time_attr="epoch", metric="val_loss", mode="min", max_t=9, grace_period=1,
                            reduction_factor=3)
    bracket = scheduler._brackets[0]
    decide = lambda trial_id, loss: bracket.on_result(SimpleNamespace(trial_id=trial_id), 1, -loss)
    assert decide("first", 1.0) == "CONTINUE"
    assert decide("worse", 2.0) == "CONTINUE"  # Ray's ASHA would stop it: only one trial to compare with
    assert decide("worst", 3.0) == "CONTINUE"
    assert decide("late and bad", 2.5) == "STOP"  # three recorded: the usual cut applies
    assert decide("late and good", 0.5) == "CONTINUE"
