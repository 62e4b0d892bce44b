"""``--target loihi2:netx=1``: trained digits MLPs (and a conv chain) land whole in ``network.net``, and lava-dl's
netx runs that file like npuc's integer engine, one Lava step later per layer.

The structural checks read the file with h5py. The run needs lava-dl 0.6.0, which pins
torch<2.4 and so lives in its own environment (docs/lava-facts.md section 11b): the interpreter
named by ``NPUC_NETX_PYTHON``, else ``netx-env/bin/python`` beside the repository (what
``make netx-env`` creates); without one, that test skips and says so.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import snntorch as snn
import torch
import torch.nn as nn
from models.digits_models import STEPS, SnnTorchMLP

import npuc
from npuc.backends.lava.runner import encode_inputs
from npuc.builddir import BuildDir
from npuc.demo.models import digits_split, mlp
from npuc.demo.training import train_classifier
from npuc.errors import LavaMappingError
from npuc.ir import LIF, Dense, Encoding, Graph, Input, Output
from npuc.sim import simulate
from npuc.targets import load_target

TARGET = "loihi2:netx=1"
RUNNER = Path(__file__).with_name("netx_run.py")


def _demo() -> nn.Module:
    m = mlp()
    m.load_state_dict(torch.load(Path(npuc.__file__).parent / "demo" / "digits_mlp.pt"))
    return m


def _snntorch(bias: bool):
    def make() -> nn.Module:
        (xtr, ytr), _ = digits_split()
        return train_classifier(SnnTorchMLP(bias), xtr[:500], ytr[:500], epochs=3)  # briefly: a trained net
    return make


class SnnTorchConv(nn.Module):
    """Strided conv -> flatten -> dense, untrained (netx has no pooling); larger weights so that it spikes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.c1, self.lif1 = nn.Conv2d(1, 4, 3, stride=2, padding=1), snn.Leaky(beta=0.9, reset_mechanism="zero")
        self.fc, self.lif2 = nn.Linear(4 * 4 * 4, 10), snn.Leaky(beta=0.9, reset_mechanism="zero")
        with torch.no_grad():
            self.c1.weight.mul_(3)
            self.fc.weight.mul_(3)

    def forward(self, x):
        m1, m2 = self.lif1.reset_mem(), self.lif2.reset_mem()
        out = []
        for _ in range(STEPS):
            s1, m1 = self.lif1(self.c1(x), m1)
            s2, m2 = self.lif2(self.fc(s1.flatten(1)), m2)
            out.append(s2)
        return torch.stack(out).sum(0)


MODELS = {"demo-mlp": _demo, "snntorch-mlp": _snntorch(True), "snntorch-no-bias": _snntorch(False),
          "conv-untrained": SnnTorchConv}
SLOW = pytest.mark.slow  # trains a classifier


def _x(name: str, x: np.ndarray) -> np.ndarray:
    return x.reshape(-1, 1, 8, 8) if name == "conv-untrained" else x
PARAMS = [pytest.param(n, marks=SLOW if n.startswith("snntorch") else ()) for n in MODELS]


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    cache: dict[str, npuc.Compiled] = {}

    def get(name: str) -> npuc.Compiled:
        if name not in cache:
            (xtr, ytr), _ = digits_split()
            cache[name] = npuc.compile(MODELS[name](), _x(name, xtr[:256]), target=TARGET, labels=ytr[:256],
                                       out=tmp_path_factory.mktemp("netx") / name)
        return cache[name]
    return get


@pytest.mark.parametrize("name", PARAMS)
def test_netx_file_holds_every_layer(name, builds):
    hw = builds(name)
    q = hw.quantized()
    neurons = [n.name for n in q if isinstance(n.op, LIF)]
    doc = json.loads((hw.path / "lava" / "network.json").read_text())["netx_layers"]
    assert doc["layers"] == neurons and doc["not_representable"] == []
    with h5py.File(hw.path / "lava" / "network.net", "r") as f:
        groups = [f[f"layer/{i}"] for i in range(len(f["layer"]))]
        blocks = [g for g in groups if g["type"][0] != b"flatten"]
        assert len(blocks) == len(neurons)
        for g, node in zip(blocks, neurons):
            syn, lif = q[q[node].inputs[0].node].op.q, q[node].op.q
            # weight exponent 0 and bias exponent 6: the file holds npuc's integers themselves
            assert syn.weight_exp == 0 and lif.bias_exp == 6
            if g["type"][0] == b"dense":
                assert np.array_equal(g["weight"][()], syn.weight)
                assert np.array_equal(g["bias"][()], np.broadcast_to(lif.bias_mant, g["bias"].shape))
            else:  # conv: (O, I, kH, kW) in the file, Lava's (O, kW, kH, I) in npuc; biases per channel
                assert g["type"][0] == b"conv"
                assert np.array_equal(np.sort(g["weight"][()], None), np.sort(syn.weight, None))
                assert set(g["bias"][()].tolist()) == set(np.unique(lif.bias_mant).tolist())
            n = g["neuron"]
            assert [n[k][()] for k in ("iDecay", "vDecay", "vThMant")] == [lif.du + 1, lif.dv, lif.vth]
    if name == "snntorch-no-bias":
        assert all(not np.any(q[n].op.q.bias_mant) for n in neurons)
    if name == "conv-untrained":
        return
    # the constraint's accuracy cost on the calibration set: within 2 points of the float model
    rep = next(p for p in hw.report()["targets"]["loihi2"]["passes"] if p["pass"] == "quantize")
    assert rep["accuracy_int"] >= rep["accuracy_float"] - 0.02, rep


def _netx_python() -> str:
    """The interpreter with lava-dl netx, or skip naming the variable that sets it."""
    exe = os.environ.get("NPUC_NETX_PYTHON")
    if exe:
        return exe  # asked for explicitly: a broken one fails below
    default = Path(__file__).resolve().parents[1].parent / "netx-env" / "bin" / "python"
    probe = subprocess.run([str(default), "-c", "import lava.lib.dl.netx"], capture_output=True) \
        if default.exists() else None
    if probe is None or probe.returncode:
        pytest.skip(f"lava-dl netx is not installed: set NPUC_NETX_PYTHON to a Python with lava-dl==0.6.0 "
                    f"(or run `make netx-env`, which creates {default.parent.parent})")
    return str(default)


@pytest.mark.lava  # Lava runs in the child process
@pytest.mark.parametrize("name", PARAMS)
def test_netx_runs_like_the_integer_engine(name, builds, tmp_path):
    exe = _netx_python()
    hw = builds(name)
    _, (xte, _) = digits_split()
    x = _x(name, xte[:12])
    doc = json.loads((hw.path / "lava" / "network.json").read_text())
    (stream,), steps = encode_inputs(doc, x)  # npuc's integer input stream [T, B, *shape]
    np.save(tmp_path / "in.npy", stream)
    bits = 8 if doc["inputs"][0]["graded"] else 0
    run = subprocess.run([exe, str(RUNNER), str(hw.path / "lava" / "network.net"), str(tmp_path / "in.npy"),
                          str(steps), str(bits), str(tmp_path / "out.npy")], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    got = np.load(tmp_path / "out.npy")  # [B*T + L, 10]: every Lava step of the last block
    layers = doc["netx_layers"]["layers"]
    want = simulate(BuildDir(hw.path).int_graph(None), x, "int", probe=True).probes[layers[-1]]["spikes"]
    shift = len(layers)  # each Dense sends the previous step's sum
    got = np.stack([got[b * steps + shift: (b + 1) * steps + shift] for b in range(len(x))], 1)
    assert want.any()
    assert np.array_equal(got, want), f"{int((got != want).sum())} of {want.size} spikes differ"


def test_netx_option_fixes_the_exponents():
    prof = load_target(TARGET).profile
    assert (prof.weight_exp_min, prof.weight_exp_max, prof.bias_exp_min, prof.bias_exp_max) == (0, 0, 6, 6)
    assert prof.spike_types == ("binary",) and prof.reset_modes == ("value",)
    assert load_target("loihi2").profile.weight_exp_min < 0


def test_netx_mode_refuses_a_graph_netx_cannot_describe(tmp_path):
    rng = np.random.default_rng(0)
    g = Graph("branch", num_steps=4)
    g.add("x", Input((6,), encoding=Encoding("spikes"), layout="TB"))
    g.add("fc1", Dense(rng.normal(0, 1, (5, 6)).astype(np.float32)), ["x"])
    g.add("l1", LIF(reset="value"), ["fc1"])
    g.add("fc2", Dense(rng.normal(0, 1, (4, 5)).astype(np.float32)), ["l1"])
    g.add("l2", LIF(reset="value"), ["fc2"])
    g.add("fc3", Dense(rng.normal(0, 1, (3, 5)).astype(np.float32)), ["l1"])
    g.add("l3", LIF(reset="value"), ["fc3"])
    g.add("o2", Output(), ["l2"])
    g.add("o3", Output(index=1), ["l3"])
    x = (rng.random((4, 8, 6)) < 0.5).astype(np.float32)
    with pytest.raises(LavaMappingError, match=r"loihi2:netx=1: netx cannot represent 'l2' \('l1' feeds 2 synapses"):
        npuc.compile(g.verify(), x, target=TARGET, out=tmp_path / "b")


@pytest.mark.parametrize("w, kept", [
    ([[-256, 254, 2], [0, -6, 100]], True),  # loihi2 mixed weights at exponent 0
    ([[255, 0, 17]], True),
    ([[-127, -54]], True),
    ([[-128, -54]], False),  # netx scales inhibitory weights to -256; Lava clips them to -255
    ([[0, -128, 0]], False),  # negatives and zeros: mixed for netx, inhibitory for Lava
    ([[-93, 0, -157]], False),
    ([[0, 0]], False),  # netx's optimize_weight_bits divides by the largest weight
])
def test_netx_weight_rule(w, kept):
    """What netx 0.6.0 + Lava 0.10.0 keep (each case run through netx's optimize_weight_bits and
    Lava's Dense weight handling; a fuzz of 30,000 matrices agreed with `_netx_keeps`)."""
    from npuc.backends.lava.netx import _netx_keeps

    assert _netx_keeps(np.array(w)) is kept
