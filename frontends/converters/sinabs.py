"""sinabs 3.1 layers: ``IAF``, ``LIF``, ``ExpLeak`` over ``[B, T, ...]`` and their
``*Squeeze`` variants over the batch-major folded ``[B*T, ...]``; ``SumPool2d``,
``FlattenTime``/``UnflattenTime``.

Canonical mapping (``a_m = exp(-1/tau_mem)`` or the trained ``alpha_mem``, IAF
``a_m = 1``; ``a_s`` likewise for ``tau_syn``):

* synaptic current: sinabs adds the input *before* decaying,
  ``i_t = a_s (i_{t-1} + x_t)``; with the canonical ``i'_t = a_s i'_{t-1} + x_t``
  this is ``i_t = a_s i'_t``, so ``alpha_i = a_s`` and ``a_s`` moves into ``gain``.
* ``v_t = a_m v_{t-1} + (1 - a_m) i_t`` (``norm_input``) or ``+ i_t``:
  ``alpha = a_m``, ``gain = (1 - a_m or 1) * (a_s or 1)``.
* ``MultiSpike``: ``spike="multilevel"`` (``floor(v / theta)`` spikes, ``ge``);
  ``MaxSpike(n)``: multilevel with ``levels = n + 1``; ``SingleSpike``: binary ``ge``.
* ``MembraneSubtract``: subtract reset (same step); ``MembraneReset(r)``: value reset.
  Quirks kept only by the float form (docs/frontends.md): a ``subtract_value``
  other than the threshold, and ``MembraneReset`` adding ``r`` to every neuron.
* ``min_v_mem`` -> ``v_min``.
* ``ExpLeak`` (no spikes) is a LIF that never fires (``threshold`` = float32 max,
  no reset); its output is the ``v`` port.
"""

from __future__ import annotations

import numpy as np
import sinabs.layers as sl
from sinabs.activation import MaxSpike, MembraneReset, MembraneSubtract, MultiSpike, SingleSpike
from sinabs.layers.reshape import SqueezeMixin

from ...ir.ops import LIF
from ..builder import Call, f32
from ..values import Sym
from . import converter
from . import torch_nn as tnn

NEVER = float(np.finfo(np.float32).max)


@converter(sl.IAF, sl.LIF, sl.ExpLeak, sl.IAFSqueeze, sl.LIFSqueeze, sl.ExpLeakSqueeze, role="neuron",
           library="sinabs")
def layer(call: Call) -> Sym:
    m = call.module
    b = call.b
    x = call.tensor()
    squeeze = isinstance(m, SqueezeMixin)
    lead = ("BxT",) if squeeze else ("B", "T")
    if squeeze:
        want_b, want_t = getattr(m, "batch_size", -1), getattr(m, "num_timesteps", -1)
        if (want_b not in (-1, None) and want_b != b.batch) or (want_t not in (-1, None) and want_t != b.seq_len):
            raise call.error(f"was built for batch_size={want_b}, num_timesteps={want_t} but the example input "
                             f"has batch {b.batch} and {b.seq_len} steps")
    a_m = f32(m.alpha_mem_calculated, f"{call.qualname}.alpha_mem")
    a_s_t = m.alpha_syn_calculated
    a_s = None if a_s_t is None else f32(a_s_t, f"{call.qualname}.alpha_syn")
    norm = bool(m.norm_input)
    args: dict = {"alpha_mem": a_m, "norm_input": int(norm)}
    if a_s is not None:
        args["alpha_syn"] = a_s
    gain = (np.float32(1) - a_m) if norm else np.float32(1)
    if a_s is not None:
        gain = gain * a_s
    canon = dict(alpha=a_m, gain=gain, alpha_i=a_s, reset_timing="same", compare="ge")
    fn = m.spike_fn
    if fn is None:
        args.update(spike=2, threshold=0.0, reset=0, reset_arg=0.0, sub_thr=0)
        canon.update(threshold=NEVER, reset="none", compare="gt")
        port = "v"
    else:
        thr = f32(m.spike_threshold, f"{call.qualname}.spike_threshold")
        args["threshold"] = thr
        canon["threshold"] = thr
        if fn is MultiSpike:
            args["spike"] = 0
            canon["spike"] = "multilevel"
        elif fn is SingleSpike:
            args["spike"] = 1
        elif isinstance(fn, MaxSpike):
            n = fn.max_num_spikes_per_bin
            args["spike"] = 0 if n is None else 3
            canon["spike"] = "multilevel"
            if n is not None:
                if n < 1:
                    raise call.error(f"MaxSpike(max_num_spikes_per_bin={n}) never spikes")
                args["max_spikes"] = float(n)
                canon["levels"] = int(n) + 1
        else:
            raise call.error(f"spike_fn {getattr(fn, '__name__', type(fn).__name__)} is not supported "
                             "(MultiSpike, SingleSpike, MaxSpike)")
        r = m.reset_fn
        if isinstance(r, MembraneSubtract):
            sub_thr = r.subtract_value is None
            args.update(reset=0, reset_arg=0.0 if sub_thr else float(r.subtract_value), sub_thr=int(sub_thr))
            canon["reset"] = "subtract"
        elif isinstance(r, MembraneReset):
            args.update(reset=1, reset_arg=float(r.reset_value), sub_thr=0)
            canon.update(reset="value", reset_value=float(r.reset_value))
        else:
            raise call.error(f"reset_fn {type(r).__name__} is not supported (MembraneSubtract, MembraneReset)")
        port = "spikes"
    if m.min_v_mem is not None:
        mv = f32(m.min_v_mem, f"{call.qualname}.min_v_mem")
        args["min_v_mem"] = mv
        canon["v_min"] = mv
    meta = {"source": f"sinabs.{type(m).__name__}"}

    def make() -> str:
        op = call.new_op(LIF, **canon, form="sinabs", form_args=args)
        return b.add(call.name, op, [x.ref], meta)

    lif = b.seq_neuron(call, x, lead, make)
    return b.port(x, lif, port)


@converter(sl.SumPool2d, role="pooling", library="sinabs")
def sum_pool(call: Call) -> Sym:
    m = call.module
    if m.ceil_mode:
        raise call.error("ceil_mode=True is not supported")
    return tnn.sum_pool_lp(call.b, call.name, call.tensor(), m.kernel_size, m.stride, call.qualname)


@converter(sl.Repeat, role="container", library="sinabs")
def repeat(call: Call) -> Sym:
    """``Repeat(module)``: the module on the batch-major folded ``[B*T, ...]`` tensor."""
    x = call.tensor()
    if x.lead != ("B", "T"):
        raise call.error(f"takes [B, T, ...], got a {x.lead} tensor")
    y = tnn.apply_modules(call, x.with_(lead=("BxT",)), [("module", call.module.module)])
    return y.with_(lead=("B", "T"))


@converter(sl.FlattenTime, sl.UnflattenTime, role="shape", library="sinabs")
def time_reshape(call: Call) -> Sym:
    return call.b.reshape(call.name, call.tensor(), tuple(call.value.shape))
