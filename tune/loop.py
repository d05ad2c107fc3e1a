"""The train loop every trial goes through, tuning or final. It knows nothing of Ray.

A run is a flat config dict:
    optimizer   registry name (optim.REGISTRY)
    lr          learning rate
    <hparams>   the optimizer's own hyperparameters (its record's hparams); others are ignored
    hidden      MLP widths, default (100, 100)
    epochs      epochs to train
    batch_size  minibatch size, default 100
    seed        seeds the initial weights and the batch order (paired runs share both)
    eval_test   also evaluate the test split each epoch (final runs only; tuning never sees it)
    eval_initial  first report epoch 0: the metrics at initialisation, before any step

`train_population` trains configs that differ only in seed, lr and the optimizer's hyperparameters as
one stacked model with an explicit backward: every trial runs it (a tuning trial is a population of
one, 0.6x the CPU of `train` for Adam; a final group has one member per paired seed). `train` trains
one config the plain PyTorch way (autograd and the optimizer's torch.optim wrapper): the reference
that each member must match, and what a user's own script would run.
"""
import functools
import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import optim
from models import MLP, Splits, population_gradients, population_logits, seeded_parameters
from models.aten import log_softmax_backward

EpochCallback = Callable[[dict, Callable[[], dict]], None]
PopulationCallback = Callable[[list[dict | None], Callable[[], dict]], None]
DEFAULTS = {"hidden": (100, 100), "batch_size": 100, "seed": 0, "eval_test": False, "eval_initial": False}
# What the members of a population must share: they are one stacked model stepped batch by batch.
SHARED = ("optimizer", "hidden", "epochs", "batch_size")


def as_tensors(data: Splits) -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(array) for name, array in vars(data).items()}


def optimizer_hparams(config: dict) -> dict:
    return {key: config[key] for key in optim.optimizer_info(config["optimizer"]).hparams if key in config}


def build_optimizer(model: torch.nn.Module, config: dict) -> torch.optim.Optimizer:
    return optim.build_optimizer(config["optimizer"], model.parameters(), config["lr"], **optimizer_hparams(config))


def class_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """The log-softmax of logits [..., B, 10] over the classes, laid out classes first, [..., 10, B].

    Every loss here is taken from it, single run and population alike, so that they round alike; torch
    computes a log-softmax over a leading axis of 10 classes 2-8 times faster than over a trailing one.
    """
    return torch.log_softmax(logits.mT, -2)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """F.cross_entropy(logits, labels) for logits [B, 10], to float rounding (see class_log_probs)."""
    return F.nll_loss(class_log_probs(logits).mT, labels)


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    logits = model(x)
    return cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[torch.Tensor]:
    # A generator per (seed, epoch) makes the order independent of anything run before,
    # so a resumed run and a paired run see exactly the same batches.
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=generator).split(batch_size)


def finish_row(metrics: dict, eval_test: bool) -> dict:
    """An epoch's metrics as reported: a non-finite val loss is divergence, and a diverged run reports
    inf losses and zero accuracy."""
    if not math.isfinite(metrics["val_loss"]):
        metrics["diverged"] = True
    if metrics["diverged"]:
        metrics.update(train_loss=math.inf, val_loss=math.inf, val_acc=0.0)
        if eval_test:
            metrics.update(test_loss=math.inf, test_acc=0.0)
    return metrics


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
            loss = cross_entropy(model(x_train[batch]), y_train[batch])
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
        record(finish_row(metrics, config["eval_test"]))
        if metrics["diverged"]:
            break
    return history


# --- populations ---------------------------------------------------------------------------------


def check_shared(configs: list[dict]) -> None:
    """ValueError naming the first field that the configs of a population disagree on."""
    for field in SHARED:
        values = [tuple(int(width) for width in config[field]) if field == "hidden" else config[field]
                  for config in configs]
        if any(value != values[0] for value in values):
            raise ValueError(f"a population's configs must share {field!r}; got {values}")


class Population:
    """The members still training (`members`: indices into the configs) and their stacked optimizer."""

    def __init__(self, configs: list[dict]):
        # As in train: each member starts from its seed's weights.
        params = seeded_parameters(configs[0]["hidden"], [config["seed"] for config in configs])
        self.optimizer = optim.build_population(configs[0]["optimizer"], params,
                                                [config["lr"] for config in configs],
                                                [optimizer_hparams(config) for config in configs])
        self.members = list(range(len(configs)))

    def drop(self, stopped: set[int]) -> list[int]:
        """Stop training the members `stopped`; returns the positions of those kept."""
        kept = [position for position, member in enumerate(self.members) if member not in stopped]
        self.optimizer.keep(kept)
        self.members = [self.members[position] for position in kept]
        return kept

    def state(self, epoch: int) -> dict:
        """A checkpoint of live tensors (copy it to keep it); loads with torch.load(weights_only=True)."""
        return {"epoch": epoch, "members": list(self.members),
                "params": list(self.optimizer.params),
                "optimizer": self.optimizer.state_dict()}

    def load(self, state: dict) -> None:
        self.drop(set(self.members) - set(state["members"]))
        self.optimizer.set_params(state["params"])
        self.optimizer.load_state_dict(state["optimizer"])


@functools.cache
def mean_loss_grad(batch_size: int) -> float:
    """The gradient of a mean over `batch_size` losses at each label's log-probability, as nll_loss's backward
    computes it: -1/B, divided in float32."""
    return (-1 / torch.tensor(float(batch_size))).item()


def member_losses_and_grads(params: list[torch.Tensor], x: torch.Tensor,
                            y: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Each member's per-sample cross-entropy [K, B] on its inputs x [K, B, 40] and labels y [K, B], and the
    gradients of each member's mean loss, computed as `train`'s loss.backward() computes them."""
    layer_inputs = []
    log_probs = class_log_probs(population_logits(params, x, layer_inputs))  # [K, 10, B]
    labels = y.unsqueeze(1)
    losses = -log_probs.gather(1, labels).squeeze(1)
    # Cross-entropy's backward: nll_loss's, then log-softmax's, back in the logits' layout as autograd's.
    grad_log_probs = torch.zeros_like(log_probs).scatter_(1, labels, mean_loss_grad(y.shape[1]))
    grad_logits = log_softmax_backward(grad_log_probs, log_probs, 1).mT
    return losses, population_gradients(params, layer_inputs, grad_logits)


@torch.no_grad()
def evaluate_members(params: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> list[tuple[float, float]]:
    """(loss, accuracy) of each member on one split."""
    logits = population_logits(params, x)
    losses = -class_log_probs(logits).gather(1, y.expand(len(logits), 1, -1)).squeeze(1)
    accuracies = (logits.argmax(2) == y).float().mean(1)
    return list(zip(losses.mean(1).tolist(), accuracies.tolist()))


def member_rows(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The rows of `tensor` at `index` [K, B], as [K, B, ...]: each member's own batch."""
    return tensor.index_select(0, index.flatten()).view(*index.shape, *tensor.shape[1:])


def train_members_one_epoch(population: Population, configs: list[dict], x_train: torch.Tensor,
                            y_train: torch.Tensor, epoch: int) -> dict[int, float]:
    """One epoch of every member on its own seed's batch order; returns each member's train loss.

    A member whose batch loss is not finite stops there, before stepping, as in `train`: its loss is inf
    and it leaves the population.
    """
    n, batch_size = len(y_train), configs[0]["batch_size"]
    orders = torch.stack([torch.cat(epoch_batches(n, batch_size, configs[member]["seed"], epoch))
                          for member in population.members])
    totals = torch.zeros(len(orders), dtype=torch.float64)
    stopped = {}
    for start in range(0, n, batch_size):
        while population.members:
            batch = orders[:, start:start + batch_size]
            losses, grads = member_losses_and_grads(population.optimizer.params, member_rows(x_train, batch),
                                                    member_rows(y_train, batch))
            batch_losses = losses.mean(1).double() * batch.shape[1]  # as train's loss.item() * len(batch)
            if math.isfinite(batch_losses.sum().item()):  # float64: a sum of finite float32 values stays finite
                break
            diverged = {member for member, loss in zip(population.members, batch_losses.tolist())
                        if not math.isfinite(loss)}
            stopped.update(dict.fromkeys(diverged, math.inf))
            kept = population.drop(diverged)
            orders, totals = orders[kept], totals[kept]
        if not population.members:
            break
        population.optimizer.step(grads)
        totals += batch_losses
    return dict(zip(population.members, (totals / n).tolist())) | stopped


def evaluate_population(population: Population, configs: list[dict], tensors: dict,
                        train_split: bool = False) -> dict[int, dict]:
    """Each training member's metrics on the validation split (and test where its config asks for it;
    the train split first when `train_split`)."""
    if not population.members:  # every member stopped during the epoch
        return {}
    params = population.optimizer.params
    splits = (["train"] if train_split else []) + ["val"]
    if any(configs[member]["eval_test"] for member in population.members):
        splits.append("test")
    results = {split: evaluate_members(params, tensors[f"x_{split}"], tensors[f"y_{split}"]) for split in splits}
    metrics = {}
    for position, member in enumerate(population.members):
        row = {}
        for split, pairs in results.items():
            loss, accuracy = pairs[position]
            if split == "train":
                row["train_loss"] = loss
            elif split == "val" or configs[member]["eval_test"]:
                row[f"{split}_loss"], row[f"{split}_acc"] = loss, accuracy
        metrics[member] = row
    return metrics


def train_population(configs: list[dict], data: Splits | dict, on_epoch: PopulationCallback | None = None,
                     state: dict | None = None) -> list[list[dict]]:
    """Train the configs as one stacked model; returns one history per config, as `train` returns it.

    The configs must share optimizer, hidden, epochs and batch_size (ValueError naming the field
    otherwise); they may differ in seed, lr, the optimizer's hyperparameters, eval_test and
    eval_initial. Each member gets what `train(config)` gives it, to float rounding: its seed's initial
    weights and batch order, its own optimizer state and hyperparameters. A member that diverges stops
    and is reported as `train` reports it; the others go on. A member's epoch_time is the population's
    epoch time divided by the number of members that started the epoch.

    `on_epoch(rows, get_state)` is called after every epoch (and after epoch 0 when a member has
    eval_initial): rows[i] is config i's metrics for that epoch, or None when member i has stopped
    before it (or has no epoch-0 row). `get_state()` returns a checkpoint that `state=` accepts, with the
    same configs, to continue exactly: {"epoch": int, "members": indices of the members still
    training, "params": their stacked parameters, "optimizer": the stacked Adam and rule state}. Its
    tensors are live: copy it to keep it. It loads with torch.load(weights_only=True).
    """
    if not configs:
        raise ValueError("a population needs at least one config")
    configs = [{**DEFAULTS, **config} for config in configs]
    check_shared(configs)
    tensors = data if isinstance(data, dict) else as_tensors(data)
    population = Population(configs)
    first_epoch = 1
    if state is not None:
        population.load(state)
        first_epoch = state["epoch"] + 1
    histories: list[list[dict]] = [[] for _ in configs]

    def record(rows: dict[int, dict], epoch: int) -> None:
        for member, row in rows.items():
            histories[member].append(row)
        if on_epoch is not None and rows:
            on_epoch([rows.get(member) for member in range(len(configs))], lambda: population.state(epoch))

    if first_epoch == 1 and any(config["eval_initial"] for config in configs):
        initial = evaluate_population(population, configs, tensors, train_split=True)
        record({member: {"epoch": 0, "train_loss": metrics.pop("train_loss"), "diverged": False,
                         "epoch_time": 0.0, **metrics}
                for member, metrics in initial.items() if configs[member]["eval_initial"]}, 0)
    for epoch in range(first_epoch, configs[0]["epochs"] + 1):
        if not population.members:
            break
        started, starting = time.perf_counter(), len(population.members)
        train_losses = train_members_one_epoch(population, configs, tensors["x_train"], tensors["y_train"], epoch)
        epoch_time = (time.perf_counter() - started) / starting
        evaluated = evaluate_population(population, configs, tensors)
        rows = {}
        for member, train_loss in train_losses.items():
            placeholder = {"val_loss": math.inf, "val_acc": 0.0}  # for a member stopped mid-epoch
            metrics = {"epoch": epoch, "train_loss": train_loss, "diverged": member not in evaluated,
                       "epoch_time": epoch_time, **evaluated.get(member, placeholder)}
            rows[member] = finish_row(metrics, configs[member]["eval_test"])
        population.drop({member for member, row in rows.items() if row["diverged"]})
        record(rows, epoch)
    return histories
