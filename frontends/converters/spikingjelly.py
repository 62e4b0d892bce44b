"""SpikingJelly 0.0.0.0.14 (``activation_based``): IF/LIF/ParametricLIF nodes and
the ``layer.*`` wrappers, in single-step ('s') and multi-step ('m') mode.

Neurons (eval mode, which npuc compiles; train mode runs a different formula
for ``LIFNode(decay_input=False, v_reset=0.)``). With ``theta = v_threshold``:

* charge ``IF: v + x``; ``LIF decay_input: v + (x - (v - v_reset)) / tau``;
  ``LIF: v - (v - v_reset) / tau + x``; ParametricLIF uses ``k = sigmoid(w)``
  instead of ``1 / tau``. Canonical: ``alpha = 1 - 1/tau``, ``gain = 1/tau``
  (decay_input) or 1.
* fire ``v >= theta`` (compare ``ge``); hard reset to ``v_reset`` (same step)
  or, with ``v_reset=None``, soft reset by subtracting ``theta``.
* A hard reset to ``v_reset != 0`` is canonicalised by shifting the membrane:
  ``v' = v - v_reset`` rests and resets at 0 and fires at ``theta - v_reset``;
  the initial membrane ``v_reset`` becomes ``v' = 0``.

Multi-step layers run on the time-folded ``[T*N, ...]`` tensor (their synapse
nodes get ``time_folded``); ``layer.Linear`` is ``nn.Linear`` on ``[T, N, F]``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch.nn as nn
from spikingjelly.activation_based import layer, neuron

from ...ir.ops import LIF
from ...sim.float_forms import SJ_CHARGE
from ..builder import Call, f32
from ..values import Sym
from . import converter
from . import torch_nn as tnn


def _mode(call: Call) -> str:
    mode = getattr(call.module, "step_mode", "s")
    if mode not in ("s", "m"):
        raise call.error(f"unknown step_mode {mode!r}")
    return mode


@converter(neuron.IFNode, neuron.LIFNode, neuron.ParametricLIFNode, role="neuron", library="spikingjelly")
def node(call: Call) -> Sym:
    m = call.module
    if getattr(m, "backend", "torch") != "torch":
        raise call.error(f"backend={m.backend!r}: only the 'torch' backend is supported (and verified)")
    sg = getattr(m, "surrogate_function", None)
    if sg is not None and not getattr(sg, "spiking", True):
        raise call.error("surrogate_function(spiking=False) emits analog values, not spikes")
    vth = float(m.v_threshold)
    vr = None if m.v_reset is None else float(m.v_reset)
    zero = vr is None or vr == 0.0
    train = bool(m.training)
    if isinstance(m, neuron.ParametricLIFNode):
        k = m.w.detach().sigmoid()  # recomputed by SpikingJelly every step; deterministic
        c = f32(k, f"{call.qualname}.w.sigmoid()")
        rate = float(c)
        if m.decay_input:
            code, gain = ("plif_decay" if zero else "plif_decay_vr"), rate
        else:
            code, gain = ("plif_nodecay" if zero else "plif_nodecay_vr"), 1.0
        alpha = np.float32(1.0) - c
    elif isinstance(m, neuron.LIFNode):
        tau = float(m.tau)
        if m.decay_input:
            code, c, gain = ("lif_decay" if zero else "lif_decay_vr"), np.float32(tau), 1.0 / tau
        elif vr is None or (train and vr == 0.0):
            code, c, gain = "lif_nodecay", np.float32(1.0 - 1.0 / tau), 1.0  # Python double, rounded once
        else:
            code, c, gain = "lif_nodecay_vr", np.float32(tau), 1.0
        alpha = 1.0 - 1.0 / tau
    else:
        code, c, alpha, gain = "if", np.float32(1.0), 1.0, 1.0
    args = {"charge": SJ_CHARGE[code], "c": c, "v_threshold": vth, "v_reset": 0.0 if vr is None else vr,
            "hard": int(vr is not None), "v0": 0.0 if vr is None else vr}
    shift = 0.0 if vr is None else vr
    canon = dict(alpha=alpha, gain=gain, threshold=vth - shift, compare="ge", reset_timing="same",
                 reset="subtract" if vr is None else "value", reset_value=0.0)
    b = call.b
    x = call.tensor()
    meta = {"source": f"spikingjelly.{type(m).__name__}", "mode": "train" if train else "eval"}
    if vr not in (None, 0.0):
        meta["membrane_offset"] = vr

    def make() -> str:
        op = call.new_op(LIF, **canon, form="spikingjelly", form_args=args)
        return b.add(call.name, op, [x.ref], meta)

    if _mode(call) == "m":
        lif = b.seq_neuron(call, x, ("T", "B"), make)
        return b.port(x, lif, "spikes")
    lif, step = b.step_neuron(call, x, make, (), hidden=True)
    return b.port(x, lif, "spikes").with_(step=step)


# -- layer wrappers --------------------------------------------------------------------


def _per_step(call: Call, x: Sym, fn: Callable[[Sym], Sym]) -> Sym:
    """Apply a stateless layer like SpikingJelly does in the module's step mode:
    's' on one step; 'm' via seq_to_ann_forward (on ``[T*N, ...]``, then back)."""
    if _mode(call) == "s":
        return fn(x)
    if x.lead != ("T", "B"):
        raise call.error(f"multi-step mode takes [T, N, ...], got {x.lead}")
    return fn(x.with_(lead=("TxB",))).with_(lead=("T", "B"))


@converter(layer.Linear, role="synapse", library="spikingjelly")
def linear(call: Call) -> Sym:
    m = call.module
    return tnn.dense(call.b, call.name, call.tensor(), m.weight, m.bias, call.qualname)  # nn.Linear on [T, N, F]


@converter(layer.Conv1d, layer.Conv2d, role="synapse", library="spikingjelly")
def conv(call: Call) -> Sym:
    m = call.module
    if m.padding_mode != "zeros":
        raise call.error(f"padding_mode={m.padding_mode!r} is not supported")
    nd = 1 if isinstance(m, nn.Conv1d) else 2
    return _per_step(call, call.tensor(), lambda x: tnn.conv(
        call.b, call.name, x, nd, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups, call.qualname))


@converter(layer.BatchNorm1d, layer.BatchNorm2d, role="normalization", library="spikingjelly")
def batchnorm(call: Call) -> Sym:
    return _per_step(call, call.tensor(), lambda x: tnn.batchnorm(call.b, call.name, x, call.module, call.qualname))


@converter(layer.MaxPool2d, layer.AvgPool2d, layer.AdaptiveAvgPool2d, role="pooling", library="spikingjelly")
def pool(call: Call) -> Sym:
    return _per_step(call, call.tensor(), lambda x: tnn.pool(call.b, call.name, x, call.module, call.qualname))


@converter(layer.Flatten, role="shape", library="spikingjelly")
def flatten(call: Call) -> Sym:
    """'s': nn.Flatten; 'm': nn.Flatten on the folded [T*N, ...] tensor."""
    return _per_step(call, call.tensor(), lambda x: call.b.reshape(call.name, x, tnn.flatten_shape(call.b, x, call.module)))


@converter(layer.Dropout, layer.Dropout2d, role="identity", library="spikingjelly")
def dropout(call: Call) -> Sym:
    if call.module.training:
        raise call.error("is in training mode")
    return call.tensor()


@converter(layer.SeqToANNContainer, role="container", library="spikingjelly")
def seq_to_ann(call: Call) -> Sym:
    """``SeqToANNContainer(*mods)``: every module on the folded ``[T*N, ...]`` tensor."""
    x = call.tensor()
    if x.lead != ("T", "B"):
        raise call.error(f"takes [T, N, ...], got a {x.lead} tensor")
    y = tnn.apply_modules(call, x.with_(lead=("TxB",)), list(call.module.named_children()))
    return y.with_(lead=("T", "B"))
