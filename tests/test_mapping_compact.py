"""map-cores keeps per-token Dense projections (`TokenBlocks`) and convolutions / pools (`WindowTaps`)
compact: the same synapses and the same mapping as materialising every pair, on token models built like Spikformer's blocks (Linear on
``[tokens, features]`` read through permutes from channel-first maps, residual spike sums feeding
every Linear, a recurrent per-token Linear, a population summed twice, a Linear of a Linear).

Synapses are checked against the independent torch reference of `test_mapping_connectivity`, and the
compact mapping's per-core use and messages against `test_mapping_cores`' brute force.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_mapping_connectivity import _as_matrix, _w, conv_net, random_graph, reference_synapses
from test_mapping_cores import _check, _fit_limits, _rates, target_with

from npuc.ir import Graph, ops
from npuc.passes.connectivity import extract_connectivity
from npuc.passes.mapping import map_cores


def token_graph(seed: int) -> Graph:
    """Channel-first spikes ``(C, H, W)`` -> tokens ``(H*W, C)`` -> blocks of per-token Linears whose
    input is the sum of every earlier token population (Spikformer's residual stream after npuc
    distributes the Linear over the sum)."""
    rng = np.random.default_rng(seed)
    c, h, w = int(rng.integers(2, 6)), int(rng.integers(2, 4)), int(rng.integers(2, 4))
    n = h * w
    g = Graph(f"tokens{seed}", num_steps=4)
    g.add("x", ops.Input((c, h, w)))
    g.add("conv", ops.Conv2d(_w(rng, (c, c, 3, 3)), padding=1), ["x"])
    g.add("emb", ops.LIF(alpha=0.9), ["conv"])
    g.add("flat", ops.Reshape((c, n)), ["emb"])
    g.add("tok", ops.Permute((1, 0)), ["flat"])
    stream = ["tok"]  # token tensors [n, c] of spikes
    for b in range(int(rng.integers(2, 4))):
        hidden = int(rng.integers(2, 9))
        terms = [g.add(f"b{b}.fc{k}", ops.Dense(_w(rng, (hidden, c), sparsity=float(rng.choice([0.0, 0.4])))), [s])
                 for k, s in enumerate(stream)]
        if b == 0:  # a population summed twice through one weight pattern (a union of blocks)
            terms.append(g.add(f"b{b}.again", ops.Dense(_w(rng, (hidden, c), sparsity=0.4)), [stream[0]]))
        if b == 1:  # recurrent per-token Linear: own spikes one step late
            terms.append(g.add(f"b{b}.rec", ops.Dense(_w(rng, (hidden, hidden), sparsity=0.3)),
                               [(f"b{b}.hid", None, 1)]))
        total = g.add(f"b{b}.sum", ops.Add(), terms) if len(terms) > 1 else terms[0]
        g.add(f"b{b}.hid", ops.LIF(alpha=0.8), [total])
        out = g.add(f"b{b}.out", ops.Dense(_w(rng, (c, hidden), sparsity=0.3)), [f"b{b}.hid"])
        if b == 2:  # a Linear of a Linear (no neuron between): explicit pairs
            out = g.add(f"b{b}.out2", ops.Dense(_w(rng, (c, c))), [out])
        stream.append(g.add(f"b{b}.lif", ops.LIF(alpha=0.8), [out]))
    g.add("heads", ops.Reshape((n, 1, c)), [stream[-1]])
    g.add("back", ops.Permute((2, 1, 0)), ["heads"])
    g.add("chan", ops.Dense(_w(rng, (3, n))), ["back"])  # a Linear over the tokens after a permute
    g.add("last", ops.LIF(alpha=0.9), ["chan"])
    g.add("out", ops.Output("sum", "B"), ["last"])
    return g.verify()


def _graph(kind: str, seed: int) -> Graph:
    return {"tokens": token_graph, "random": random_graph, "conv": lambda s: conv_net(s, hw=12)}[kind](seed)


@pytest.mark.parametrize("kind,seed", [("tokens", s) for s in range(8)] + [("random", s) for s in range(6)])
def test_compact_synapses_equal_the_reference(kind, seed):
    g = _graph(kind, seed)
    compact, explicit = extract_connectivity(g), extract_connectivity(g, compact=False)
    assert any(compact.compact(p.name) for p in compact.neuron_populations) or kind != "tokens"
    assert not any(explicit.compact(p.name) for p in explicit.neuron_populations)
    ref = reference_synapses(g)
    for dst in ref:
        got = _as_matrix(compact, dst)
        assert sorted(got) == sorted(ref[dst])
        for src, m in ref[dst].items():
            assert np.array_equal(got[src], m), (seed, dst, src)
        n = compact.populations[dst].size
        assert np.array_equal(compact.counts(dst), np.diff(explicit.fan_in(dst)[0]))
        neurons = np.random.default_rng(seed).permutation(n)[: max(1, n // 2)]
        indptr, src = explicit.fan_in(dst)
        want = [np.sort(src[indptr[i]:indptr[i + 1]]) for i in neurons]
        got_src, lens = compact.gather(dst, neurons), compact.counts(dst)[neurons]
        parts = np.split(got_src, np.cumsum(lens)[:-1])
        assert all(np.array_equal(np.sort(a), b) for a, b in zip(parts, want))
        assert np.array_equal(compact.distinct_sources(dst, neurons), np.unique(np.concatenate(want)))
        assert compact.synapse_count() == explicit.synapse_count()


@pytest.mark.parametrize("kind,seed", [("tokens", s) for s in range(12)] + [("random", s) for s in range(8)]
                         + [("conv", s) for s in range(2)])
def test_compact_mapping_equals_materialised_mapping(kind, seed):
    """Same cores, slices, per-core use, traffic and totals; and every limit holds (brute force).
    Convolutions and pools are compact too (`WindowTaps`), so conv nets are compared as well."""
    rng = np.random.default_rng(200 + seed)
    g = _graph(kind, seed)
    ref = reference_synapses(g)
    rates = _rates(g, rng, ["array", "scalar", "none"][seed % 3])
    limits = _fit_limits(g, ref, rng, tight=seed % 2 == 0)
    order = "chw" if seed % 4 == 1 else "tiled"
    want = map_cores(g, target_with(**limits), order=order, compact=False)
    got = map_cores(g, target_with(**limits), order=order)
    synops = want["totals"].pop("synops_per_step")  # a float sum in another order
    assert got["totals"].pop("synops_per_step") == pytest.approx(synops, rel=1e-12)
    for k in want:
        if k != "seconds":
            assert got[k] == want[k], k
    _check(g, ref, rates, limits)
