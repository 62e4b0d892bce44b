"""Abstract values of a traced model: what each fx node holds during conversion.

* `Sym`: a tensor computed from the model's inputs. It names the IR output that
  holds its per-step, per-sample values and says how the user's tensor lays
  those out (``lead``: the roles of its leading axes) and, for a value of one
  time step of an unrolled loop, which step.
* `Const`: anything known at compile time (weights, Python numbers, initial
  states such as ``None`` or zero tensors); ``value`` is the concrete object.
* `Seq`: a tuple or list of values (module outputs such as ``(spk, mem)``).
* `Struct`: a library state object (norse ``LIFFeedForwardState``) whose fields
  are values.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch

from ..ir.graph import Ref

LEADS = {
    ("B",): "one step [B, ...]",
    ("T", "B"): "time-major [T, B, ...]",
    ("B", "T"): "batch-major [B, T, ...]",
    ("TxB",): "time-folded [T*B, ...]",
    ("BxT",): "batch-folded [B*T, ...]",
    ("U", "B"): "static input with a time axis of 1 [1, B, ...]",
    ("B", "U"): "static input with a time axis of 1 [B, 1, ...]",
}


@dataclass(frozen=True)
class Sym:
    """A tensor computed from the inputs.

    Attributes:
        ref: the IR node output with the per-step, per-sample values.
        shape: per-sample shape (the IR node's shape).
        lead: roles of the user tensor's leading axes (a key of `LEADS`).
        step: for ``lead == ("B",)``: the time step this value belongs to in an
            unrolled loop, or ``None`` if it is the same at every step.
        decode: a reduction over time (``sum``, ``mean``) applied by the user; it can
            only be returned, and becomes the Output's decoding.
        origin: for a static value with a new size-1 axis (``x.unsqueeze(0)``, lead
            with ``U``), the value before it; a following ``.repeat(T, ...)`` makes it a
            time axis, any other use makes it a per-sample axis.
    """

    ref: Ref
    shape: tuple[int, ...]
    lead: tuple[str, ...] = ("B",)
    step: int | None = None
    decode: str | None = None
    origin: Sym | None = None  # for a "U" lead: the static value before the unsqueeze

    @property
    def sequence(self) -> bool:
        """Whether the user tensor holds every time step."""
        return self.lead != ("B",)

    def with_(self, **kw: Any) -> Sym:
        return replace(self, **kw)


@dataclass(frozen=True)
class Const:
    """A value known at compile time."""

    value: Any

    def is_zero_state(self) -> bool:
        """``None`` or an all-zero tensor (including snntorch's empty ``[0]`` state)."""
        v = self.value
        if v is None:
            return True
        if isinstance(v, torch.Tensor):
            return v.numel() == 0 or bool(torch.all(v == 0))
        if isinstance(v, (int, float)):
            return v == 0
        if isinstance(v, tuple) and hasattr(v, "_fields"):  # a library state NamedTuple (norse)
            return all(Const(f).is_zero_state() for f in v)
        return False


@dataclass(frozen=True)
class Seq:
    """A tuple or list of values."""

    items: tuple
    kind: type = tuple

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class Struct:
    """A library state object with named fields (e.g. norse states)."""

    type: type
    fields: dict = field(default_factory=dict)
    owner: str = ""  # IR node whose state this is
    step: int | None = None


Value = Sym | Const | Seq | Struct
