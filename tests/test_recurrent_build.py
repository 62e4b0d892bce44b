"""Recurrent models through the whole pipeline: a trained-style snntorch RLeaky (its recurrent
weights are a delayed self-projection) quantized for both targets and run bit-exact in
Verilator and in Lava; and Lava runs after a progress bar fixed Python's multiprocessing
start method (Lava insists on choosing it itself)."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

import npuc


class RecurrentMLP(nn.Module):
    def __init__(self, reset_delay: bool = False) -> None:
        super().__init__()
        self.fc1 = nn.Linear(12, 16)
        # reset_delay=True (snntorch's default) zeroes the charge one step late ('delayed_charge'):
        # the FPGA implements it, Loihi 2 does not
        self.lif1 = snn.RLeaky(beta=0.85, linear_features=16, reset_mechanism="zero", reset_delay=reset_delay)
        self.fc2 = nn.Linear(16, 4)
        self.lif2 = snn.Leaky(beta=0.9, reset_mechanism="zero")

    def forward(self, x):  # [T, B, 12]
        spk1, mem1 = self.lif1.init_rleaky()
        mem2 = self.lif2.reset_mem()
        out = []
        for t in range(x.shape[0]):
            spk1, mem1 = self.lif1(self.fc1(x[t]), spk1, mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            out.append(spk2)
        return torch.stack(out)


def _model_and_input(reset_delay: bool = False):
    torch.manual_seed(4)
    model = RecurrentMLP(reset_delay).eval()
    with torch.no_grad():
        model.lif1.recurrent.weight.mul_(3.0)  # recurrence strong enough to change spikes
        model.fc1.weight.mul_(2.0)
        model.fc2.weight.mul_(3.0)
    x = (np.random.default_rng(4).random((10, 6, 12)) < 0.4).astype(np.float32)
    return model, x


@pytest.mark.rtl
@pytest.mark.parametrize("reset_delay", [pytest.param(False, marks=pytest.mark.lava), True])  # True: fpga only
def test_rleaky_compiles_and_runs_bit_exact(reset_delay, tmp_path):
    model, x = _model_and_input(reset_delay)
    targets = ["fpga"] if reset_delay else ["fpga", "loihi2"]
    hw = npuc.compile(model, x, target=targets, out=tmp_path / "b")
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert np.array_equal(hw.simulate(x, "float"), want)
    assert 0.02 < want.mean() < 0.9
    g = hw.quantized("fpga")
    rec = [n for n in g if any(r.delay == 1 for r in n.inputs)]
    assert rec, "the recurrent weights should be a delayed projection"
    for target in targets:
        agree = np.mean(hw.simulate(x, "int", target=target) == want)
        assert agree > 0.9, (target, agree)
    assert hw.verify(x, "rtl").mismatches == 0
    if "loihi2" in targets:
        assert hw.verify(x, "lava").mismatches == 0


@pytest.mark.lava  # in a child process, which the engine guard cannot see
def test_lava_runs_after_a_progress_bar_fixed_the_start_method(tmp_path):
    model, x = _model_and_input()
    hw = npuc.compile(model, x[:, :2], target="loihi2", out=tmp_path / "b")
    np.save(tmp_path / "x.npy", x[:, :2])
    script = textwrap.dedent(f"""
        import multiprocessing, numpy as np, tqdm
        tqdm.tqdm(range(1)).close()          # creates tqdm's multiprocessing lock
        assert multiprocessing.get_start_method(allow_none=True) is not None
        import npuc
        from npuc.backends import run_engine
        from npuc.builddir import BuildDir
        res = run_engine(BuildDir({str(hw.path)!r}), "lava", [np.load({str(tmp_path / 'x.npy')!r})])
        print("lava output shape", res.outputs[0].shape)
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "lava output shape (10, 2, 4)" in p.stdout
