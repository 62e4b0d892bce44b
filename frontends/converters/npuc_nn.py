"""Converters for npuc's own modules (`npuc.nn`): neurons and input encoders."""

from __future__ import annotations

from ...ir.graph import Ref
from ...ir.ops import Input
from ..builder import Call
from ..errors import LayoutError
from ..nn import (
    IF,
    LIF,
    BernoulliEncoder,
    CurrentEncoder,
    LatencyEncoder,
    RateEncoder,
    TimeCodeEncoder,
)
from ..values import Sym
from . import converter


@converter(LIF, IF, role="neuron", library="npuc")
def lif(call: Call) -> Sym:
    """`npuc.nn.LIF` is the IR `LIF` in its canonical form, on a ``[T, B, ...]`` sequence."""
    x = call.tensor()
    op = call.module.to_op()
    node = call.b.seq_neuron(call, x, ("T", "B"), lambda: call.b.add(call.name, op, [x.ref]))
    port = "spikes" if call.module.output == "spikes" else "v"
    return call.b.port(x, node, port)


@converter(RateEncoder, BernoulliEncoder, TimeCodeEncoder, LatencyEncoder, CurrentEncoder, role="encoder",
           library="npuc")
def encoder(call: Call) -> Sym:
    """An encoder applied to a static model input becomes that Input's encoding."""
    x = call.tensor()
    b = call.b
    src = b.graph[x.ref.node] if x.ref.node in b.graph else None
    if src is None or not isinstance(src.op, Input) or x.lead != ("B",) or x.step is not None:
        raise call.error("an encoder must be applied directly to a static [B, ...] model input", LayoutError)
    steps = call.module.steps
    if b.encoder_steps is not None and b.encoder_steps != steps:
        raise call.error(f"encoders disagree on the number of steps ({b.encoder_steps} vs {steps})")
    if b.seq_len is not None and b.seq_len != steps:
        raise call.error(f"encodes {steps} steps but the model's sequences have {b.seq_len}")
    if src.op.encoding.kind != "current" and src.op.encoding != call.module.encoding:
        raise call.error("the input is encoded twice with different encodings")
    b.graph.replace_op(src.name, src.op.replace(encoding=call.module.encoding))
    b.encoder_steps = steps
    b.seq_len = steps
    return x.with_(ref=Ref(src.name), lead=("T", "B"))
