"""The engine's per-run savings: what it caches with a graph follows the graph's edits, rows a
kernel wrote into one buffer are that buffer, the input check, and the library forms' spike
buffers (probed or not, batch-major or time-major) against the libraries' own forwards."""

from __future__ import annotations

import numpy as np
import pytest
import sinabs
import torch
import torch.nn.functional as F
from models import harness
from models import sinabs_models as M
from models import zoo_models as zoo
from reference import lif_float

from npuc.frontends import trace
from npuc.ir import Graph, ops
from npuc.sim import engine, float_kernels, simulate
from npuc.sim.encoding import InputError, to_time_major


def _mlp(w1: np.ndarray, threshold: float = 0.5) -> Graph:
    g = Graph("mlp", num_steps=6)
    g.add("x", ops.Input((5,), layout="TB"))
    g.add("fc", ops.Dense(w1), ["x"])
    g.add("lif", ops.LIF(alpha=0.8, threshold=threshold), ["fc"])
    g.add("out", ops.Output(), [("lif", "spikes")])
    return g.verify()


def _expected(w1: np.ndarray, threshold: float, x: np.ndarray) -> np.ndarray:
    """The float engine's LIF on the dense layer's output, from tests/reference.py."""
    lif = ops.LIF(alpha=0.8, threshold=threshold)
    cur = torch.from_numpy(x) @ torch.from_numpy(w1.astype(np.float32)).T
    return lif_float(lif, cur)["spikes"].numpy()


def test_cached_plan_follows_op_and_edge_edits():
    """The schedule, input ports, LIF parameters and output names kept between runs of one graph
    are dropped when an op or an edge changes: each run equals the reference of the graph as it is."""
    rng = np.random.default_rng(5)
    # quarter weights on spikes: every sum exact, so the reference's matmul shape does not matter
    w1, w2 = rng.integers(-4, 5, (7, 5)) / 4, rng.integers(-8, 9, (7, 5)) / 4
    x = (rng.random((6, 3, 5)) < 0.5).astype(np.float32)
    g = _mlp(w1)
    first = simulate(g, x, "float").output
    np.testing.assert_array_equal(first, _expected(w1, 0.5, x))
    g.replace_op("fc", ops.Dense(w2))
    np.testing.assert_array_equal(simulate(g, x, "float").output, _expected(w2, 0.5, x))
    g.replace_op("lif", ops.LIF(alpha=0.8, threshold=1.5))
    third = simulate(g, x, "float").output
    np.testing.assert_array_equal(third, _expected(w2, 1.5, x))
    # an edge moved: a second dense layer between the first and the neuron
    g.add("fc2", ops.Dense(np.eye(7) * 0.5), ["fc"])
    g.set_inputs("lif", ["fc2"])
    g.verify()
    cur = torch.from_numpy(x) @ torch.from_numpy(w2.astype(np.float32)).T
    cur = cur @ torch.from_numpy((np.eye(7) * 0.5).astype(np.float32)).T
    want = lif_float(ops.LIF(alpha=0.8, threshold=1.5), cur)["spikes"].numpy()
    np.testing.assert_array_equal(simulate(g, x, "float").output, want)
    assert not np.array_equal(first, third) and not np.array_equal(third, want)
    # time folding marked on a node after a run: the float engine no longer runs step-major
    def step_major() -> bool:
        return engine._step_major(g, engine.Context("float", None, 6, 3, cache=engine._graph_cache(g, "float", None)))

    assert step_major()
    g["fc2"].meta["time_folded"] = True
    assert not step_major()
    np.testing.assert_array_equal(simulate(g, x, "float").output, want)


@pytest.mark.parametrize("dim", [0, 1])
def test_stack_is_the_buffer_its_rows_were_written_into(dim):
    buf = torch.arange(4 * 3 * 5, dtype=torch.float32).reshape((4, 3, 5) if dim == 0 else (3, 4, 5)).clone()
    rows = [buf.select(dim, t) for t in range(4)]
    assert engine._stack(rows, dim) is buf
    # rows out of order, of another buffer, or copies: a stack of their values
    for other in (rows[::-1], [r.clone() for r in rows], rows[:3] + [buf.clone().select(dim, 3)]):
        got = engine._stack(other, dim)
        assert got is not buf and torch.equal(got, torch.stack(other, dim))


def test_input_check_counts_non_finite_values_and_passes_sums_that_overflow():
    op = ops.Input((3,), layout="TB")
    big = np.full((2, 1, 3), 3e38, dtype=np.float32)  # finite values whose float32 sum is inf
    t, steps = to_time_major("x", op, big, None)
    assert steps == 2 and torch.equal(t, torch.from_numpy(big))
    for bad in ((np.nan,), (np.inf,), (-np.inf,), (np.inf, -np.inf)):
        x = np.zeros((2, 1, 3), dtype=np.float32)
        x.reshape(-1)[:len(bad)] = bad
        with pytest.raises(InputError, match=f"input 'x' has {len(bad)} NaN or infinite value"):
            to_time_major("x", op, x, None)


def _sinabs_reference(model, x):
    model.eval()
    sinabs.reset_states(model)
    with torch.no_grad():
        return harness.as_list(model(torch.from_numpy(x)))


@pytest.mark.parametrize("probe", [False, True])
def test_spike_buffers_batch_major_equal_sinabs(probe):
    """sinabs Squeeze net: neurons read by batch-major folded ops write [B, T, ...] spike buffers;
    probed or not (a probed port is returned as a view), outputs equal sinabs' forward bitwise."""
    torch.manual_seed(22)
    model = M.squeeze_b3()
    x = harness.drive(np.random.default_rng(22), (3, M.T, 2, 6, 6), 2.0)
    graph = trace(model, x)
    res = simulate(graph, x, "float", probe=probe)
    harness.assert_exact(res.outputs, _sinabs_reference(model, x))
    assert engine._batch_major_reads(graph, engine.Context("float", None, M.T, 3,
                                                           cache=engine._graph_cache(graph, "float", None)))
    if probe:
        lifs = [n.name for n in graph.of_type(ops.LIF)]
        assert all(res.probes[n]["spikes"].shape[:2] == (M.T, 3) for n in lifs)


@pytest.mark.parametrize("probe", [False, True])
def test_spike_buffers_time_major_equal_spikingjelly(probe):
    """SpikingJelly multi-step CSNN (time-folded ops, not step-major): its neurons' spikes go into
    [T, B, ...] buffers; outputs equal the library's forward bitwise, probed or not."""
    from spikingjelly.activation_based import functional

    model = zoo.sj_csnn()
    x = np.random.default_rng(3).random((2, 1, 28, 28)).astype(np.float32)
    graph = trace(model, x)
    functional.reset_net(model)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    res = simulate(graph, x, "float", probe=probe)
    assert res.output.tobytes() == ref.tobytes()
    assert ref.sum() > 0


@pytest.mark.parametrize("kernel,stride", [((2, 2), (2, 2)), ((3, 3), (2, 2)), ((1, 3), (1, 1)), ((2, 3), (3, 1))])
def test_float_max_pool_on_strided_views_is_max_pool2d_bit_for_bit(kernel, stride, monkeypatch):
    """Ties (values in steps of 0.5, many zeros) take the strided-view maximum; a -0.0 anywhere in
    the input or a NaN in a window take max_pool2d: the bits equal max_pool2d's in every case."""
    monkeypatch.setattr(float_kernels, "WINDOW_MAX_MIN", 0)
    reference = F.max_pool2d
    calls = []
    monkeypatch.setattr(F, "max_pool2d", lambda *a: calls.append(1) or reference(*a))
    op = ops.MaxPool2d(kernel, stride)
    ctx = engine.Context("float", None, 1, 3)
    rng = np.random.default_rng(7)
    base = torch.from_numpy((np.round(rng.normal(size=(3, 4, 9, 11)) * 2) / 2).astype(np.float32)) + 0.0  # no -0.0
    cases = {"ties": (base, 0), "inf": (base.masked_fill(base > 1.5, float("inf")), 0),
             "-0.0": (base.masked_fill(base == 0, -0.0), 1), "NaN": (base.masked_fill(base < -2.0, float("nan")), 1)}
    assert (base == 0).float().mean() > 0.2 and (base < -2.0).any()
    for name, (x, fallbacks) in cases.items():
        calls.clear()
        got = float_kernels.maxpool(op, [x], ctx)
        assert len(calls) == fallbacks, name
        assert got.is_contiguous() and torch.equal(got.view(torch.int32), reference(x, kernel, stride).view(torch.int32)), name
