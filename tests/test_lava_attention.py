"""Spiking self-attention on Loihi 2: npuc's custom ``NpucAttention`` Lava process vs the integer engine.

`SpikeAttention` (AND, XNOR and a-XNOR coincidence scores) has no lava-nc process; the Lava
backend emits ``NpucAttention``, whose fixed_pt model gathers the Q, K, V populations' spikes and
computes the integer engine's ``((Q K^T 2^a_frac + a_int (1-Q)(1-K)^T) V * mult) >> shift``,
sending it into the next neuron's ``a_in`` one step later (like a synapse). Random hand-quantized
graphs (heads, token counts, widths, inputs at different depths so that the process must line
them up, a residual Dense current added to the attention's, wrapping outputs) are compared with
the integer engine in Lava's simulator: every neuron's spikes, ``v`` and ``i`` at every step.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_lava_equivalence import PROF, add_dense, check, rand_qlif

from npuc.backends.lava.lowering import lower
from npuc.backends.lava.spec import LavaMappingError
from npuc.ir import QLIF, Encoding, Graph, QAttention, ops
from npuc.passes.base import PassContext, PassError, run_pipeline
from npuc.pipeline import build_passes
from npuc.targets import load_target

pytestmark = pytest.mark.lava


def _qattention(rng: np.random.Generator, score: str, big: bool) -> tuple[ops.SpikeAttention, QAttention]:
    a_frac = int(rng.integers(0, 3))
    a_int = {"and": 0, "xnor": 1 << a_frac}.get(score, int(rng.integers(1, 2 ** (a_frac + 1))))
    shift = int(rng.integers(0, 3)) if big else int(rng.integers(0, 6))
    mult = int(rng.integers(1 << 20, 1 << 30)) if big else int(rng.integers(1 << shift, 64 << shift))
    mult = -mult if rng.random() < 0.25 else mult
    q = QAttention(a_int=a_int, a_frac=a_frac, mult=mult, shift=shift)
    a = a_int / 2**a_frac if score == "axnor" else 0.0
    return ops.SpikeAttention(score=score, a=a, q=q), q


def _heads(g: Graph, src: str, name: str, n: int, heads: int, d: int) -> str:
    """``(n, heads * d)`` spikes -> ``(heads, n, d)`` (Spikformer's reshape + permute); heads = 0: none."""
    if not heads:
        return src
    g.add(f"{name}_h", ops.Reshape((n, heads, d)), [src])
    g.add(f"{name}_p", ops.Permute((1, 0, 2)), [f"{name}_h"])
    return f"{name}_p"


def attention_graph(seed: int, score: str, T: int = 6, B: int = 2):
    """Random spike inputs -> Q, K, V -> SpikeAttention -> (permute back) -> LIF (+ a residual Dense
    current) -> Dense -> LIF. V may go through a second LIF layer (its spikes arrive a step later),
    Q may be the input's own spikes (a step earlier), and ``big`` mults make the output wrap at 32 bits."""
    rng = np.random.default_rng(seed)
    heads = seed % 4  # 0: no head axes
    n, dk, dv, f = int(rng.integers(2, 6)), int(rng.integers(2, 5)), int(rng.integers(1, 5)), int(rng.integers(3, 7))
    h = max(heads, 1)
    big = rng.random() < 0.3
    g = Graph(f"attn{seed}", num_steps=T)
    g.add("x", ops.Input((n, f), Encoding("spikes"), layout="TB"))
    width = {"q": h * dk, "k": h * dk, "v": h * dv}
    q_from_input = f == h * dk and rng.random() < 0.5
    srcs = {}
    for role in "qkv":
        if role == "q" and q_from_input:
            srcs[role] = _heads(g, "x", role, n, heads, dk)
            continue
        add_dense(g, rng, f"{role}_fc", "x", width[role], f, e=int(rng.integers(-2, 2)), mode="exc")
        g.add(f"{role}_lif", ops.LIF(reset="value", q=rand_qlif(rng, (n, width[role]), "small")), [f"{role}_fc"])
        last = f"{role}_lif"
        if role == "v" and rng.random() < 0.5:  # one layer deeper: V's spikes wait in the process
            add_dense(g, rng, "v_fc2", last, width[role], width[role], mode="exc")
            g.add("v_lif2", ops.LIF(reset="value", q=rand_qlif(rng, (n, width[role]), "small")), ["v_fc2"])
            last = "v_lif2"
        srcs[role] = _heads(g, last, role, n, heads, width[role] // h)
    op, q = _qattention(rng, score, big)
    g.add("attn", op, [srcs["q"], srcs["k"], srcs["v"]])
    out = "attn"
    if heads:
        g.add("back", ops.Permute((1, 0, 2)), ["attn"])
        g.add("merge", ops.Reshape((n, h * dv)), ["back"])
        out = "merge"
    if rng.random() < 0.5:  # a residual current from the input, summed with the attention's in a_in
        add_dense(g, rng, "res", "x", h * dv, f)
        g.add("sum", ops.Add(), [out, "res"])
        out = "sum"
    vth = int(rng.integers(1, 40)) if not big else int(rng.integers(1, 2**17))
    aq = rand_qlif(rng, (n, h * dv), "small")
    g.add("attn_lif", ops.LIF(reset="value", q=QLIF(du=aq.du, dv=aq.dv, vth=vth, bias_mant=aq.bias_mant,
                                                    bias_exp=aq.bias_exp)), [out])
    add_dense(g, rng, "proj", "attn_lif", 3, h * dv)
    g.add("out_lif", ops.LIF(reset="value", q=rand_qlif(rng, (n, 3), "small")), ["proj"])
    g.add("o", ops.Output(), ["out_lif"])
    g.add("o_attn", ops.Output(index=1), ["attn_lif"])
    x = (rng.random((T, B, n, f)) < 0.5).astype(np.float64)
    return g, x


@pytest.mark.parametrize("score,seeds", [("and", range(0, 4)), ("xnor", range(10, 13)), ("axnor", range(20, 23))])
def test_random_attention_graphs_match_the_integer_engine(score, seeds, tmp_path):
    busy = 0
    for seed in seeds:
        g, x = attention_graph(seed, score)
        ref = check(g, x, tmp_path / str(seed))
        cur = ref.probes["attn_lif"]["i"]
        assert np.any(cur != 0), f"seed {seed}: the attention never sent a current"
        busy += int(np.any(ref.probes["attn_lif"]["spikes"]))
    assert busy >= 1  # at least one graph where the attention drives spikes


def test_attention_inputs_at_different_depths_wait_in_the_process(tmp_path):
    """Q straight from the input (lag 0), K from a LIF (lag 1), V two LIFs deep (lag 2)."""
    for seed in range(40, 200):
        g, x = attention_graph(seed, "and")
        if "v_lif2" in g and "q_fc" not in g:
            break
    spec = lower(_quantized(g))
    (c,) = [c for c in spec.connections if c.kind == "attention"]
    assert c.attention["fifo"] == [2, 1, 0]
    check(g, x, tmp_path)


def _quantized(g: Graph) -> Graph:
    g.profile = PROF
    return g.verify()


def test_stock_only_refuses_attention_in_one_line():
    g, x = attention_graph(0, "and")
    with pytest.raises(LavaMappingError, match=r"^node 'attn' \(SpikeAttention\): coincidence attention has no "
                                               r"lava-nc process; stock_only keeps stock processes[^\n]*$"):
        lower(_quantized(g), custom=False)


def test_stock_only_legalize_refuses_attention_in_one_line():
    from test_attention_ir import spikformer_block

    g, x = spikformer_block()
    with pytest.raises(PassError, match=r"^'attn' \(SpikeAttention\) has no Loihi 2 process in lava-nc: compile it "
                                        r"with --target fpga, drop stock_only[^\n]*$"):
        run_pipeline(g, build_passes("loihi2", ["legalize"]),
                     PassContext(target=load_target("loihi2:stock_only=1"), calibration=[x]))


def test_network_json_lists_what_the_attention_needs_on_chip(tmp_path):
    g, x = attention_graph(1, "xnor")
    check(g, x, tmp_path)
    doc = json.loads((tmp_path / "lava" / "network.json").read_text())
    (entry,) = [e for e in doc["custom_processes"] if e["process"] == "NpucAttention"]
    assert entry["node"] == "attn"
    text = " ".join(entry["needs"])
    assert "embedded processors or in microcode" in text and "scores Dk - popcount(q XOR k)" in text
    assert any(c["lava_process"] == "NpucAttention" for c in doc["connections"])
    module = (tmp_path / "lava" / f"{g.name}_lava.py").read_text()
    assert "class NpucAttention(AbstractProcess)" in module and "NpucAttention: PyNpucAttentionModel" in module


def test_map_cores_sees_the_attention_as_an_off_core_source():
    """The attention process is not a neuron population: map-cores counts its results as one-to-one
    graded inputs of the neurons that read them (like a host input), with the measured rate."""
    from test_attention_ir import spikformer_block

    from npuc.passes.connectivity import extract_connectivity

    g, x = spikformer_block(heads=2)
    q = run_pipeline(g, build_passes("loihi2", ["legalize", "quantize"]),
                     PassContext(target=load_target("loihi2"), calibration=[x]))
    conn = extract_connectivity(q)
    assert conn.populations["attn"].kind == "input"
    (proj,) = conn.projections["attn_lif"]
    assert proj.source == "attn" and proj.synapses == 6 * 8  # one synapse per neuron (6 tokens x 8)
    assert sorted(proj.src.tolist()) == list(range(48)) and sorted(proj.dst.tolist()) == list(range(48))
    assert 0 < float(np.mean(q["attn"].meta["rate"])) <= 1


def test_non_binary_attention_inputs_are_refused_in_one_line():
    rng = np.random.default_rng(3)
    g = Graph("tern", num_steps=4)
    g.add("x", ops.Input((3, 4), Encoding("spikes"), layout="TB"))
    add_dense(g, rng, "k_fc", "x", 4, 4)
    q = rand_qlif(rng, (3, 4), "small", ternary=True)
    g.add("k_lif", ops.LIF(reset="value", spike="ternary", threshold_lo=-0.5, q=q), ["k_fc"])
    g.add("attn", ops.SpikeAttention(q=QAttention(0, 0, 1, 0)), ["x", "k_lif", "x"])
    g.add("attn_lif", ops.LIF(reset="value", q=rand_qlif(rng, (3, 4), "small")), ["attn"])
    g.add("o", ops.Output(), ["attn_lif"])
    with pytest.raises(LavaMappingError, match=r"^node 'attn' \(SpikeAttention\): its K input 'k_lif' must be the "
                                               r"binary spikes of a population[^\n]*$"):
        lower(_quantized(g))
