"""A population trains every member exactly as its single run: tune.loop.train_population against train,
and the stacked optimizers (optim.build_population) against each optimizer's single-run wrapper."""

import copy
import io
import math

import pytest
import torch

import optim
from tune.loop import train, train_population

NAMES = list(optim.REGISTRY)
# Per member: small enough that each rule acts on the MLP, and different, so that a rule reading another
# member's hyperparameters would show. An optimizer missing here runs with its defaults.
MEMBER_HPARAMS = {
    "cgi": [{"inversion_frequency": 2}, {"inversion_frequency": 3}, {"inversion_frequency": 2}],
    "gao": [{"beta": 0.5}, {"beta": 0.9}, {"beta": 0.7}],
    "gns": [{"norm_eps": 1e-3}, {"norm_eps": 1e-8}, {"norm_eps": 0.1}],
    "lrg": [{"rank": 3}, {"rank": 2}, {"rank": 5}],
    "svd": [{"rank": 2}, {"rank": 3}, {"rank": 5}],
}
SEEDS_AND_LRS = [(1, 1e-3), (2, 3e-3), (3, 2e-3)]
METRICS = ("train_loss", "val_loss", "val_acc")


def member_configs(name: str, epochs: int = 3, **shared) -> list[dict]:
    hparams = MEMBER_HPARAMS.get(name, [{}] * len(SEEDS_AND_LRS))
    return [{"optimizer": name, "lr": lr, "seed": seed, "epochs": epochs, **member, **shared}
            for (seed, lr), member in zip(SEEDS_AND_LRS, hparams)]


def tolerance(name: str) -> float:
    return 1e-3 if name in ("lrg", "svd") else 1e-4


def assert_same_history(population: list[dict], single: list[dict], tol: float, keys=METRICS) -> None:
    assert [row["epoch"] for row in population] == [row["epoch"] for row in single]
    for mine, theirs in zip(population, single):
        assert mine.keys() == theirs.keys()
        assert mine["diverged"] == theirs["diverged"]
        for key in keys:
            assert mine[key] == pytest.approx(theirs[key], abs=tol, rel=0), (mine["epoch"], key)


@pytest.mark.parametrize("name", NAMES)
def test_each_member_trains_exactly_as_its_single_run(name, data):
    configs = member_configs(name)
    population = train_population(configs, data)
    singles = [train(config, data) for config in configs]
    for history, single in zip(population, singles):
        assert_same_history(history, single, tolerance(name))
    if name != "adam":  # the rule acts: each member's curve is not plain Adam's
        for config, single in zip(configs, singles):
            adam = train({**config, "optimizer": "adam"}, data)
            assert [row["val_loss"] for row in adam] != [row["val_loss"] for row in single]


@pytest.mark.parametrize("name", NAMES)
def test_a_member_trains_the_same_whoever_shares_its_population(name, data):
    """Final groups are split into more populations on more CPUs (tune.plan.chunks_per_group): a
    member's run must not depend on that, to the last bit."""
    member = member_configs(name, epochs=2)[2]
    mates = [{**member, "seed": seed, "lr": lr} for seed, lr in SEEDS_AND_LRS[:2]]  # batched with it (same rank)
    runs = [train_population([*mates, member], data)[2], train_population([member], data)[0],
            train_population([mates[1], member], data)[1]]
    without_time = [[{key: value for key, value in row.items() if key != "epoch_time"} for row in run] for run in runs]
    assert without_time[0] == without_time[1] == without_time[2]


@pytest.mark.parametrize("name", NAMES)
def test_a_diverging_member_stops_as_in_train_and_the_others_go_on(name, data):
    configs = member_configs(name, epochs=3)
    configs[1]["lr"] = 1e30
    seen = []
    population = train_population(configs, data, on_epoch=lambda rows, get_state: seen.append(rows))
    for history, config in zip(population, configs):  # epochs, flags, inf losses and zero accuracy alike
        assert_same_history(history, train(config, data), tolerance(name))
    diverged = population[1]
    assert diverged[-1]["diverged"] and diverged[-1]["val_loss"] == math.inf and len(diverged) < 3
    assert [len(history) for history in population] == [3, len(diverged), 3]
    assert [rows[1] for rows in seen] == diverged + [None] * (3 - len(diverged))


@pytest.mark.parametrize("name", NAMES)
def test_resumed_population_continues_exactly(name, data):
    configs = member_configs(name, epochs=4)
    configs[2]["lr"] = 1e30  # a member that stopped before the checkpoint stays stopped
    saved = {}

    def keep_epoch_two(rows, get_state):
        if rows[0]["epoch"] == 2:
            buffer = io.BytesIO()
            torch.save(copy.deepcopy(get_state()), buffer)
            buffer.seek(0)
            saved.update(torch.load(buffer, weights_only=True))

    full = train_population(configs, data, on_epoch=keep_epoch_two)
    resumed = train_population(configs, data, state=saved)
    assert resumed[2] == []
    for member in (0, 1):
        assert [row["epoch"] for row in resumed[member]] == [3, 4]
        for mine, theirs in zip(resumed[member], full[member][2:]):
            assert {key: mine[key] for key in METRICS} == {key: theirs[key] for key in METRICS}


@pytest.mark.parametrize(("field", "value"),
                         [("optimizer", "gao"), ("hidden", (50,)), ("epochs", 2), ("batch_size", 50)])
def test_configs_that_cannot_share_a_model_are_refused_naming_the_field(field, value, data):
    configs = member_configs("adam")
    configs[1][field] = value
    with pytest.raises(ValueError, match=field):
        train_population(configs, data)


def test_eval_test_and_eval_initial_rows_match_train(data):
    configs = member_configs("gao", epochs=2, eval_test=True, eval_initial=True)
    configs[1]["eval_test"] = False
    for history, config in zip(train_population(configs, data), configs):
        single = train(config, data)
        keys = METRICS + (("test_loss", "test_acc") if config["eval_test"] else ())
        assert_same_history(history, single, 1e-4, keys)
        assert history[0]["epoch"] == 0


# --- the stacked optimizers against the single-run wrappers ------------------------------------------


def test_member_axis_adam_matches_torch_adam():
    generator = torch.Generator().manual_seed(0)
    shapes, lrs = [(6, 4), (6,)], [1e-3, 3e-2, 0.5]
    singles = [[torch.randn(shape, generator=generator, requires_grad=True) for shape in shapes] for _ in lrs]
    stacked = [torch.stack([member[i].detach() for member in singles]) for i in range(2)]
    adams = [torch.optim.Adam(member, lr=lr) for member, lr in zip(singles, lrs)]
    population = optim.build_population("adam", stacked, lrs, [{}] * len(lrs))
    for _ in range(10):
        grads = [torch.randn((len(lrs), *shape), generator=generator) for shape in shapes]
        for k, (member, adam) in enumerate(zip(singles, adams)):
            for param, grad in zip(member, grads):
                param.grad = grad[k].clone()
            adam.step()
        population.step(grads)
    for k, member in enumerate(singles):
        for param, stacked_param in zip(member, population.params):
            torch.testing.assert_close(stacked_param[k], param, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_each_rule_acts_within_one_member(name):
    """The stacked optimizer steps member k as the single-run wrapper steps member k's own tensors."""
    generator = torch.Generator().manual_seed(1)
    shapes = [(30, 20), (30,), (10, 30), (10,)]
    hparams = MEMBER_HPARAMS.get(name, [{}] * 3)
    lrs = [1e-2, 3e-3, 2e-2]
    starts = [torch.randn((3, *shape), generator=generator) for shape in shapes]
    singles = [[start[k].clone().requires_grad_() for start in starts] for k in range(3)]
    optimizers = [optim.build_optimizer(name, member, lr, **member_hparams)
                  for member, lr, member_hparams in zip(singles, lrs, hparams)]
    population = optim.build_population(name, [start.clone() for start in starts], lrs, hparams)
    for step in range(6):
        # Members' gradients differ in scale by orders of magnitude, so that mixing them would show.
        scales = torch.tensor([1.0, 1e-3, 1e2]).view(3, 1)
        grads = [torch.randn((3, *shape), generator=generator) * scales.view(3, *[1] * len(shape))
                 for shape in shapes]
        for k, (member, optimizer) in enumerate(zip(singles, optimizers)):
            for param, grad in zip(member, grads):
                param.grad = grad[k].clone()
            optimizer.step()
        population.step([grad.clone() for grad in grads])
    for k, member in enumerate(singles):
        for param, stacked_param in zip(member, population.params):
            torch.testing.assert_close(stacked_param[k], param.detach(), rtol=1e-5, atol=1e-6)


def test_population_hyperparameters_are_checked_as_single_runs_are():
    params = [torch.zeros(2, 3, requires_grad=True)]
    with pytest.raises(ValueError, match="rank: 0"):
        optim.build_population("svd", params, [1e-3, 1e-3], [{"rank": 2}, {"rank": 0}])
    with pytest.raises(ValueError, match="-1.0"):
        optim.build_population("adam", params, [1e-3, -1.0], [{}, {}])


def test_a_population_whose_every_member_diverges_ends_as_train_does(data):
    config = {"optimizer": "gns", "lr": 1e30, "epochs": 3, "eval_test": True, "eval_initial": True}
    population = train_population([{**config, "seed": 1}, {**config, "seed": 2}], data)
    for seed, history in zip((1, 2), population):
        assert [(row["epoch"], row["diverged"]) for row in history] == \
            [(row["epoch"], row["diverged"]) for row in train({**config, "seed": seed}, data)]
        assert history[-1]["test_loss"] == math.inf


def test_a_member_with_an_unknown_hyperparameter_or_a_negative_lr_is_refused():
    params = [torch.zeros(2, 3, 4)]
    with pytest.raises(ValueError, match="Unknown hyperparameter.*bogus"):
        optim.build_population("cgi", params, [1e-3, 1e-3], [{}, {"bogus": 1}])
    with pytest.raises(ValueError, match="Invalid learning rate"):
        optim.build_population("adam", params, [1e-3, -1.0], [{}, {}])
