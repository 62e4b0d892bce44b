"""IR op types. Importing this package registers every op in `OP_TYPES`."""

from .attention import LinearAttention, SpikeAttention, StochasticAttention
from .base import OP_TYPES, Op, Shape
from .io import DECODINGS, LAYOUTS, Input, Output
from .neuron import FLOAT_FORMS, IF, LIF, register_form
from .shape import Permute, Reshape
from .synapse import Add, AvgPool2d, BatchNorm, Conv1d, Conv2d, Dense, MaxPool2d, Scale, SumPool2d

__all__ = [
    "OP_TYPES", "Op", "Shape", "Input", "Output", "LAYOUTS", "DECODINGS", "LIF", "IF", "FLOAT_FORMS", "register_form",
    "Reshape", "Permute", "Dense", "Conv1d", "Conv2d", "SumPool2d", "AvgPool2d", "MaxPool2d",
    "Add", "Scale", "BatchNorm", "SpikeAttention", "StochasticAttention", "LinearAttention",
]
