"""npuc's intermediate representation: a typed graph of neuromorphic processing elements.

* `Graph` owns the topology; nodes hold frozen `Op` dataclasses (`npuc.ir.ops`).
* `npuc.ir.values` holds nested values: encodings, integer parameters, numeric profiles.
* `save_graph` / `load_graph` persist a graph as JSON + npz; `dump` prints it.
"""

from .graph import Graph, GraphError, Node, Ref, chain
from .ops import *  # noqa: F403
from .ops import __all__ as _ops_all
from .serialize import GraphFileError, load_graph, save_graph
from .values import (
    QLIF,
    Encoding,
    NumericProfile,
    QAttention,
    QInput,
    QLinearAttention,
    QScale,
    QSynapse,
)

__all__ = [
    "Graph", "GraphError", "GraphFileError", "Node", "Ref", "chain", "save_graph", "load_graph",
    "Encoding", "NumericProfile", "QInput", "QLIF", "QScale", "QSynapse", "QAttention", "QLinearAttention", *_ops_all,
]
