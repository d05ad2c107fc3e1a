"""The multi-layer perceptron the write-ups trained on mnist1d."""
from collections.abc import Sequence

import torch
from torch import nn

from models.aten import relu_backward

N_INPUTS = 40  # mnist1d sequences have 40 points
N_CLASSES = 10


class MLP(nn.Sequential):
    """40 inputs, a ReLU layer per entry of `hidden`, 10 output logits."""

    def __init__(self, hidden: Sequence[int] = (100, 100)):
        if not hidden or any(int(width) < 1 for width in hidden):
            raise ValueError(f"hidden widths must be positive integers, got {list(hidden)}")
        layers, width_in = [], N_INPUTS
        for width in hidden:
            layers += [nn.Linear(width_in, int(width)), nn.ReLU()]
            width_in = int(width)
        layers.append(nn.Linear(width_in, N_CLASSES))
        super().__init__(*layers)
        self.hidden = tuple(int(width) for width in hidden)


def seeded_parameters(hidden: Sequence[int], seeds: Sequence[int]) -> list[torch.Tensor]:
    """The initial parameters of `MLP(hidden)` built after torch.manual_seed(seed), for each of the K seeds,
    stacked on a leading member axis [K, *shape] in `parameters()` order (weights [K, out, in], biases
    [K, out]).

    Drawn by re-initialising one MLP per seed (nn.Linear's reset_parameters draws as its construction does)
    with only the CPU generator seeded (all that torch.manual_seed changes for a CPU model): 0.1 ms a member
    instead of 0.4.
    """
    model = MLP(hidden)
    stacked = [torch.empty(len(seeds), *param.shape) for param in model.parameters()]
    with torch.no_grad():
        for member, seed in enumerate(seeds):
            torch.default_generator.manual_seed(seed)
            for layer in model:
                if isinstance(layer, nn.Linear):
                    layer.reset_parameters()
            for target, param in zip(stacked, model.parameters()):
                target[member] = param
    return stacked


def population_logits(params: Sequence[torch.Tensor], x: torch.Tensor,
                      layer_inputs: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Logits [K, B, 10] of the K stacked MLPs `params` on inputs x [K, B, 40], or [B, 40] for all.
    Each layer's input is appended to `layer_inputs` when given, for `population_gradients`."""
    x = x.expand(params[0].shape[0], *x.shape[-2:])
    layers = list(zip(params[::2], params[1::2]))
    for index, (weight, bias) in enumerate(layers):
        if layer_inputs is not None:
            layer_inputs.append(x)
        x = torch.baddbmm(bias.unsqueeze(1), x, weight.mT)  # nn.Linear's addmm, member by member
        if index < len(layers) - 1:
            x = torch.relu_(x)
    return x


def population_gradients(params: Sequence[torch.Tensor], layer_inputs: list[torch.Tensor],
                         grad_logits: torch.Tensor) -> list[torch.Tensor]:
    """Each parameter's gradient [K, ...], from the gradient of the loss with respect to the logits and the
    layer inputs that `population_logits` kept.

    Written out rather than left to autograd, whose bookkeeping cost 0.2-0.35 ms a step here (as much as a
    member's arithmetic): op by op as autograd computes nn.Linear's and ReLU's gradients for a single run
    (the weight's as grad_outᵀ x), so that every member's gradients round exactly as its single run's.
    """
    grads, grad = [], grad_logits
    for index in reversed(range(len(layer_inputs))):
        layer_input = layer_inputs[index]
        grads[:0] = [grad.mT.bmm(layer_input), grad.sum(1)]
        if index > 0:  # not for the data
            grad = relu_backward(grad.bmm(params[2 * index]), layer_input)  # the input is the ReLU's output
    return grads
