"""Library float forms: neuron step functions in the exact float32 operation order
of snntorch, SpikingJelly, norse and sinabs.

Each function is registered in `npuc.sim.float_kernels.FORMS` under the
`LIF.form` name the frontend converter sets, and reads the raw library
parameters from ``LIF.form_args`` (``state["a"]``, float32 tensors). The
operation order, operand types and comparisons are those measured bit for bit
in ``docs/library-semantics.md``; do not "simplify" an expression here (for
example ``x / tau`` and ``x * (1 / tau)`` differ in float32).

Signature: ``fn(op, state, x, t) -> (spikes, v, i)`` with ``x`` the input at
step ``t`` (``[B, ...]``). ``state`` holds the previous step's ``v``, ``i``, ``s``
(set by the engine from the returned values; ``v``/``i`` start at
``op.v_init``/0) and may hold private keys (``lib_*``) a form needs. The
returned ``v``/``i`` are the library's own state variables, which for some
forms are offset from the canonical fields (see ``docs/frontends.md``).
"""

from __future__ import annotations

import math

import torch

from ..ir.ops.neuron import register_form
from . import float_kernels
from .float_kernels import FORMS


def plus(acc: torch.Tensor, x) -> torch.Tensor:
    """``acc + x``; when ``x`` is a tuple of input terms (a recurrent cell's input and recurrent
    currents, see ``form_args['terms']``), ``acc + x0 + x1 + ...`` left to right, as the library
    writes it."""
    for term in x if isinstance(x, tuple) else (x,):
        acc = acc + term
    return acc


def total(x) -> torch.Tensor:
    """The summed input (what the library's ``input_`` plus recurrent terms add up to, in order)."""
    return plus(x[0], x[1:]) if isinstance(x, tuple) else x


# Constants as float32 0-d tensors: an operation on a tensor and a Python number wraps the number
# in a tensor on every call (2-3 us at batch 1); a 0-d tensor takes no part in type promotion, so
# the result's type and values are those of the Python number's
_ZERO = torch.tensor(0.0)
_ONE = torch.tensor(1.0)


def _spikes(cmp, a: torch.Tensor, b: torch.Tensor, st: dict | None = None) -> torch.Tensor:
    """``cmp(a, b)`` as 1.0 / 0.0 in ``a``'s float type, what ``cmp(a, b).to(a)`` gives, written as
    floats by the comparison itself (5-10x faster than a bool tensor and its conversion). A step's
    output spikes (``st`` given) go to the row of the engine's buffer for them, when it set one
    (`float_kernels.LIFFloat.prepare`: no stack of the steps afterwards)."""
    return cmp(a, b, out=_row(st, a))


def _row(st: dict | None, like: torch.Tensor) -> torch.Tensor:
    """The engine's buffer row for this step's output spikes (taken once), or a new tensor like ``like``."""
    row = st.pop("row", None) if st is not None else None
    if row is None or row.shape != like.shape or row.dtype != like.dtype:
        return torch.empty_like(like)
    return row


def _flag(a: dict, name: str) -> int:
    """An integer code stored in ``form_args`` (float32 0-d tensor; `FormArgs.flags` holds it as a number)."""
    return int(a.flags[name])


def form(name: str, args: tuple[str, ...]):
    """Register a step function for ``LIF.form == name`` that reads ``form_args`` ``args``
    (the IR checks a LIF of this form carries them)."""

    def deco(fn):
        FORMS[name] = fn
        register_form(name, args)
        return fn

    return deco


# -- snntorch 1.0 (snntorch/_neurons/leaky.py, synaptic.py, alpha.py) ---------------------------


def _snn_h(x: torch.Tensor, st: dict | None = None) -> torch.Tensor:
    # forward of every snntorch surrogate: (input_ > 0).float()
    return _spikes(torch.gt, x, _ZERO, st)


def _snn_reset(st: dict, thr: torch.Tensor, t: int, delayed: bool) -> torch.Tensor:
    """snntorch's ``mem_reset``: the heaviside of the previous membrane minus the threshold. When
    nothing changes the membrane after it fired (``delayed``), that is the previous step's spikes,
    the same comparison of the same membrane (the library's ``clone().detach()`` copies it)."""
    return st["s"] if t and delayed else _snn_h(st["v"] - thr)


def _snn_immediate_reset(mem, spk, reset, thr, reset_val):
    """snntorch ``reset_delay=False``: ``do_reset = spk / gsf - reset`` (``spk / gsf``
    is exactly the 0/1 heaviside), then subtract or zero by ``reset_mechanism_val``."""
    do_reset = spk - reset
    if reset_val == 0:
        return mem - do_reset * thr
    if reset_val == 1:
        return mem - do_reset * mem
    return mem


@form("snntorch_leaky", ("beta", "threshold", "state_fn", "reset_val", "reset_delay"))
def snntorch_leaky(op, st, x, t):
    """snntorch ``Leaky`` (and ``RLeaky`` on its summed input); args ``beta``,
    ``threshold``, ``state_fn`` (0 ``_base_sub``, 1 Leaky's ``_base_zero``, 2 ``_base_int``,
    3 RLeaky's ``_base_zero``), ``reset_val`` (``reset_mechanism_val``), ``reset_delay`` (1/0).
    Spikes are the 0/1 heaviside; a graded spike factor is a `Scale` node after it."""
    a = st["a"]
    thr, beta = a["threshold"], a["beta"]
    mem = st["v"]
    reset = _snn_reset(st, thr, t, _flag(a, "reset_delay"))
    fn = _flag(a, "state_fn")
    if fn == 0:
        mem = plus(beta.clamp(0, 1) * mem, x) - reset * thr
    elif fn == 1:
        mem = plus(beta.clamp(0, 1) * ((_ONE - reset) * mem), x)
    elif fn == 3:
        base = plus(beta.clamp(0, 1) * mem, x)
        mem = base - reset * base
    else:
        mem = plus(beta.clamp(0, 1) * mem, x)
    spk = _snn_h(mem - thr, st)
    if not _flag(a, "reset_delay"):
        mem = _snn_immediate_reset(mem, spk, reset, thr, _flag(a, "reset_val"))
    return spk, mem, total(x)


@form("snntorch_lapicque", ("R", "inv_rc", "time_step", "decay", "threshold", "state_fn"))
def snntorch_lapicque(op, st, x, t):
    """snntorch ``Lapicque``: ``mem = x * R * inv_rc * time_step + decay * mem`` with the
    library's ``inv_rc = 1 / (R * C)`` and ``decay = 1 - time_step / (R * C)`` (evaluated by the
    converter in the library's dtypes), then the reset by ``state_fn`` (0 subtract, 1 zero of the
    new membrane, 2 none), triggered by the previous membrane (no immediate reset)."""
    a = st["a"]
    thr, mem = a["threshold"], st["v"]
    reset = _snn_reset(st, thr, t, True)  # its spikes are always those of the final membrane
    base = x * a["R"] * a["inv_rc"] * a["time_step"] + a["decay"] * mem
    fn = _flag(a, "state_fn")
    if fn == 0:
        mem = base - reset * thr
    elif fn == 1:
        mem = base - reset * base
    else:
        mem = base
    return _snn_h(mem - thr, st), mem, x


@form("snntorch_synaptic", ("alpha", "beta", "threshold", "state_fn", "reset_val", "reset_delay"))
def snntorch_synaptic(op, st, x, t):
    """snntorch ``Synaptic``: ``syn = alpha*syn + x; mem = beta*mem + syn`` then the
    reset chosen by ``state_fn``; args as `snntorch_leaky` plus ``alpha``."""
    a = st["a"]
    thr = a["threshold"]
    mem, syn = st["v"], st["i"]
    reset = _snn_reset(st, thr, t, _flag(a, "reset_delay"))
    syn = plus(a["alpha"].clamp(0, 1) * syn, x)
    mem = a["beta"].clamp(0, 1) * mem + syn
    fn = _flag(a, "state_fn")
    if fn == 0:
        mem = mem - reset * thr
    elif fn == 1:
        syn = syn - 0 * reset
        mem = mem - mem * reset
    spk = _snn_h(mem - thr, st)
    if not _flag(a, "reset_delay"):
        mem = _snn_immediate_reset(mem, spk, reset, thr, _flag(a, "reset_val"))
    return spk, mem, syn


@form("snntorch_alpha", ("alpha", "beta", "tau", "threshold", "state_fn"))
def snntorch_alpha(op, st, x, t):
    """snntorch ``Alpha``: ``syn_exc = alpha*syn_exc + x; syn_inh = beta*syn_inh - x;
    mem = tau * (syn_exc + syn_inh)`` with ``tau = log(alpha) / (log(beta) - log(alpha)) + 1``
    (``tau``, evaluated by the converter with the library's tensors), then ``state_fn`` 1
    (``_base_zero``: every state minus itself times the reset) or 2 (no reset); the reset is
    triggered by the previous membrane. ``syn_inh`` is kept under ``lib_inh``; the returned
    current is ``syn_exc``."""
    a = st["a"]
    thr, mem, exc = a["threshold"], st["v"], st["i"]
    inh = st["lib_inh"] if "lib_inh" in st else torch.zeros_like(exc)
    reset = _snn_reset(st, thr, t, True)  # its spikes are always those of the final membrane
    exc = a["alpha"].clamp(0, 1) * exc + x
    inh = a["beta"].clamp(0, 1) * inh - x
    mem = a["tau"] * (exc + inh)
    if _flag(a, "state_fn") == 1:
        exc = exc - exc * reset
        inh = inh - inh * reset
        mem = mem - mem * reset
    st["lib_inh"] = inh
    return _snn_h(mem - thr, st), mem, exc


# -- SpikingJelly 0.0.0.0.14 (activation_based/neuron.py, backend 'torch') --------------

SJ_CHARGE = {
    "if": 0,  # v + x
    "lif_decay": 1,  # v + (x - v) / tau
    "lif_decay_vr": 2,  # v + (x - (v - vr)) / tau
    "lif_nodecay": 3,  # v * decay + x, decay = f32(1. - 1./tau) computed in double
    "lif_nodecay_vr": 4,  # v - (v - vr) / tau + x
    "plif_decay": 5,  # v + (x - v) * k
    "plif_decay_vr": 6,  # v + (x - (v - vr)) * k
    "plif_nodecay": 7,  # v * (1. - k) + x
    "plif_nodecay_vr": 8,  # v - (v - vr) * k + x
}
"""Charge formulas of SpikingJelly nodes by code (``form_args['charge']``); the
converter picks the one the library runs for the node's mode (train/eval)."""


@form("spikingjelly", ("charge", "c", "v_threshold", "v_reset", "hard", "v0"))
def spikingjelly(op, st, x, t):
    """SpikingJelly ``IFNode``/``LIFNode``/``ParametricLIFNode``: charge (code in
    ``charge``; ``c`` is ``tau``, the double-rounded decay, or PLIF's ``k``), fire
    ``(v - v_threshold) >= 0``, then hard reset to ``v_reset`` (``hard=1``) or soft
    reset by subtraction. ``v0`` is the library's initial membrane (``v_reset`` or 0)."""
    a = st["a"]
    c, vr, code = a["c"], a["v_reset"], _flag(a, "charge")
    if code == 0:  # IF: at t = 0, v0 + x as x + v0 (addition commutes), without a tensor full of v0
        v = torch.add(x, a["v0"]) if t == 0 else st["v"] + x
        return _sj_fire(a, v, x, vr, st)
    v = torch.full_like(x, a.flags["v0"]) if t == 0 else st["v"]
    if code == 1:
        v = v + (x - v) / c
    elif code == 2:
        v = v + (x - (v - vr)) / c
    elif code == 3:
        v = v * c + x
    elif code == 4:
        v = v - (v - vr) / c + x
    elif code == 5:
        v = v + (x - v) * c
    elif code == 6:
        v = v + (x - (v - vr)) * c
    elif code == 7:
        v = v * (1.0 - c) + x
    else:
        v = v - (v - vr) * c + x
    return _sj_fire(a, v, x, vr, st)


def _sj_fire(a, v: torch.Tensor, x: torch.Tensor, vr: torch.Tensor, st: dict):
    """SpikingJelly's fire and reset of the charged membrane ``v``: ``(s, v, x)``."""
    thr = a["v_threshold"]
    if math.isfinite(a.flags.get("v_threshold", math.nan)):
        # ((v - thr) >= 0).to(x): for a finite thr, v - thr >= 0 exactly when v >= thr (a float
        # difference is 0 only for equal operands, and rounding keeps its sign: no flush to zero)
        spike = _spikes(torch.ge, v, thr, st)
    else:
        spike = _spikes(torch.ge, v - thr, _ZERO, st)
    if _flag(a, "hard"):
        v = (_ONE - spike) * v + spike * vr
    else:
        v = v - spike * thr
    return spike, v, x


# -- norse 1.1 (torch/functional/lif.py, lif_box.py, iaf.py) ------------------------------


def _norse_h(x: torch.Tensor, st: dict | None = None) -> torch.Tensor:
    return _spikes(torch.gt, x, _ZERO, st)


@form("norse_lif", ("c_mem", "c_syn", "v_leak", "v_th", "v_reset"))
def norse_lif(op, st, x, t):
    """norse ``LIFCell`` (current-based): ``i_new = i + x``;
    ``v_dec = v + c_mem * ((v_leak - v) + i_new)`` with ``c_mem = dt * tau_mem_inv``;
    ``i = i_new + c_syn * i_new`` with ``c_syn = -dt * tau_syn_inv``; strict ``>``
    threshold; reset to ``v_reset``. Returns norse's ``v`` and decayed ``i``."""
    a = st["a"]
    if float_kernels.FUSED:  # one compiled pass (same float32 operations) instead of nine tensor ones
        from . import float_fused

        done = float_fused.norse_lif(a, st, x, t)
        if done is not None:
            return done
    v = a["v_leak"] if t == 0 else st["v"]
    i_new = plus(st["i"], x)
    v_dec = v + a["c_mem"] * ((a["v_leak"] - v) + i_new)
    i_dec = i_new + a["c_syn"] * i_new
    z = _norse_h(v_dec - a["v_th"], st)
    v = (_ONE - z) * v_dec + z * a["v_reset"]
    return z, v, i_dec


@form("norse_li", ("c_mem", "c_syn", "v_leak"))
def norse_li(op, st, x, t):
    """norse ``LICell`` / ``LILinearCell`` (leaky integrator, the SHD readout): `norse_lif`
    without threshold or reset; its ``v`` is the cell's output. No spikes."""
    a = st["a"]
    v = a["v_leak"] if t == 0 else st["v"]
    i_new = plus(st["i"], x)
    v_dec = v + a["c_mem"] * ((a["v_leak"] - v) + i_new)
    i_dec = i_new + a["c_syn"] * i_new
    return torch.zeros_like(v_dec), v_dec, i_dec


@form("norse_lifbox", ("c_mem", "v_leak", "v_th", "v_reset", "subtract"))
def norse_lifbox(op, st, x, t):
    """norse ``LIFBoxCell``: ``v_dec = v + c_mem * (x + v_leak - v)``; reset to
    ``v_reset`` or (``subtract=1``) ``v_dec - v_th``."""
    a = st["a"]
    v = a["v_leak"] if t == 0 else st["v"]
    v_dec = v + a["c_mem"] * (x + a["v_leak"] - v)
    z = _norse_h(v_dec - a["v_th"], st)
    if _flag(a, "subtract"):
        v = (_ONE - z) * v_dec + z * (v_dec - a["v_th"])
    else:
        v = (_ONE - z) * v_dec + z * a["v_reset"]
    return z, v, x


@form("norse_iaf", ("v_th", "v_reset"))
def norse_iaf(op, st, x, t):
    """norse ``IAFCell``: ``v = v + x``; strict ``>``; reset to ``v_reset`` (initial v)."""
    a = st["a"]
    v = a["v_reset"] if t == 0 else st["v"]
    v = v + x
    z = _norse_h(v - a["v_th"], st)
    v = (_ONE - z) * v + z * a["v_reset"]
    return z, v, x


# -- sinabs 3.1 (layers/functional/lif.py, activation/*) ---------------------------------


@form("sinabs", ("alpha_mem", "norm_input", "spike", "threshold", "reset", "reset_arg", "sub_thr"))
def sinabs_lif(op, st, x, t):
    """sinabs ``IAF``/``LIF``/``ExpLeak`` (and Squeeze variants), one step of
    ``lif_forward_single``. Args: ``alpha_mem``; optional ``alpha_syn``;
    ``norm_input``; ``spike`` (0 MultiSpike, 1 SingleSpike, 2 none = ExpLeak,
    3 MaxSpike with ``max_spikes``); ``threshold``; ``reset`` (0 MembraneSubtract,
    1 MembraneReset) with ``reset_arg`` (the subtracted value or reset value;
    the threshold itself when ``sub_thr=1``); optional ``min_v_mem``.
    ExpLeak returns the membrane before the ``min_v_mem`` clamp as its spikes,
    so its membrane state is kept under ``lib_v``."""
    a = st["a"]
    v = st.get("lib_v", st["v"])
    if "alpha_syn" in a:
        i = a["alpha_syn"] * (st["i"] + x)
    else:
        i = x
    syn_in = (1 - a["alpha_mem"]) * i if _flag(a, "norm_input") else i
    v = a["alpha_mem"] * v + syn_in
    kind = _flag(a, "spike")
    thr = a["threshold"]
    if kind == 2:
        s = v.clone()
    else:
        if kind == 1:
            s = _spikes(torch.ge, v - thr, _ZERO, st)  # (v - thr >= 0).float()
        else:
            # (v > 0) * trunc(v / thr): the bool's promotion multiplies by 1.0 or 0.0 in float32, as
            # the float comparison does (0.0 times a negative quotient is -0.0 either way)
            q = torch.div(v, thr, rounding_mode="trunc").float()
            s = torch.mul(_spikes(torch.gt, v, _ZERO), q, out=_row(st if kind == 0 else None, q))
            if kind == 3:
                s = torch.clamp(s, max=a.flags["max_spikes"])
        if _flag(a, "reset") == 0:
            v = v - s * (thr if _flag(a, "sub_thr") else a["reset_arg"])
        else:
            v = v * _spikes(torch.eq, s, _ZERO) + a["reset_arg"]
    if "min_v_mem" in a:
        v = torch.nn.functional.relu(v - a["min_v_mem"]) + a["min_v_mem"]
    st["lib_v"] = v
    return s, (s if kind == 2 else v), i
