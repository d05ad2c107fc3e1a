"""The multi-layer perceptron the write-ups trained on mnist1d."""
from collections.abc import Sequence

import torch
from torch import nn

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


def stack_members(models: Sequence[MLP]) -> list[torch.Tensor]:
    """The models' parameters as a population: each stacked on a leading member axis, [K, *shape], as
    new leaf tensors in `parameters()` order (weights [K, out, in], biases [K, out])."""
    return [torch.stack(member_params).detach().requires_grad_()
            for member_params in zip(*(model.parameters() for model in models))]


class MemberLinear(torch.autograd.Function):
    """nn.Linear for K members at once: x [K, B, in], weight [K, out, in], bias [K, out].

    Its own backward computes each gradient in the orientation nn.Linear's does (the weight's as
    grad_outᵀ x), so that every member's gradients round exactly as its single run's.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return torch.baddbmm(bias.unsqueeze(1), x, weight.mT)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad_out.bmm(weight) if ctx.needs_input_grad[0] else None  # not for the data
        return grad_x, grad_out.mT.bmm(x), grad_out.sum(1)


def population_logits(params: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Logits [K, B, 10] of the K stacked MLPs `params` on inputs x [K, B, 40], or [B, 40] for all."""
    x = x.expand(len(params[0]), *x.shape[-2:])
    layers = list(zip(params[::2], params[1::2]))
    for index, (weight, bias) in enumerate(layers):
        x = MemberLinear.apply(x, weight, bias)
        if index < len(layers) - 1:
            x = torch.relu_(x)  # in place: MemberLinear keeps its input, not its output
    return x
