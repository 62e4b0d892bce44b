"""Converters for npuc's own modules (`npuc.nn`): neurons, input encoders and
inter-token NPEs (attention, linear attention, the diagonal SSM)."""

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
    LinearAttention,
    RateEncoder,
    SpikingSelfAttention,
    SpikingSSM,
    StochasticAttention,
    TimeCodeEncoder,
)
from ..values import Sym
from . import attention, converter
from . import torch_nn as tnn


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


# -- inter-token NPEs -------------------------------------------------------------------------------


def _qkv(call: Call) -> tuple[Sym, Sym, Sym]:
    return tuple(call.b.resolve(call.name + ".unsqueeze", _arg(call, i, n)) for i, n in enumerate("qkv"))


def _arg(call: Call, i: int, name: str) -> Sym:
    v = call.arg(i, name)
    if not isinstance(v, Sym):
        raise call.error(f"its argument '{name}' is not computed from the model input ({type(v).__name__})")
    if v.decode:
        raise call.error(f"its argument '{name}' is a reduction over time; reductions must be the model's output")
    return v


@converter(SpikingSelfAttention, role="synapse", library="npuc")
def spiking_self_attention(call: Call) -> Sym:
    """`npuc.nn.SpikingSelfAttention` -> `SpikeAttention` on binary spike inputs (any layout)."""
    q, k, v = _qkv(call)
    for role, x in (("query", q), ("key", k), ("value", v)):
        attention.require_spikes(call.b, x, role, call.where())
    op = call.module.to_op()
    return call.b.combine(call.name, lambda: op, [q, k, v], ("npuc.SpikingSelfAttention", call.qualname))


def _sequence_npe(call: Call, make_op) -> Sym:
    """A stateful inter-token NPE called once on whole ``[T, B, ...]`` sequences."""
    q, k, v = _qkv(call)
    for name, x in (("k", k), ("v", v)):
        if x.lead != q.lead:
            raise call.error(f"its arguments 'q' and '{name}' have different layouts", LayoutError)
    b = call.b

    def make() -> str:
        return b.add(call.name, call.new_op(make_op), [q.ref, k.ref, v.ref])

    node = b.seq_neuron(call, q, ("T", "B"), make)
    return b.port(q, node, "out")


@converter(StochasticAttention, role="neuron", library="npuc")
def stochastic_attention(call: Call) -> Sym:
    """`npuc.nn.StochasticAttention` (LFSR streams) -> `StochasticAttention` on binary spike inputs."""
    m = call.module
    if m.rng != "lfsr":
        raise call.error(f"samples with torch's generator (rng={m.rng!r}); the hardware uses LFSR streams: set "
                         f"{call.qualname}.rng = 'lfsr' before compiling so that the compiled graph equals the model")
    q, k, v = _qkv(call)
    for role, x in (("query", q), ("key", k), ("value", v)):
        attention.require_spikes(call.b, x, role, call.where())
    return _sequence_npe(call, m.to_op)


@converter(LinearAttention, role="neuron", library="npuc")
def linear_attention(call: Call) -> Sym:
    """`npuc.nn.LinearAttention` -> `LinearAttention` (state over the time axis)."""
    return _sequence_npe(call, call.module.to_op)


@converter(SpikingSSM, role="neuron", library="npuc")
def spiking_ssm(call: Call) -> Sym:
    """`npuc.nn.SpikingSSM` -> its ``nn.Linear`` (`Dense`) and its ``LIF(reset="none")``, read from port ``v``."""
    m = call.module
    h = tnn.linear(Call(call.b, m.proj, f"{call.qualname}.proj", [call.tensor()], {}, None, call.node))
    return lif(Call(call.b, m.state, f"{call.qualname}.state", [h], {}, None, call.node))
