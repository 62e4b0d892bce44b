"""sinabs example: IAF neurons with multi-spike (graded) outputs over [B, T, ...], for the FPGA.

    python examples/sinabs_digits.py [--quick]

sinabs' default MultiSpike emits up to several spikes per step (graded
spikes): the FPGA target implements them; Loihi 2's LIF has no multi-level
output, so this example compiles for ``fpga`` only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import sinabs.layers as sl
import torch
import torch.nn as nn
from _common import args, npuc_cli, save_inputs, train

import npuc
from npuc.demo.models import digits_split

STEPS = 8


def make_net() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 64), sl.IAF(), nn.Linear(64, 10), sl.IAF())  # [B, T, 64] -> [B, T, 10]


def forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    for m in model.modules():
        if isinstance(m, sl.StatefulLayer):
            m.reset_states()
    return model(x.unsqueeze(1).repeat(1, STEPS, 1)).sum(1)


if __name__ == "__main__":
    a = args(__doc__.splitlines()[0])
    out = Path(a.out) / "sinabs"
    model = make_net()
    print(f"held-out accuracy after training: {train(model, forward, a.epochs, lr=2e-3):.3f}")
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith(("v_mem", "i_syn"))}
    torch.save(state, out / "net.pt")
    (xtr, _), (xte, _) = digits_split()
    to_seq = lambda x: np.repeat(x[:, None], STEPS, 1)  # noqa: E731  (the model takes [B, T, 64])
    calib, ver = save_inputs(out, to_seq(xtr[:300]), to_seq(xte[: a.verify_samples]))
    npuc_cli("compile", f"{__file__}:make_net", "--checkpoint", str(out / "net.pt"), "--example-input", str(calib),
             "--target", "fpga", "--out", str(out / "build"))
    npuc_cli("verify", str(out / "build"), "--engine", "rtl", "--input", str(ver))
    forward(model, torch.zeros(1, 64))
    hw = npuc.compile(model, to_seq(xtr[:300]), target="fpga", out=out / "build_api")
    print(hw.verify(to_seq(xte[: a.verify_samples]), engine="rtl").format())
