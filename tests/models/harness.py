"""Shared helpers for the frontend tests: compile through the CLI, run the float
engine, compute library references, and measure canonical agreement.

The references come from the libraries' own modules (reset with the libraries'
own reset functions), never from npuc code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from npuc.cli import main
from npuc.ir import LIF, Graph, Input, Output
from npuc.sim import simulate


def compile_cli(tmp: Path, spec: str, model: torch.nn.Module, example: np.ndarray | list, capsys=None,
                steps: int | None = None) -> Path:
    """Save ``model``'s state_dict, ``npuc compile`` ``spec`` with it; return the build dir."""
    ckpt = tmp / "model.pt"
    torch.save(model.state_dict(), ckpt)
    ex = tmp / ("example.npz" if isinstance(example, list) else "example.npy")
    if isinstance(example, list):
        np.savez(ex, *example)
    else:
        np.save(ex, example)
    out = tmp / "build"
    argv = ["compile", spec, "--checkpoint", str(ckpt), "--example-input", str(ex), "--out", str(out)]
    if steps is not None:
        argv += ["--steps", str(steps)]
    rc = main(argv)
    if rc != 0:
        err = capsys.readouterr().err if capsys is not None else ""
        raise AssertionError(f"npuc compile failed ({rc}): {err}")
    return out


def simulate_cli(tmp: Path, build: Path, x: np.ndarray | list, tag: str = "x") -> list[np.ndarray]:
    """``npuc simulate BUILD --engine float`` on ``x`` (a list: several inputs); the outputs in index order."""
    if isinstance(x, list):
        xp = tmp / f"{tag}.npz"
        np.savez(xp, *x)
    else:
        xp = tmp / f"{tag}.npy"
        np.save(xp, x)
    yp = tmp / f"{tag}_out.npz"
    assert main(["simulate", str(build), "--engine", "float", "--input", str(xp), "--out", str(yp)]) == 0
    data = np.load(yp)
    return [data[k] for k in sorted(data.files, key=lambda k: (len(k), k))]


def as_list(out) -> list[np.ndarray]:
    if isinstance(out, (tuple, list)):
        return [o.detach().numpy() for o in out]
    return [out.detach().numpy()]


def assert_exact(ours: list[np.ndarray], ref: list[np.ndarray], what: str = "") -> None:
    assert len(ours) == len(ref), f"{what}: {len(ours)} outputs vs {len(ref)}"
    for i, (a, b) in enumerate(zip(ours, ref)):
        assert a.shape == b.shape, f"{what} output {i}: shape {a.shape} vs library {b.shape}"
        bad = np.argwhere(a != b)
        assert bad.size == 0, (
            f"{what} output {i}: {len(bad)} of {a.size} values differ from the library; first at {tuple(bad[0])}: "
            f"npuc {a[tuple(bad[0])]!r} vs library {b[tuple(bad[0])]!r}"
        )


def spike_rate(a: np.ndarray) -> float:
    return float((a != 0).mean())


def canonical_agreement(graph: Graph, x) -> dict[str, float]:
    """Per LIF node: the fraction of spikes that agree when the node runs its
    canonical ("npuc") form instead of its library form, on the *same* input
    (taken from the library-form simulation), so errors do not compound.
    For a node read through its membrane (sinabs ExpLeak) the fraction of
    membrane values within 1e-5 relative is reported instead."""
    res = simulate(graph, x, probe=True)
    out = {}
    for node in graph.of_type(LIF):
        src = node.inputs[0]
        xin = res.probes[src.node][graph[src.node].port(src)]
        g = Graph("one", None)
        g.add("x", Input(tuple(node.shapes["spikes"]), layout="TB"))
        g.add("lif", node.op.replace(form="npuc", form_args={}), ["x"])
        g.add("o", Output(), ["lif"])
        g.add("ov", Output(index=1), [("lif", "v")])
        canon, canon_v = simulate(g, xin).outputs
        if all(node.port(graph[user].inputs[i]) == "v" for user, i in graph.users(node.name)):
            lib_v = res.probes[node.name]["v"]
            out[node.name] = float(np.isclose(canon_v, lib_v, rtol=1e-5, atol=1e-6).mean())
        else:
            out[node.name] = float((canon == res.probes[node.name]["spikes"]).mean())
    return out


def drive(rng: np.random.Generator, shape: tuple, scale: float = 1.5, offset: float = 0.3) -> np.ndarray:
    """Random float32 input currents, with ~15% strongly suprathreshold entries."""
    x = rng.normal(offset, scale, shape)
    big = rng.random(shape) < 0.15
    x = np.where(big, np.abs(x) * 4 + 2.0, x)
    return x.astype(np.float32)


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Randomize neuron parameters by name (beta/alpha outside [0, 1] exercise snntorch's clamp)."""
    g = torch.Generator().manual_seed(seed)
    ranges = {"beta": (0.3, 1.1), "alpha": (0.2, 0.95), "threshold": (0.6, 1.4), "graded_spikes_factor": (1.5, 3.0),
              "V": (-0.6, 0.6), "w": (-1.5, 0.5)}
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ranges and t.is_floating_point():
                lo, hi = ranges[leaf]
                t.copy_(torch.rand(t.shape, generator=g) * (hi - lo) + lo)
