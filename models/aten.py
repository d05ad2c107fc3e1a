"""The backward kernels autograd runs for ReLU and log-softmax, called directly by the population's explicit
backward (models.mlp), so that each member's gradients round exactly as its single run's autograd does.

`_log_softmax_backward_data` is private to torch: it is used from the torch version whose signature this
was written for (1.11) on; before it, or should it vanish, the public formula stands in, equal to float
rounding.
"""

import torch

LOG_SOFTMAX_BACKWARD_SINCE = (1, 11)  # its signature since: (grad_output, output, dim, input_dtype)
TORCH_VERSION = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
HAS_LOG_SOFTMAX_BACKWARD = (TORCH_VERSION >= LOG_SOFTMAX_BACKWARD_SINCE
                            and hasattr(torch.ops.aten, "_log_softmax_backward_data"))


def relu_backward(grad: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """The gradient through a ReLU given its output, as autograd computes it."""
    return torch.ops.aten.threshold_backward(grad, output, 0)


def log_softmax_backward(grad: torch.Tensor, output: torch.Tensor, dim: int) -> torch.Tensor:
    """The gradient through a log-softmax over `dim` given its output, as autograd computes it."""
    if HAS_LOG_SOFTMAX_BACKWARD:
        return torch.ops.aten._log_softmax_backward_data(grad, output, dim, output.dtype)
    return grad - output.exp() * grad.sum(dim, keepdim=True)
