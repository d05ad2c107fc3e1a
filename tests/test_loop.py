import copy
import math

import torch

import optim
import tune.loop
from models import MLP
from tune.loop import train

ADAM = {"optimizer": "adam", "lr": 3e-3, "epochs": 4, "seed": 1}


def test_loss_falls_on_real_data(data):
    history = train(ADAM, data)
    assert [m["epoch"] for m in history] == [1, 2, 3, 4]
    assert history[-1]["val_loss"] < history[0]["val_loss"] < math.log(10)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_acc"] > 0.3
    assert "test_loss" not in history[-1]  # tuning never looks at the test split


def test_same_seed_same_curve_other_seed_other_curve(data):
    first, again = train(ADAM, data), train(ADAM, data)
    assert [m["val_loss"] for m in first] == [m["val_loss"] for m in again]
    other = train({**ADAM, "seed": 2}, data)
    assert [m["val_loss"] for m in other] != [m["val_loss"] for m in first]


def test_divergence_stops_and_is_flagged(data):
    history = train({**ADAM, "lr": 1e30, "epochs": 20}, data)
    assert history[-1]["diverged"] is True
    assert history[-1]["val_loss"] == math.inf
    assert len(history) < 20
    assert not any(m["diverged"] for m in history[:-1])


def test_resume_from_checkpoint_continues_exactly(data):
    saved = {}

    def keep_epoch_two(metrics, get_state):
        if metrics["epoch"] == 2:
            saved.update(copy.deepcopy(get_state()))  # the state is live: a checkpoint copies it

    full = train(ADAM, data, on_epoch=keep_epoch_two)
    resumed = train(ADAM, data, state=saved)
    assert [m["epoch"] for m in resumed] == [3, 4]
    assert [m["val_loss"] for m in resumed] == [m["val_loss"] for m in full[2:]]


def test_final_runs_see_test_and_initial_metrics(data):
    history = train({**ADAM, "epochs": 2, "eval_test": True, "eval_initial": True}, data)
    assert [m["epoch"] for m in history] == [0, 1, 2]
    assert abs(history[0]["val_loss"] - math.log(10)) < 0.3  # untrained: about chance
    assert all(0 <= m["test_acc"] <= 1 and m["test_loss"] > 0 for m in history)


def test_same_seed_gives_same_start_whatever_the_optimizer(data, monkeypatch):
    """Paired runs: every optimizer, at any lr, starts from the same weights and sees the same batches."""
    seen_batches = []

    class RecordingMLP(MLP):
        def forward(self, x):
            if torch.is_grad_enabled():  # a training step, not an evaluation
                seen_batches[-1].append(x)
            return super().forward(x)

    monkeypatch.setattr(tune.loop, "MLP", RecordingMLP)
    starts = {}
    for name in optim.REGISTRY:
        seen_batches.append([])
        weights = {}

        def keep_initial_weights(metrics, get_state, weights=weights):
            if metrics["epoch"] == 0:
                weights.update(copy.deepcopy(get_state()["model"]))

        config = {**ADAM, "optimizer": name, "lr": 3e-3 if name == "adam" else 1e-2, "epochs": 1,
                  "eval_initial": True, "eval_test": True}
        history = train(config, data, on_epoch=keep_initial_weights)
        starts[name] = (history[0], weights, seen_batches[-1])

    adam_metrics, adam_weights, adam_batches = starts["adam"]
    assert adam_metrics["epoch"] == 0 and adam_weights and len(adam_batches) == math.ceil(len(data.y_train) / 100)
    for name, (metrics, weights, batches) in starts.items():
        assert metrics == adam_metrics, name
        assert weights.keys() == adam_weights.keys()
        assert all(torch.equal(weights[key], adam_weights[key]) for key in weights), name
        assert len(batches) == len(adam_batches) and all(map(torch.equal, batches, adam_batches)), name


def test_cross_entropy_is_torchs_to_float_rounding_and_its_gradient_too():
    generator = torch.Generator().manual_seed(0)
    logits = (torch.randn(50, 10, generator=generator) * 5).requires_grad_()
    labels = torch.randint(0, 10, (50,), generator=generator)
    ours = tune.loop.cross_entropy(logits, labels)
    (ours_grad,) = torch.autograd.grad(ours, logits)
    theirs = torch.nn.functional.cross_entropy(logits, labels)
    (theirs_grad,) = torch.autograd.grad(theirs, logits)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours_grad, theirs_grad, rtol=1e-5, atol=1e-7)
