"""norse example: LIFBoxCell layers stepped with explicit state, compiled for Loihi 2 and FPGA.

    python examples/norse_digits.py [--quick]
"""

from __future__ import annotations

from pathlib import Path

import norse.torch as norse
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
        self.cell1 = norse.LIFBoxCell()
        self.fc2 = nn.Linear(64, 10)
        self.cell2 = norse.LIFBoxCell()

    def forward(self, x):  # x: [B, 64], constant over the steps
        s1 = s2 = None
        spikes = []
        for _ in range(STEPS):
            z1, s1 = self.cell1(10 * self.fc1(x), s1)  # norse's default dt * tau_mem_inv = 0.1
            z2, s2 = self.cell2(10 * self.fc2(z1), s2)
            spikes.append(z2)
        return torch.stack(spikes).sum(0)  # spike counts [B, 10]


def make_net() -> Net:
    return Net()


if __name__ == "__main__":
    a = args(__doc__.splitlines()[0])
    out = Path(a.out) / "norse"
    model = make_net()
    print(f"held-out accuracy after training: {train(model, lambda m, x: m(x), a.epochs):.3f}")
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "net.pt")
    (xtr, _), (xte, _) = digits_split()
    calib, ver = save_inputs(out, xtr[:300], xte[: a.verify_samples])
    npuc_cli("compile", f"{__file__}:make_net", "--checkpoint", str(out / "net.pt"), "--example-input", str(calib),
             "--target", "loihi2", "--target", "fpga", "--out", str(out / "build"))
    npuc_cli("verify", str(out / "build"), "--engine", "lava", "--input", str(ver))
    npuc_cli("verify", str(out / "build"), "--engine", "rtl", "--input", str(ver))
    hw = npuc.compile(model, xtr[:300], target="fpga", out=out / "build_api")
    print(hw.verify(xte[: a.verify_samples], engine="rtl").format())
