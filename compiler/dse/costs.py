"""Hardware cost of one compiled point, read from its build directory.

FPGA: neurons and memory bits (design.json), LUT/FF/BRAM from Yosys (optional, cached
per design hash), Fmax from nextpnr (``synth="ecp5"``) or when the build's report carries it
(``report.json`` ``targets.<fpga>.synth``), and latency: an event-driven cycle bound per
time step (`npuc.backends.rtl.report`'s model, fed with the integer engine's measured
events) times the steps, at Fmax or else the target's nominal ``clock_mhz``.

Loihi 2: cores, chips, messages and synaptic operations per inference, and the energy
estimate of `npuc.report_mapping` (already in ``report.json``).

Objectives are minimized; ``COST_OBJECTIVES`` lists, per target kind, which columns the
Pareto front uses, in order of preference (the first present one of each group).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

COST_OBJECTIVES = {
    "fpga": (("LUT", "memory_bits"), ("latency_us",)),
    "loihi2": (("cores",), ("energy_uj",)),
}
"""Per kind: groups of alternative columns; each group contributes its first available column."""


def objectives(kind: str, rows: list[dict[str, Any]]) -> list[str]:
    """The cost columns the front uses for these rows (e.g. LUT when Yosys ran, else memory bits)."""
    out = []
    for group in COST_OBJECTIVES.get(kind, ()):
        col = next((c for c in group if any(r.get(c) is not None for r in rows)), None)
        if col:
            out.append(col)
    return out


def fpga_costs(build: Path, target: str, events: dict[str, np.ndarray], steps: int, synth: str | None,
               known: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Cost columns of an FPGA build and new Yosys results ``{design hash: totals}``.

    ``events[pop]``: nonzero outputs of each population per step and sample ``[T, B]``
    (integer engine); ``synth``: Yosys flow (``ice40``, ``xilinx``, ``generic``), ``ecp5``
    (Yosys + nextpnr: Fmax too), or None;
    ``known``: Yosys totals already measured, by design hash (skips synthesis).
    """
    from ..backends.rtl import toolchain
    from ..backends.rtl.sim import load_design

    art = build / "rtl"
    meta = load_design(art)
    report = json.loads((build / "report.json").read_text())["targets"][target]
    sources = toolchain.design_sources(art)
    design = toolchain.sources_hash([*sources, *toolchain.memory_images(art)])
    row: dict[str, Any] = {"design_hash": design,
                           "neurons": sum(lay["n"] for lay in meta["layers"]),
                           "memory_bits": _memory_bits(meta)}
    new: dict[str, Any] = {}
    measured: dict[str, Any] = {}
    if synth:
        key = f"{design}:{synth}"
        if key not in known:
            new[key] = _synthesize(art, synth)
        measured = known.get(key) or new[key]
        row.update({k: measured.get(k) for k in ("LUT", "FF", "BRAM", "DSP")})
    pnr = report.get("synth") or {}  # place-and-route figures when the build carries them
    for k in ("LUT", "FF", "BRAM", "DSP"):
        if row.get(k) is None and isinstance(pnr.get(k), (int, float)):
            row[k] = pnr[k]
    fmax = measured.get("fmax_mhz") or next(
        (pnr[k] for k in ("fmax_mhz", "fmax") if isinstance(pnr.get(k), (int, float))), None)
    clock = fmax or _clock_mhz(target, build)
    cycles = cycles_per_step(meta, events)
    row.update({"fmax_mhz": fmax, "clock_mhz": clock, "cycles_per_step": cycles,
                "latency_us": None if cycles is None else round(cycles * steps / clock, 4)})
    return row, new


def _synthesize(art: Path, synth: str) -> dict[str, Any]:
    """Resource totals of one design: Yosys (``ice40``, ``xilinx``, ``generic``), or Yosys and
    nextpnr place and route on an ecp5 LFE5U-85F (``ecp5``: also ``fmax_mhz``)."""
    if synth == "ecp5":
        from ..backends.rtl import pnr

        fig = pnr.measure(art, "ecp5")
        return {"LUT": fig.get("lut"), "FF": fig.get("ff"), "BRAM": fig.get("bram"), "DSP": fig.get("dsp"),
                "fmax_mhz": fig.get("fmax_mhz") if fig.get("fits", True) else None}
    from ..backends.rtl.report import resources

    return resources(art, synth)["total"]


def _clock_mhz(target: str, build: Path) -> float:
    from ..targets import load_target

    manifest = json.loads((build / "manifest.json").read_text())
    return float(load_target(manifest["specs"][target]).options.get("clock_mhz", 100))


def _memory_bits(meta: dict[str, Any]) -> int:
    layers = {lay["node"] for lay in meta["layers"]}
    total = sum(lay["memory_bits"][k] for lay in meta["layers"] for k in lay["memory_bits"])
    total += sum(v for lay in meta["layers"] for p in lay["paths"] for v in p["memory_bits"].values())
    return int(total + sum(ev["bits"] for ev in meta["evlists"] if ev["pop"] not in layers))


def cycles_per_step(meta: dict[str, Any], events: dict[str, np.ndarray]) -> float | None:
    """Mean event-driven cycle bound of one time step (layers run one after another), or None
    when a layer pools (the bound needs the pooled values, which only the RTL run counts)."""
    from ..backends.rtl.report import layer_bound  # the bound model `npuc report` compares against

    if any(p.get("pool") is not None for lay in meta["layers"] for p in lay.get("paths", [])):
        return None
    try:
        total = sum(layer_bound(lay, {"events": events}, [])["bound"] for lay in meta["layers"])
    except KeyError:  # a source population the integer engine did not probe
        return None
    return round(float(np.mean(total)), 2)


def loihi2_costs(build: Path, target: str) -> dict[str, Any]:
    """Cores, chips, messages, synaptic operations and energy per inference of a Loihi 2 build."""
    report = json.loads((build / "report.json").read_text())["targets"][target]
    m = report.get("mapping") or {}
    energy = m.get("energy") or {}
    counts = energy.get("counts") or {}
    traffic = m.get("traffic") or {}
    return {"cores": (m.get("cores") or {}).get("used"), "chips": (m.get("cores") or {}).get("chips"),
            "messages_per_step": traffic.get("messages_per_step"),
            "messages": counts.get("messages"), "synops": counts.get("synops"),
            "energy_uj": None if not energy else round(energy["total_uj"], 6)}
