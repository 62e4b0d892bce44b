"""Lava backend artifacts: determinism, sanitized identifiers, the standalone module, the netx
HDF5 schema, and clear errors for everything without an exact Loihi 2 mapping."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from npuc.backends import lava as lb
from npuc.ir import QLIF, Encoding, Graph, GraphError, QInput, QScale, QSynapse, ops
from npuc.sim import simulate
from npuc.sim.encoding import InputError
from npuc.targets import load_target

PROF = load_target("loihi2").profile
TESTS = Path(__file__).parent


def q_lif(**kw) -> QLIF:
    base = {"du": 1000, "dv": 500, "vth": 40, "bias_mant": np.array(0)}
    base.update(kw)
    return QLIF(**base)


def _weighted(cls: type, w: np.ndarray) -> ops.Op:
    """A Dense or Conv2d whose float weights are its integer weights ``w`` (exponent 0)."""
    return cls(w.astype(np.float32), q=QSynapse(w, 0))


def _lif() -> ops.LIF:
    """The quantized LIF these graphs use (reset to 0, as lava-nc's stock LIF does)."""
    return ops.LIF(reset="value", q=q_lif())


def _input_graph(name: str, shape: tuple = (3,), encoding: str = "spikes", q: QInput | None = None) -> Graph:
    """A 4-step graph holding only its input ``x`` (time-major)."""
    g = Graph(name, num_steps=4)
    g.add("x", ops.Input(shape, encoding=Encoding(encoding), layout="TB", q=q))
    return g


def _quantized(g: Graph) -> Graph:
    g.profile = PROF
    return g.verify()


def odd_names_graph() -> Graph:
    """A small conv -> flatten -> dense chain whose graph and node names are not Python identifiers."""
    rng = np.random.default_rng(3)
    g = Graph("my net!", num_steps=5)
    g.add("in:0", ops.Input((2, 4, 4), encoding=Encoding("spikes"), layout="TB"))
    wc = (rng.integers(-60, 60, (3, 2, 3, 3)) * 2).astype(np.int64)
    g.add("conv.1", ops.Conv2d(wc.astype(np.float32), padding=1, q=QSynapse(wc, 0)), ["in:0"])
    g.add("1st-lif", ops.LIF(reset="value", q=q_lif(bias_mant=np.array(64), bias_exp=6)), ["conv.1"])
    g.add("class", ops.Reshape((-1,)), ["1st-lif"])
    w = (rng.integers(-100, 100, (5, 48)) * 2).astype(np.int64)
    g.add("import", _weighted(ops.Dense, w), ["class"])
    g.add("if", ops.LIF(reset="value", q=q_lif(du=4095, vth=20)), ["import"])
    g.add("out-0", ops.Output(), ["if"])
    return _quantized(g)


def emit_quiet(g: Graph, out: Path) -> list[Path]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lb.LavaBackendWarning)
        return lb.emit(g, out, None)


# -- determinism and identifiers -----------------------------------------------------------------


@pytest.mark.slow  # imports npuc and Lava in a child process
def test_emit_is_deterministic_across_processes(tmp_path):
    a = emit_quiet(odd_names_graph(), tmp_path / "a")
    emit_quiet(odd_names_graph(), tmp_path / "b")
    code = (f"import sys, warnings; sys.path.insert(0, {str(TESTS)!r}); warnings.simplefilter('ignore');"
            f"from test_lava_emit import odd_names_graph; from npuc.backends import lava;"
            f"lava.emit(odd_names_graph(), {str(tmp_path / 'c')!r})")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONHASHSEED": "123"})
    names = [p.name for p in a]
    assert names == ["my_net_lava.py", "my_net_lava.npz", "network.json", "network.net", "README.md"]
    for name in names:
        data = (tmp_path / "a" / name).read_bytes()
        assert data == (tmp_path / "b" / name).read_bytes() == (tmp_path / "c" / name).read_bytes(), name


def test_identifiers_are_sanitized(tmp_path):
    files = emit_quiet(odd_names_graph(), tmp_path / "lava")
    text = files[0].read_text()
    compile(text, str(files[0]), "exec")
    assigned = re.findall(r"^    (\w+) = (?:RingBuffer|LIFReset|TernaryLIF|Dense|DelayDense|Conv)\(", text, re.M)
    assert sorted(assigned) == ["lif_1st_lif", "lif_if", "src_in_0", "syn_conv_1", "syn_import"]
    assert "'conv.1'" in text and "'1st-lif'" in text  # node names survive as string literals only


def test_emit_replaces_an_old_folder_atomically(tmp_path):
    out = tmp_path / "lava"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    emit_quiet(odd_names_graph(), out)
    assert not (out / "stale.txt").exists() and (out / "network.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".npuc")]


# -- the standalone module ------------------------------------------------------------------------------


@pytest.mark.lava
def test_standalone_module_runs_without_npuc(tmp_path):
    g = odd_names_graph()
    emit_quiet(g, tmp_path / "build" / "lava")
    alone = tmp_path / "elsewhere"
    shutil.copytree(tmp_path / "build" / "lava", alone)
    script = alone / "my_net_lava.py"
    # run as `python my_net_lava.py`, with every import of npuc made to fail
    code = ("import runpy, sys; sys.modules['npuc'] = None; sys.argv = [sys.argv[1]];"
            "runpy.run_path(sys.argv[0], run_name='__main__');"
            "sys.exit(3 if any(m.split('.')[0] == 'npuc' for m in sys.modules if sys.modules[m]) else 0)")
    proc = subprocess.run([sys.executable, "-c", code, str(script)], cwd=alone, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the printed spike counts equal the golden engine's on the bundled example input
    with np.load(alone / "my_net_lava.npz") as f:
        x = f["example_src_in_0"].astype(np.float64)
    ref = simulate(g, x, "int")
    lines = proc.stdout.splitlines()
    assert lines[0] == f"out-0: int64 {list(ref.output.shape)} [T, B, ...]"
    for b in range(x.shape[1]):
        assert lines[1 + b] == f"  sample {b}: sum over time {ref.output[:, b].sum(0).tolist()}"


# -- netx HDF5 -----------------------------------------------------------------------------------------------


def _no_attrs(f: h5py.File) -> bool:
    found = []
    f.visititems(lambda name, obj: found.append(name) if len(obj.attrs) else None)
    return not found and not len(f.attrs)


def test_netx_file_matches_schema(tmp_path):
    g = odd_names_graph()
    emit_quiet(g, tmp_path / "lava")
    wc, w = g["conv.1"].op.q.weight, g["import"].op.q.weight
    with h5py.File(tmp_path / "lava" / "network.net", "r") as f:
        assert _no_attrs(f)
        assert sorted(f["layer"]) == ["0", "1", "2"]
        conv, flat, dense = (f[f"layer/{i}"] for i in range(3))
        for grp, kind in ((conv, b"conv"), (flat, b"flatten"), (dense, b"dense")):
            assert grp["type"].dtype == np.dtype("S10") and grp["type"].shape == (1,) and grp["type"][0] == kind
            assert grp["shape"].dtype == np.int64 and grp["shape"].shape == (3,)
        assert conv["shape"][()].tolist() == [3, 4, 4] and flat["shape"][()].tolist() == [1, 1, 48]
        assert dense["shape"][()].tolist() == [5, 1, 1]
        assert conv["weight"].dtype == np.float32 and np.array_equal(conv["weight"][()], wc)
        assert np.array_equal(dense["weight"][()], w)  # netx flattens (W, H, C) back to npuc's (C, H, W) order
        assert conv["bias"].dtype == np.float32 and conv["bias"][()].tolist() == [64.0] * 3  # 64 << 6 == 64 << 6
        assert dense["bias"][()].tolist() == [0.0] * 5
        for k, want in (("inChannels", 2), ("outChannels", 3), ("groups", 1)):
            assert conv[k].dtype == np.int64 and conv[k].shape == () and conv[k][()] == want
        for k, want in (("kernelSize", [3, 3]), ("stride", [1, 1]), ("padding", [1, 1]), ("dilation", [1, 1])):
            assert conv[k].dtype == np.int64 and conv[k][()].tolist() == want
        assert dense["inFeatures"][()] == 48 and dense["outFeatures"][()] == 5
        for grp, du, dv, vth in ((conv, 1000, 500, 40), (dense, 4095, 500, 20)):
            n = grp["neuron"]
            assert n["type"].dtype == object and n["type"].shape == () and n["type"][()] == b"CUBA"
            assert [n[k][()] for k in ("iDecay", "vDecay", "vThMant", "refDelay")] == [du + 1, dv, vth, 1]
            assert all(n[k].dtype == np.int64 for k in ("iDecay", "vDecay", "vThMant", "refDelay"))
        assert "neuron" not in flat
        assert f["simulation/Ts"][()] == 1 and f["simulation/tSample"][()] == 5
    doc = json.loads((tmp_path / "lava" / "network.json").read_text())
    assert doc["netx_layers"]["layers"] == ["1st-lif", "if"] and doc["netx_layers"]["not_representable"] == []
    assert "reset_offset=1" in doc["netx_layers"]["load"]


def test_netx_lists_layers_it_cannot_represent(tmp_path):
    rng = np.random.default_rng(0)
    g = _input_graph("res", (4,))
    w = (rng.integers(0, 100, (4, 4))).astype(np.int64)
    g.add("fc1", _weighted(ops.Dense, w), ["x"])
    g.add("l1", ops.LIF(reset="value", q=q_lif(du=4095)), ["fc1"])
    g.add("fc2", _weighted(ops.Dense, w), ["l1"])
    g.add("sum", ops.Add(), ["fc2", "l1"])
    g.add("l2", ops.LIF(reset="value", q=q_lif(du=4095, bias_mant=np.array(3))), ["sum"])
    g.add("o", ops.Output(), ["l2"])
    g.profile = PROF
    with pytest.warns(lb.LavaBackendWarning, match="netx cannot represent 'l2'"):
        lb.emit(g.verify(), tmp_path / "lava", None)
    readme = (tmp_path / "lava" / "README.md").read_text()
    reason = "'l1' feeds 2 synapses; netx describes chains"
    assert "Layers written: `l1`" in readme and f"- `l2`: {reason}" in readme
    left = json.loads((tmp_path / "lava" / "network.json").read_text())["netx_layers"]["not_representable"]
    assert left == [{"node": "l2", "reason": reason}]
    with h5py.File(tmp_path / "lava" / "network.net", "r") as f:
        assert list(f["layer"]) == ["0"] and f["layer/0/type"][0] == b"dense"


# -- errors -------------------------------------------------------------------------------------------------


def _chain(mid: list | None = None, neuron: ops.LIF | None = None, w=None, e: int = 0, shape=(2, 4, 4)) -> Graph:
    """input (C, H, W) -> conv -> lif -> [mid ops] -> flatten -> dense -> neuron -> output."""
    g = _input_graph("bad", shape)
    wc = np.full((2, shape[0], 1, 1), 2, np.int64)
    g.add("conv", _weighted(ops.Conv2d, wc), ["x"])
    g.add("l1", _lif(), ["conv"])
    prev = "l1"
    for i, op in enumerate(mid or []):
        g.add(f"m{i}", op, [prev])
        prev = f"m{i}"
    g.add("flat", ops.Reshape((-1,)), [prev])
    n = int(np.prod(g["flat"].shape))
    w = np.full((3, n), 4, np.int64) if w is None else w
    g.add("fc", ops.Dense(w.astype(np.float32), q=QSynapse(w, e)), ["flat"])
    g.add("out_lif", neuron or _lif(), ["fc"])
    g.add("o", ops.Output(), ["out_lif"])
    return _quantized(g)


def _bad_weights() -> Graph:
    w = np.full((3, 32), 4, np.int64)
    w[1, 5] = -3  # mixed sign: Lava drops the LSB (-3 -> -4)
    return _chain(w=w)


def _loop() -> Graph:
    g = _input_graph("loop")
    w = np.full((3, 3), 8, np.int64)
    g.add("fa", _weighted(ops.Dense, w), ["x"])
    g.add("back", _weighted(ops.Dense, w), [("b", None, 1)])
    g.add("sum", ops.Add(), ["fa", "back"])
    g.add("a", _lif(), ["sum"])
    g.add("fb", _weighted(ops.Dense, w), ["a"])
    g.add("b", _lif(), ["fb"])
    g.add("o", ops.Output(), ["b"])
    return _quantized(g)


def _unbalanced_conv() -> Graph:
    """A skip convolution two steps shorter than the main path; the delay it needs makes it a
    DelaySparse, exact only while its sums stay below the Conv's 24-bit wrap (24-bit inputs: not)."""
    g = _input_graph("unbalanced", (1, 3, 3), encoding="current", q=QInput(0, 24))
    wc = np.full((1, 1, 1, 1), 2, np.int64)
    g.add("c1", _weighted(ops.Conv2d, wc), ["x"])
    g.add("l1", _lif(), ["c1"])
    g.add("c2", _weighted(ops.Conv2d, wc), ["l1"])
    g.add("cskip", _weighted(ops.Conv2d, wc), ["x"])
    g.add("sum", ops.Add(), ["c2", "cskip"])
    g.add("l2", _lif(), ["sum"])
    g.add("o", ops.Output(), ["l2"])
    return _quantized(g)


def _disconnected() -> Graph:
    g = Graph("two", num_steps=4)
    w = np.full((3, 3), 8, np.int64)
    for i in range(2):
        g.add(f"x{i}", ops.Input((3,), encoding=Encoding("spikes"), layout="TB", index=i))
        g.add(f"f{i}", _weighted(ops.Dense, w), [f"x{i}"])
        g.add(f"l{i}", _lif(), [f"f{i}"])
        g.add(f"o{i}", ops.Output(index=i), [f"l{i}"])
    return _quantized(g)


def _profile(name: str) -> Graph:
    g = _chain()
    g.profile = load_target(name).profile
    return g


def _unquantized() -> Graph:
    g = _chain()
    g.profile = None
    return g


def _synapse_output() -> Graph:
    g = _chain()
    g.add("o2", ops.Output(index=1), ["fc"])
    return g.verify()


def _dense_after_dense() -> Graph:
    g = _input_graph("dd")
    w = np.full((3, 3), 8, np.int64)
    g.add("f1", _weighted(ops.Dense, w), ["x"])
    g.add("f2", _weighted(ops.Dense, w), ["f1"])
    g.add("l", _lif(), ["f2"])
    g.add("o", ops.Output(), ["l"])
    return _quantized(g)


def _wide_input() -> Graph:
    g = _input_graph("wide", encoding="current", q=QInput(0, 32))
    w = np.full((3, 3), 8, np.int64)
    g.add("f1", _weighted(ops.Dense, w), ["x"])
    g.add("l", _lif(), ["f1"])
    g.add("o", ops.Output(), ["l"])
    return _quantized(g)


CASES = {
    "maxpool": (lambda: _chain([ops.MaxPool2d(2)]), r"node 'm0' \(MaxPool2d\): max pooling"),
    "avgpool": (lambda: _chain([ops.AvgPool2d(2, q=QScale(np.array(1), 2))]), r"node 'm0' \(AvgPool2d\)"),
    "scale": (lambda: _chain([ops.Scale(2.0, q=QScale(np.array(2), 0))]), r"node 'm0' \(Scale\)"),
    "multilevel": (lambda: _chain(neuron=ops.LIF(reset="value", spike="multilevel", compare="ge", q=q_lif())),
                   r"node 'out_lif' \(LIF\): multilevel spikes"),
    "bernoulli": (lambda: _chain(neuron=ops.LIF(reset="value", spike="bernoulli", q=q_lif())),
                  r"node 'out_lif' \(LIF\): bernoulli spikes"),
    "subtract": (lambda: _chain(neuron=ops.LIF(reset="subtract", q=q_lif())), r"'out_lif' \(LIF\): reset 'subtract'"),
    "no reset": (lambda: _chain(neuron=ops.LIF(reset="none", q=q_lif())), r"'out_lif' \(LIF\): reset 'none'"),
    "ge": (lambda: _chain(neuron=ops.LIF(reset="value", compare="ge", q=q_lif())), r"'out_lif' \(LIF\): compare 'ge'"),
    "delayed reset": (lambda: _chain(neuron=ops.LIF(reset="value", reset_timing="delayed", q=q_lif())),
                      r"'out_lif' \(LIF\): reset timing 'delayed'"),
    "reset value": (lambda: _chain(neuron=ops.LIF(reset="value", q=q_lif(reset_value=5))), r"reset to 5"),
    "v_min": (lambda: _chain(neuron=ops.LIF(reset="value", q=q_lif(v_min=np.array(-9)))), r"'out_lif' \(LIF\): v_min"),
    "v_init": (lambda: _chain(neuron=ops.LIF(reset="value", q=q_lif(v_init=3))), r"'out_lif' \(LIF\): v_init=3"),
    "dv": (lambda: _chain(neuron=ops.LIF(reset="value", q=q_lif(dv=5000))), r"q.dv=5000 is outside"),
    "vth": (lambda: _chain(neuron=ops.LIF(reset="value", q=q_lif(vth=2**17))), r"q.vth=131072 is outside"),
    "bias": (lambda: _chain(neuron=ops.LIF(reset="value", q=q_lif(bias_mant=np.array(5000)))), r"13-bit mantissa"),
    "off grid": (_bad_weights, r"node 'fc' \(Dense\): weight -3 at \[1, 5\] would become -4"),
    "weight_exp": (lambda: _chain(e=9), r"node 'fc' \(Dense\): weight_exp=9 is outside"),
    "conv exp": (lambda: _chain_conv_exp(), r"node 'conv' \(Conv2d\): weight_exp=1"),
    "loop": (_loop, r"recurrent loop through \['a', 'b'\]"),
    "unbalanced conv": (_unbalanced_conv, r"node 'cskip' \(Conv2d\).*delay of 1 steps.*24-bit wrap"),
    "fpga": (lambda: _profile("fpga"), r"quantized for profile 'fpga'.*weight_scheme='signed'"),
    "unquantized": (_unquantized, r"not quantized"),
    "synapse output": (_synapse_output, r"node 'o2' \(Output\): shows 'fc', a synapse value"),
    "dense after dense": (_dense_after_dense, r"node 'f2' \(Dense\): reads the output of another synapse op"),
    "wide input": (_wide_input, r"node 'x' \(Input\): input currents of 32 bits"),
    "disconnected": (_disconnected, r"falls apart into 2 unconnected networks \[\['l0', 'x0'\], \['l1', 'x1'\]\]"),
}


def _chain_conv_exp() -> Graph:
    g = _chain()
    op = g["conv"].op
    g.replace_op("conv", op.replace(q=QSynapse(op.q.weight, 1)))
    return g


# neuron features lava-nc's stock processes lack: refused with stock_only, custom processes otherwise
STOCK_ONLY = ("maxpool", "multilevel", "subtract", "no reset", "ge", "delayed reset", "reset value", "v_min",
              "v_init")


@pytest.mark.parametrize("case", list(CASES))
def test_unmappable_graphs_raise_clear_errors(case, tmp_path):
    build, pattern = CASES[case]
    target = load_target("loihi2:stock_only=1") if case in STOCK_ONLY else None
    with pytest.raises(lb.LavaMappingError, match=pattern) as info:
        lb.emit(build(), tmp_path / "lava", target)
    assert isinstance(info.value, GraphError)  # printed by the CLI as one line
    assert not (tmp_path / "lava").exists()  # nothing half-written


def test_sum_pool_of_large_graded_inputs_is_refused():
    g = _input_graph("pool", (1, 4, 4), encoding="current", q=QInput(0, 24))
    g.add("l0", _lif(), ["x"])
    g.add("p", ops.SumPool2d(2), ["x"])
    g.add("l1", _lif(), ["p"])
    g.add("o", ops.Output(), ["l1"])
    g.profile = PROF
    with pytest.raises(lb.LavaMappingError, match=r"node 'p' \(SumPool2d\).*24 bits"):
        lb.lower(g.verify())


# -- run() on bad inputs --------------------------------------------------------------------------------------


def test_run_rejects_bad_inputs_before_starting_lava(tmp_path):
    g = odd_names_graph()
    emit_quiet(g, tmp_path / "lava")
    with pytest.raises(InputError, match=r"input 'in:0' expects shape \[T, B, 2, 4, 4\]"):
        lb.run(tmp_path / "lava", np.zeros((5, 1, 2, 4)))
    with pytest.raises(InputError, match="values must be 0 or 1"):
        lb.run(tmp_path / "lava", np.full((5, 1, 2, 4, 4), 2.0))
    with pytest.raises(InputError, match="takes 1 input"):
        lb.run(tmp_path / "lava", [np.zeros((5, 1, 2, 4, 4))] * 2)
    with pytest.raises(lb.LavaArtifactError, match="network.json: not found"):
        lb.run(tmp_path, np.zeros((5, 1, 2, 4, 4)))
    from npuc.errors import UserError

    with pytest.raises(UserError, match="waveforms"):
        lb.run(tmp_path / "lava", np.zeros((5, 1, 2, 4, 4)), waves=True)


# -- per-token Dense --------------------------------------------------------------------------------------------


def _token_graph(tokens: int) -> Graph:
    """Spikes ``[tokens, 16]`` -> a Dense applied per token (16 -> 128) -> LIF."""
    w = (np.random.default_rng(4).integers(-100, 100, (128, 16)) * 2).astype(np.int64)
    g = _input_graph("tokens", (tokens, 16))
    g.add("fc", _weighted(ops.Dense, w), ["x"])
    g.add("lif", _lif(), ["fc"])
    g.add("o", ops.Output(), ["lif"])
    return _quantized(g)


@pytest.mark.parametrize("tokens,process", [(8, "Dense"), (64, "NpucTokenDense")])
def test_per_token_dense_beyond_kron_max_is_npuc_token_dense(tokens, process):
    """The block-diagonal stock Dense up to 2^22 weights (8 tokens: 2^17), NpucTokenDense beyond (64 tokens:
    2^23) with the [out, in] weight stored once; stock_only refuses the larger one naming its size."""
    spec = lb.lower(_token_graph(tokens))
    (c,) = spec.connections
    assert (c.kind == "token_dense") == (process == "NpucTokenDense")
    assert c.weights.shape == ((128, 16) if c.kind == "token_dense" else (tokens * 128, tokens * 16))
    if process == "NpucTokenDense":
        assert c.token["index"].shape == (tokens, 16) and sorted(c.token["rows"]) == list(range(tokens * 128))
        with pytest.raises(lb.LavaMappingError, match=r"node 'fc' \(Dense\): a Dense applied per token \(64 tokens, "
                                                       r"weight \(128, 16\)\).*8388608 weights.*drop stock_only"):
            lb.lower(_token_graph(tokens), custom=False)
