"""Neuron-level connectivity (npuc.passes.connectivity) against an independent reference.

The reference pushes one-hot impulses (of both signs, so max pools cannot hide
them) from every neuron of every source population through the graph's
synapse ops with torch, and records which destination inputs become nonzero:
the structural synapses, computed without the code under test. The random
graph generator here is shared by the other mapping tests.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from npuc.ir import Graph, ops
from npuc.passes.base import PassError
from npuc.passes.connectivity import extract_connectivity

# -- random graphs ---------------------------------------------------------------------


def _w(rng, shape, sparsity=0.0):
    w = rng.normal(0, 1, shape).astype(np.float32)
    if sparsity:
        w[rng.random(shape) < sparsity] = 0.0
    return w


def random_graph(seed: int) -> Graph:
    """A random small SNN: conv/pool stacks (strides, padding, dilation, groups, pools before
    convs), flatten, dense layers (sparse weights), a recurrent layer, residual adds, permutes."""
    rng = np.random.default_rng(seed)
    g = Graph(f"rand{seed}", num_steps=4)
    c, h, w = int(rng.integers(1, 4)), int(rng.integers(5, 11)), int(rng.integers(5, 11))
    prev = g.add("x", ops.Input((c, h, w)))
    k = 0
    for _ in range(int(rng.integers(1, 4))):
        kind = rng.choice(["conv", "conv", "pool_conv", "res"])
        k += 1
        if kind == "pool_conv" and min(g[prev].shape[1:]) >= 4:
            pool = rng.choice([ops.SumPool2d, ops.AvgPool2d, ops.MaxPool2d])
            ks = int(rng.integers(2, 4))
            prev = g.add(f"pool{k}", pool(ks, stride=int(rng.integers(1, ks + 1)), padding=int(rng.integers(0, ks // 2 + 1))), [prev])
        c = g[prev].shape[0]
        groups = int(rng.choice([d for d in (1, 2, 3) if c % d == 0]))
        co = groups * int(rng.integers(1, 4))
        ks = int(rng.integers(1, 4))
        dil = int(rng.integers(1, 3)) if ks > 1 else 1
        span = dil * (ks - 1) + 1
        pad = int(rng.integers(0, ks))
        if min(g[prev].shape[1:]) + 2 * pad < span:
            pad = span
        weight = _w(rng, (co, c // groups, ks, ks), sparsity=0.2)
        conv = g.add(f"conv{k}", ops.Conv2d(weight, stride=int(rng.integers(1, 3)), padding=pad, dilation=dil, groups=groups), [prev])
        if kind == "res" and g[conv].shape == g[prev].shape and isinstance(g[prev].op, ops.LIF):
            conv = g.add(f"add{k}", ops.Add(), [conv, prev])  # identity skip: duplicate-free union
        if rng.random() < 0.3:
            conv = g.add(f"scale{k}", ops.Scale(np.float32(0.5)), [conv])
        prev = g.add(f"lif{k}", ops.LIF(alpha=0.9), [conv])
    if rng.random() < 0.5:
        prev = g.add("perm", ops.Permute((1, 2, 0)), [prev])
    prev = g.add("flat", ops.Reshape((-1,)), [prev])
    n = g[prev].shape[0]
    for j in range(int(rng.integers(1, 3))):
        m = int(rng.integers(3, 25))
        d = g.add(f"fc{j}", ops.Dense(_w(rng, (m, n), sparsity=float(rng.choice([0.0, 0.5])))), [prev])
        name = f"flif{j}"
        if j == 0 and rng.random() < 0.6:  # recurrent: own spikes one step late
            r = g.add(f"rec{j}", ops.Dense(_w(rng, (m, m), sparsity=0.3)), [(name, None, 1)])
            d = g.add(f"radd{j}", ops.Add(), [d, r])
        prev = g.add(name, ops.LIF(alpha=0.8), [d])
        n = m
    g.add("out", ops.Output("sum", "B"), [prev])
    return g.verify()


def conv_net(seed: int = 0, hw: int = 16, chans=(4, 8), dense=16) -> Graph:
    """A regular conv SNN: conv -> LIF -> sum pool -> conv -> LIF -> dense -> LIF."""
    rng = np.random.default_rng(seed)
    g = Graph("conv", num_steps=4)
    prev = g.add("x", ops.Input((2, hw, hw)))
    c = 2
    for i, co in enumerate(chans):
        if i:
            prev = g.add(f"pool{i}", ops.SumPool2d(2), [prev])
        prev = g.add(f"conv{i}", ops.Conv2d(_w(rng, (co, c, 3, 3)), padding=1), [prev])
        prev = g.add(f"lif{i}", ops.LIF(alpha=0.9), [prev])
        c = co
    prev = g.add("flat", ops.Reshape((-1,)), [prev])
    prev = g.add("fc", ops.Dense(_w(rng, (dense, g[prev].shape[0]))), [prev])
    prev = g.add("flif", ops.LIF(alpha=0.9), [prev])
    g.add("out", ops.Output("sum", "B"), [prev])
    return g.verify()


# -- independent reference ----------------------------------------------------------------


def _eval(graph: Graph, values: dict, name: str, batch: int) -> torch.Tensor:
    node = graph[name]
    op = node.op
    xs = [values[r.node] for r in node.inputs]
    if isinstance(op, ops.Dense):
        return xs[0] @ torch.tensor(op.weight, dtype=torch.float64).T
    if isinstance(op, ops.Conv2d):
        return F.conv2d(xs[0], torch.tensor(op.weight, dtype=torch.float64), None, op.stride, op.padding, op.dilation, op.groups)
    if isinstance(op, ops.Conv1d):
        return F.conv1d(xs[0], torch.tensor(op.weight, dtype=torch.float64), None, op.stride, op.padding, op.dilation, op.groups)
    if isinstance(op, ops.SumPool2d):
        return F.avg_pool2d(xs[0], op.kernel, op.stride, op.padding) * (op.kernel[0] * op.kernel[1])
    if isinstance(op, ops.AvgPool2d):
        return F.avg_pool2d(xs[0], op.kernel, op.stride, op.padding)
    if isinstance(op, ops.MaxPool2d):
        return F.max_pool2d(xs[0], op.kernel, op.stride, op.padding)
    if isinstance(op, ops.Scale):
        return xs[0] * torch.tensor(op.factor, dtype=torch.float64)
    if isinstance(op, ops.Reshape):
        return xs[0].reshape(batch, *node.shape)
    if isinstance(op, ops.Permute):
        return xs[0].permute(0, *[d + 1 for d in op.dims])
    if isinstance(op, ops.Add):
        return sum(xs)
    raise NotImplementedError(type(op).__name__)


def reference_synapses(graph: Graph) -> dict[str, dict[str, np.ndarray]]:
    """``ref[dst][src]``: boolean ``[src neurons, dst neurons]`` of structural synapses."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: thread start-up dominates on a shared machine
    try:
        return _reference(graph)
    finally:
        torch.set_num_threads(threads)


def _reference(graph: Graph) -> dict[str, dict[str, np.ndarray]]:
    pops = [n.name for n in graph if isinstance(n.op, (ops.LIF, ops.Input))]
    lifs = [n for n in pops if isinstance(graph[n].op, ops.LIF)]
    order = graph.topo_order()
    ref: dict[str, dict[str, np.ndarray]] = {d: {} for d in lifs}
    for s in pops:
        size = int(np.prod(graph[s].shape))
        hits = {d: np.zeros((size, int(np.prod(graph[d].shape))), bool) for d in lifs}
        for sign in (1.0, -1.0):
            values = {}
            for name in pops:  # population outputs first: delayed inputs may read them
                v = torch.zeros((size, *graph[name].shape), dtype=torch.float64)
                if name == s:
                    v = sign * torch.eye(size, dtype=torch.float64).reshape(size, *graph[name].shape)
                values[name] = v
            for name in order:
                if name not in pops and not isinstance(graph[name].op, ops.Output):
                    values[name] = _eval(graph, values, name, size)
            for d in lifs:
                drive = values[graph[d].inputs[0].node]
                hits[d] |= (drive.reshape(size, -1) != 0).numpy()
        for d in lifs:
            if hits[d].any():
                ref[d][s] = hits[d]
    return ref


def _as_matrix(conn, dst: str) -> dict[str, np.ndarray]:
    out = {}
    for p in conn.projections[dst]:
        m = out.setdefault(p.source, np.zeros((conn.populations[p.source].size, conn.populations[dst].size), bool))
        m[p.src, p.dst] = True
    return out


# -- tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(30))
def test_connectivity_matches_reference(seed):
    g = random_graph(seed)
    conn = extract_connectivity(g)
    ref = reference_synapses(g)
    for dst in ref:
        got = _as_matrix(conn, dst)
        assert sorted(got) == sorted(ref[dst]), (dst, sorted(got), sorted(ref[dst]))
        for src, m in ref[dst].items():
            assert np.array_equal(got[src], m), (seed, dst, src, int((got[src] != m).sum()))
        for p in conn.projections[dst]:  # pairs are distinct and sorted by destination
            key = p.dst.astype(np.int64) * (conn.populations[p.source].size + 1) + p.src
            assert np.unique(key).size == key.size
            assert np.all(np.diff(p.dst) >= 0)


def test_conv_connectivity_and_fan_in():
    g = conv_net()
    conn = extract_connectivity(g)
    ref = reference_synapses(g)
    for dst in ref:
        got = _as_matrix(conn, dst)
        for src, m in ref[dst].items():
            assert np.array_equal(got[src], m)
    # lif1 reads a 2x2 sum pool of lif0 through a 3x3 conv: 4 * 6 * 6 sources inside the map.
    indptr, src = conn.fan_in("lif1")
    fan = np.diff(indptr).reshape(8, 8, 8)
    assert fan[0, 4, 4] == 4 * 36 and fan[0, 0, 0] == 4 * 16
    assert conn.synapse_count() == sum(int(m.sum()) for d in ref for m in ref[d].values())


def conv1d_token_graph(seed: int = 1) -> Graph:
    """Conv1d (C, L) and per-token dense (tokens, features) populations, a permute and a
    recurrent dense: two-axis populations that are not images."""
    rng = np.random.default_rng(seed)
    g = Graph("c1", num_steps=3)
    g.add("x", ops.Input((3, 12)))
    g.add("c", ops.Conv1d(_w(rng, (4, 3, 3)), stride=2, padding=1, dilation=2), ["x"])
    g.add("l", ops.LIF(), ["c"])
    g.add("p", ops.Permute((1, 0)), ["l"])
    g.add("tok", ops.Dense(_w(rng, (7, 4))), ["p"])
    g.add("lt", ops.LIF(), ["tok"])
    g.add("flat", ops.Reshape((-1,)), ["lt"])
    g.add("d", ops.Dense(_w(rng, (5, 35))), ["flat"])
    g.add("r", ops.Dense(_w(rng, (5, 5))), [("l2", None, 1)])
    g.add("a", ops.Add(), ["d", "r"])
    g.add("l2", ops.LIF(), ["a"])
    g.add("o", ops.Output(), ["l2"])
    return g.verify()


def test_conv1d_permute_and_delay_keys():
    g = conv1d_token_graph()
    conn = extract_connectivity(g)
    ref = reference_synapses(g)
    got = _as_matrix(conn, "l2")
    assert np.array_equal(got["lt"], ref["l2"]["lt"]) and np.array_equal(got["l2"], ref["l2"]["l2"])
    assert {(p.source, p.delay) for p in conn.projections["l2"]} == {("lt", 0), ("l2", 1)}
    assert np.array_equal(_as_matrix(conn, "l")["x"], ref["l"]["x"])
    assert np.array_equal(_as_matrix(conn, "lt")["l"], ref["lt"]["l"])


def test_loop_without_neuron_is_an_error():
    g = Graph("acc", num_steps=2)
    g.add("x", ops.Input((4,)))
    g.add("a", ops.Add(), ["x", ("s", None, 1)])
    g.add("s", ops.Scale(np.float32(0.5)), ["a"])
    g.add("l", ops.LIF(), ["s"])
    g.add("o", ops.Output(), ["l"])
    g.verify()
    with pytest.raises(PassError, match="'a'|'s'"):
        extract_connectivity(g)


def test_readout_without_neurons_is_listed_unmapped():
    rng = np.random.default_rng(0)
    g = Graph("ro", num_steps=2)
    g.add("x", ops.Input((6,)))
    g.add("d", ops.Dense(_w(rng, (4, 6))), ["x"])
    g.add("l", ops.LIF(), ["d"])
    g.add("r", ops.Dense(_w(rng, (2, 4))), ["l"])
    g.add("o", ops.Output(), ["r"])
    conn = extract_connectivity(g.verify())
    assert conn.unmapped == ["r"] and list(conn.projections) == ["l"]
