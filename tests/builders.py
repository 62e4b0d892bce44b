"""Graphs that several test files build the same way (one definition each).

`tests/reference.py` holds the independent references the engines are checked against; this
module holds what the tests feed them. A new op goes into `every_op_graph` once and is then
covered by the serialization and ONNX round trips (and any other format that uses it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from npuc.ir import QLIF, Encoding, Graph, QInput, QScale, QSynapse, ops
from npuc.targets import load_target


def every_op_graph(quantized: bool = False) -> Graph:
    """One node of every float op (and every port, delay and output decoding the IR has) in a
    graph that simulates. ``quantized`` adds the q-parameters the IR files also carry (ONNX
    export, a float format, leaves them out)."""
    rng = np.random.default_rng(3)
    g = Graph("all_ops", num_steps=5)
    g.meta["source"] = {"model": "x.py:f", "tuple": (1, 2)}
    g.add("x", ops.Input((2, 6, 6), Encoding("bernoulli", bits=12, seed=77), q=QInput(frac_bits=3) if quantized else None))
    g.add("bn", ops.BatchNorm(rng.random(2), rng.random(2) + 0.5, rng.random(2), rng.random(2), eps=1e-3), ["x"])
    g.add("c", ops.Conv2d(rng.normal(size=(4, 1, 3, 3)), rng.normal(size=4), stride=1, padding=1, groups=2), ["bn"])
    g.add("sp", ops.SumPool2d(2), ["c"])
    g.add("ap", ops.AvgPool2d(kernel=3, stride=1, padding=1, q=QScale(np.array(7), 6) if quantized else None), ["sp"])
    g.add("mp", ops.MaxPool2d(kernel=(1, 3), stride=1), ["ap"])
    q_lif = QLIF(du=4095, dv=100, vth=50, vth_lo=-20, bias_mant=np.arange(4).reshape(4, 1, 1)) if quantized else None
    g.add("lif", ops.LIF(alpha=rng.random((4, 1, 1)), threshold=0.8, spike="ternary", threshold_lo=-0.5,
                         reset="value", reset_value=0.1, reset_timing="delayed", v_min=-2.0, v_init=0.3, q=q_lif), ["mp"])
    g.add("p", ops.Permute((1, 2, 0)), ["lif"])
    g.add("r", ops.Reshape((-1, 4)), ["p"])
    g.add("c1", ops.Conv1d(rng.normal(size=(3, 3, 2)), dilation=2), [("r", None)])
    g.add("tok", ops.Dense(rng.normal(size=(6, g["c1"].shape[-1])), rng.normal(size=6)), [("c1", None)])  # Dense on (L, C)
    g.add("fl", ops.Reshape((-1,)), ["tok"])
    n = g["fl"].shape[0]
    w = rng.normal(size=(5, n)).astype(np.float32)
    g.add("d", ops.Dense(w, q=QSynapse(rng.integers(-9, 9, (5, n)), -2) if quantized else None), ["fl"])
    g.add("rec", ops.Dense(np.eye(5)), [("lif2", "spikes", 1)])
    g.add("sum", ops.Add(), ["d", "rec", "d"])
    g.add("sc", ops.Scale(np.full(5, 0.5)), ["sum"])
    g.add("lif2", ops.LIF(alpha=0.9, alpha_i=0.5, spike="multilevel", compare="ge", levels=4), ["sc"],
          meta={"core": 3, "rate": [0.1, 0.2]})
    g.add("if", ops.IF(gain=rng.random(5), threshold=0.7, bits=8, seed=5), ["lif2"])
    g.add("alpha", ops.LIF(alpha=0.8, alpha_i=0.9, gain=0.3, charge="previous", reset="value",
                           reset_timing="delayed_charge"), ["lif2"])
    g.add("o1", ops.Output(), ["if"])
    g.add("o2", ops.Output("last", "B", index=1), [("lif2", "v")])
    g.add("o3", ops.Output(index=2), [("alpha", "i")])
    return g.verify()


def seeded_case(build: Callable[..., Graph], spec: str, seed: int, x_shape: tuple, rtl: Path | None = None,
                **kw: Any) -> tuple[Graph, np.ndarray]:
    """``build(rng, target, **kw)`` for the target ``spec``, then an input batch uniform in [-1, 1),
    both from one generator seeded ``seed``; with ``rtl``, the graph is emitted there as Verilog."""
    target = load_target(spec)
    rng = np.random.default_rng(seed)
    g = build(rng, target, **kw)
    if rtl is not None:
        from npuc.backends.rtl import emit

        emit(g, rtl, target)
    return g, rng.uniform(-1, 1, size=x_shape).astype(np.float32)


def add_qkv_heads(g: Graph, rng: np.random.Generator, n: int, d: int, heads: int) -> None:
    """Spikformer's Q, K, V: spiking projections of input ``x`` (``[n, d]``, Dense on the last
    axis) split into heads by Reshape/Permute, as nodes ``q_p``, ``k_p``, ``v_p`` (``[heads, n, d / heads]``)."""
    for name in ("q", "k", "v"):
        g.add(f"{name}_fc", ops.Dense(rng.normal(0, 0.6, (d, d)).astype("f4")), ["x"])
        g.add(f"{name}_lif", ops.LIF(alpha=0.5, threshold=1.0, reset="value"), [f"{name}_fc"])
        g.add(f"{name}_h", ops.Reshape((n, heads, d // heads)), [f"{name}_lif"])
        g.add(f"{name}_p", ops.Permute((1, 0, 2)), [f"{name}_h"])
