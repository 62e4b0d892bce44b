"""npuc.nn example: a CUBA LIF network with a Bernoulli input encoder, for Loihi 2 and FPGA.

    python examples/npuc_nn_digits.py [--quick]
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
from _common import args, npuc_cli, save_inputs, train

import npuc
from npuc.demo.models import digits_split
from npuc.nn import LIF, BernoulliEncoder

STEPS = 12


class Net(nn.Module):
    """x [B, 64] in [0, 1] -> Bernoulli spikes (LFSR) -> CUBA LIF 64 -> LIF 10 -> spike counts."""

    def __init__(self) -> None:
        super().__init__()
        self.encode = BernoulliEncoder(STEPS, bits=12, seed=7)
        self.fc1 = nn.Linear(64, 64, bias=False)
        self.lif1 = LIF(alpha=0.9, alpha_i=0.5, threshold=1.0, reset="value")
        self.fc2 = nn.Linear(64, 10, bias=False)
        self.lif2 = LIF(alpha=0.9, threshold=1.0, reset="value")

    def forward(self, x):
        return self.lif2(self.fc2(self.lif1(self.fc1(self.encode(x))))).sum(0)


def make_net() -> Net:
    return Net()


if __name__ == "__main__":
    a = args(__doc__.splitlines()[0])
    out = Path(a.out) / "npuc_nn"
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
    # the Python API equivalent
    hw = npuc.compile(model, xtr[:300], target=["loihi2", "fpga"], out=out / "build_api")
    print(hw.verify(xte[: a.verify_samples], engine="lava").format())
