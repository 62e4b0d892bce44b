"""Base class and registry for IR operations.

An *op* is a frozen dataclass holding the parameters of one node: its type says
what the node computes, its fields say how. Ops never hold topology (that is the
`Graph`'s job) and never hold mutable state (that is the simulator's job).

Every op class is registered by name so that serialization can rebuild it from
a type tag (`OP_TYPES["Dense"]`). Validation happens in `__post_init__` and
raises `ValueError` naming the offending field; `Graph.add` prefixes the node
name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

RESETS = ("subtract", "value", "none")
RESET_TIMINGS = ("same", "delayed", "delayed_charge")
CHARGES = ("current", "previous")
COMPARES = ("gt", "ge")
SPIKES = ("binary", "ternary", "multilevel", "bernoulli")
"""Neuron feature names (`LIF` fields; the features a `NumericProfile` implements)."""

ROLES = {
    "population": "its outputs travel between layers as spikes or graded payloads (a core's output)",
    "weighted": "turns spikes into currents; at most one per synapse path",
    "foldable": "has a weight tensor that a following BatchNorm/Scale folds into",
    "path": "moves, pools or scales values along a synapse path, before or after the weighted op",
}
"""Op roles (``Op.roles``) and what each means to `npuc.ir.analysis` and the passes."""

OP_TYPES: dict[str, type[Op]] = {}
"""Registry of op classes by their type name (the class name)."""

Shape = tuple[int, ...]


class Op:
    """Base class of all IR ops.

    Subclasses are frozen dataclasses. Class attributes:

    * ``ports``: names of the op's outputs; the first is the default port.
    * ``arity``: number of inputs (``None`` = one or more).
    * ``kind``: coarse role used by passes and reports
      (``"io"``, ``"synapse"``, ``"neuron"``, ``"shape"``, ``"attention"``, ...).
    * ``stateful``: whether the op keeps state across time steps.
    * ``roles``: what the op is to structural analysis (`npuc.ir.analysis`) and the
      passes; a new op declares its roles here instead of being added to tuples
      elsewhere (see `ROLES`).
    """

    ports: ClassVar[tuple[str, ...]] = ("out",)
    arity: ClassVar[int | None] = 1
    kind: ClassVar[str] = "op"
    stateful: ClassVar[bool] = False
    partial_infer: ClassVar[bool] = False  # can infer with some input shapes unknown (None)
    roles: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        unknown = set(cls.roles) - set(ROLES)
        if unknown:
            raise TypeError(f"op {cls.__name__}: unknown roles {sorted(unknown)} (known: {sorted(ROLES)})")
        if not cls.__name__.startswith("_"):
            OP_TYPES[cls.__name__] = cls

    def has_role(self, role: str) -> bool:
        if role not in ROLES:
            raise KeyError(f"unknown op role {role!r} (known: {sorted(ROLES)})")
        return role in self.roles

    # -- shape inference ---------------------------------------------------
    def infer(self, in_shapes: Sequence[Shape]) -> dict[str, Shape]:
        """Return the shape of every output port given the input shapes.

        Shapes are per sample: no batch and no time axis. Raise ``ValueError``
        when the inputs do not fit the op's parameters.
        """
        raise NotImplementedError(type(self).__name__)

    # -- helpers -----------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        """Tensor-valued fields (weights, per-neuron parameters)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
            if isinstance(getattr(self, f.name), np.ndarray)
        }

    def summary(self) -> str:
        """One-line description of the parameters for text dumps."""
        parts = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if f.name == "q":
                continue
            if isinstance(v, np.ndarray):
                if v.size == 1:
                    parts.append(f"{f.name}={v.reshape(-1)[0]:.4g}")
                else:
                    parts.append(
                        f"{f.name}={v.dtype}{list(v.shape)}[{float(v.min()):.3g}..{float(v.max()):.3g}]"
                    )
            elif isinstance(v, dict):
                if v:
                    parts.append(f"{f.name}=" + ",".join(f"{k}={_short(x)}" for k, x in v.items()))
            elif v is None or v == f.default:
                continue
            elif dataclasses.is_dataclass(v):
                parts.append(f"{f.name}={v.summary() if hasattr(v, 'summary') else v}")
            else:
                parts.append(f"{f.name}={v}")
        q = getattr(self, "q", None)
        if q is not None:
            parts.append("q=" + q.summary())
        return " ".join(parts)

    def replace(self, **changes: Any) -> Op:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def _short(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return f"{x.reshape(-1)[0]:.4g}" if x.size == 1 else f"{x.dtype}{list(x.shape)}"
    return str(x)


# -- validation helpers shared by op classes ---------------------------------


def as_array(value: Any, field: str, dtype: Any = np.float32, ndim: int | None = None) -> np.ndarray:
    """Convert ``value`` to a read-only numpy array, checking dimensions and finiteness."""
    try:
        arr = np.array(value, dtype=dtype, copy=True, order="C")  # layout affects float matmul results
    except (TypeError, ValueError) as e:
        raise ValueError(f"field '{field}': cannot convert to {np.dtype(dtype).name} array: {e}") from None
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"field '{field}': expected {ndim}-d array, got shape {tuple(arr.shape)}")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise ValueError(f"field '{field}': contains NaN or infinite values")
    arr.setflags(write=False)
    return arr


def check_choice(value: Any, field: str, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise ValueError(f"field '{field}': {value!r} is not one of {list(choices)}")


def check_int(value: Any, field: str, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"field '{field}': expected an integer, got {value!r}")
    value = int(value)
    if lo is not None and value < lo:
        raise ValueError(f"field '{field}': {value} is below the minimum {lo}")
    if hi is not None and value > hi:
        raise ValueError(f"field '{field}': {value} is above the maximum {hi}")
    return value


def int_tuple(value: Any, field: str, n: int, lo: int = 0) -> tuple[int, ...]:
    """Normalise an int or a sequence of ints to an ``n``-tuple (PyTorch-style)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value),) * n
    value = tuple(value)
    if len(value) != n:
        raise ValueError(f"field '{field}': expected {n} values, got {value}")
    return tuple(check_int(v, field, lo=lo) for v in value)


def broadcastable(arr: np.ndarray, shape: Shape, field: str) -> None:
    """Check that a per-neuron parameter broadcasts to the neuron shape."""
    try:
        np.broadcast_shapes(arr.shape, shape)
    except ValueError:
        raise ValueError(
            f"field '{field}': shape {tuple(arr.shape)} does not broadcast to neuron shape {shape}"
        ) from None
    if np.broadcast_shapes(arr.shape, shape) != tuple(shape):
        raise ValueError(f"field '{field}': shape {tuple(arr.shape)} is larger than neuron shape {shape}")


def freeze(obj: Any, **fields: Any) -> None:
    """Set fields on a frozen dataclass during ``__post_init__`` normalisation."""
    for k, v in fields.items():
        object.__setattr__(obj, k, v)
