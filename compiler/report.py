"""``npuc report``: what a build contains and what it costs.

Prints ``report.json`` (passes, quantization error, core mapping, energy
estimate) as tables and redraws each mapped target's core map
(``DIR/report/core_map_<target>.png``). For an FPGA build, ``--input X.npy`` runs the RTL in
Verilator to measure cycles per time step against the event-driven bound, and
``--synth`` adds Yosys resource estimates per layer; both are stored in
``DIR/report.json`` under the fpga target's ``rtl`` entry. With ``--family ice40|ecp5|xilinx``
(and ``--device``), ``--synth`` also measures the whole design (`npuc.backends.rtl.pnr`: Yosys,
nextpnr place and route for ice40/ecp5) into the target's ``synth`` entry: resources, Fmax,
whether it fits, and the latency per sample at that Fmax.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .builddir import BuildDir
from .ir.dump import dump


def report_cli(args: argparse.Namespace) -> int:
    bd = BuildDir(args.dir)
    path = bd.path / "report.json"
    if not path.is_file():
        print(dump(bd.float_graph()))
        return 0
    report = json.loads(path.read_text())
    if getattr(args, "device", None) and not getattr(args, "synth", False):
        from .errors import UserError

        raise UserError("--device needs --synth (it picks the part for synthesis and place and route)")
    if getattr(args, "input", None) or getattr(args, "synth", False):
        report = _add_rtl(bd, report, args)
        path.write_text(json.dumps(report, indent=1) + "\n")
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    from .report_tables import print_report

    print_report(report)
    for name, t in report.get("targets", {}).items():
        if "rtl" in t:
            print_rtl(name, t["rtl"], Console())
        if "synth" in t:
            print(synth_line(name, t["synth"]))
    for png in _plots(bd):
        print(f"core map: {png}")
    return 0


def _plots(bd: BuildDir) -> list[Path]:
    """(Re)draw the core map of every target that was mapped onto cores."""
    from .plots import plot_core_map
    from .targets import load_target

    out = []
    for name in bd.targets:
        graph = bd.int_graph(name)
        if "mapping" in graph.meta:
            target = load_target(bd.manifest.get("specs", {}).get(name, name))
            out.append(plot_core_map(graph, target, bd.path / "report" / f"core_map_{name}.png"))
    return out


def _add_rtl(bd: BuildDir, report: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from .backends.rtl import rtl_report
    from .backends.rtl.pnr import DEVICES, device_for
    from .errors import UserError
    from .inputs import load_inputs

    target = bd.target_for_kind("fpga")
    if not (bd.path / "rtl").is_dir():
        raise UserError(f"{bd.path} has no rtl/ folder: compile with --target fpga")
    run = None
    if args.input:
        from .backends import run_engine

        # deployment build (PROBE=0): the verification readout of every layer's state would hold
        # a pipelined design's stages back until it has streamed out
        run = run_engine(bd, "rtl", load_inputs(args.input), target=target, probe=False,
                         allow_modified=getattr(args, "allow_modified", False))
    family = getattr(args, "family", None) or "ice40"
    device = getattr(args, "device", None)
    if args.synth and family in DEVICES:
        device_for(family, device)  # a bad --device fails before minutes of synthesis
    rep = rtl_report(bd.int_graph(target), bd.path / "rtl", run, yosys=args.synth, target=family)
    old = report["targets"][target].get("rtl", {})
    if run is None and old:  # keep figures measured by an earlier --input run
        measured = {layer["node"]: layer for layer in old.get("layers", [])}
        for layer in rep.get("layers", []):
            if "cycles" in measured.get(layer["node"], {}):
                layer["cycles"] = measured[layer["node"]]["cycles"]
        for key in ("cycles_per_step", "cycles_per_second", "steps_per_second_at_100MHz", "pipelined", "slowest_layer",
                    "slowest_layer_bound", "input_words", "output_words", "slowest_stage", "slowest_stage_bound",
                    "cycles_per_step_over_bound", "latency_cycles_per_sample"):
            if key in old.get("total", {}):
                rep["total"][key] = old["total"][key]
    if not args.synth and old.get("total", {}).get("resources"):  # keep earlier Yosys figures
        rep["total"]["resources"] = old["total"]["resources"]
        for layer, prev in zip(rep.get("layers", []), old.get("layers", [])):
            if "resources" in prev:
                layer["resources"] = prev["resources"]
    report["targets"][target]["rtl"] = rep
    cps = rep["total"].get("cycles_per_step")  # the --input run is the deployment build (PROBE=0)
    if args.synth and family in DEVICES:
        report["targets"][target]["synth"] = synth_entry(bd.path / "rtl", family, device, cps)
    elif run is not None and "synth" in report["targets"][target]:  # new cycles, same Fmax
        s = report["targets"][target]["synth"]
        s["cycles_per_step"] = cps
        s["latency_us"] = round(cps * s["steps"] / s["fmax_mhz"], 3) if cps and s.get("fmax_mhz") else None
    return report


def synth_entry(art: Path, family: str, device: str | None, cycles_per_step: float | None) -> dict[str, Any]:
    """``targets.<fpga>.synth``: measured resources, Fmax (ice40/ecp5 place and route) and latency.

    ``cycles_per_step`` is the deployment build's (PROBE=0); ``latency_us`` the time of one
    sample (``cycles_per_step`` x T) at the measured Fmax; both need figures that exist
    (``--input`` for the cycles, P&R for Fmax), else None.
    """
    import sys

    from .backends.rtl.pnr import measure

    res = measure(art, family, device, progress=lambda s: print(f"[synth] {s}", file=sys.stderr, flush=True))
    steps = json.loads((art / "design.json").read_text()).get("steps") or 1
    out = {k: res.get(k) for k in ("family", "device", "lut", "ff", "bram", "dsp", "fmax_mhz", "fits")}
    out["cycles_per_step"] = cycles_per_step
    fmax = res.get("fmax_mhz")
    out["latency_us"] = round(cycles_per_step * steps / fmax, 3) if cycles_per_step and fmax else None
    out["steps"] = steps
    for k in ("reason", "utilisation", "seconds"):
        if k in res:
            out[k] = res[k]
    return out


def print_rtl(target: str, rep: dict[str, Any], console: Console) -> None:
    """Per-layer RTL cycles (measured vs event-driven bound) and resources."""
    yosys = rep.get("total", {}).get("yosys") or {}
    family = f"; resources from Yosys synth for {yosys['target']}" if yosys.get("target") else ""
    t = Table(title=f"RTL on {target}: {rep.get('design', '')}, {rep.get('lanes', '?')} lane(s){family}")
    for c in ("layer", "neurons", "memory bits", "cycles/step", "bound", "bound/measured", "LUT", "FF", "BRAM"):
        t.add_column(c, justify="left" if c == "layer" else "right")
    for layer in rep.get("layers", []):
        cyc = layer.get("cycles") or {}
        res = layer.get("resources") or {}
        mem = layer.get("memory_bits")
        t.add_row(
            layer["node"], str(layer.get("neurons", "")),
            str(mem.get("total") if isinstance(mem, dict) else mem or ""),
            f"{cyc['measured_mean']:.1f}" if cyc else "", f"{cyc['bound_mean']:.1f}" if cyc else "",
            f"{cyc['efficiency']:.3f}" if cyc.get("efficiency") else "",
            str(res.get("LUT", "")), str(res.get("FF", "")), str(res.get("BRAM", "")),
        )
    total = rep.get("total", {})
    res = total.get("resources") or {}
    t.add_row("total", str(total.get("neurons", "")), str(total.get("memory_bits", "")),
              f"{total['cycles_per_step']:.1f}" if total.get("cycles_per_step") else "", "", "",
              str(res.get("LUT", "")), str(res.get("FF", "")), str(res.get("BRAM", "")))
    console.print(t)


def synth_line(target: str, s: dict[str, Any]) -> str:
    """One line: family, device, resources, Fmax, fit and latency of ``targets.<fpga>.synth``."""
    fmax = f"Fmax {s['fmax_mhz']:.1f} MHz" if s.get("fmax_mhz") else "Fmax n/a (no place and route)"
    fit = "fits" if s.get("fits") else f"DOES NOT FIT ({s.get('reason', '')})"
    lat = f", {s['latency_us']:.1f} us per sample ({s['cycles_per_step']:.0f} cycles/step x {s.get('steps')})" \
        if s.get("latency_us") else ""
    return (f"{target}: family {s['family']}, device {s['device']}: {s['lut']} LUT, {s['ff']} FF, {s['bram']} BRAM, "
            f"{s['dsp']} DSP, {fmax}, {fit}{lat}")
