"""NIR import/export: round trips, hand-built graphs against an independent
per-step implementation of the documented Euler discretization, recurrence,
library exports (norse) and clear errors.

`make test` runs this file against the installed nir (1.0.4, pinned by sinabs) and
again against the newest supported nir (Makefile: test-nir-newest): where the two differ
(``v_reset``, graph type checks) the tests read the installed nir's own semantics."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import warnings

import h5py
import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from npuc.frontends.errors import FrontendError
from npuc.frontends.nir_export import export_nir, write_nir
from npuc.frontends.nir_import import DEFAULT_DT, import_nir
from npuc.ir import Graph, ops
from npuc.sim import simulate

HAS_V_RESET = "v_reset" in {f.name for f in dataclasses.fields(nir.LIF)}  # nir >= 1.0.6: reset to v_reset
_TYPE_CHECK = "type_check" in inspect.signature(nir.NIRGraph.__init__).parameters  # nir >= 1.0.5


def test_nir_version_is_the_one_asked_for():
    """`make test` sets NPUC_EXPECT_NIR for the second run: make sure that nir is the one imported."""
    want = os.environ.get("NPUC_EXPECT_NIR")
    assert want is None or nir.version == want, (nir.version, nir.__file__)


def graph(nodes, edges, **kw) -> nir.NIRGraph:
    """A NIRGraph exactly as written, also with nir >= 1.0.5 (whose constructor type-checks)."""
    return nir.NIRGraph(nodes=nodes, edges=edges, **kw, **({"type_check": False} if _TYPE_CHECK else {}))


def spiking(cls, **kw):
    """A spiking NIR node with the installed nir's default reset (v_reset is required in nir 1.0.6)."""
    if HAS_V_RESET and "v_reset" not in kw:
        kw["v_reset"] = np.zeros_like(np.asarray(kw["v_threshold"]))
    return cls(**kw)


def nir_rejects_grouped_conv() -> bool:
    """Whether the installed nir's own type check refuses a (correct) grouped convolution."""
    if not _TYPE_CHECK:
        return False
    conv = nir.Conv2d(input_shape=(4, 4), weight=np.ones((2, 1, 1, 1), np.float32), stride=1, padding=0,
                      dilation=1, groups=2, bias=np.zeros(2, np.float32))
    nodes = {"in": nir.Input(np.array([2, 4, 4])), "c": conv, "out": nir.Output(np.array([2, 4, 4]))}
    try:
        nir.NIRGraph(nodes=nodes, edges=[("in", "c"), ("c", "out")])
    except ValueError:
        return True
    return False


def quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **k)


# -----------------------------------------------------------------------------
# IR -> NIR -> IR
# -----------------------------------------------------------------------------


def conv_net(rng: np.random.Generator) -> Graph:
    """Conv/pool/flatten/dense, LIF (per-channel alpha), IF, a recurrent CUBA LIF,
    a Threshold-like LIF (alpha 0) and a leaky-integrator readout."""
    g = Graph("convnet", None)
    g.add("x", ops.Input((2, 8, 8), layout="TB"))
    g.add("c1", ops.Conv2d(rng.normal(size=(4, 2, 3, 3)), rng.normal(size=4) * 0.1, padding=1), ["x"])
    g.add("l1", ops.LIF(alpha=rng.uniform(0.5, 0.99, (4, 1, 1)), gain=rng.uniform(0.5, 2, (4, 8, 8)),
                        bias=0.01, threshold=1.0), ["c1"])
    g.add("p1", ops.SumPool2d(2), ["l1"])
    g.add("c2", ops.Conv2d(rng.normal(size=(4, 2, 3, 3)), None, padding=1, groups=2), ["p1"])
    g.add("l2", ops.IF(gain=0.7, threshold=0.8), ["c2"])
    g.add("p2", ops.AvgPool2d(2), ["l2"])
    g.add("f", ops.Reshape((-1,)), ["p2"])
    g.add("d", ops.Dense(rng.normal(size=(6, 16))), ["f"])
    g.add("sc", ops.Scale(np.full(6, 0.5)), ["d"])
    g.add("rec", ops.Dense(rng.normal(size=(6, 6)) * 0.3), [("l3", "spikes", 1)])
    g.add("s", ops.Add(), ["sc", "rec"])
    g.add("l3", ops.LIF(alpha=0.9, alpha_i=rng.uniform(0.3, 0.8, 6), gain=1.5, threshold=0.5), ["s"])
    g.add("th", ops.LIF(alpha=0.0, gain=1.0, threshold=0.2, reset="none"), ["l3"])
    g.add("d2", ops.Dense(rng.normal(size=(3, 6)), rng.normal(size=3)), ["th"])
    g.add("li", ops.LIF(alpha=0.8, gain=0.2, bias=0.05, reset="none"), ["d2"])
    g.add("o", ops.Output(), [("li", "v")])
    g.add("o2", ops.Output(index=1), ["l3"])
    return g.verify()


def rnn_net(rng: np.random.Generator) -> Graph:
    """The delay sits where the importer puts it (lif -> w_rec), so NIR gets a plain cycle."""
    g = Graph("rnn", 12)
    g.add("in", ops.Input((5,)))
    g.add("ff", ops.Dense(rng.normal(size=(7, 5))), ["in"])
    g.add("w_rec", ops.Dense(rng.normal(size=(7, 7)) * 0.4), [("lif", None, 1)])
    g.add("lif.sum", ops.Add(), ["ff", "w_rec"])
    g.add("lif", ops.LIF(alpha=0.85, gain=1.0, threshold=1.0), ["lif.sum"])
    g.add("out", ops.Output("sum", "B"), ["lif"])
    return g.verify()


def _params_equal(a, b) -> float:
    """Max relative difference of the canonical float fields (after broadcasting)."""
    worst = 0.0
    for f in ("alpha", "gain", "bias", "threshold", "alpha_i"):
        x, y = getattr(a, f), getattr(b, f)
        assert (x is None) == (y is None), f
        if x is None:
            continue
        x, y = np.broadcast_arrays(x.astype(np.float64), y.astype(np.float64))
        worst = max(worst, float(np.max(np.abs(x - y) / np.maximum(np.abs(x), 1e-30))))
    assert (a.reset, a.reset_value, a.reset_timing, a.compare, a.spike) == (
        b.reset, b.reset_value, b.reset_timing, b.compare, b.spike)
    return worst


@pytest.mark.parametrize("dt", [DEFAULT_DT, 1e-3])
def test_round_trip_preserves_parameters_and_spikes(tmp_path, dt):
    rng = np.random.default_rng(0)
    g = conv_net(rng)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        write_nir(g, tmp_path / "net.nir", dt=dt)
    # subtract reset is nir < 1.0.6's reset but not nir >= 1.0.6's: one warning per spiking neuron,
    # one for the grouped conv where nir's own type check rejects it, and one per neuron with
    # r != 1 (norse's from_nir ignores r); nothing else
    grouped = ["c2"] if nir_rejects_grouped_conv() else []
    msgs = [str(w.message) for w in rec]
    r_msgs = [m for m in msgs if "norse's from_nir ignores r" in m]
    assert sorted(m.split("'")[1] for m in msgs if m not in r_msgs) == sorted(["l1", "l2", "l3", *grouped])
    assert sorted(m.split("'")[1] for m in r_msgs) == ["l1", "l2", "li"]  # l3: a CubaLIF, norse applies its r
    g2 = import_nir(tmp_path / "net.nir")  # dt from the file's metadata
    assert g2.meta["source"]["dt"] == dt
    worst = 0.0
    for name in ("l1", "l2", "l3", "th", "li"):
        worst = max(worst, _params_equal(g[name].op, g2[name].op))
    assert worst == 0.0  # float64 dt conversion, then float32: measured exact
    assert type(g2["l2"].op) is ops.IF
    assert g2["l1"].op.alpha.shape == (4, 1, 1)  # per-channel form recovered from NIR's full arrays
    for name in ("c1", "c2", "d", "d2", "rec"):
        np.testing.assert_array_equal(g[name].op.weight, g2[name].op.weight)
    x = rng.normal(size=(25, 3, 2, 8, 8)).astype(np.float32) * 2
    r1, r2 = simulate(g, x, probe=["l1", "l2", "l3"]), simulate(g2, x, probe=["l1", "l2", "l3"])
    for a, b in zip(r1.outputs, r2.outputs):
        np.testing.assert_array_equal(a, b)
    for n in ("l1", "l2", "l3"):
        rate = r1.probes[n]["spikes"].mean()
        assert 0.05 < rate < 0.95, (n, rate)
        np.testing.assert_array_equal(r1.probes[n]["spikes"], r2.probes[n]["spikes"])


def test_round_trip_recurrent_cycle_is_a_plain_nir_cycle(tmp_path):
    rng = np.random.default_rng(1)
    g = rnn_net(rng)
    ng = quiet(export_nir, g)
    assert ("w_rec", "lif") in ng.edges and ("lif", "w_rec") in ng.edges
    assert not any(isinstance(n, nir.Delay) for n in ng.nodes.values())
    nir.write(tmp_path / "rnn.nir", ng)
    g2 = import_nir(tmp_path / "rnn.nir", steps=12)
    assert [(r.node, r.delay) for r in g2["lif.sum"].inputs] == [("ff", 0), ("w_rec", 0)]
    assert [(r.node, r.delay) for r in g2["w_rec"].inputs] == [("lif", 1)]
    x = rng.normal(size=(4, 5)).astype(np.float32)
    counts = simulate(g, x).output  # the 'sum' decoding is not part of NIR: g2 emits the spike trains
    assert counts.sum() > 0
    np.testing.assert_array_equal(counts, simulate(g2, x).output.sum(0))


def test_delay_on_another_edge_becomes_a_nir_delay_node(tmp_path):
    rng = np.random.default_rng(2)
    g = Graph("d", None)
    g.add("in", ops.Input((4,), layout="TB"))
    g.add("w", ops.Dense(rng.normal(size=(4, 4))), ["in"])
    g.add("lif", ops.LIF(alpha=0.5, threshold=0.5), ["w"])
    g.add("late", ops.Scale(2.0), [("lif", None, 1)])  # feed-forward delay
    g.add("o", ops.Output(), ["late"])
    ng = quiet(export_nir, g)
    delays = [k for k, n in ng.nodes.items() if isinstance(n, nir.Delay)]
    assert delays == ["lif.delay"]
    g2 = import_nir(ng)
    assert g2["late"].inputs[0].delay == 1
    x = rng.normal(size=(9, 2, 4)).astype(np.float32)
    np.testing.assert_array_equal(simulate(g, x).output, simulate(g2, x).output)


def test_export_warns_for_each_lost_semantic():
    g = Graph("lossy", 5)
    g.add("x", ops.Input((3,)))
    g.add("n", ops.LIF(alpha=0.9, threshold=1.0, threshold_lo=-1.0, spike="ternary", reset="value", reset_value=0.25,
                       reset_timing="delayed", compare="ge", v_min=-3.0, v_init=0.5), ["x"])
    g.add("o", ops.Output("sum", "B"), ["n"])
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ng = export_nir(g)
    msgs = "\n".join(str(w.message) for w in rec)
    for what in ("reset timing 'delayed'", "v >= threshold", "ternary spikes", "v_min",
                 "v_init=0.5", "'sum' output decoding"):
        assert what in msgs, what
    # reset to a value: a NIR field from nir 1.0.6 on, lost (kept in metadata only) before
    assert ("reset to 0.25" in msgs) != HAS_V_RESET
    if HAS_V_RESET:
        np.testing.assert_array_equal(ng.nodes["n"].v_reset, [0.25] * 3)
    assert all("'n'" in str(w.message) or "'o'" in str(w.message) for w in rec)
    g2 = import_nir(ng, steps=5)  # npuc's metadata keeps the reset; the rest is NIR's LIF
    op = g2["n"].op
    assert (op.reset, op.reset_value, op.reset_timing, op.compare, op.spike, op.v_min) == (
        "value", 0.25, "same", "gt", "binary", None)


@pytest.mark.parametrize(
    "op, match",
    [
        (ops.MaxPool2d(2), "no MaxPool2d"),
        (ops.Permute((0, 2, 1)), "no Permute"),
        (ops.BatchNorm(np.zeros(2), np.ones(2), np.ones(2), np.zeros(2)), "fold-batchnorm"),
        (ops.Reshape((4, 4, 2)), "not a flatten"),
    ],
)
def test_export_rejects_ops_without_nir_form(op, match):
    g = Graph("bad", 3)
    g.add("x", ops.Input((2, 4, 4)))
    g.add("bad", op, ["x"])
    g.add("o", ops.Output(), ["bad"])
    with pytest.raises(FrontendError, match=f"node 'bad'.*{match}"):
        export_nir(g)


def test_export_rejects_dense_on_tokens_and_membrane_of_resetting_neuron():
    g = Graph("tok", 3)
    g.add("x", ops.Input((2, 4)))
    g.add("d", ops.Dense(np.ones((3, 4))), ["x"])
    g.add("o", ops.Output(), ["d"])
    with pytest.raises(FrontendError, match="node 'd'.*1-d vector"):
        export_nir(g)
    g = Graph("mem", 3)
    g.add("x", ops.Input((4,)))
    g.add("n", ops.LIF(alpha=0.9), ["x"])
    g.add("o", ops.Output(), [("n", "v")])
    with pytest.raises(FrontendError, match="node 'n'.*membrane is read after a subtract reset"):
        export_nir(g)


def test_write_nir_is_deterministic(tmp_path):
    g = conv_net(np.random.default_rng(4))
    quiet(write_nir, g, tmp_path / "a.nir")
    quiet(write_nir, g, tmp_path / "b.nir")
    assert (tmp_path / "a.nir").read_bytes() == (tmp_path / "b.nir").read_bytes()


# -----------------------------------------------------------------------------
# Hand-built NIR graphs against an independent per-step implementation
# -----------------------------------------------------------------------------


def nir_reference(ng: nir.NIRGraph, x: np.ndarray, dt: float, order: list[str]) -> dict[str, np.ndarray]:
    """Step a feed-forward NIR graph with the documented forward-Euler convention
    (float64, one node after another in ``order``); x is [T, B, ...]."""
    preds = {k: [a for a, b in ng.edges if b == k] for k in ng.nodes}
    state: dict[str, dict] = {k: {} for k in ng.nodes}
    seq: dict[str, list] = {k: [] for k in ng.nodes}
    t64 = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64))  # noqa: E731
    for t in range(x.shape[0]):
        val: dict[str, torch.Tensor] = {}
        for k in order:
            n = ng.nodes[k]
            if isinstance(n, nir.Input):
                val[k] = t64(x[t])
                seq[k].append(val[k])
                continue
            u = sum(val[p] for p in preds[k])
            st = state[k]
            if isinstance(n, nir.Affine):
                y = u @ t64(n.weight).T + t64(n.bias)
            elif isinstance(n, nir.Linear):
                y = u @ t64(n.weight).T
            elif isinstance(n, nir.Conv2d):
                y = F.conv2d(u, t64(n.weight), t64(n.bias), tuple(map(int, n.stride)), tuple(map(int, n.padding)),
                             tuple(map(int, n.dilation)), int(n.groups))
            elif isinstance(n, nir.SumPool2d):
                y = F.avg_pool2d(u, tuple(n.kernel_size), tuple(n.stride), tuple(n.padding)) * np.prod(n.kernel_size)
            elif isinstance(n, nir.AvgPool2d):
                y = F.avg_pool2d(u, tuple(n.kernel_size), tuple(n.stride), tuple(n.padding))
            elif isinstance(n, nir.Flatten):
                y = u.reshape(u.shape[0], -1)
            elif isinstance(n, nir.Scale):
                y = u * t64(n.scale)
            elif isinstance(n, nir.Threshold):
                y = (u > t64(n.threshold)).double()
            elif isinstance(n, nir.Output):
                y = u
            else:  # neurons: dv = dt * f(v, I), input of this step used at once
                v = st.get("v", torch.zeros_like(u))
                if isinstance(n, nir.CubaLIF):
                    cur = st.get("I", torch.zeros_like(u))
                    cur = cur + dt / t64(n.tau_syn) * (-cur + t64(n.w_in) * u)
                    st["I"] = cur
                    v = v + dt / t64(n.tau_mem) * (t64(n.v_leak) - v + t64(n.r) * cur)
                elif isinstance(n, (nir.LIF, nir.LI)):
                    v = v + dt / t64(n.tau) * (t64(n.v_leak) - v + t64(n.r) * u)
                elif isinstance(n, (nir.IF, nir.I)):
                    v = v + dt * t64(n.r) * u
                if isinstance(n, (nir.LI, nir.I)):
                    y = v
                else:
                    y = (v > t64(n.v_threshold)).double()
                    v_reset = getattr(n, "v_reset", None)
                    if v_reset is None:  # nir < 1.0.6: subtract the threshold
                        v = v - y * t64(n.v_threshold)
                    else:  # nir >= 1.0.6: reset to v_reset
                        v = torch.where(y > 0, t64(v_reset).expand_as(v), v)
                st["v"] = v
            val[k] = y
            seq[k].append(y)
    return {k: torch.stack(s).numpy() for k, s in seq.items() if s}


def test_import_dense_cuba_graph_matches_reference(tmp_path):
    rng = np.random.default_rng(10)
    dt = 1e-3
    nodes = {
        "in": nir.Input(np.array([6])),
        "a1": nir.Affine(rng.normal(0.3, 1, size=(8, 6)).astype(np.float32), rng.uniform(0, 1, 8).astype(np.float32)),
        "lif": spiking(nir.LIF, tau=rng.uniform(5e-3, 2e-2, 8), r=rng.uniform(0.5, 2, 8), v_leak=rng.uniform(-0.2, 0.2, 8),
                       v_threshold=rng.uniform(0.2, 0.5, 8)),
        "a2": nir.Linear(rng.normal(size=(5, 8)).astype(np.float32)),
        "cuba": spiking(nir.CubaLIF, tau_syn=np.full(5, 4e-3), tau_mem=np.full(5, 1e-2), r=np.full(5, 3.0),
                            v_leak=np.zeros(5), v_threshold=np.full(5, 0.3), w_in=np.full(5, 2.0)),
        "sc": nir.Scale(np.linspace(0.5, 1.5, 5)),
        "thr": nir.Threshold(np.full(5, 0.5)),
        "out": nir.Output(np.array([5])),
    }
    edges = [("in", "a1"), ("a1", "lif"), ("lif", "a2"), ("a2", "cuba"), ("cuba", "sc"), ("sc", "thr"), ("thr", "out")]
    nir.write(tmp_path / "g.nir", graph(nodes, edges))
    g = import_nir(tmp_path / "g.nir", dt=dt)
    assert g["cuba"].op.cuba and type(g["thr"].op) is ops.LIF and g["thr"].op.alpha == 0
    x = (rng.random((40, 4, 6)) * 3).astype(np.float32)
    ref = nir_reference(graph(nodes, edges), x, dt, ["in", "a1", "lif", "a2", "cuba", "sc", "thr", "out"])
    res = simulate(g, x, probe=["lif", "cuba"])
    for node in ("lif", "cuba"):
        got, want = res.probes[node]["spikes"], ref[node]
        assert 0.05 < want.mean() < 0.95
        np.testing.assert_array_equal(got, want, err_msg=node)
    np.testing.assert_array_equal(res.output, ref["out"])


def test_import_conv_graph_matches_reference(tmp_path):
    rng = np.random.default_rng(11)
    dt = 1e-4
    nodes = {
        "in": nir.Input(np.array([2, 8, 8])),
        "conv": nir.Conv2d(input_shape=(8, 8), weight=rng.normal(size=(4, 2, 3, 3)).astype(np.float32), stride=1,
                           padding=1, dilation=1, groups=1, bias=rng.normal(size=4).astype(np.float32) * 0.1),
        "if": spiking(nir.IF, r=np.full((4, 8, 8), 3000.0), v_threshold=np.full((4, 8, 8), 0.6)),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "avg": nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "flat": nir.Flatten(input_type={"input": np.array([4, 2, 2])}, start_dim=0, end_dim=-1),
        "fc": nir.Affine(rng.normal(size=(3, 16)).astype(np.float32), np.zeros(3, np.float32)),
        "li": nir.LI(tau=np.full(3, 2e-3), r=np.full(3, 1.0), v_leak=np.full(3, 0.1)),
        "out": nir.Output(np.array([3])),
    }
    chain = ["in", "conv", "if", "pool", "avg", "flat", "fc", "li", "out"]
    nir.write(tmp_path / "c.nir", graph(nodes, list(zip(chain, chain[1:]))))
    g = import_nir(tmp_path / "c.nir", dt=dt)
    assert g["out"].inputs[0].port == "v" and g["flat"].op.shape == (-1,)
    x = rng.normal(size=(30, 3, 2, 8, 8)).astype(np.float32)
    ref = nir_reference(graph(nodes, list(zip(chain, chain[1:]))), x, dt, chain)
    res = simulate(g, x, probe=["if"])
    assert 0.05 < ref["if"].mean() < 0.95
    np.testing.assert_array_equal(res.probes["if"]["spikes"], ref["if"])
    np.testing.assert_allclose(res.output, ref["out"], rtol=1e-5, atol=1e-6)


def test_static_input_with_steps():
    ng = nir.NIRGraph.from_list(nir.Affine(np.eye(3, dtype=np.float32), np.zeros(3, np.float32)),
                                spiking(nir.IF, r=np.full(3, 1e4), v_threshold=np.ones(3)))
    g = import_nir(ng, steps=6)
    assert g.num_steps == 6 and g.inputs()[0].op.layout == "B"
    out = simulate(g, np.array([[0.5, 0.25, 2.0]], np.float32)).output  # [T, B, 3]
    # gain = dt * r = 1: v climbs by x per step and loses 1 per spike (fires when v > 1)
    np.testing.assert_array_equal(out[:, 0].sum(0), [2, 1, 6])


# -----------------------------------------------------------------------------
# Recurrence and nested graphs
# -----------------------------------------------------------------------------


def _recurrent_parts(rng):
    w_in = rng.normal(size=(6, 4)).astype(np.float32)
    w_rec = (rng.normal(size=(6, 6)) * 0.5).astype(np.float32)
    lif = dict(tau=np.full(6, 5e-3), r=np.full(6, 10.0), v_leak=np.zeros(6), v_threshold=np.full(6, 1.0))
    return w_in, w_rec, lif


def _recurrent_reference(x, w_in, w_rec, lif, dt, v_reset):
    """``v_reset`` of the NIR node: None (nir < 1.0.6) subtracts the threshold."""
    v = np.zeros((x.shape[1], 6))
    s = np.zeros_like(v)
    out = []
    for t in range(x.shape[0]):
        cur = x[t].astype(np.float64) @ w_in.T.astype(np.float64) + s @ w_rec.T.astype(np.float64)  # s: previous step
        v = v + dt / lif["tau"] * (lif["v_leak"] - v + lif["r"] * cur)
        s = (v > lif["v_threshold"]).astype(np.float64)
        v = v - s * lif["v_threshold"] if v_reset is None else np.where(s > 0, v_reset, v)
        out.append(s)
    return np.stack(out)


def test_recurrent_nir_graph(tmp_path):
    rng = np.random.default_rng(20)
    w_in, w_rec, lif = _recurrent_parts(rng)
    ng = graph(
        nodes={"in": nir.Input(np.array([4])), "w_in": nir.Linear(w_in), "lif": spiking(nir.LIF, **lif),
               "w_rec": nir.Linear(w_rec), "out": nir.Output(np.array([6]))},
        edges=[("in", "w_in"), ("w_in", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "out")],
    )
    nir.write(tmp_path / "r.nir", ng)
    g = import_nir(tmp_path / "r.nir", dt=1e-3)
    # the DFS from the input reaches lif first: its back edge w_rec -> lif moves up past the
    # stateless w_rec, so lif -> w_rec carries the delay
    assert [(r.node, r.delay) for r in g["lif.sum"].inputs] == [("w_in", 0), ("w_rec", 0)]
    assert [(r.node, r.delay) for r in g["w_rec"].inputs] == [("lif", 1)]
    x = (rng.random((50, 3, 4)) * 2).astype(np.float32)
    want = _recurrent_reference(x, w_in, w_rec, lif, 1e-3, getattr(ng.nodes["lif"], "v_reset", None))
    assert 0.05 < want.mean() < 0.95
    np.testing.assert_array_equal(simulate(g, x).output, want)


def test_nested_rnn_subgraph_as_snntorch_writes_it():
    """snntorch's RLeaky export: a nested NIRGraph {input, lif, w_rec, output}."""
    rng = np.random.default_rng(21)
    w_in, w_rec, lif = _recurrent_parts(rng)
    sub = graph(
        nodes={"input": nir.Input(np.array([6])), "lif": spiking(nir.LIF, **lif), "w_rec": nir.Linear(w_rec),
               "output": nir.Output(np.array([6]))},
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
    )
    ng = graph(nodes={"in": nir.Input(np.array([4])), "fc": nir.Linear(w_in), "rnn": sub,
                             "out": nir.Output(np.array([6]))},
                      edges=[("in", "fc"), ("fc", "rnn"), ("rnn", "out")])
    g = import_nir(ng, dt=1e-3)
    assert [(r.node, r.delay) for r in g["rnn.lif.sum"].inputs] == [("fc", 0), ("rnn.w_rec", 0)]
    assert [(r.node, r.delay) for r in g["rnn.w_rec"].inputs] == [("rnn.lif", 1)]
    x = (rng.random((50, 2, 4)) * 2).astype(np.float32)
    want = _recurrent_reference(x, w_in, w_rec, lif, 1e-3, getattr(sub.nodes["lif"], "v_reset", None))
    np.testing.assert_array_equal(simulate(g, x).output, want)


def test_delay_nodes():
    base = {"in": nir.Input(np.array([3])), "out": nir.Output(np.array([3]))}
    ok = graph(nodes={**base, "d": nir.Delay(np.full(3, 1e-3))}, edges=[("in", "d"), ("d", "out")])
    g = import_nir(ok, dt=1e-3)
    assert g["out"].inputs[0].delay == 1
    x = np.arange(12, dtype=np.float32).reshape(4, 1, 3)
    np.testing.assert_array_equal(simulate(g, x).output[1:], x[:-1])
    bad = graph(nodes={**base, "d": nir.Delay(np.full(3, 2.5e-3))}, edges=[("in", "d"), ("d", "out")])
    with pytest.raises(FrontendError, match="node 'd' .*whole number of steps"):
        import_nir(bad, dt=1e-3)


def _file_with_v_reset(path, v_reset):
    """A one-LIF NIR file as nir >= 1.0.6 writes it (``v_reset`` given) or as nir < 1.0.6 does (None)."""
    ng = nir.NIRGraph.from_list(spiking(nir.LIF, tau=np.full(2, 1e-3), r=np.full(2, 10.0), v_leak=np.zeros(2),
                                        v_threshold=np.ones(2)))
    nir.write(path, ng)
    with h5py.File(path, "a") as f:
        if "node/nodes/lif/v_reset" in f:
            del f["node/nodes/lif/v_reset"]
        if v_reset is not None:
            f["node/nodes/lif/v_reset"] = np.full(2, v_reset)
    return path


def test_v_reset_from_newer_nir_files(tmp_path):
    """nir >= 1.0.6 writes v_reset (reset to value); nir < 1.0.6's own reader rejects such files."""
    path = _file_with_v_reset(tmp_path / "new.nir", -0.5)
    g = import_nir(path, steps=4)
    assert (g["lif"].op.reset, g["lif"].op.reset_value) == ("value", -0.5)
    g = import_nir(path, steps=4, reset="subtract")
    assert g["lif"].op.reset == "subtract"


def test_files_without_v_reset_subtract_under_every_nir(tmp_path):
    """A file written by nir < 1.0.6 (no v_reset) resets by subtraction, its writer's documented
    reset, although nir >= 1.0.6's own reader fills in v_reset = 0."""
    path = _file_with_v_reset(tmp_path / "old.nir", None)
    g = import_nir(path, steps=4)
    assert g["lif"].op.reset == "subtract"
    g = import_nir(path, steps=4, reset="value")
    assert (g["lif"].op.reset, g["lif"].op.reset_value) == ("value", 0.0)


def test_graph_objects_follow_the_installed_nir():
    """A graph object built in Python has the installed nir's semantics: nir >= 1.0.6 nodes
    always carry v_reset (0 by default) and reset to it; older nodes subtract."""
    ng = nir.NIRGraph.from_list(spiking(nir.LIF, tau=np.full(2, 1e-3), r=np.full(2, 10.0), v_leak=np.zeros(2),
                                        v_threshold=np.ones(2)))
    op = import_nir(ng, steps=4)["lif"].op
    assert (op.reset, op.reset_value) == (("value", 0.0) if HAS_V_RESET else ("subtract", 0.0))


def test_exported_files_load_in_nir(tmp_path):
    """Files npuc writes load with the installed nir's own reader (which type-checks from 1.0.5),
    and every spiking node carries the reset the installed nir can express."""
    g = Graph("plain", None)
    g.add("x", ops.Input((2, 6, 6), layout="TB"))
    g.add("c", ops.Conv2d(np.ones((3, 2, 3, 3)), None, padding=1), ["x"])
    g.add("l", ops.LIF(alpha=0.5, gain=1.0, threshold=1.0, reset="value", reset_value=0.0), ["c"])
    g.add("f", ops.Reshape((-1,)), ["l"])
    g.add("d", ops.Dense(np.ones((4, 108))), ["f"])
    g.add("o", ops.Output(), ["d"])
    quiet(write_nir, g.verify(), tmp_path / "p.nir")
    ng = nir.read(tmp_path / "p.nir")
    assert isinstance(ng.nodes["l"], nir.LIF)
    if HAS_V_RESET:
        np.testing.assert_array_equal(ng.nodes["l"].v_reset, np.zeros((3, 6, 6)))


# -----------------------------------------------------------------------------
# Library exports
# -----------------------------------------------------------------------------


def _norse_to_nir(norse, model, x):
    """norse 1.1's export; with nir >= 1.0.6 unchecked, whose type check rejects norse's Input
    (norse declares it with the batch axis, [1, 5], then feeds a [5] Linear)."""
    if not _TYPE_CHECK:
        return norse.to_nir(model, x)
    init = nir.NIRGraph.__init__
    nir.NIRGraph.__init__ = functools.partialmethod(init, type_check=False)
    try:
        return norse.to_nir(model, x)
    finally:
        nir.NIRGraph.__init__ = init


def test_norse_lifbox_export():
    """norse 1.1 writes tau = dt * tau_mem (not tau_mem) and resets to v_reset
    although nir < 1.0.6 documents subtraction. Importing with dt = dt_norse**2 and
    reset='value' reproduces norse's spikes."""
    import norse.torch as norse  # a dev dependency: a missing install must fail, not skip
    torch.manual_seed(0)
    model = norse.SequentialState(torch.nn.Linear(5, 4), norse.LIFBoxCell())
    ng = quiet(_norse_to_nir, norse, model, torch.randn(1, 5))
    x = torch.rand(120, 3, 5) * 40
    state, zs = None, []
    with torch.no_grad():
        for t in range(x.shape[0]):
            z, state = model(x[t], state)
            zs.append(z)
    want = torch.stack(zs).numpy()
    assert 0.05 < want.mean() < 0.95
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        import_nir(ng)  # default dt: tau = 1e-5 < dt
    assert any("negative decay" in str(w.message) for w in rec)
    assert any("dropping the leading batch/time axes" in str(w.message) for w in rec)  # Input [1, 5]
    g = quiet(import_nir, ng, dt=1e-3**2, reset="value")
    np.testing.assert_array_equal(simulate(g, x.numpy()).output, want)
    g = quiet(import_nir, ng, dt=1e-3**2)  # the installed nir's reset
    if HAS_V_RESET:  # norse's LIF carries v_reset: reset to it, as norse does
        np.testing.assert_array_equal(simulate(g, x.numpy()).output, want)
    else:  # nir < 1.0.6: subtract, which differs from norse
        assert (simulate(g, x.numpy()).output != want).mean() > 0.01


# -----------------------------------------------------------------------------
# Errors
# -----------------------------------------------------------------------------


def test_error_unknown_node_type(tmp_path):
    ng = nir.NIRGraph.from_list(nir.Affine(np.eye(2, dtype=np.float32), np.zeros(2, np.float32)))
    nir.write(tmp_path / "u.nir", ng)
    with h5py.File(tmp_path / "u.nir", "a") as f:
        del f["node/nodes/affine/type"]
        f["node/nodes/affine/type"] = "Spline"
    with pytest.raises(FrontendError, match="node 'affine'.*unknown NIR node type 'Spline'"):
        import_nir(tmp_path / "u.nir", steps=2)

    @dataclasses.dataclass(eq=False)
    class Gizmo(nir.NIRNode):
        pass

    ng.nodes["affine"] = Gizmo()
    with pytest.raises(FrontendError, match="node 'affine' has unknown type Gizmo"):
        import_nir(ng, steps=2)


def test_error_malformed_files(tmp_path):
    (tmp_path / "junk.nir").write_bytes(b"not an hdf5 file at all")
    with pytest.raises(FrontendError, match="junk.nir: not a NIR"):
        import_nir(tmp_path / "junk.nir")
    with pytest.raises(FrontendError, match="no such NIR file"):
        import_nir(tmp_path / "missing.nir")
    with h5py.File(tmp_path / "empty.nir", "w") as f:
        f["version"] = "1.0"
    with pytest.raises(FrontendError, match="no 'node' group"):
        import_nir(tmp_path / "empty.nir")
    ng = nir.NIRGraph.from_list(nir.Affine(np.eye(2, dtype=np.float32), np.zeros(2, np.float32)))
    nir.write(tmp_path / "bad.nir", ng)
    with h5py.File(tmp_path / "bad.nir", "a") as f:
        del f["node/nodes/affine/bias"]
    with pytest.raises(FrontendError, match="node 'affine' \\(Affine\\): malformed"):
        import_nir(tmp_path / "bad.nir")


def test_error_shape_mismatch_and_bad_edges():
    aff = nir.Affine(np.ones((3, 5), np.float32), np.zeros(3, np.float32))
    ng = graph(nodes={"in": nir.Input(np.array([4])), "fc": aff, "out": nir.Output(np.array([3]))},
                      edges=[("in", "fc"), ("fc", "out")])
    with pytest.raises(FrontendError, match="NIR node 'fc' \\(Affine\\).*4 features.*expects 5"):
        import_nir(ng, steps=2)
    lif = spiking(nir.LIF, tau=np.ones(4), r=np.ones(4), v_leak=np.zeros(4), v_threshold=np.ones(4))
    ng = graph(nodes={"in": nir.Input(np.array([3])), "lif": lif, "out": nir.Output(np.array([3]))},
                      edges=[("in", "lif"), ("lif", "out")])
    with pytest.raises(FrontendError, match="NIR node 'lif' \\(LIF\\): shape mismatch: declares (in|out)put shape \\[4\\]"):
        import_nir(ng, steps=2)
    ng = graph(nodes={"in": nir.Input(np.array([3])), "out": nir.Output(np.array([3]))},
                      edges=[("in", "ghost"), ("in", "out")])
    with pytest.raises(FrontendError, match="unknown node 'ghost'"):
        import_nir(ng, steps=2)
    with pytest.raises(FrontendError, match="dt must be a positive number"):
        import_nir(ng, dt=0.0)


def test_export_tables_dispatch_on_the_op_class():
    """The exporters' per-op tables: an op subclass exports like its nearest registered base,
    an unregistered op has no entry, and registering a class twice is refused."""
    from npuc.frontends.nir_export import NIR_EXPORT
    from npuc.frontends.onnx_export import ONNX_EXPORT
    from npuc.ir.optable import OpTable

    assert NIR_EXPORT.lookup(ops.IF(gain=1.0, threshold=1.0)) is NIR_EXPORT.lookup(ops.LIF(alpha=0.5, threshold=1.0))
    assert NIR_EXPORT.lookup(ops.MaxPool2d(2)) is None and ONNX_EXPORT.lookup(ops.MaxPool2d(2)) is not None
    t = OpTable("t")
    t.register(ops.Dense)(lambda *a: None)
    with pytest.raises(ValueError, match="Dense is registered twice"):
        t.register(ops.Dense)(lambda *a: None)
