import pytest
import torch

from models import MLP, seeded_parameters


def test_default_mlp_shape():
    model = MLP()
    widths = [(layer.in_features, layer.out_features) for layer in model if isinstance(layer, torch.nn.Linear)]
    assert widths == [(40, 100), (100, 100), (100, 10)]
    assert model(torch.zeros(7, 40)).shape == (7, 10)


def test_one_hidden_layer():
    model = MLP(hidden=(32,))
    assert sum(isinstance(layer, torch.nn.Linear) for layer in model) == 2
    assert sum(p.numel() for p in model.parameters()) == 40 * 32 + 32 + 32 * 10 + 10


@pytest.mark.parametrize("hidden", [(), (0,), (100, -1)])
def test_bad_widths_raise(hidden):
    with pytest.raises(ValueError):
        MLP(hidden)


def test_seeded_parameters_are_those_of_an_mlp_built_after_manual_seed():
    seeds = [3, 7]
    stacked = seeded_parameters((32, 16), seeds)
    for member, seed in enumerate(seeds):
        torch.manual_seed(seed)
        for param, stacked_param in zip(MLP((32, 16)).parameters(), stacked, strict=True):
            assert torch.equal(stacked_param[member], param.detach())
