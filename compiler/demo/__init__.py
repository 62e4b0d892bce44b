"""``npuc demo``: the whole pipeline on a bundled model, end to end.

A 64-64-10 LIF network trained on scikit-learn's digits (`npuc.demo.models`,
trained by ``examples/train_digits.py``; the checkpoint ships with the package)
is imported from its source and checkpoint like any user model, compiled for
``loihi2`` and ``fpga``, simulated by the float, integer, Lava and RTL engines,
and verified. A Spikformer-style model (spiking self-attention, trained by
``examples/train_spikformer.py``) goes the same way for the FPGA. The summary
and plots land in ``OUT/report/``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

MODEL = "npuc.demo.models:mlp"
ATTENTION_MODEL = "npuc.demo.models:spikformer"


def run_demo(args: argparse.Namespace) -> int:
    # One linear story in six stages, the order a new user reads it in (kept whole on purpose).
    from ..builddir import BuildDir
    from ..driver import build
    from ..frontends import load_model
    from ..plots import plot_accuracy, plot_rasters
    from ..sim import simulate
    from ..verify import verify
    from .models import digits_split

    console = Console(file=sys.stderr)
    out = Path(args.out)
    hw_samples = 16 if args.quick else 100
    timings: dict[str, float] = {}

    def stage(name: str):
        console.rule(f"[bold]{name}")
        return time.perf_counter()

    t = stage("1/6 data and model")
    (x_train, y_train), (x_test, y_test) = digits_split()
    calib, calib_y = x_train[:300], y_train[:300]
    ckpt = resources.files(__package__).joinpath("digits_mlp.pt")
    graph = load_model(MODEL, checkpoint=str(ckpt), example_input=[calib])
    console.print(f"imported {MODEL} with checkpoint {ckpt.name}: {len(graph)} nodes, T={graph.num_steps}; "
                  f"{len(x_test)} held-out digits")
    timings["import"] = time.perf_counter() - t

    t = stage("2/6 compile for loihi2 and fpga")
    build_dir = out / "build"
    report = build(graph, ["loihi2", "fpga"], build_dir, [calib], calib_y, False,
                   lambda line: console.print(line), None, MODEL)
    timings["compile"] = time.perf_counter() - t
    bd = BuildDir(build_dir)

    t = stage("3/6 golden engines (all held-out samples)")
    results: dict[str, dict[str, Any]] = {}
    fl = simulate(bd.float_graph(), x_test, "float", probe=True)
    results["float"] = _score(fl.output, y_test)
    for target in ("loihi2", "fpga"):
        it = simulate(bd.int_graph(target), x_test, "int")
        results[f"int ({target})"] = _score(it.output, y_test)
        results[f"int ({target})"]["agreement_with_float"] = float(np.mean(it.output == fl.output))
    timings["golden"] = time.perf_counter() - t
    console.print(f"float and integer engines on {len(x_test)} samples in {timings['golden']:.2f} s")

    hw: dict[str, Any] = {}
    t = stage(f"4/6 hardware engines ({hw_samples} samples): Lava fixed_pt and Verilator RTL, verified")
    xh, yh = x_test[:hw_samples], y_test[:hw_samples]
    for engine, target in (("lava", "loihi2"), ("rtl", "fpga")):
        t0 = time.perf_counter()
        cmp, qgraph, res = verify(bd, engine, [xh], target)
        hw[engine] = {"seconds": time.perf_counter() - t0, "mismatches": cmp.mismatches,
                      "compared": sum(cmp.compared.values()), "result": res, "graph": qgraph}
        results[f"{engine} ({target})"] = _score(res.outputs[0], yh)
        console.print(cmp.format())
    timings["hardware"] = time.perf_counter() - t

    t = stage("5/6 spiking attention: Spikformer-style model on the FPGA")
    tok_calib, tok_test = calib.reshape(-1, 8, 8), x_test.reshape(-1, 8, 8)
    sf_graph = load_model(ATTENTION_MODEL, checkpoint=str(resources.files(__package__).joinpath("digits_spikformer.pt")),
                          example_input=[tok_calib])
    sf_dir = out / "build_attention"
    build(sf_graph, ["fpga"], sf_dir, [tok_calib], calib_y, False, lambda line: console.print(line), None, ATTENTION_MODEL)
    sf = BuildDir(sf_dir)
    results["attention: float"] = _score(simulate(sf.float_graph(), tok_test, "float").output, y_test)
    results["attention: int (fpga)"] = _score(simulate(sf.int_graph("fpga"), tok_test, "int").output, y_test)
    t0 = time.perf_counter()
    cmp, _, res = verify(sf, "rtl", [tok_test[:hw_samples]], "fpga")
    hw["attention rtl"] = {"seconds": time.perf_counter() - t0, "mismatches": cmp.mismatches,
                           "compared": sum(cmp.compared.values()), "result": res}
    results["attention: rtl (fpga)"] = _score(res.outputs[0], y_test[:hw_samples])
    console.print(cmp.format())
    timings["attention"] = time.perf_counter() - t

    t = stage("6/6 report")
    from ..backends.rtl import rtl_report

    rtl = rtl_report(hw["rtl"]["graph"], build_dir / "rtl", hw["rtl"]["result"], yosys=not args.no_synth)
    mapping = report["targets"]["loihi2"].get("mapping", {})
    rep_dir = out / "report"
    plots = [
        plot_accuracy([(k, v["accuracy"], v["samples"]) for k, v in results.items()], rep_dir / "accuracy.png",
                      "held-out accuracy per engine"),
        plot_rasters({n: fl.probes[n]["spikes"][:, 0] for n in ("lif1", "lif2")}, rep_dir / "raster_float.png",
                     f"float engine spikes, held-out sample 0 (label {y_test[0]})"),
    ]
    plots += [build_dir / p for p in report["targets"]["loihi2"].get("plots", [])]
    summary = _summary(results, hw, rtl, mapping, timings, report, hw_samples)
    (rep_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    _print_summary(console, summary)
    for p in plots:
        console.print(f"plot: {p}")
    ok = all(h["mismatches"] == 0 for h in hw.values())
    console.print(("[green]" if ok else "[red]") + f"int, Lava and RTL agree bit for bit: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


def _score(out: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    pred = np.asarray(out).reshape(len(y), -1).argmax(1)
    return {"accuracy": float(np.mean(pred == y)), "samples": int(len(y))}


def _summary(results, hw, rtl, mapping, timings, report, hw_samples) -> dict[str, Any]:
    quant = {t: next(e for e in r["passes"] if e["pass"] == "quantize") for t, r in report["targets"].items()}
    layers = [(layer["node"], layer.get("cycles", {})) for layer in rtl.get("layers", [])]
    total = rtl.get("total", {})
    bound = sum(c.get("bound_mean", 0.0) for _, c in layers)
    return {
        "accuracy": results,
        "spike_agreement_float_vs_int": {t: q["spike_agreement"] for t, q in quant.items()},
        "mismatches": {e: {"mismatches": h["mismatches"], "compared_values": h["compared"], "samples": hw_samples}
                       for e, h in hw.items()},
        "loihi2": {"cores": mapping.get("cores", {}).get("used"), "chips": mapping.get("cores", {}).get("chips"),
                   "messages_per_step": mapping.get("traffic", {}).get("messages_per_step"),
                   "hop_traffic_per_step": mapping.get("traffic", {}).get("hop_traffic_per_step"),
                   "energy_uj_per_inference": mapping.get("energy", {}).get("total_uj")},
        "fpga": {"cycles_per_step_measured": total.get("cycles_per_step"),
                 "layer_cycles_bound": bound,
                 "layers": {n: {"measured": c.get("measured_mean"), "bound": c.get("bound_mean")} for n, c in layers},
                 "resources": total.get("resources"), "memory_bits": total.get("memory_bits")},
        "seconds": {**{k: round(v, 2) for k, v in timings.items()},
                    **{f"{e}_run": round(h["seconds"], 2) for e, h in hw.items()}},
    }


def _print_summary(console: Console, s: dict[str, Any]) -> None:
    t = Table(title="npuc demo: digits models on every engine")
    for c in ("engine", "samples", "accuracy", "agreement with float"):
        t.add_column(c, justify="right" if c != "engine" else "left")
    for k, v in s["accuracy"].items():
        agree = v.get("agreement_with_float")
        t.add_row(k, str(v["samples"]), f"{100 * v['accuracy']:.2f}%", "" if agree is None else f"{100 * agree:.2f}%")
    console.print(t)
    m = Table(title="hardware")
    m.add_column("figure")
    m.add_column("value", justify="right")
    for e, v in s["mismatches"].items():
        m.add_row(f"{e} vs int mismatches", f"{v['mismatches']} of {v['compared_values']:,} values")
    lo = s["loihi2"]
    m.add_row("Loihi 2 cores (chips)", f"{lo['cores']} ({lo['chips']})")
    m.add_row("Loihi 2 messages / hop traffic per step", f"{lo['messages_per_step']:.1f} / {lo['hop_traffic_per_step']:.1f}")
    if lo["energy_uj_per_inference"] is not None:
        m.add_row("Loihi 2 energy per inference (estimate)", f"{lo['energy_uj_per_inference']:.3f} uJ")
    f = s["fpga"]
    if f["cycles_per_step_measured"] is not None:
        m.add_row("FPGA cycles per step (sum of layer bounds)", f"{f['cycles_per_step_measured']:.1f} ({f['layer_cycles_bound']:.1f})")
    if f.get("resources"):
        m.add_row("FPGA resources (Yosys)", ", ".join(f"{k} {v}" for k, v in f["resources"].items() if v))
    m.add_row("FPGA memory bits", f"{f.get('memory_bits')}")
    for k, v in s["seconds"].items():
        m.add_row(f"time: {k}", f"{v:.2f} s")
    console.print(m)
