import pytest
import torch

from models import MLP


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
