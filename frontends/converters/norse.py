"""norse 1.1 cells stepped with explicit state (``LIFCell``, ``LIFRecurrentCell``, ``LIFBoxCell``,
``IAFCell``, ``LICell``, ``LILinearCell``) and the sequence modules (``LIF``, ``LIFRecurrent``,
``IAF``, ``LI``).

A cell is called as ``z, state = cell(x, state)`` once per time step; ``state=None``
starts from norse's initial state (``v = v_leak`` for LIF cells, ``v = v_reset``
for IAF, ``i = 0``). A sequence module (`SNN` / `SNNRecurrent` in norse/torch/module/snn.py)
is called as ``zs, state = module(xs)`` on ``[T, B, ...]``: it runs its cell's step function
on ``xs[t]`` for every ``t`` from the same initial state and returns the stacked outputs and
the state after the last step, so it converts to the same node as its cell, on the whole
sequence. Parameters are read from the live module (``cell.p``, ``cell.dt``); they are not
in the state_dict.

Canonical mapping, with ``c_m = dt * tau_mem_inv`` and ``c_s = dt * tau_syn_inv``
and the membrane shifted so that it rests at 0 (``v' = v - v_leak``; IAF:
``v' = v - v_reset``):

* ``LIFCell`` (CUBA; the input jumps into the current first, which is used in
  the same step and decays afterwards): ``alpha_i = 1 - c_s``, ``alpha = 1 - c_m``,
  ``gain = c_m``, ``threshold = v_th - v_leak``, value reset to ``v_reset - v_leak``.
* ``LIFBoxCell``: ``alpha = 1 - c_m``, ``gain = c_m``; ``reset_value`` reset, or
  subtract (which norse does by ``v_th``, not by the shifted threshold: a
  deviation when ``v_leak != 0``, see docs/frontends.md).
* ``IAFCell``: ``alpha = 1``, ``threshold = v_th - v_reset``, reset to 0.

All compare ``v > v_th`` (strict) and reset in the same step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from norse.torch.functional.iaf import IAFFeedForwardState
from norse.torch.functional.leaky_integrator import LIState
from norse.torch.functional.lif import LIFFeedForwardState, LIFState
from norse.torch.functional.lif_box import LIFBoxFeedForwardState
from norse.torch.functional.reset import reset_subtract, reset_value
from norse.torch.module.iaf import IAF, IAFCell
from norse.torch.module.leaky_integrator import LI, LICell, LILinearCell
from norse.torch.module.lif import LIF as NorseLIF
from norse.torch.module.lif import LIFCell, LIFRecurrent, LIFRecurrentCell
from norse.torch.module.lif_box import LIFBoxCell
from norse.torch.module.snn import SNN, SNNRecurrent

from ...ir.graph import Ref
from ...ir.ops import LIF, Add, Dense
from ..builder import Call, f32, sanitize
from ..values import Const, Seq, Struct, Sym
from . import converter

_METHODS = ("super", "heaviside", "tanh", "triangle", "circ", "heavi_erfc")


def _product(dt: float, p: Any, what: str) -> np.ndarray:
    """``dt * p`` as the library computes it: in float32 if ``p`` is a tensor,
    else in double (rounded to float32 when it meets the tensor state)."""
    if isinstance(p, torch.Tensor):
        return f32(dt * p, what)
    return np.float32(dt * float(p))


def _scalar_reset(call: Call, value: np.ndarray, what: str) -> float:
    flat = np.unique(np.asarray(value, dtype=np.float32))
    if flat.size != 1:
        raise call.error(f"a per-neuron {what} is not supported (the reset value must be one number)")
    return float(flat[0])


def _check(call: Call) -> None:
    method = getattr(call.module.p, "method", "super")
    if method not in _METHODS:
        raise call.error(f"method={method!r} is not supported (supported: {', '.join(_METHODS)})")


def _maker(call: Call, x: Sym, op: LIF, weights: bool = False, recurrent: bool = False) -> Callable[[], str]:
    """Builds the neuron's node (first call only), after a Dense of the module's ``input_weights``
    if it has them; a recurrent module adds its ``recurrent_weights`` on its own spikes a step earlier."""
    b, m, q = call.b, call.module, call.qualname
    meta = {"source": f"norse.{type(m).__name__}"}

    def make() -> str:
        src = x.ref
        if weights or recurrent:
            src = b.add(call.name + ".input", Dense(f32(m.input_weights, f"{q}.input_weights")), [x.ref],
                        {"source": f"{meta['source']}.input_weights"})
        if not recurrent:
            return b.add(call.name, op, [src], meta)
        # lif_step: i + linear(x, input_weights) + linear(z, recurrent_weights), summed left to right
        lif_name = b.graph.unique_name(sanitize(call.name))
        rec = b.add(call.name + ".rec", Dense(f32(m.recurrent_weights, f"{q}.recurrent_weights")),
                    [Ref(lif_name, "spikes", 1)], {"source": f"{meta['source']}.recurrent_weights"})
        total = b.add(call.name + ".in", Add(), [src, rec])
        lif = b.graph.add(lif_name, op, [total], meta=meta)
        b.graph.infer_shapes()  # the loop's shapes are known once it is closed
        return lif

    return make


_PORTS = {"z": "spikes", "v": "v", "i": "i"}


def _neuron(call: Call, op: LIF, fields: tuple[str, ...], state_type: type, out: str = "spikes",
            weights: bool = False, recurrent: bool = False) -> Seq:
    """``(output, state)`` of a cell's step, or of a sequence module's whole sequence."""
    b, x = call.b, call.tensor()
    make = _maker(call, x, op, weights, recurrent)
    if isinstance(call.module, (SNN, SNNRecurrent)):
        return _sequence(call, x, make, fields, state_type, out)
    lif, step = b.step_neuron(call, x, make, [call.arg(1, "state")], hidden=False)
    st = Struct(state_type, {f: b.port(x, lif, _PORTS[f]).with_(step=step) for f in fields}, owner=lif, step=step)
    return Seq((b.port(x, lif, out).with_(step=step), st))


def _sequence(call: Call, x: Sym, make: Callable[[], str], fields: tuple[str, ...], state_type: type,
              out: str) -> Seq:
    """A sequence module: ``(outputs stacked [T, B, ...], state after the last step)``. The final
    state is the neuron's value at the last step, which a model can return (decoded 'last') but
    not compute on: the folded graph computes one step (see `Builder.final_states`)."""
    if call.module.record_states:
        raise call.error("record_states=True is not supported (it returns every step's state); "
                         "use record_states=False and return the module's outputs")
    state = call.arg(1, "state")
    if not (isinstance(state, Const) and state.value is None):
        raise call.error("a state argument is not supported (npuc runs the sequence from norse's initial "
                         "state); call it as module(x) or module(x, None)")
    b = call.b
    lif = b.seq_neuron(call, x, ("T", "B"), make)
    last = b.seq_len - 1
    finals = {f: b.port(x, lif, _PORTS[f]).with_(lead=("B",), step=last) for f in fields}
    for f in fields:
        b.final_states[(lif, _PORTS[f])] = call.where()
    return Seq((b.port(x, lif, out), Struct(state_type, finals, owner=lif, step=last)))


def _lif(call: Call) -> tuple[dict, dict]:
    """Canonical fields and float-form args of a current-based LIF (``LIFParameters``)."""
    _check(call)
    m, p = call.module, call.module.p
    c_m = _product(m.dt, p.tau_mem_inv, f"{call.qualname}.dt*tau_mem_inv")
    c_s = _product(-m.dt, p.tau_syn_inv, f"{call.qualname}.-dt*tau_syn_inv")
    v_leak, v_th, v_reset = (f32(getattr(p, k), f"{call.qualname}.p.{k}") for k in ("v_leak", "v_th", "v_reset"))
    args = {"c_mem": c_m, "c_syn": c_s, "v_leak": v_leak, "v_th": v_th, "v_reset": v_reset}
    canon = dict(alpha=np.float32(1) - c_m, gain=c_m, alpha_i=np.float32(1) + c_s, threshold=v_th - v_leak,
                 reset="value", reset_value=_scalar_reset(call, v_reset - v_leak, "v_reset - v_leak"),
                 reset_timing="same", compare="gt")
    return canon, args


@converter(LIFCell, NorseLIF, role="neuron", library="norse")
def lif_cell(call: Call) -> Seq:
    """``LIFCell``, and ``LIF``: the cell's ``lif_feed_forward_step`` looped over time."""
    canon, args = _lif(call)
    op = call.new_op(LIF, **canon, form="norse_lif", form_args=args)
    return _neuron(call, op, ("v", "i"), LIFFeedForwardState)


@converter(LIFRecurrentCell, LIFRecurrent, role="neuron", library="norse")
def lif_recurrent_cell(call: Call) -> Seq:
    """``LIFRecurrentCell`` / ``LIFRecurrent``: a `LIFCell` whose input is ``input_weights @ x`` plus
    ``recurrent_weights @ z`` of the previous step (autapses are zero in the weights)."""
    if call.module.p.method == "adjoint":
        raise call.error("method='adjoint' is not supported (its forward is lif_step's; use method='super')")
    canon, args = _lif(call)
    args["terms"] = 2
    op = call.new_op(LIF, **canon, form="norse_lif", form_args=args)
    return _neuron(call, op, ("z", "v", "i"), LIFState, recurrent=True)


@converter(LICell, LILinearCell, LI, role="neuron", library="norse")
def li_cell(call: Call) -> Seq:
    """``LICell`` / ``LILinearCell`` / ``LI`` (leaky integrator without spikes, the membrane readout
    of the SHD examples): a CUBA `LIF` with ``reset="none"`` whose membrane ``v`` is the output; its
    spikes are never read (the threshold is a placeholder). ``LILinearCell`` adds its ``input_weights``."""
    m, p, q = call.module, call.module.p, call.qualname
    c_m = _product(m.dt, p.tau_mem_inv, f"{q}.dt*tau_mem_inv")
    c_s = _product(-m.dt, p.tau_syn_inv, f"{q}.-dt*tau_syn_inv")
    v_leak = f32(p.v_leak, f"{q}.p.v_leak")
    if np.any(v_leak != 0):
        raise call.error("a leaky integrator with v_leak != 0 is not supported (its readout would be offset)")
    args = {"c_mem": c_m, "c_syn": c_s, "v_leak": v_leak}
    op = LIF(alpha=np.float32(1) - c_m, gain=c_m, alpha_i=np.float32(1) + c_s, threshold=1.0, reset="none",
             form="norse_li", form_args=args)
    return _neuron(call, op, ("v", "i"), LIState, out="v", weights=isinstance(m, LILinearCell))


@converter(LIFBoxCell, role="neuron", library="norse")
def lif_box_cell(call: Call) -> Seq:
    _check(call)
    m, p = call.module, call.module.p
    c_m = _product(m.dt, p.tau_mem_inv, f"{call.qualname}.dt*tau_mem_inv")
    v_leak, v_th, v_reset = (f32(getattr(p, k), f"{call.qualname}.p.{k}") for k in ("v_leak", "v_th", "v_reset"))
    method = getattr(p, "reset_method", reset_value)
    if method is reset_subtract:
        sub, reset = 1, "subtract"
    elif method is reset_value:
        sub, reset = 0, "value"
    else:
        raise call.error(f"reset_method {getattr(method, '__name__', method)!r} is not supported "
                         "(reset_value or reset_subtract)")
    args = {"c_mem": c_m, "v_leak": v_leak, "v_th": v_th, "v_reset": v_reset, "subtract": sub}
    rv = 0.0 if sub else _scalar_reset(call, v_reset - v_leak, "v_reset - v_leak")
    canon = dict(alpha=np.float32(1) - c_m, gain=c_m, threshold=v_th - v_leak, reset=reset, reset_value=rv,
                 reset_timing="same", compare="gt")
    op = call.new_op(LIF, **canon, form="norse_lifbox", form_args=args)
    return _neuron(call, op, ("v",), LIFBoxFeedForwardState)


@converter(IAFCell, IAF, role="neuron", library="norse")
def iaf_cell(call: Call) -> Seq:
    _check(call)
    p = call.module.p
    v_th, v_reset = (f32(getattr(p, k), f"{call.qualname}.p.{k}") for k in ("v_th", "v_reset"))
    _scalar_reset(call, v_reset, "v_reset")
    args = {"v_th": v_th, "v_reset": v_reset}
    canon = dict(alpha=1.0, gain=1.0, threshold=v_th - v_reset, reset="value", reset_value=0.0,
                 reset_timing="same", compare="gt")
    return _neuron(call, call.new_op(LIF, **canon, form="norse_iaf", form_args=args), ("v",), IAFFeedForwardState)
