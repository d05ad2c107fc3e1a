"""The optimizer registry: every record holds together, and an optimizer defined outside optim/ takes one
file with one registration line to be trained, tested and reported like the built-in ones."""
import inspect
import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

import optim
from conftest import ROOT, run_cli
from tune.experiments import SpecError, from_dict

NAMES = list(optim.REGISTRY)
LR = {"type": "loguniform", "low": 1e-4, "high": 1e-1}

# A user's optimizer: Adam stepping on the sign of each gradient, and its one registration line.
SIGN_ADAM = '''"""Sign-Adam: Adam stepping on sign(gradient)."""
import torch

import optim
from optim.base import GradientTransformWrapper


def take_signs(grads):
    for grad in grads:
        grad.sign_()


class SignAdam(GradientTransformWrapper):
    def __init__(self, params, lr=1e-3, base_class=torch.optim.Adam, **base_kwargs):
        super().__init__(params, lr, base_class, base_kwargs)

    @staticmethod
    def validate_hparams(hparams):
        return {}

    def transform_gradients(self):
        take_signs(self.all_grads())

    @staticmethod
    def transform_members(grads, lrs, hparams, state):
        take_signs(grads)
        return lrs


optim.register(optim.OptimInfo("signadam", SignAdam, color="#17becf", step_time_target=1.1))
'''


def spec(optimizers: dict, **fields) -> dict:
    return {"name": "registry", "title": "t", "seed_file": "s", "hypothesis": "h", "optimizers": optimizers,
            **fields}


@pytest.mark.parametrize("name", NAMES)
def test_record_defaults_are_the_constructors_and_pass_its_validation(name):
    info = optim.REGISTRY[name]
    assert info.name == name
    signature = inspect.signature(info.optimizer)
    for hparam, record in info.hparams.items():
        assert signature.parameters[hparam].default == record.default
    group = optim.build_optimizer(name, [torch.zeros(1, requires_grad=True)], 1e-3).param_groups[0]
    assert info.validated({}) == {key: group[key] for key in info.hparams}


@pytest.mark.parametrize("name", [name for name in NAMES if name != "adam"])
def test_default_search_space_is_a_valid_spec(name):
    from_dict(spec({"adam": {"lr": LR}, name: {"lr": LR, **optim.REGISTRY[name].default_space()}}))


def test_every_optimizer_has_its_own_colour():
    colours = [info.color for info in optim.REGISTRY.values()]
    assert len(set(colours)) == len(colours)


def test_a_name_is_registered_once():
    cgi = optim.REGISTRY["cgi"]
    optim.register(cgi)  # the same record again: a module imported twice
    with pytest.raises(ValueError, match="cgi"):
        optim.register(optim.OptimInfo("cgi", optim.GNSAdam, color="#000000", step_time_target=1.0))
    assert optim.REGISTRY["cgi"] is cgi


@pytest.mark.parametrize(("name", "key", "dist"), [
    ("gao", "beta", {"type": "uniform", "low": 0.5, "high": 1.0}),
    ("cgi", "inversion_frequency", {"type": "choice", "values": [5, 0]}),
    ("gns", "norm_eps", {"type": "uniform", "low": 0, "high": 1e-3}),
])
def test_spec_ranges_are_checked_by_the_optimizers_own_validation(name, key, dist):
    with pytest.raises(SpecError, match=f"optimizers.{name}.{key}: Invalid {key}"):
        from_dict(spec({"adam": {"lr": LR}, name: {"lr": LR, key: dist}}))


def test_a_spec_names_the_module_of_an_optimizer_defined_elsewhere():
    with pytest.raises(SpecError, match="unknown optimizer.*imports"):
        from_dict(spec({"adam": {"lr": LR}, "signadam": {"lr": LR}}))
    with pytest.raises(SpecError, match="imports: cannot import 'no_such_module'.*PYTHONPATH"):
        from_dict(spec({"adam": {"lr": LR}, "cgi": {"lr": LR}}, imports=["no_such_module"]))


# --- an optimizer registered outside optim/ -----------------------------------------------------------


@pytest.fixture(scope="module")
def user_module(tmp_path_factory):
    """The folder of a user's module sign_adam.py, and an environment whose PYTHONPATH has it."""
    folder = tmp_path_factory.mktemp("user")
    (folder / "sign_adam.py").write_text(SIGN_ADAM)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))}
    return folder, env


def test_the_registry_wide_tests_cover_a_newly_registered_optimizer(user_module):
    _, env = user_module
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "sign_adam", "-k", "signadam",
                           "tests/test_optim.py", "tests/test_population.py", "tests/test_registry.py"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    passed = int(done.stdout.strip().splitlines()[-1].split(" passed")[0].split()[-1])
    assert passed >= 12  # those of test_optim, test_population and test_registry parametrized over names


def test_an_optimizer_registered_outside_optim_runs_through_the_cli(user_module, tmp_path):
    folder, env = user_module
    spec_file = folder / "signadam.json"
    spec_file.write_text(json.dumps(spec({"adam": {"lr": LR}, "signadam": {"lr": LR}}, name="signadam",
                                         imports=["sign_adam"])))
    result = run_cli("--spec", spec_file, "--smoke", "--repeats", "1", "--cpus", "2", "--output", tmp_path,
                     "--name", "run", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    trials = pd.read_parquet(run / "trials.parquet")
    mine = trials[trials["optimizer"] == "signadam"]
    assert len(mine[mine["phase"] == "tune"]) == 3  # --smoke: 3 trials a study
    assert sorted(mine[mine["phase"] == "final"]["seed"]) == [1, 2]  # --smoke: 2 seeds
    curves = pd.read_parquet(run / "curves.parquet")
    initial = curves[(curves["phase"] == "final") & (curves["epoch"] == 0)].pivot_table(
        index="seed", columns="optimizer", values="val_loss")
    assert (initial["signadam"] == initial["adam"]).all()  # paired with Adam's final runs
    assert "| signadam |" in (run / "report.md").read_text()
    # the saved spec names the module, so a later process (--resume, the analysis) registers it too
    assert json.loads((run / "signadam" / "spec.json").read_text())["imports"] == ["sign_adam"]
    (run / "report.md").unlink()
    rebuilt = subprocess.run([sys.executable, "-m", "analysis", run], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=600)
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    assert "| signadam |" in (run / "report.md").read_text()
