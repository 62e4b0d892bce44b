"""snntorch 1.0 neurons: ``Leaky``, ``Synaptic``, ``RLeaky``, ``RSynaptic``.

Canonical mapping (``beta``, ``alpha`` are clamped to [0, 1] as snntorch does):

* ``Leaky``: ``alpha = beta``, ``gain = 1``, ``threshold``, compare ``gt``.
  ``reset_mechanism`` subtract / zero / none -> ``reset`` subtract / value(0) / none;
  ``reset_delay=True`` -> ``reset_timing="delayed"`` (the reset triggered by a
  spike at t-1 acts at t; the returned ``mem`` is pre-reset), ``False`` -> ``"same"``.
* ``Synaptic``: CUBA, ``alpha_i = alpha``; its zero reset clears the new membrane
  including the step's input -> ``"delayed_charge"`` with ``reset_value=0``.
* ``RLeaky``: the recurrent layer (``nn.Linear``, ``nn.Conv2d`` or the one-to-one
  ``V``) reads the neuron's spikes one step late (``delay=1``) and is added to
  the input; the zero reset is ``"delayed_charge"`` as for Synaptic. ``RSynaptic``
  likewise, with Synaptic's current; its ``reset_delay=False`` has no effect in snntorch.
* ``Alpha``: CUBA with ``alpha_i = alpha`` (``syn_exc``), membrane decay ``beta`` and
  ``charge="previous"``: ``mem_t = tau (syn_exc_t + syn_inh_t) = beta mem_{t-1} + tau (alpha -
  beta) syn_exc_{t-1}`` (the step's input cancels), so ``gain = tau (alpha - beta)``; its zero
  reset clears all three states, input included (``"delayed_charge"``, which with
  ``charge="previous"`` also clears the current). ``syn_inh`` is kept by the float form only;
  the model may pass it back as state. Its subtract reset is refused (see `alpha`).
* ``graded_spikes_factor != 1`` becomes a `Scale` node after the spikes.

The reset formula is the constructor's (``state_function``); snntorch reads the
immediate-reset correction (``reset_delay=False``) from ``reset_mechanism_val``,
which a checkpoint may change: both are passed to the float form.
"""

from __future__ import annotations

import numpy as np
import snntorch as snn
import torch
import torch.nn as nn

from ...ir.graph import Ref
from ...ir.ops import LIF, Add, Conv2d, Dense, Scale
from ..builder import Builder, Call, f32, sanitize
from ..errors import FrontendError
from ..values import Seq, Struct, Sym
from . import converter

_STATE_FN = {"_base_sub": 0, "_base_zero": 1, "_base_int": 2}


def _common(call: Call, cuba: bool, recurrent: bool, reset_delay: bool | None = None) -> tuple[dict, dict]:
    """Canonical fields and float-form args; ``reset_delay`` overrides the module's flag (for
    a module whose immediate-reset correction has no effect, see `rsynaptic`)."""
    m = call.module
    if getattr(m, "inhibition", False):
        raise call.error("inhibition=True (winner-take-all across the batch axis) is not supported")
    if getattr(m, "state_quant", False):
        raise call.error("state_quant is not supported (quantize with an npuc target instead)")
    fn_name = getattr(m.state_function, "__name__", "")
    if fn_name not in _STATE_FN:
        raise call.error(f"unknown reset formula {fn_name!r}")
    state_fn = _STATE_FN[fn_name]
    if recurrent and state_fn == 1:
        state_fn = 3  # RLeaky's _base_zero clears the new membrane (input included), not the old one
    reset_val = int(m.reset_mechanism_val)
    delay = bool(m.reset_delay) if reset_delay is None else reset_delay
    beta = f32(m.beta, f"{call.qualname}.beta")
    thr = f32(m.threshold, f"{call.qualname}.threshold")
    args = {"beta": beta, "threshold": thr, "state_fn": state_fn, "reset_val": reset_val, "reset_delay": int(delay)}
    reset = ("subtract", "value", "none", "value")[state_fn]
    if not delay:
        timing = "same"
    elif reset == "value" and (cuba or recurrent):
        timing = "delayed_charge"
    else:
        timing = "delayed"
    canon = dict(alpha=np.clip(beta, 0, 1), threshold=thr, reset=reset, reset_value=0.0, reset_timing=timing,
                 compare="gt")
    if cuba:
        alpha = f32(m.alpha, f"{call.qualname}.alpha")
        args["alpha"] = alpha
        canon["alpha_i"] = np.clip(alpha, 0, 1)
    return canon, args


def _outputs(call: Call, x: Sym, lif: str, step: int, ports: tuple[str, ...], gsf: bool) -> Seq | Sym:
    """What the module returns: ``spk`` alone (init_hidden without output) or the tuple."""
    b = call.b
    vals = []
    for p in ports:
        if p == "spikes" and gsf:
            vals.append(b.port(x, _scale_of(b, lif), "out").with_(step=step))
        else:
            vals.append(b.port(x, lif, p).with_(step=step))
    m = call.module
    if m.init_hidden and not m.output:
        return vals[0]
    return Seq(tuple(vals))


def _scale_of(b, lif: str) -> str:
    for user, _ in b.graph.users(lif):
        if user.endswith(".gsf"):
            return user
    raise RuntimeError(f"graded spike scale of '{lif}' not found")


def _meta(call: Call) -> dict:
    m = call.module
    return {"source": f"snntorch.{type(m).__name__}", "reset_delay": bool(getattr(m, "reset_delay", True))}


def _gsf(call: Call) -> np.ndarray | None:
    g = f32(call.module.graded_spikes_factor, f"{call.qualname}.graded_spikes_factor")
    return None if np.all(g == 1) else g


def _neuron(call: Call, canon: dict, args: dict, form: str, state: list, ports: tuple[str, ...]):
    """A feed-forward neuron module: one LIF (plus a `Scale` for a graded spike factor)."""
    x = call.tensor()
    gsf = _gsf(call)
    b = call.b

    def make() -> str:
        lif = b.add(call.name, LIF(**canon, form=form, form_args=args), [x.ref], _meta(call))
        return _scale_spikes(b, lif, gsf)

    lif, step = b.step_neuron(call, x, make, state)
    return _outputs(call, x, lif, step, ports, gsf is not None)


def _scale_spikes(b: Builder, lif: str, gsf: np.ndarray | None) -> str:
    """Scale the spikes of LIF ``lif`` by a graded spike factor (a ``.gsf`` node whose state
    reads go to the LIF); returns ``lif``."""
    if gsf is not None:
        b.state_alias[b.graph.add(lif + ".gsf", Scale(gsf), [Ref(lif, "spikes")])] = lif
    return lif


@converter(snn.Leaky, role="neuron", library="snntorch")
def leaky(call: Call):
    canon, args = _common(call, cuba=False, recurrent=False)
    return _neuron(call, canon, args, "snntorch_leaky", [call.arg(1, "mem")], ("spikes", "v"))


def _as_f32(v, what: str) -> np.ndarray:
    """A float or integer parameter (snntorch keeps ``R = 1`` and ``time_step`` as int64 tensors,
    which PyTorch converts to float32 when they meet the float32 state)."""
    if isinstance(v, torch.Tensor) and not v.is_floating_point():
        a = v.detach().cpu().numpy()
        if np.any(np.abs(a) > 2**24):
            raise FrontendError(f"{what}: integer {a} is not exact in float32")
        return a.astype(np.float32)
    return f32(v, what)


@converter(snn.Lapicque, role="neuron", library="snntorch")
def lapicque(call: Call):
    """``Lapicque`` (RC neuron): a Leaky whose input gain and decay come from ``R``, ``C`` and
    ``time_step``; its reset always acts on the step after the spike (no ``reset_delay``)."""
    m, q = call.module, call.qualname
    canon, _ = _common(call, cuba=False, recurrent=True, reset_delay=True)  # zero: base - reset * base
    with torch.no_grad():  # the library's constant sub-expressions, in its dtypes
        inv_rc = 1 / (m.R * m.C)
        decay = 1 - (m.time_step / (m.R * m.C))
    r, dt = _as_f32(m.R, f"{q}.R"), _as_f32(m.time_step, f"{q}.time_step")
    k = f32(inv_rc, f"{q}.1/(R*C)")
    d = f32(decay, f"{q}.1-time_step/(R*C)")
    thr = f32(m.threshold, f"{q}.threshold")
    state_fn = {"subtract": 0, "value": 1, "none": 2}[canon["reset"]]
    args = {"R": r, "inv_rc": k, "time_step": dt, "decay": d, "threshold": thr, "state_fn": state_fn}
    canon.update(alpha=d, gain=np.float32(r * k * dt))
    return _neuron(call, canon, args, "snntorch_lapicque", [call.arg(1, "mem")], ("spikes", "v"))


@converter(snn.Synaptic, role="neuron", library="snntorch")
def synaptic(call: Call):
    canon, args = _common(call, cuba=True, recurrent=False)
    return _neuron(call, canon, args, "snntorch_synaptic", [call.arg(1, "syn"), call.arg(2, "mem")],
                   ("spikes", "i", "v"))


def _recurrent_op(call: Call):
    """The op of the module's ``recurrent`` layer (``nn.Linear``, ``nn.Conv2d`` or one-to-one ``V``)."""
    m, q = call.module, call.qualname
    rec_mod = m.recurrent
    if isinstance(rec_mod, nn.Linear):
        bias = None if rec_mod.bias is None else f32(rec_mod.bias, f"{q}.recurrent.bias")
        return Dense(f32(rec_mod.weight, f"{q}.recurrent.weight"), bias)
    if isinstance(rec_mod, nn.Conv2d):
        return Conv2d(f32(rec_mod.weight, f"{q}.recurrent.weight"),
                      None if rec_mod.bias is None else f32(rec_mod.bias, f"{q}.recurrent.bias"),
                      rec_mod.stride, rec_mod.padding, rec_mod.dilation, rec_mod.groups)
    return Scale(f32(m.V, f"{q}.V"))


def _recurrent(call: Call, canon: dict, args: dict, form: str, state: list, ports: tuple[str, ...]):
    """A recurrent cell: its ``recurrent`` layer reads the spikes one step late and its output is
    added to the input. snntorch sums ``leak + input_ + recurrent(spk)`` left to right, which
    the float form reproduces term by term (``terms``)."""
    args["terms"] = 2
    x = call.tensor()
    gsf = _gsf(call)
    b = call.b

    def make() -> str:
        lif_name = b.graph.unique_name(sanitize(call.name))
        src = Ref(lif_name + ".gsf", None, 1) if gsf is not None else Ref(lif_name, "spikes", 1)
        kind = type(call.module).__name__
        rec = b.add(call.name + ".rec", _recurrent_op(call), [src], meta={"source": f"{kind}.recurrent"})
        total = b.add(call.name + ".in", Add(), [x.ref, rec])
        lif = b.graph.add(lif_name, LIF(**canon, form=form, form_args=args), [total], meta=_meta(call))
        _scale_spikes(b, lif, gsf)
        b.graph.infer_shapes()  # the loop's shapes are known once it is closed
        return lif

    lif, step = b.step_neuron(call, x, make, state)
    return _outputs(call, x, lif, step, ports, gsf is not None)


@converter(snn.RLeaky, role="neuron", library="snntorch")
def rleaky(call: Call):
    canon, args = _common(call, cuba=False, recurrent=True)
    return _recurrent(call, canon, args, "snntorch_leaky", [call.arg(1, "spk"), call.arg(2, "mem")], ("spikes", "v"))


@converter(snn.RSynaptic, role="neuron", library="snntorch")
def rsynaptic(call: Call):
    """snntorch 1.0's ``RSynaptic.forward`` applies its immediate-reset correction
    (``reset_delay=False``) to a local variable it then drops: the state and the returned
    membrane are those of ``reset_delay=True`` either way, and so is the conversion."""
    canon, args = _common(call, cuba=True, recurrent=False, reset_delay=True)
    return _recurrent(call, canon, args, "snntorch_synaptic",
                      [call.arg(1, "spk"), call.arg(2, "syn"), call.arg(3, "mem")], ("spikes", "i", "v"))


class AlphaSynInh:
    """The ``syn_inh`` an ``Alpha`` returns: npuc computes the neuron from ``syn_exc`` and ``mem``
    (``mem = tau (syn_exc + syn_inh)``), so the value may only be passed back as its state."""

    opaque = ("snntorch Alpha's syn_inh can only be passed back to its neuron as state; compute with syn_exc and "
              "mem instead (mem = tau_alpha * (syn_exc + syn_inh))")


@converter(snn.Alpha, role="neuron", library="snntorch")
def alpha(call: Call):
    """``Alpha`` (``reset_mechanism`` zero, its default, or none). ``syn_inh`` is returned as an
    opaque state value: passing it back to the next call is all a model may do with it."""
    m, q = call.module, call.qualname
    if getattr(m.state_function, "__name__", "") == "_base_sub":
        raise call.error("reset_mechanism='subtract' is not supported (snntorch's Alpha subtract reset adds the "
                         "previous syn_inh to mem, which no npuc neuron computes); use reset_mechanism='zero' "
                         "(Alpha's default) or 'none'")
    canon, args = _common(call, cuba=True, recurrent=False, reset_delay=True)
    with torch.no_grad():  # the library's tau_alpha, in its dtypes
        la, lb = torch.log(m.alpha.clamp(0, 1)), torch.log(m.beta.clamp(0, 1))
        tau = f32(la / (lb - la) + 1, f"{q}.tau_alpha")
    args["tau"] = tau
    canon.update(gain=np.float32(tau.astype(np.float64) * (canon["alpha_i"].astype(np.float64)
                                                          - canon["alpha"].astype(np.float64))),
                 charge="previous")
    x = call.tensor()
    gsf = _gsf(call)
    b = call.b

    def make() -> str:
        lif = b.add(call.name, LIF(**canon, form="snntorch_alpha", form_args=args), [x.ref], _meta(call))
        if gsf is not None:
            b.state_alias[b.graph.add(lif + ".gsf", Scale(gsf), [Ref(lif, "spikes")])] = lif
        return lif

    state = [call.arg(1, "syn_exc"), call.arg(2, "syn_inh"), call.arg(3, "mem")]
    lif, step = b.step_neuron(call, x, make, state)
    spk = b.port(x, _scale_of(b, lif), "out") if gsf is not None else b.port(x, lif, "spikes")
    if m.init_hidden and not m.output:
        return spk.with_(step=step)
    inh = Struct(AlphaSynInh, {}, owner=lif, step=step)
    return Seq((spk.with_(step=step), b.port(x, lif, "i").with_(step=step), inh, b.port(x, lif, "v").with_(step=step)))
