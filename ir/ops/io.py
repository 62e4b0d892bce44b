"""Graph inputs and outputs, with their encodings and decodings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..values import Encoding, QInput
from .base import Op, Shape, check_choice, check_int, freeze

LAYOUTS = ("B", "TB", "BT")
DECODINGS = ("sequence", "sum", "mean", "last", "max")


@dataclass(frozen=True, eq=False)
class Input(Op):
    """A graph input of per-sample shape ``shape``.

    ``layout`` says how the user's tensor is laid out: ``B`` = one static value
    per sample ``[B, *shape]``, encoded over the graph's ``T`` steps;
    ``TB`` = ``[T, B, *shape]``; ``BT`` = ``[B, T, *shape]`` (one value per step).
    ``encoding`` turns values into per-step values (see `Encoding`).
    ``index`` is the position of this input in the model's forward signature.
    """

    shape: Shape
    encoding: Encoding = Encoding()
    layout: str = "B"
    index: int = 0
    q: QInput | None = None

    arity = 0
    kind = "io"
    roles = frozenset({"population"})

    def __post_init__(self) -> None:
        freeze(self, shape=tuple(check_int(s, "shape", 1) for s in self.shape))
        check_choice(self.layout, "layout", LAYOUTS)
        check_int(self.index, "index", 0)
        if self.layout != "B" and self.encoding.kind not in ("current", "spikes"):
            raise ValueError(
                f"field 'encoding': {self.encoding.kind} encodes a static value over time, "
                f"but layout {self.layout} already has a time axis; use 'current' or 'spikes'"
            )

    def infer(self, in_shapes: Sequence[Shape]) -> dict[str, Shape]:
        return {"out": self.shape}


@dataclass(frozen=True, eq=False)
class Output(Op):
    """A graph output: the values of its input node over time, decoded.

    ``decoding``: ``sequence`` returns every step (layout ``TB`` = ``[T, B, ...]``
    or ``BT``); ``sum`` (spike count), ``mean`` (rate), ``last`` (final value,
    e.g. membrane readout) and ``max`` reduce over time to ``[B, ...]``.
    ``index`` orders outputs when a model returns several values.
    """

    decoding: str = "sequence"
    layout: str = "TB"
    index: int = 0

    kind = "io"

    def __post_init__(self) -> None:
        check_choice(self.decoding, "decoding", DECODINGS)
        check_choice(self.layout, "layout", ("TB", "BT", "B"))
        if (self.decoding == "sequence") == (self.layout == "B"):
            raise ValueError("field 'layout': 'B' goes with a reducing decoding, 'TB'/'BT' with 'sequence'")
        check_int(self.index, "index", 0)

    def infer(self, in_shapes: Sequence[Shape]) -> dict[str, Shape]:
        return {"out": tuple(in_shapes[0])}
