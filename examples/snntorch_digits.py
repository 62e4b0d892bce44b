"""snntorch example: a Leaky MLP with an explicit time loop, compiled for Loihi 2 and FPGA.

    python examples/snntorch_digits.py [--quick]

Loihi 2's LIF resets to zero, so the model uses ``reset_mechanism="zero"``
(snntorch's default subtract reset compiles for the FPGA, or for Loihi 2 with
``--allow-approx``).
"""

from __future__ import annotations

from pathlib import Path

import snntorch as snn
import torch
import torch.nn as nn
from _common import args, npuc_cli, save_inputs, train

import npuc
from npuc.demo.models import digits_split

STEPS = 10


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 64)
        self.lif1 = snn.Leaky(beta=0.9, reset_mechanism="zero")
        self.fc2 = nn.Linear(64, 10)
        self.lif2 = snn.Leaky(beta=0.9, reset_mechanism="zero")

    def forward(self, x):  # x: [B, 64], the same current at every step
        mem1, mem2 = self.lif1.reset_mem(), self.lif2.reset_mem()
        spikes = []
        for _ in range(STEPS):
            spk1, mem1 = self.lif1(self.fc1(x), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            spikes.append(spk2)
        return torch.stack(spikes)  # [T, B, 10]


def make_net() -> Net:
    return Net()


if __name__ == "__main__":
    a = args(__doc__.splitlines()[0])
    out = Path(a.out) / "snntorch"
    model = make_net()
    print(f"held-out accuracy after training: {train(model, lambda m, x: m(x).sum(0), a.epochs):.3f}")
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "net.pt")
    (xtr, _), (xte, _) = digits_split()
    calib, ver = save_inputs(out, xtr[:300], xte[: a.verify_samples])
    npuc_cli("compile", f"{__file__}:make_net", "--checkpoint", str(out / "net.pt"), "--example-input", str(calib),
             "--target", "loihi2", "--target", "fpga", "--out", str(out / "build"))
    npuc_cli("simulate", str(out / "build"), "--engine", "float", "--input", str(ver), "--out", str(out / "y.npy"))
    npuc_cli("verify", str(out / "build"), "--engine", "lava", "--input", str(ver))
    npuc_cli("verify", str(out / "build"), "--engine", "rtl", "--input", str(ver))
    hw = npuc.compile(model, xtr[:300], target="fpga", out=out / "build_api")
    print(hw.verify(xte[: a.verify_samples], engine="rtl").format())
