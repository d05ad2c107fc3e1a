"""Experiment specs: one JSON file per write-up in tune/specs/, validated on load.

A spec says what is compared and how: data sizes, model, each optimizer's search space,
the tuning budget (trials, epochs, ASHA), the tuning metric, the final runs, and what the
write-up itself reported, so the report can show it beside our numbers. An optimizer defined
outside optim/ is found through "imports": modules (on PYTHONPATH) that register it when imported.
"""
import importlib
import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import optim
from optim.base import positive_int
from models import DataSpec
from tune.run_folder import SPEC_FILE, write_json
from tune.space import validate_space

SPEC_DIR = Path(__file__).parent / "specs"
BASELINE = "adam"
BENCHMARK = "benchmark"  # the experiment of every optimizer, listed and reported last
METRIC_MODES = {"val_loss": "min", "val_acc": "max"}
# best_val_epoch: a run is judged at its epoch of best validation metric (early stopping), and a
# tuning trial by its best validation value so far; final_epoch: both at the last epoch trained.
PRIMARY_METRICS = ("best_val_epoch", "final_epoch")
# Upper bounds of every count in a spec or on the command line (README, --help): far beyond any
# real experiment on mnist1d, so that a typo is refused at once instead of hanging a run later.
LIMITS = {"num_samples": 10_000, "epochs": 10_000, "seeds": 1_000, "repeats": 100, "concurrency": 1_000,
          "grace_period": 10_000, "reduction_factor": 100, "batch_size": 100_000, "width": 100_000}
SMOKE = {"num_samples": 3, "tune_epochs": 3, "final_epochs": 3, "seeds": 2, "repeats": 2}


@dataclass(frozen=True)
class StudyBudget:
    """One optimizer's tuning budget; every optimizer of an experiment gets the same."""

    num_samples: int = 30
    epochs: int = 25
    metric: str = "val_loss"
    mode: str = "min"
    grace_period: int = 1
    reduction_factor: int = 3
    concurrency: int = 2  # most trials of one study running at once, whatever the cluster size
    repeats: int = 3  # independent studies per optimizer, each with its own search seed


class SpecError(ValueError):
    """A spec that cannot be run; the message says which field and why."""


@dataclass(frozen=True)
class FinalRuns:
    epochs: int = 50
    seeds: int = 10
    primary: str = "best_val_epoch"  # one of PRIMARY_METRICS


@dataclass(frozen=True)
class ExperimentSpec:
    name: str
    title: str
    seed_file: str
    hypothesis: str
    optimizers: dict  # name -> search space (data, see tune.space)
    data: DataSpec = DataSpec()
    hidden: tuple = (100, 100)
    batch_size: int = 100
    tuning: StudyBudget = StudyBudget()
    final: FinalRuns = FinalRuns()
    reported: dict = field(default_factory=dict)  # optimizer -> the write-up's best hyperparameters
    reported_metrics: dict = field(default_factory=dict)  # optimizer -> {metric: value}
    reported_verdict: str = ""  # the write-up's own conclusion: "supported" / "not supported"
    choices: tuple = ()  # what this spec chose where the write-up was silent
    imports: tuple = ()  # modules that register optimizers of this spec (optim.register) when imported

    @property
    def candidates(self) -> list[str]:
        return [name for name in self.optimizers if name != BASELINE]

    @property
    def objective(self) -> str:
        """The result key the search optimises: the validation metric, best so far when the
        primary metric is early-stopped, so that ASHA compares trials as the verdict will."""
        metric = self.tuning.metric
        return f"best_{metric}" if self.final.primary == "best_val_epoch" else metric

    def fixed_config(self) -> dict:
        """Config keys shared by every run of the experiment."""
        return {"hidden": list(self.hidden), "batch_size": self.batch_size}

    def to_dict(self) -> dict:
        spec = asdict(self)
        spec["model"] = {"hidden": list(spec.pop("hidden"))}
        spec["choices"] = list(self.choices)
        spec["imports"] = list(self.imports)
        return spec

    def with_budget(self, num_samples=None, seeds=None, smoke=False, repeats=None) -> "ExperimentSpec":
        """The same experiment with budgets overridden (for every optimizer alike)."""
        tuning, final = self.tuning, self.final
        if smoke:
            tuning = replace(tuning, num_samples=SMOKE["num_samples"], epochs=SMOKE["tune_epochs"],
                             grace_period=1, repeats=SMOKE["repeats"])
            final = replace(final, epochs=SMOKE["final_epochs"], seeds=SMOKE["seeds"])
        if num_samples is not None:
            tuning = replace(tuning, num_samples=num_samples)
        if repeats is not None:
            tuning = replace(tuning, repeats=repeats)
        if seeds is not None:
            final = replace(final, seeds=seeds)
        return replace(self, tuning=tuning, final=final)


def _require(condition: bool, where: str, message: str) -> None:
    if not condition:
        raise SpecError(f"{where}: {message}")


def _count(value, where: str, limit: str) -> int:
    """`value` if it is an integer from 1 to LIMITS[limit], else SpecError naming `where`."""
    _require(isinstance(value, int), where, f"must be an integer, got {value!r}")
    try:
        return positive_int(where, value, LIMITS[limit])
    except ValueError as error:
        raise SpecError(str(error)) from None


def from_dict(raw: dict, where: str = "spec") -> ExperimentSpec:
    """Validate `raw` (the JSON form) and build the spec; SpecError names the bad field."""
    _require(isinstance(raw, dict), where, "must be a JSON object")
    known = {"name", "title", "seed_file", "hypothesis", "data", "model", "batch_size", "optimizers",
             "tuning", "final", "reported", "reported_metrics", "reported_verdict", "choices", "imports"}
    unknown = sorted(set(raw) - known)
    _require(not unknown, where, f"unknown field(s) {', '.join(unknown)}")
    for key in ("name", "title", "seed_file", "hypothesis"):
        _require(isinstance(raw.get(key), str) and raw[key].strip() != "", f"{where}.{key}", "must be a non-empty string")
    _require(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", raw["name"]) is not None, f"{where}.name",
             f"must be a plain folder name (letters, digits, - and _), got {raw['name']!r}")
    where = f"spec {raw['name']}"

    try:
        data = DataSpec(**raw.get("data", {}))
    except (TypeError, ValueError) as error:
        raise SpecError(f"{where}.data: {error}") from None
    hidden = raw.get("model", {}).get("hidden", [100, 100])
    _require(isinstance(hidden, list) and hidden != [], f"{where}.model.hidden", "must be a non-empty list of widths")
    for width in hidden:
        _count(width, f"{where}.model.hidden", "width")

    imports = raw.get("imports", [])
    _require(isinstance(imports, list) and all(isinstance(name, str) and name for name in imports),
             f"{where}.imports", "must be a list of module names")
    for module in imports:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise SpecError(f"{where}.imports: cannot import {module!r} ({error}); "
                            "put the folder that holds it on PYTHONPATH") from None

    optimizers = raw.get("optimizers")
    _require(isinstance(optimizers, dict), f"{where}.optimizers", "must map optimizer names to search spaces")
    _require(BASELINE in optimizers, f"{where}.optimizers", f"must include the baseline {BASELINE!r}")
    _require(len(optimizers) >= 2, f"{where}.optimizers", f"must compare at least one optimizer with {BASELINE}")
    for name, space in optimizers.items():
        at = f"{where}.optimizers.{name}"
        _require(name in optim.REGISTRY, at, f"unknown optimizer; known: {', '.join(optim.REGISTRY)} "
                 "(one defined elsewhere: name its module under \"imports\")")
        try:
            validate_space(space, at)
        except ValueError as error:
            raise SpecError(str(error)) from None
        _require("lr" in space, at, "must tune lr")
        extra = sorted(set(space) - {"lr"} - set(optim.REGISTRY[name].hparams))
        _require(not extra, at, f"{name} has no hyperparameter(s) {', '.join(extra)}")
        _require(space["lr"] == optimizers[BASELINE]["lr"], f"{at}.lr",
                 "every optimizer must search the same lr range as the baseline")
        _check_ends(name, space, at)

    tuning = _section(raw, "tuning", StudyBudget,
                      ("num_samples", "epochs", "grace_period", "reduction_factor", "concurrency", "repeats"), where)
    _require(tuning.metric in METRIC_MODES, f"{where}.tuning.metric", f"must be one of {', '.join(METRIC_MODES)}")
    _require(tuning.mode == METRIC_MODES[tuning.metric], f"{where}.tuning.mode",
             f"{tuning.metric} is optimised with mode {METRIC_MODES[tuning.metric]!r}")
    _require(tuning.grace_period <= tuning.epochs, f"{where}.tuning.grace_period", "must not exceed tuning.epochs")
    _require(tuning.reduction_factor >= 2, f"{where}.tuning.reduction_factor", "must be at least 2")

    final = _section(raw, "final", FinalRuns, ("epochs", "seeds"), where)
    _require(final.primary in PRIMARY_METRICS, f"{where}.final.primary", f"must be one of {', '.join(PRIMARY_METRICS)}")

    batch_size = _count(raw.get("batch_size", 100), f"{where}.batch_size", "batch_size")
    verdict = raw.get("reported_verdict", "")
    _require(verdict in ("", "supported", "not supported"), f"{where}.reported_verdict",
             "must be 'supported' or 'not supported'")
    return ExperimentSpec(
        name=raw["name"], title=raw["title"], seed_file=raw["seed_file"], hypothesis=raw["hypothesis"],
        optimizers=optimizers, data=data, hidden=tuple(hidden), batch_size=batch_size, tuning=tuning,
        final=final, reported=raw.get("reported", {}), reported_metrics=raw.get("reported_metrics", {}),
        reported_verdict=verdict, choices=tuple(raw.get("choices", ())), imports=tuple(imports),
    )


def _section(raw: dict, key: str, kind, positive_fields: tuple, where: str):
    """The dataclass `kind` built from raw[key], its integer fields checked."""
    values = raw.get(key, {})
    _require(isinstance(values, dict), f"{where}.{key}", "must be a JSON object")
    for field_name in positive_fields:
        if field_name in values:
            _count(values[field_name], f"{where}.{key}.{field_name}", field_name)
    try:
        return kind(**values)
    except TypeError as error:
        raise SpecError(f"{where}.{key}: {error}") from None


def _check_ends(name: str, space: dict, where: str) -> None:
    """Refuse a range whose ends (or a choice) the optimizer itself would reject (e.g. rank 0, beta 1)."""
    lr = space["lr"]
    if lr["type"] != "choice":
        _require(lr["low"] > 0, f"{where}.lr", f"low must be > 0, got {lr['low']}")
    for key, dist in space.items():
        if key == "lr":
            continue
        for value in _ends(dist):
            try:
                optim.REGISTRY[name].validated({key: value})
            except (TypeError, ValueError) as error:
                raise SpecError(f"{where}.{key}: {error}") from None


def _ends(dist: dict) -> list:
    """The values at the ends of a validated search-space entry (tune.space), or its choices."""
    if dist["type"] == "choice":
        return dist["values"]
    if dist["type"] == "int":
        return [int(dist["low"]), int(dist["high"])]
    return [dist["low"], dist["high"]]


def load_spec(path: Path | str) -> ExperimentSpec:
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise SpecError(f"{path}: cannot read spec ({error})") from None
    return from_dict(raw, where=str(path))


def save_spec(spec: ExperimentSpec, run_dir: Path | str) -> None:
    """<run_dir>/<name>/spec.json: the spec as run (budgets after overrides), which --resume reads back."""
    folder = Path(run_dir) / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / SPEC_FILE, spec.to_dict())


def builtin_specs() -> dict[str, ExperimentSpec]:
    """The six experiments shipped with the project, by name, the benchmark last."""
    specs = [load_spec(path) for path in sorted(SPEC_DIR.glob("*.json"))]
    specs.sort(key=lambda spec: spec.name == BENCHMARK)
    return {spec.name: spec for spec in specs}
