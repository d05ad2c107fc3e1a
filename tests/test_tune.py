"""Real Ray Tune runs of several studies at once (OptunaSearch TPE + per-study ASHA), read back as frames."""
import json
import math
import shutil

import numpy as np
import pytest
from ray.tune.search import Searcher

from analysis.load import CURVE_COLUMNS, curves_from_run_folders, trials_from_curves
from tune.experiments import from_dict
from tune.pipeline import run_experiments
from tune.plan import asha_milestones, plan_run
from tune.run_folder import DONE_FILE, INTERRUPTED, RESULTS_FOLDER, TRIALS_FOLDER
from tune.space import to_optuna, to_tune, validate_space
from tune.study import PatientASHA, StudyRouter, final_cost

LR = {"type": "loguniform", "low": 1e-4, "high": 1e-1}
TUNING = {"num_samples": 4, "epochs": 3, "grace_period": 1, "reduction_factor": 2, "concurrency": 1, "repeats": 2}


def small_spec(name: str, optimizers: dict, tuning: dict = TUNING, final: dict | None = None):
    return from_dict({"name": name, "title": name, "seed_file": "-", "hypothesis": "-", "optimizers": optimizers,
                      "tuning": tuning, "final": final or {"epochs": 2, "seeds": 2}})


# two experiments that share Adam's studies (same data, model, space, budget, seeds)
ALPHA = small_spec("alpha", {"adam": {"lr": LR}, "cgi": {"lr": LR, "inversion_frequency":
                                                        {"type": "int", "low": 2, "high": 5}}})
BETA = small_spec("beta", {"adam": {"lr": LR}, "gao": {"lr": LR, "beta": {"type": "uniform", "low": 0.5, "high": 0.99}}})


@pytest.fixture(scope="module")
def run(ray_session, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    for spec in (ALPHA, BETA):
        (run_dir / spec.name).mkdir()
    plan, unfinished = run_experiments([ALPHA, BETA], run_dir, seed=0)
    assert unfinished == []
    curves = curves_from_run_folders(run_dir)
    return run_dir, plan, curves, trials_from_curves(curves)


def test_every_study_runs_its_trials_once_and_shared_studies_appear_under_each_experiment(run):
    run_dir, plan, curves, trials = run
    assert list(curves.columns) == CURVE_COLUMNS
    assert len(plan.studies) == 6  # adam (shared), cgi, gao; 2 repeats each
    tuned = trials[trials["phase"] == "tune"]
    assert (tuned.groupby(["experiment", "study"]).size() == TUNING["num_samples"]).all()
    shared = tuned[tuned["optimizer"] == "adam"]
    assert set(shared["study"]) == {"alpha/adam/r0", "alpha/adam/r1"}
    assert set(shared.loc[shared["experiment"] == "alpha", "trial_id"]) == \
        set(shared.loc[shared["experiment"] == "beta", "trial_id"])
    ray_folders = list((run_dir / TRIALS_FOLDER).glob("tune-*"))
    logged = list((run_dir / RESULTS_FOLDER).glob("tune-*.jsonl"))
    assert len(ray_folders) == len(logged) == tuned["trial_id"].nunique() == 6 * TUNING["num_samples"]
    assert curves.loc[curves["phase"] == "tune", "test_loss"].isna().all()  # tuning sees validation only


def test_no_study_runs_more_than_its_concurrency_and_studies_run_side_by_side(run):
    _, _, _, trials = run
    tuned = trials[trials["phase"] == "tune"].drop_duplicates("trial_id").sort_values("started_at")
    for _, study in tuned.groupby("study"):  # concurrency 1: one trial ends before the next reports
        assert (study["started_at"].to_numpy()[1:] >= study["ended_at"].to_numpy()[:-1]).all()
    other_study_overlaps = [
        ((tuned["study"] != row.study) & (tuned["started_at"] < row.ended_at) & (tuned["ended_at"] > row.started_at)).any()
        for row in tuned.itertuples()]
    assert any(other_study_overlaps)  # 2 CPUs, concurrency 1: two studies at once


def test_repeats_search_with_different_seeds(run):
    _, plan, _, trials = run
    assert len({study.seed for study in plan.studies}) == TUNING["repeats"]
    tuned = trials[(trials["phase"] == "tune") & (trials["experiment"] == "alpha")]
    first_lr = tuned.sort_values("started_at").groupby("study")["lr"].apply(set)
    assert first_lr["alpha/adam/r0"] != first_lr["alpha/adam/r1"]
    assert tuned.groupby("repeat")["seed"].nunique().tolist() == [1, 1]
    assert tuned.groupby("repeat")["seed"].first().nunique() == 2


def test_asha_stops_poor_trials_and_best_config_comes_from_a_full_budget_trial(run):
    run_dir, _, _, trials = run
    tuned = trials[(trials["phase"] == "tune") & (trials["experiment"] == "alpha")]
    assert tuned["pruned"].any() and (tuned["epochs"] == TUNING["epochs"]).any()
    best = json.loads((run_dir / "alpha" / "best.json").read_text())
    assert set(best) == {"adam", "cgi"} and all(len(configs) == 2 for configs in best.values())
    for repeat, config in enumerate(best["cgi"]):
        study = tuned[(tuned["study"] == f"alpha/cgi/r{repeat}") & (tuned["epochs"] == TUNING["epochs"])]
        winner = study.loc[study["best_val_loss"].idxmin()]
        assert config == {"lr": winner["lr"], "inversion_frequency": int(winner["inversion_frequency"])}


def test_final_runs_train_every_repeats_best_on_the_same_paired_seeds(run):
    run_dir, _, curves, trials = run
    final = trials[(trials["phase"] == "final") & (trials["experiment"] == "alpha")]
    assert sorted(final.groupby(["optimizer", "repeat"])["seed"].apply(sorted).tolist()) == [[1, 2]] * 4
    initial = curves[(curves["phase"] == "final") & (curves["epoch"] == 0) & (curves["experiment"] == "alpha")]
    by_seed = initial.groupby("seed")["val_loss"].nunique()
    assert (by_seed == 1).all()  # seed i: the same initial weights for every optimizer and repeat
    assert initial.groupby("seed")["val_loss"].first().nunique() == 2
    assert curves.loc[(curves["phase"] == "final") & (curves["epoch"] == 2), "test_acc"].between(0, 1).all()
    assert not list((run_dir / TRIALS_FOLDER).glob("tune-*/checkpoint_*"))  # tuning trials are not checkpointed


def test_a_resumed_run_reruns_only_what_was_unfinished(run, tmp_path):
    run_dir, _, curves, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    done = json.loads((copy / DONE_FILE).read_text())
    del done["studies"]["beta/gao/r1"]  # as if killed while it tuned
    del done["finals"]["beta/gao/r1"]
    del done["finals"]["alpha/cgi/r0"]  # as if killed during its final runs
    (copy / DONE_FILE).write_text(json.dumps(done))
    run_experiments([ALPHA, BETA], copy, seed=0)
    resumed = curves_from_run_folders(copy)
    kept = curves[~curves["study"].isin(["beta/gao/r1", "alpha/cgi/r0"])
                  | ((curves["study"] == "alpha/cgi/r0") & (curves["phase"] == "tune"))]
    assert set(kept["trial_id"]) <= set(resumed["trial_id"])
    assert not resumed.duplicated(["experiment", "phase", "trial_id", "epoch"]).any()
    assert (resumed.groupby(["experiment", "phase", "study"])["trial_id"].nunique()
            == curves.groupby(["experiment", "phase", "study"])["trial_id"].nunique()).all()
    aside = {path.name.split("-")[0] for path in (copy / INTERRUPTED).glob(f"{RESULTS_FOLDER}.*/*")}
    assert aside == {"tune", "final"}


def test_diverging_trials_are_reported_not_crashed(ray_session, tmp_path):
    wild = {"type": "loguniform", "low": 1e29, "high": 1e30}
    spec = small_spec("wild", {"adam": {"lr": wild}, "gns": {"lr": wild}}, {**TUNING, "num_samples": 2, "repeats": 1},
                      {"epochs": 3, "seeds": 1})
    run_experiments([spec], tmp_path, seed=0)
    trials = trials_from_curves(curves_from_run_folders(tmp_path))
    assert trials["diverged"].all() and len(trials) == 6
    assert json.loads((tmp_path / DONE_FILE).read_text())["finals"].keys() == {"wild/adam/r0", "wild/gns/r0"}


def test_identical_work_is_planned_once():
    plan = plan_run([ALPHA, BETA, small_spec("longer", {"adam": {"lr": LR}, "svd": {"lr": LR}},
                                             final={"epochs": 4, "seeds": 2})], base_seed=0)
    assert [study.experiments for study in plan.studies if study.optimizer == "adam"] == \
        [["alpha", "beta", "longer"]] * 2
    adam_finals = [group for group in plan.finals if group.study.startswith("alpha/adam")]
    assert [group.experiments for group in adam_finals] == [["alpha", "beta"]] * 2 + [["longer"]] * 2


def test_reports_fall_on_the_asha_rungs():
    for epochs, grace, factor, rungs in [(25, 1, 3, [1, 3, 9]), (20, 2, 2, [2, 4, 8, 16]), (3, 1, 3, [1])]:
        budget = ALPHA.tuning.__class__(epochs=epochs, grace_period=grace, reduction_factor=factor)
        assert asha_milestones(budget) == rungs


def test_asha_waits_for_reduction_factor_trials_before_stopping_any():
    study = plan_run([small_spec("asha", {"adam": {"lr": LR}, "cgi": {"lr": LR}},
                                 {**TUNING, "epochs": 9, "reduction_factor": 3})], 0).studies[0]
    asha = PatientASHA(study)
    decide = lambda trial_id, loss: asha.decide(trial_id, {"epoch": 1, study.objective: loss})
    assert decide("first", 1.0) == "CONTINUE"
    assert decide("worse", 2.0) == "CONTINUE"  # Ray's ASHA would stop it: only one trial to compare with
    assert decide("worst", 3.0) == "CONTINUE"
    assert decide("late and bad", 2.5) == "STOP"  # three recorded: the usual cut applies
    assert decide("late and good", 0.5) == "CONTINUE"
    assert decide("nan", math.nan) == "STOP"


def test_space_conversion_keeps_int_bounds_inclusive():
    space = {"rank": {"type": "int", "low": 2, "high": 3}, "lr": LR}
    validate_space(space)
    domain = to_tune(space)["rank"]
    assert {domain.sample() for _ in range(200)} == {2, 3}
    optuna_space = to_optuna(space)
    assert (optuna_space["rank"].low, optuna_space["rank"].high) == (2, 3) and optuna_space["lr"].log
    assert np.isclose(optuna_space["lr"].high, 0.1)


@pytest.mark.parametrize("bad", [
    {}, {"lr": {"type": "loguniform", "low": 0, "high": 1}}, {"lr": {"type": "uniform", "low": 2, "high": 1}},
    {"lr": {"type": "gaussian"}}, {"lr": {"type": "int", "low": 1.5, "high": 3}}, {"lr": {"type": "choice", "values": []}},
])
def test_bad_spaces_raise(bad):
    with pytest.raises(ValueError):
        validate_space(bad)


def test_waiting_final_runs_start_costliest_first():
    """lrg's populations (2.5x Adam's step) before Adam's, and more seeds before fewer."""
    few, many = (small_spec(name, {"adam": {"lr": LR}, "lrg": {"lr": LR}}, {**TUNING, "repeats": 1},
                            {"epochs": 2, "seeds": seeds}) for name, seeds in (("few", 3), ("many", 5)))
    plan = plan_run([few, many], 0)
    router = StudyRouter(plan, {study.name: {"lr": 1e-3} for study in plan.studies}, lambda *args: None, set())
    handed_out = [router.suggest(f"trial{index}") for index in range(router.final_trials())]
    costs = [final_cost(config) for config in handed_out]
    assert costs == sorted(costs, reverse=True)
    assert handed_out[0]["optimizer"] == "lrg" and len(handed_out[0]["seeds"]) == 5


def test_final_groups_are_split_into_chunks_of_seeds_only_where_cpus_outnumber_them():
    spec = small_spec("split", {"adam": {"lr": LR}, "lrg": {"lr": LR}}, {**TUNING, "repeats": 1},
                      {"epochs": 2, "seeds": 5})
    plan = plan_run([spec], 0)  # two final groups of five seeds
    best = {study.name: {"lr": 1e-3} for study in plan.studies}
    for cpus, sizes in ((3, [5, 5]), (4, [3, 2, 3, 2]), (64, [1] * 10)):
        router = StudyRouter(plan, best, lambda *args: None, set(), cpus)
        handed_out = [router.suggest(f"trial{index}") for index in range(router.final_trials())]
        assert router.suggest("one more") == Searcher.FINISHED
        assert sorted(len(config["seeds"]) for config in handed_out) == sorted(sizes)
        for group in plan.finals:
            chunks = [config["seeds"] for config in handed_out if config["study"] == group.name]
            assert sorted(seed for seeds in chunks for seed in seeds) == group.seeds == [1, 2, 3, 4, 5]


def test_final_groups_split_over_more_cpus_are_recorded_done_once_all_their_trials_end(ray_session, tmp_path,
                                                                                      monkeypatch):
    monkeypatch.setattr("tune.pipeline.cluster_cpus", lambda: 4)  # as on a 4-CPU cluster: two trials per group
    spec = small_spec("split", {"adam": {"lr": LR}, "cgi": {"lr": LR}}, {**TUNING, "num_samples": 2, "repeats": 1},
                      {"epochs": 2, "seeds": 3})
    _, unfinished = run_experiments([spec], tmp_path, seed=0)
    assert unfinished == []
    finals = json.loads((tmp_path / DONE_FILE).read_text())["finals"]
    assert sorted(finals) == ["split/adam/r0", "split/cgi/r0"]
    assert all(len(group["trials"]) == 2 for group in finals.values())
    final = curves_from_run_folders(tmp_path).query("phase == 'final'")
    assert final.groupby(["optimizer", "seed"])["epoch"].apply(sorted).tolist() == [[0, 1, 2]] * 6
