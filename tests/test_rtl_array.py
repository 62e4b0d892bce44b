"""The neuron array layer (target option ``array``, `hdl/npuc_array.v`): one accumulator
register per neuron shared by every dense path into the layer, one event per cycle adding its
whole weight row, the neuron update on ``array_nl`` time-shared `npuc_lif` lanes. Against the
golden integer engine, bit for bit:

* random recurrent nets (seeded; sizes not powers of two, neuron lanes not dividing them): a
  CUBA layer with per-neuron ``du`` / ``dv``, biases and floors, graded (current) input and a
  recurrent path whose exponents share one accumulator (one of them negative), a second array
  layer with multi-level spikes reading graded events; a reset in the middle of a step;
* the sharing rule: two negative exponents keep today's layer under ``array=1`` and are an
  error when the layer is named; a conv layer named in the option is an error;
* the cycle bound of an array layer equals the measured cycles of every step (but the first).
"""

from __future__ import annotations

import numpy as np
import pytest
from rtl_check import rtl_matches_int
from test_rtl_neuron_lanes import _dense

from npuc.backends.rtl import emit, lint, rtl_report
from npuc.backends.rtl.lower import lower
from npuc.errors import NpucError
from npuc.ir import LIF, QLIF, Encoding, Graph, Input, Output, QInput, ops
from npuc.targets import load_target


def array_net(rng, prof, n_in: int, n_h: int, n_o: int, exps=(-1, 2), steps: int = 10) -> Graph:
    """x (current) -> fc -> h (CUBA, per-neuron du / dv, + h@t-1 -> rec) -> fo -> o (multi-level)."""
    d = prof.decay_unity
    vmax = 2 ** (prof.v_bits - 1)
    g = Graph("arraynet", num_steps=steps)
    g.add("x", Input((n_in,), encoding=Encoding("current"), layout="B", q=QInput(frac_bits=5, bits=8)))
    g.add("fc", _dense(rng, prof, n_h, n_in, exps[0]), ["x"])
    g.add("rec", _dense(rng, prof, n_h, n_h, exps[1]), [("h", "spikes", 1)])
    g.add("sum", ops.Add(), ["fc", "rec"])
    qh = QLIF(du=rng.integers(d // 8, d // 2, size=n_h), dv=rng.integers(0, d // 4, size=n_h),
              vth=int(rng.integers(vmax // 16, vmax // 4)), bias_mant=rng.integers(-vmax // 256, vmax // 256, size=n_h),
              v_min=-rng.integers(0, vmax // 8, size=n_h))
    g.add("h", LIF(v_min=-1.0, q=qh), ["sum"])
    g.add("fo", _dense(rng, prof, n_o, n_h, 0), ["h"])
    qo = QLIF(du=d, dv=int(rng.integers(0, d // 4)), vth=int(rng.integers(vmax // 64, vmax // 16)),
              bias_mant=np.array(0))
    g.add("o", LIF(spike="multilevel", compare="ge", levels=4, q=qo), ["fo"])
    g.add("out", Output(), ["o"])
    g.add("oi", Output(index=1, decoding="last", layout="B"), [("h", "i")])
    g.profile = prof
    return g.verify()
