"""Benchmark 7: the model zoo. Models written the way the libraries' tutorials and reference
code write them (tests/models/), at their real input sizes, compiled for both targets.

Per model: neurons and synapses of the traced graph; whether the float engine equals the
library's forward bit for bit; per target whether it compiles (else the first words of the
one-line error), compile seconds, Loihi 2 cores, and a hardware check on one sample: Lava
(loihi2) and Verilator (fpga) mismatches against the integer engine, and the RTL's measured
cycles per step. ``--synth`` adds Yosys ice40 LUT4 / FF / BRAM counts (slow: about a minute per design).

Run from the repository root: ``python -m bench.model_zoo [--quick] [--only NAME ...]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import npuc
from bench.common import Table, machine
from npuc.errors import NpucError
from npuc.frontends import trace
from npuc.ir import LIF, Conv1d, Conv2d, Dense
from npuc.sim import simulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from models import alpha_models as alpha  # noqa: E402
from models import shd_models as shd  # noqa: E402
from models import zoo_models as zoo  # noqa: E402
from models import zoo_snntorch as zsn  # noqa: E402


def _spikes(shape: tuple[int, ...], p: float, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) < p).astype(np.float32)


# name, source, model factory, example input (T-major or as the model takes it)
ZOO: list[tuple[str, str, Callable[[], torch.nn.Module], Callable[[], np.ndarray]]] = [
    ("snntorch CSNN 28x28 (conv, max pool, Leaky)", "snntorch tutorials 6/7", zsn.spiking_csnn,
     lambda: zsn.rate_images(2).numpy()),
    ("sinabs Speck net 2x64x64 (IAFSqueeze, SumPool2d)", "sinabs / Speck deployment", lambda: zoo.SpeckNet(2),
     lambda: _spikes((2, 8, 2, 64, 64), 0.05).astype(np.float32)),
    ("sinabs Speck net 2x128x128 (the DVS sensor's size)", "sinabs / Speck deployment", lambda: zoo.SpeckNet(2, 128),
     lambda: _spikes((2, 8, 2, 128, 128), 0.05).astype(np.float32)),
    ("snntorch RLeaky 700-128-20", "snntorch tutorial / SHD", lambda: shd.RLeakySHD(),
     lambda: _spikes((50, 4, 700), 0.05)),
    ("snntorch RSynaptic 700-128-20", "snntorch docs / SHD", lambda: shd.RSynapticSHD(),
     lambda: _spikes((50, 4, 700), 0.05)),
    ("snntorch RSynaptic one-to-one", "snntorch docs / SHD", lambda: shd.RSynapticSHD(all_to_all=False),
     lambda: _spikes((50, 4, 700), 0.05)),
    ("snntorch Alpha 700-128-20 (init_hidden, zero reset)", "snntorch Alpha docs / SHD", alpha.alpha_shd,
     lambda: _spikes((50, 4, 700), 0.05)),
    ("snntorch Alpha MLP 16-24-6 (explicit state)", "snntorch Alpha docs", alpha.alpha_mlp,
     lambda: _spikes((40, 4, 16), 0.2)),
    ("norse LIFRecurrentCell 700-128-20", "norse SHD example", lambda: shd.spiking(shd.NorseSHD()),
     lambda: _spikes((50, 4, 700), 0.05)),
    ("norse SequentialState(LIFRecurrent, Linear, LI) 700-128-20", "norse README / SHD example",
     lambda: shd.spiking(shd.NorseSHDSequence()), lambda: _spikes((50, 4, 700), 0.05)),
    ("snntorch MLP 64-96-10, Leaky(beta=<per-neuron tensor>, learn_beta=True)", "snntorch tutorial 5 / docs",
     lambda: zsn.learned_decay_mlp(), lambda: _spikes((16, 4, 64), 0.3)),
    ("snntorch MLP 64-96-10, Synaptic(alpha, beta per-neuron tensors, learned)", "snntorch docs",
     lambda: zsn.learned_decay_mlp(synaptic=True), lambda: _spikes((16, 4, 64), 0.3)),
    ("snntorch Lapicque (R, C)", "snntorch tutorial 2", lambda: zoo.LapicqueNet(R=5.0, C=2.5e-3, time_step=1e-3),
     lambda: np.random.default_rng(0).random((25, 4, 20)).astype(np.float32)),
    ("snntorch conv + spk.mean((-2,-1))", "global average pooling head", lambda: zoo.GlobalAveragePoolNet(),
     lambda: np.random.default_rng(0).random((8, 4, 1, 28, 28)).astype(np.float32)),
    ("SpikingJelly SEW block (ADD)", "SEW-ResNet reference", lambda: zoo.sew_net("ADD"),
     lambda: _spikes((4, 4, 2, 16, 16), 0.3)),
    ("SpikingJelly SEW block (IAND)", "SEW-ResNet reference", lambda: zoo.sew_net("IAND"),
     lambda: _spikes((4, 4, 2, 16, 16), 0.3)),
    ("SpikingJelly CSNN 28x28, 8 channels (Conv-BN-IF-MaxPool x2, Linear-IF x2, multi-step, T=4)",
     "SpikingJelly conv_fashion_mnist.py", lambda: zoo.sj_csnn(),
     lambda: np.random.default_rng(0).random((4, 1, 28, 28)).astype(np.float32)),
    ("SpikingJelly CSNN 28x28, 128 channels (the example's default width)", "SpikingJelly conv_fashion_mnist.py",
     lambda: zoo.sj_csnn(128), lambda: np.random.default_rng(0).random((4, 1, 28, 28)).astype(np.float32)),
    ("SpikingJelly sew_resnet18 stem (3x3/2 max pool of spikes)", "SpikingJelly model/sew_resnet.py",
     lambda: zoo.sew_stem(), lambda: _spikes((4, 4, 2, 32, 32), 0.3)),
]


def _size(graph) -> tuple[int, int]:
    neurons = sum(int(np.prod(n.shape)) for n in graph if isinstance(n.op, LIF))
    synapses = 0
    for n in graph:
        if isinstance(n.op, Dense):
            synapses += int(n.op.weight.size)
        elif isinstance(n.op, (Conv1d, Conv2d)):
            synapses += int(np.prod(n.shape)) * int(np.prod(n.op.weight.shape[1:]))
    return neurons, synapses


def _first_sample(graph, x: np.ndarray) -> np.ndarray:
    """One sample of ``x`` in the graph's input layout (batch-major for ``BT``)."""
    return x[:1] if graph.inputs()[0].op.layout == "BT" else x[:, :1]


SYNTH_MAX_MBIT = 16.0
"""Designs with more memory than this are not synthesized: Yosys takes tens of minutes mapping
their ROMs, and no single mid-size FPGA holds them (the zoo's largest synthesized design, the
Speck net, has about 5.6 Mbit)."""


def _synth(rtl_dir: Path) -> str:
    """Yosys ice40 LUT4 / FF / BRAM of a design, or why it was not synthesized."""
    from npuc.backends.rtl.report import resources, rtl_report

    mbit = rtl_report(None, rtl_dir, yosys=False)["total"]["memory_bits"] / 1e6
    if mbit > SYNTH_MAX_MBIT:
        return f"not synthesized: {mbit:.1f} Mbit of memories"
    total = resources(rtl_dir)["total"]
    return f"{total.get('LUT')} / {total.get('FF')} / {total.get('BRAM')}"


def measure(name: str, source: str, make, data, synth: bool) -> dict[str, Any]:
    torch.manual_seed(0)
    model = make().eval()
    x = data()
    row: dict[str, Any] = {"model": name, "source": source}
    t0 = time.perf_counter()
    try:
        graph = trace(model, x)
    except NpucError as e:
        row["float exact"] = f"refused: {str(e)[:60]}"
        return row
    row["neurons"], row["synapses"] = _size(graph)
    with torch.no_grad():
        want = model(torch.from_numpy(x))
    want = want if isinstance(want, tuple) else (want,)
    got = simulate(graph, x, "float").outputs
    row["float exact"] = all(np.array_equal(g, w.numpy()) for g, w in zip(got, want))
    trace_s = time.perf_counter() - t0
    from npuc.verify import verify

    with tempfile.TemporaryDirectory() as tmp:
        for target, engine in (("loihi2", "lava"), ("fpga", "rtl")):
            t1 = time.perf_counter()
            try:
                hw = npuc.compile(graph, x, target=target, out=Path(tmp) / target)
            except NpucError as e:
                row[f"{target}"] = "no: " + str(e).split(":")[0][:40]
                continue
            row[f"{target}"] = "yes"
            row[f"{target} compile s"] = round(trace_s + time.perf_counter() - t1, 1)
            report = hw.report()["targets"][target]
            if target == "loihi2":
                row["Loihi 2 cores"] = report.get("mapping", {}).get("cores", {}).get("used")
            from npuc.builddir import BuildDir

            result, _, run = verify(BuildDir(hw.path), engine, [_first_sample(graph, x)])
            row[f"{engine} mismatches"] = result.mismatches
            if engine == "rtl":
                row["RTL cycles/step"] = (run.stats.get("rtl") or {}).get("cycles_per_step")
                if synth:
                    row["FPGA LUT/FF/BRAM"] = _synth(hw.path / "rtl")
    return row


COLUMNS = ["model", "source", "neurons", "synapses", "float exact", "loihi2", "lava mismatches", "Loihi 2 cores",
           "loihi2 compile s", "fpga", "rtl mismatches", "RTL cycles/step", "FPGA LUT/FF/BRAM", "fpga compile s"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one small model (the CI smoke run)")
    ap.add_argument("--only", nargs="*", help="substrings of model names")
    ap.add_argument("--synth", action="store_true", help="add Yosys ice40 LUT4 / FF / BRAM counts")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args(argv)
    zoo_rows = [z for z in ZOO if "Lapicque" in z[0]] if args.quick else ZOO
    if args.only:
        zoo_rows = [z for z in zoo_rows if any(s in z[0] for s in args.only)]
    rows = []
    for name, source, make, data in zoo_rows:
        print(f"... {name}", flush=True)
        rows.append(measure(name, source, make, data, args.synth))
    table = Table(f"model zoo {machine()}", COLUMNS)
    table.print(rows)
    print(table.markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
