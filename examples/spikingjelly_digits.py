"""SpikingJelly example: a multi-step LIFNode network on [T, B, ...], compiled for Loihi 2 and FPGA.

    python examples/spikingjelly_digits.py [--quick]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from _common import args, npuc_cli, save_inputs, train
from spikingjelly.activation_based import functional, layer, neuron

import npuc
from npuc.demo.models import digits_split

STEPS = 8


def make_net() -> nn.Module:
    net = nn.Sequential(
        layer.Linear(64, 64),
        neuron.LIFNode(tau=2.0),
        layer.Linear(64, 10),
        neuron.LIFNode(tau=2.0),
    )
    functional.set_step_mode(net, "m")  # input [T, B, 64], output [T, B, 10]
    return net


def forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    functional.reset_net(model)
    return model(x.unsqueeze(0).repeat(STEPS, 1, 1)).sum(0)


if __name__ == "__main__":
    a = args(__doc__.splitlines()[0])
    out = Path(a.out) / "spikingjelly"
    model = make_net()
    print(f"held-out accuracy after training: {train(model, forward, a.epochs):.3f}")
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "net.pt")
    (xtr, _), (xte, _) = digits_split()
    to_seq = lambda x: np.repeat(x[None], STEPS, 0)  # noqa: E731  (the model takes [T, B, 64])
    calib, ver = save_inputs(out, to_seq(xtr[:300]), to_seq(xte[: a.verify_samples]))
    npuc_cli("compile", f"{__file__}:make_net", "--checkpoint", str(out / "net.pt"), "--example-input", str(calib),
             "--target", "loihi2", "--target", "fpga", "--out", str(out / "build"))
    npuc_cli("verify", str(out / "build"), "--engine", "lava", "--input", str(ver))
    npuc_cli("verify", str(out / "build"), "--engine", "rtl", "--input", str(ver))
    functional.reset_net(model)
    hw = npuc.compile(model, to_seq(xtr[:300]), target="loihi2", out=out / "build_api")
    print(hw.verify(to_seq(xte[: a.verify_samples]), engine="lava").format())
