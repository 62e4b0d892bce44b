"""Shape ops: pure re-indexing, no arithmetic (address remapping in hardware)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .base import Op, Shape, check_int, freeze


@dataclass(frozen=True, eq=False)
class Reshape(Op):
    """Reshape each sample (row-major, as ``torch.reshape``); one ``-1`` allowed.
    ``Flatten`` of a PyTorch model is ``Reshape((-1,))``."""

    shape: Shape

    kind = "shape"
    roles = frozenset({"path"})

    def __post_init__(self) -> None:
        shape = tuple(check_int(s, "shape", -1) for s in self.shape)
        if shape.count(-1) > 1 or 0 in shape:
            raise ValueError(f"field 'shape': {shape} has more than one -1 or a zero")
        freeze(self, shape=shape)

    def infer(self, in_shapes: Sequence[Shape]) -> dict[str, Shape]:
        (s,) = in_shapes
        n = int(np.prod(s))
        known = int(np.prod([d for d in self.shape if d != -1]))
        if -1 in self.shape:
            if n % known:
                raise ValueError(f"cannot reshape {s} ({n} elements) to {self.shape}")
            out = tuple(n // known if d == -1 else d for d in self.shape)
        else:
            out = self.shape
        if int(np.prod(out)) != n:
            raise ValueError(f"cannot reshape {s} ({n} elements) to {self.shape}")
        return {"out": out}


@dataclass(frozen=True, eq=False)
class Permute(Op):
    """Permute the per-sample axes (``torch.permute`` without the batch axis)."""

    dims: tuple[int, ...]

    kind = "shape"
    roles = frozenset({"path"})

    def __post_init__(self) -> None:
        dims = tuple(check_int(d, "dims", 0) for d in self.dims)
        if sorted(dims) != list(range(len(dims))):
            raise ValueError(f"field 'dims': {dims} is not a permutation")
        freeze(self, dims=dims)

    def infer(self, in_shapes: Sequence[Shape]) -> dict[str, Shape]:
        (s,) = in_shapes
        if len(s) != len(self.dims):
            raise ValueError(f"permutation {self.dims} does not fit a {len(s)}-d input {s}")
        return {"out": tuple(s[d] for d in self.dims)}
