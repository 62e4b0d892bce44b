"""Shared plumbing for the examples: digits data, a training loop, and the npuc CLI steps.

Each example trains a small model on scikit-learn's digits, saves a checkpoint,
compiles the model *from its source file and checkpoint* with ``npuc compile``,
and verifies the hardware engines against the golden integer engine, then does
the same through the Python API (``npuc.compile``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import npuc
from npuc.demo.models import digits_split
from npuc.demo.training import accuracy, train_classifier


def args(description: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--out", default="build/examples", help="where checkpoints and builds go")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--verify-samples", type=int, default=16)
    ap.add_argument("--quick", action="store_true", help="2 epochs, 4 verification samples (smoke test)")
    a = ap.parse_args()
    if a.quick:
        a.epochs, a.verify_samples = 2, 4
    return a


def train(model: torch.nn.Module, forward, epochs: int, lr: float = 5e-3) -> float:
    """Train on the digits training split; ``forward(model, x) -> logits [B, 10]``; returns held-out accuracy."""
    (xtr, ytr), (xte, yte) = digits_split()
    train_classifier(model, xtr, ytr, epochs, lr, forward)
    return accuracy(model, xte, yte, forward)


def npuc_cli(*argv: str) -> None:
    """Run an ``npuc`` command (the same one a user would type) and fail loudly."""
    cmd = [sys.executable, "-m", "npuc.cli", *argv]
    print("$ npuc " + " ".join(argv), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    print(f"  ({time.perf_counter() - t0:.1f} s)", flush=True)


def save_inputs(out: Path, x_calib: np.ndarray, x_verify: np.ndarray) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "calib.npy", x_calib)
    np.save(out / "verify.npy", x_verify)
    return out / "calib.npy", out / "verify.npy"


def run_example(script: str, make_net, forward, *, targets=("loihi2", "fpga"), lr: float = 5e-3,
                to_input=lambda x: x, state_dict=None, simulate: bool = False,
                before_api=None, api_target="fpga", api_engine: str = "rtl") -> None:
    """The steps every example takes, as a user would: train on digits, save a checkpoint,
    ``npuc compile`` the model from ``script``'s ``make_net`` and the checkpoint, ``npuc verify``
    each target's hardware engine, then the same through the Python API.

    ``to_input`` turns ``[B, 64]`` digits into the model's input layout; ``state_dict(model)``
    picks what goes into the checkpoint; ``before_api(model)`` resets library state first.
    """
    doc = sys.modules["__main__"].__doc__ or script
    a = args(doc.splitlines()[0])
    out = Path(a.out) / Path(script).stem.removesuffix("_digits")
    model = make_net()
    print(f"held-out accuracy after training: {train(model, forward, a.epochs, lr):.3f}")
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict() if state_dict is None else state_dict(model), out / "net.pt")
    (xtr, _), (xte, _) = digits_split()
    calib, ver = save_inputs(out, to_input(xtr[:300]), to_input(xte[: a.verify_samples]))
    build = str(out / "build")
    npuc_cli("compile", f"{script}:make_net", "--checkpoint", str(out / "net.pt"), "--example-input", str(calib),
             *(f for t in targets for f in ("--target", t)), "--out", build)
    if simulate:
        npuc_cli("simulate", build, "--engine", "float", "--input", str(ver), "--out", str(out / "y.npy"))
    for target, engine in (("loihi2", "lava"), ("fpga", "rtl")):
        if target in targets:
            npuc_cli("verify", build, "--engine", engine, "--input", str(ver))
    if before_api is not None:
        before_api(model)
    hw = npuc.compile(model, to_input(xtr[:300]), target=api_target, out=out / "build_api")
    print(hw.verify(to_input(xte[: a.verify_samples]), engine=api_engine).format())
