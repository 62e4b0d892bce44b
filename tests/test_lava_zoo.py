"""Model zoo patterns on Loihi 2 (issue 14): what used to be refused for loihi2 and now maps exactly.

* fan-in beyond a core's input axons (snntorch ``spk.mean((-2, -1))`` head, SpikingJelly SEW ``ADD``
  summed into the classifier): map-cores routes the neuron's synapses through relay neurons
  (``node.meta["fan_in_relays"]``) and the Lava backend emits them as stock ``GradedVec`` relays
  forwarding exact partial sums as graded spikes;
* a convolution on a path shorter than the others into a neuron (SEW ``IAND``): unrolled into a
  ``DelaySparse`` that waits the missing steps;
* an overlapping max pool of spikes (sew_resnet18's 3x3/2 stem pool): an OR neuron behind a
  depthwise window convolution of ones (stock processes).

Lava runs use reduced sizes with a target whose cores have fewer input axons, so that the relays
appear at small sizes; full sizes are compiled and mapped without running Lava.
"""

from __future__ import annotations

import json
import re
from importlib import resources

import numpy as np
import pytest
import torch
from models.zoo_models import GlobalAveragePoolNet, SpeckNet, sew_net, sew_stem

import npuc
from npuc.builddir import BuildDir
from npuc.errors import LavaMappingError
from npuc.frontends import trace
from npuc.passes.base import PassContext, parse_pipeline, run_pipeline
from npuc.targets import load_target

LOIHI2 = "fold-batchnorm,legalize,quantize,map-cores"


def _small_axons(tmp_path, axons: int) -> str:
    """The loihi2 target file with ``axons`` input axons per core (relays appear at test sizes)."""
    doc = json.loads(resources.files("npuc.targets").joinpath("loihi2.json").read_text())
    doc["name"] = f"loihi2-axons{axons}"
    doc["cores"]["input_axons_per_core"] = axons
    path = tmp_path / f"loihi2_axons{axons}.json"
    path.write_text(json.dumps(doc))
    return str(path)


def _spikes(shape, p: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) < p).astype(np.float32)


def _mapped(model, x, target="loihi2"):
    graph = trace(model, x)
    ctx = PassContext(target=load_target(target), calibration=[x], labels=None, allow_approx=False, echo=None,
                      reference=graph)
    return run_pipeline(graph, parse_pipeline(LOIHI2), ctx)


def _check_relays(q, node: str, blocks: list) -> None:
    relays = q[node].meta["fan_in_relays"]
    assert relays == {"axons": 4096, "blocks": blocks}
    mapping = q.meta["mapping"]
    pops = {p["node"]: p for p in mapping["populations"]}
    assert pops[f"{node}.relay"]["neurons"] == len(blocks) * pops[node]["neurons"]
    assert all(c["usage"]["input_axons"] <= 4096 for c in mapping["cores"])


def test_full_size_global_average_pool_maps_through_relays():
    """28x28: the classifier reads 6,272 spikes per neuron; two relay blocks of 3,136 feed it."""
    torch.manual_seed(0)
    x = np.random.default_rng(0).random((8, 2, 1, 28, 28)).astype(np.float32)
    q = _mapped(GlobalAveragePoolNet().eval(), x)
    _check_relays(q, "lif2", [["lif1", 0, 3136], ["lif1", 3136, 6272]])
    assert "fan_in_relays" not in q["lif1"].meta


def test_full_size_sew_add_maps_through_relays():
    q = _mapped(sew_net("ADD"), _spikes((4, 2, 2, 16, 16), 0.3, 1))
    _check_relays(q, "head.3", [["stem.2", 0, 4096], ["block.conv.5", 0, 4096]])


def _lava_check(model, x, target, tmp_path) -> dict:
    hw = npuc.compile(model, x, target=target, out=tmp_path / "b")
    result = hw.verify(x, engine="lava")
    assert result.ok, result.format()
    assert result.mismatches == 0 and sum(result.compared.values()) > 1000
    return json.loads((tmp_path / "b" / "lava" / "network.json").read_text())


@pytest.mark.lava
def test_global_average_pool_relays_are_exact_in_lava(tmp_path):
    torch.manual_seed(1)
    model = GlobalAveragePoolNet().eval()
    x = np.random.default_rng(1).random((6, 1, 1, 12, 12)).astype(np.float32)
    assert trace(model, x) is not None
    doc = _lava_check(model, x, _small_axons(tmp_path, 512), tmp_path)
    (relay,) = [p for p in doc["populations"] if p["lava_process"] == "GradedVec"]
    assert relay["node"] == "lif2.relay" and relay["shape"] == [3 * 10]  # 1,152 sources in 3 blocks of 384


@pytest.mark.lava
@pytest.mark.slow
def test_speck_net_at_the_dvs_size_relays_multi_level_spikes_in_24_bit_parts(tmp_path):
    """sinabs at 2x128x128: the classifier reads 16,384 multi-level spike counts; at their largest
    payload an axon-sized relay block's partial sums exceed Loihi 2's 24-bit graded spikes, so each
    block is cut into runs that fit (12 parts of 10 relays instead of 4). Lava runs it in ~40 s."""
    torch.manual_seed(0)
    x = _spikes((2, 8, 2, 128, 128), 0.05, 0)
    doc = _lava_check(SpeckNet(2, 128).eval(), x, "loihi2", tmp_path)
    (relay,) = [p for p in doc["populations"] if p["lava_process"] == "GradedVec"]
    assert relay["shape"][0] > 4 * 10
    (needs,) = [r["needs"][0] for r in doc["fan_in_relays"]]
    assert 0 < int(re.search(r"\|partial sum\| <= (\d+)", needs).group(1)) < 2**23


def test_graded_parts_cut_a_block_into_runs_under_the_graded_limit():
    from npuc.backends.lava.lowering import MAX_GRADED_BITS, Population, _graded_parts

    rng = np.random.default_rng(3)
    w = rng.integers(-255, 256, (7, 300))
    w[:, 50:60] = 0
    logical = rng.permutation(300)
    src = Population("p", "p", "lif", (300,), (300,), np.arange(300), max_payload=2**13)
    parts = _graded_parts(w, src, logical)
    assert len(parts) > 1 and np.array_equal(sum(parts), w)
    for part in parts:
        assert int(np.abs(part).sum(1).max()) * 2**13 < 2 ** (MAX_GRADED_BITS - 1)
    runs = [sorted(logical[np.flatnonzero(np.any(p, axis=0))]) for p in parts]
    assert all(a[-1] < b[0] for a, b in zip(runs, runs[1:]))  # consecutive runs in the source's order
    src_small = Population("p", "p", "lif", (300,), (300,), np.arange(300), max_payload=1)
    assert len(_graded_parts(w, src_small, logical)) == 1


@pytest.mark.lava
@pytest.mark.parametrize("cnf", ["ADD", "IAND"])
def test_sew_block_is_exact_in_lava(cnf, tmp_path):
    """ADD: the classifier sums two 1,024-spike paths of unequal depth through relays (one per path,
    each shifted by its own weight exponent); IAND: the identity's 1x1 convolution into the logic
    neuron waits two steps in a DelaySparse."""
    x = _spikes((4, 1, 2, 8, 8), 0.3, 2)
    doc = _lava_check(sew_net(cnf), x, _small_axons(tmp_path, 1024), tmp_path)
    procs = {c["lava_process"] for c in doc["connections"]}
    if cnf == "ADD":
        assert any(p["lava_process"] == "GradedVec" for p in doc["populations"])
    else:
        assert "DelaySparse" in procs


def test_overlapping_max_pool_of_spikes_is_an_or_neuron_behind_a_window_conv(tmp_path):
    """sew_resnet18's stem max pool (3x3, stride 2, padding 1) of spikes: the legalize pass makes it
    an OR neuron reading a depthwise 3x3/2 convolution of ones (stock Conv + LIFReset); its integer
    spikes are PyTorch's max pool of the integer stem spikes, value for value."""
    model = sew_stem()
    x = _spikes((4, 2, 2, 16, 16), 0.3, 3)
    hw = npuc.compile(model, x, target="loihi2", out=tmp_path / "b")
    q = BuildDir(hw.path).int_graph("loihi2")
    (conv,) = [n for n in q if n.name.startswith("maxpool.count")]
    assert conv.op.kernel == (3, 3) and conv.op.stride == (2, 2) and conv.op.padding == (1, 1)
    res = hw.simulate(x, engine="int", probe=True)
    (orn,) = [n.name for n in q if n.name.startswith("maxpool.or")]
    stem = torch.from_numpy(res.probes["sn1"]["spikes"].astype(np.float32)).flatten(0, 1)
    want = torch.nn.functional.max_pool2d(stem, 3, 2, 1).unflatten(0, (4, 2)).numpy()
    assert np.array_equal(res.probes[orn]["spikes"], want)
    assert 0.05 < want.mean() < 0.95


@pytest.mark.lava
def test_overlapping_max_pool_of_spikes_is_exact_in_lava(tmp_path):
    x = _spikes((4, 1, 2, 12, 12), 0.3, 4)
    _lava_check(sew_stem(), x, "loihi2", tmp_path)


def test_relays_split_the_dense_columns_and_keep_the_weight_exponent(tmp_path):
    """The lowering of a relayed neuron: one relay Sparse per block (weight_exp 0, the block's columns
    of the original weights, disjoint, together all of them) into one GradedVec, then a Dense of
    ones with the original exponent into the neuron."""
    from npuc.backends.lava import lower

    torch.manual_seed(1)
    x = np.random.default_rng(1).random((6, 1, 1, 12, 12)).astype(np.float32)
    q = _mapped(GlobalAveragePoolNet().eval(), x, _small_axons(tmp_path, 512))
    assert [b[1:] for b in q["lif2"].meta["fan_in_relays"]["blocks"]] == [[0, 384], [384, 768], [768, 1152]]
    spec = lower(q)
    (relay,) = [p for p in spec.populations if p.kind == "relay"]
    into = [c for c in spec.connections if c.dst == relay.key]
    (out,) = [c for c in spec.connections if c.src == relay.key]
    assert relay.size == 30 and len(into) == 3 and all(c.weight_exp == 0 for c in into)
    assert out.weight_exp == q["fc"].op.q.weight_exp and set(np.unique(out.weights)) == {0, 1}
    assert all(c.kind == "sparse" for c in into)  # each writes its own 10 relays only
    blocks = []
    for k, c in enumerate(into):
        rows, cols, vals = c.sparse_weights
        assert np.all((rows >= k * 10) & (rows < (k + 1) * 10))
        b = np.zeros((10, int(np.prod(q["lif1"].shape))), np.int64)
        b[rows - k * 10, cols] = vals
        blocks.append(b)
    used = [np.any(b != 0, axis=0) for b in blocks]
    assert not np.any(np.sum(used, axis=0) > 1)  # every source column in one block
    assert np.array_equal(sum(blocks), lower(_no_relays(q)).connections[-1].weights)
    stale = q.copy()
    stale["lif2"].meta["fan_in_relays"]["blocks"].pop()
    with pytest.raises(LavaMappingError, match=r"node 'lif2'.*from 'lif1' without a relay block: re-run map-cores"):
        lower(stale)


def _no_relays(q):
    """The same quantized graph without relays (map-cores not run)."""
    q2 = q.copy()
    del q2["lif2"].meta["fan_in_relays"]
    return q2


@pytest.mark.slow
def test_library_sew_resnet18_compiles_and_maps_for_loihi2(tmp_path):
    """SpikingJelly's own sew_resnet18 (3x32x32, T=4): its stem max pool no longer stops loihi2
    (about 150 s here; measured 359 cores on 3 chips, the synapse-memory bound 252)."""
    from spikingjelly.activation_based import functional, neuron, surrogate
    from spikingjelly.activation_based.model.sew_resnet import sew_resnet18

    torch.manual_seed(0)
    model = sew_resnet18(cnf="ADD", spiking_neuron=neuron.IFNode, surrogate_function=surrogate.ATan(),
                         detach_reset=True).eval()
    functional.set_step_mode(model, "m")
    x = _spikes((4, 1, 3, 32, 32), 0.3, 0)
    hw = npuc.compile(model, x, target="loihi2", out=tmp_path / "b")
    cores = hw.report()["targets"]["loihi2"]["mapping"]["cores"]
    assert cores["used"] >= cores["capacity_lower_bound"] > 128
    q = BuildDir(hw.path).int_graph("loihi2")
    assert [n.op.kernel for n in q if n.name.startswith("maxpool.count")] == [(3, 3)]
