"""The multi-layer perceptron the write-ups trained on mnist1d."""
from collections.abc import Sequence

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
