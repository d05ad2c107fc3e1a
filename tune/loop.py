"""The one train loop every study and final run goes through. It knows nothing of Ray.

A run is a flat config dict:
    optimizer   registry name (optim.OPTIMIZERS)
    lr          learning rate
    <hparams>   the optimizer's own hyperparameters (optim.HPARAMS[optimizer]); others are ignored
    hidden      MLP widths, default (100, 100)
    epochs      epochs to train
    batch_size  minibatch size, default 100
    seed        seeds the initial weights and the batch order (paired runs share both)
    eval_test   also evaluate the test split each epoch (final runs only; tuning never sees it)
    eval_initial  first report epoch 0: the metrics at initialisation, before any step
"""
import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import optim
from models import MLP, Splits

EpochCallback = Callable[[dict, Callable[[], dict]], None]
DEFAULTS = {"hidden": (100, 100), "batch_size": 100, "seed": 0, "eval_test": False, "eval_initial": False}


def as_tensors(data: Splits) -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(array) for name, array in vars(data).items()}


def build_optimizer(model: torch.nn.Module, config: dict) -> torch.optim.Optimizer:
    name = config["optimizer"]
    if name not in optim.HPARAMS:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(optim.OPTIMIZERS)}")
    hparams = {key: config[key] for key in optim.HPARAMS[name] if key in config}
    return optim.build_optimizer(name, model.parameters(), config["lr"], **hparams)


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    logits = model(x)
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[torch.Tensor]:
    # A generator per (seed, epoch) makes the order independent of anything run before,
    # so a resumed run and a paired run see exactly the same batches.
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=generator).split(batch_size)


def train(config: dict, data: Splits | dict, on_epoch: EpochCallback | None = None,
          state: dict | None = None) -> list[dict]:
    """Train as `config` says; returns the per-epoch metrics, also passed to `on_epoch`.

    `on_epoch(metrics, get_state)` is called after every epoch; `get_state()` returns a
    checkpoint that `state=` accepts to continue the run exactly where it stopped.
    A non-finite loss ends the run at once, reported with val_loss = inf, diverged = True.
    """
    config = {**DEFAULTS, **config}
    tensors = data if isinstance(data, dict) else as_tensors(data)
    torch.manual_seed(config["seed"])
    model = MLP(config["hidden"])
    optimizer = build_optimizer(model, config)
    first_epoch = 1
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        first_epoch = state["epoch"] + 1

    x_train, y_train = tensors["x_train"], tensors["y_train"]
    history = []

    def evaluate_splits(metrics: dict) -> dict:
        model.eval()
        metrics["val_loss"], metrics["val_acc"] = evaluate(model, tensors["x_val"], tensors["y_val"])
        if config["eval_test"]:
            metrics["test_loss"], metrics["test_acc"] = evaluate(model, tensors["x_test"], tensors["y_test"])
        return metrics

    def record(metrics: dict) -> None:
        history.append(metrics)
        if on_epoch is not None:
            epoch = metrics["epoch"]
            on_epoch(metrics, lambda: {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch})

    if config["eval_initial"] and first_epoch == 1:
        record(evaluate_splits({"epoch": 0, "train_loss": evaluate(model, x_train, y_train)[0],
                                "diverged": False, "epoch_time": 0.0}))
    for epoch in range(first_epoch, config["epochs"] + 1):
        started = time.perf_counter()
        model.train()
        total, diverged = 0.0, False
        for batch in epoch_batches(len(y_train), config["batch_size"], config["seed"], epoch):
            loss = F.cross_entropy(model(x_train[batch]), y_train[batch])
            value = loss.item()
            if not math.isfinite(value):
                diverged = True
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += value * len(batch)
        train_time = time.perf_counter() - started

        metrics = evaluate_splits({"epoch": epoch, "train_loss": total / len(y_train), "diverged": diverged,
                                   "epoch_time": train_time})
        if not math.isfinite(metrics["val_loss"]):
            metrics["diverged"] = True
        if metrics["diverged"]:
            metrics.update(train_loss=math.inf, val_loss=math.inf, val_acc=0.0)
            if config["eval_test"]:
                metrics.update(test_loss=math.inf, test_acc=0.0)
        record(metrics)
        if metrics["diverged"]:
            break
    return history
