"""RTL input encoders (npuc_input) against npuc.sim.encoding.

One design with six inputs, one per encoding (rate, bernoulli, timecode,
latency on static inputs; graded integer spikes; per-step currents in BT
layout), each feeding its own dense layer and neuron. The golden engine
encodes the same user arrays; the hardware must produce the same spikes
(checked through the event counters of each input and every neuron's state)
for two random cases on one build. Values outside [0, 1] exercise clipping.
"""

from __future__ import annotations

import numpy as np
import pytest
from rtl_check import rtl_matches_int

from npuc.backends.rtl import emit, lint, run
from npuc.ir import LIF, QLIF, Dense, Encoding, Graph, Input, Output, QInput, QSynapse
from npuc.sim.encoding import InputError
from npuc.targets import load_target

pytestmark = pytest.mark.rtl

T, B = 9, 4
ENCODERS = [("rate", 8), ("bernoulli", 7), ("timecode", 8), ("latency", 6)]


def encoders_graph(rng, target) -> Graph:
    prof = target.profile
    g = Graph("encoders", num_steps=T)
    inputs = [(f"x_{k}", Input((5,), encoding=Encoding(k, bits=b, seed=3 + i), layout="B", index=i))
              for i, (k, b) in enumerate(ENCODERS)]
    inputs.append(("x_spikes", Input((3,), encoding=Encoding("spikes"), layout="B", index=4, q=QInput(0, 5))))
    inputs.append(("x_current", Input((2, 2), encoding=Encoding("current"), layout="BT", index=5,
                                      q=QInput(frac_bits=3, bits=7))))
    for i, (name, op) in enumerate(inputs):
        g.add(name, op)
        n_in = int(np.prod(op.shape))
        src = name
        if len(op.shape) > 1:
            from npuc.ir import Reshape

            src = g.add(f"flat{i}", Reshape((-1,)), [name])
        w = rng.integers(-128, 128, size=(4, n_in))
        g.add(f"fc{i}", Dense(np.zeros((4, n_in), np.float32), q=QSynapse(w)), [src])
        g.add(f"n{i}", LIF(q=QLIF(du=4096, dv=500, vth=60, bias_mant=np.array(0))), [f"fc{i}"])
        g.add(f"o{i}", Output(index=i), [f"n{i}"])
    g.profile = prof
    return g.verify()


def _inputs(rng):
    xs = [rng.uniform(-0.2, 1.2, size=(B, 5)).astype(np.float32) for _ in ENCODERS]
    xs.append((rng.integers(-16, 16, size=(B, 3)) * (rng.random((B, 3)) < 0.6)).astype(np.float32))
    xs.append((rng.uniform(-9, 9, size=(B, T, 2, 2)) * (rng.random((B, T, 2, 2)) < 0.7)).astype(np.float32))
    return xs


def test_encoders_bit_exact(tmp_path):
    target = load_target("fpga:lanes=3")
    builds = set()
    for case in range(2):
        rng = np.random.default_rng(20 + case)
        g = encoders_graph(rng, target)
        out = tmp_path / f"case{case}"
        emit(g, out, target)
        assert lint(out, probe=True) == []
        xs = _inputs(rng)
        ref, got = rtl_matches_int(g, out, xs, [f"n{i}" for i in range(6)])
        for name in [n.name for n in g.inputs()]:
            golden = ref.probes[name]["out"].reshape(T, B, -1)
            assert 0 < np.mean(golden != 0) < 1, name
            np.testing.assert_array_equal(got.stats["rtl"]["events"][name], (golden != 0).sum(-1), err_msg=name)
        builds.add(got.stats["rtl"]["build_dir"])
    assert len(builds) == 1
    # graded spikes must fit the input width: a clear error, not a silent wrap
    xs = _inputs(np.random.default_rng(0))
    xs[4][0, 0] = 40.0
    with pytest.raises(InputError, match="x_spikes"):
        run(tmp_path / "case0", xs, progress=False)
