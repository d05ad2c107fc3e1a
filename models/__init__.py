"""The mnist1d data and the MLP every experiment trains."""
from models.data import DataSpec, Splits, load_data
from models.mlp import MLP, population_gradients, population_logits, seeded_parameters

__all__ = ["DataSpec", "Splits", "load_data", "MLP", "population_gradients", "population_logits", "seeded_parameters"]
