"""Accuracy check for the snntorch tutorial CSNN (README "Model zoo"): train it briefly on sklearn's
digits upsampled to 28x28 (rate-coded, T=10, snntorch's own ce_rate_loss), then compile for fpga and
loihi2 with labels and print float vs integer accuracy from the quantize pass.

    .venv/bin/python bench/zoo_csnn_digits.py [epochs]     (about 10 min on the shared 2-core VM)
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from snntorch import functional as SF
from snntorch import spikegen

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from models.zoo_snntorch import tutorial_csnn  # noqa: E402

import npuc  # noqa: E402

T = 10


def data() -> tuple[torch.Tensor, torch.Tensor]:
    d = load_digits()
    img = torch.tensor(d.images / 16.0, dtype=torch.float32)[:, None]
    img = F.interpolate(img, size=(28, 28), mode="bilinear", align_corners=False).clamp(0, 1)
    perm = torch.randperm(len(d.target))
    return img[perm], torch.tensor(d.target)[perm]


def main(epochs: int = 3) -> None:
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    img, y = data()
    net = tutorial_csnn()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    loss_fn = SF.ce_rate_loss()
    t0 = time.time()
    for epoch in range(epochs):
        net.train()
        for i in range(0, 1400, 50):
            spk, _ = net(spikegen.rate(img[i:i + 50], num_steps=T))
            loss = loss_fn(spk, y[i:i + 50])
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"epoch {epoch}: loss {loss.item():.3f} ({time.time() - t0:.0f} s)", flush=True)
    net.eval()
    torch.manual_seed(1)
    xt, yt = spikegen.rate(img[1400:], num_steps=T).numpy(), y[1400:].numpy()
    with torch.no_grad():
        print(f"snntorch test accuracy {(net(torch.from_numpy(xt))[0].sum(0).argmax(1).numpy() == yt).mean():.4f}")
    for target in ("fpga", "loihi2"):
        hw = npuc.compile(net, xt, target=target, labels=yt)
        q = next(e for e in hw.report()["targets"][target]["passes"] if e["pass"] == "quantize")
        print(f"{target}: accuracy float {q['accuracy_float']:.4f} int {q['accuracy_int']:.4f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
