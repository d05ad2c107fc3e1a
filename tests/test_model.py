import pytest
import torch

import models.aten
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


@pytest.mark.parametrize("private", [True, False])
def test_the_explicit_backward_kernels_match_autograd(private, monkeypatch):
    """With torch's private log-softmax backward, or the public formula standing in for it."""
    monkeypatch.setattr(models.aten, "HAS_LOG_SOFTMAX_BACKWARD", private and models.aten.HAS_LOG_SOFTMAX_BACKWARD)
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(3, 10, 7, generator=generator, requires_grad=True)
    grad = torch.randn(3, 10, 7, generator=generator)
    pairs = {"log_softmax": (lambda x: torch.log_softmax(x, 1),
                             lambda g, output: models.aten.log_softmax_backward(g, output, 1)),
             "relu": (torch.relu, models.aten.relu_backward)}
    for forward, backward in pairs.values():
        output = forward(inputs)
        (expected,) = torch.autograd.grad(output, inputs, grad)
        torch.testing.assert_close(backward(grad, output.detach()), expected, rtol=1e-5, atol=1e-7)
