"""Figures for an emitted RTL design: cycles per step against the event-driven bound, and
Yosys resource estimates per layer.

Event-driven bound of a layer in one step (what an ideal pipeline of this
architecture needs)::

    bound = sum over paths p of  E_p x F_p           (synapse phase)
          + pool: E_src x windows/event + touched     (pooling phase, when the path pools)
          + N_pooled x taps + accumulators + 4        (max of a conv's currents, `npuc_acc_max`)
          + N                                         (neuron update, one neuron per cycle)
          + depth                                     (pipeline fill per phase, `PHASE_DEPTH`)

with ``E_p`` the active events reaching the engine (nonzero inputs or pooled
values, counted by the hardware) in the list the path reads at that step -- a
delayed (recurrent) edge reads the events its source produced in the previous
step, none at a sample's first step -- and ``F_p`` its cycles per event: the taps
of the event's kernel times ``ceil(channels / lanes)`` (``ceil(outputs /
lanes)`` for dense), i.e. fan-out / lanes. The measured cycles come from the
layer's cycle counter in simulation (`npuc.backends.rtl.run`).

Attention (``attention_cycles``): every unit first gathers its inputs,
``E_q + E_k + E_v`` cycles; then coincidence attention costs ``H N M``
(order qk_v, one key pair per cycle; a nonzero score adds ``KC - 1``) or
``3 H (M + N) + KC (E_k + E_q)`` (order q_kv, walking the set bits; with
``a_int != 0`` also the zero bits and one cycle per row); stochastic
attention ``H N (M + DV + 1)``; linear attention ``H (1 + DV KC)``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from . import toolchain
from .balance import neuron_pass
from .sim import load_design

PHASE_DEPTH = {"syn": 8, "syn_idle": 3, "syn_conv": 5, "pool": 6, "neuron": 5, "control": 1, "gather": 5,
               "attention": 2}
"""Fixed cycles per phase, measured in Verilator: a dense synapse path's start, fetch/decode/address/
weight read/weight register/add fill and done (``syn``; ``syn_idle`` when its list holds no event that
step: start and done only), a conv path's (approximate: its taps per event are a mean), pooling
accumulate + emit pipelines, the neuron pass's read, `npuc_lif` registers and write-back, the layer
FSM's entry cycle, an attention unit's gather (source switches + fetch/decode/read/write fill) and
compute pipeline drain. For layers of dense paths the bound equals the measured cycles of every step
(but a design's first step after reset, which also clears the accumulators)."""

ARRAY_WALK = {"drain": 6, "neuron": 7}
"""Cycles of a neuron array layer's walk (`hdl/layer_array.v.j2`, measured in Verilator): a slot's
walk starts (its kick) the cycle after the previous slot's last issue (an empty slot's, the cycle
after its kick); the snap is decided 6 cycles after the last issue when the next step's early walk
follows right behind (list read, event word, row address, ROM read, row register, products, add;
7 when the walker waits for the pipeline to drain), and the neuron pass ends 7 cycles after its
last group (the registered snap, state read, `npuc_lif` registers, write-back)."""

_CELL_KINDS = {
    "LUT": re.compile(r"^(LUT\d|SB_LUT4)$"),
    "FF": re.compile(r"^(FD[RSCP]E?|SB_DFF\w*|TRELLIS_FF|\$_S?DFFE?_\w+|\$_DFF\w*)$"),
    "BRAM": re.compile(r"^(RAMB\d+E\d|SB_RAM40_4K\w*|SB_SPRAM256KA|DP16KD)$"),
    "LUTRAM": re.compile(r"^(RAM\d+[XSMD]\w*|TRELLIS_DPR16X4)$"),
    "DSP": re.compile(r"^(DSP48E\d|SB_MAC16|MULT18X18D|ALU54B)$"),
    "CARRY": re.compile(r"^(CARRY4|CARRY8|SB_CARRY|CCU2C|MUXF\d|PFUMX|L6MUX21)$"),
}
"""Resource kind -> the Yosys cell names (Xilinx, iCE40, ECP5 and generic) counted as one; the
first match wins, anything else but ``$scopeinfo`` is ``other``."""


def _classify(cells: dict[str, int]) -> dict[str, int]:
    s = dict.fromkeys([*_CELL_KINDS, "other"], 0)
    for name, n in cells.items():
        kind = next((k for k, rx in _CELL_KINDS.items() if rx.match(name)), None)
        if kind is not None:
            s[kind] += n
        elif name != "$scopeinfo":
            s["other"] += n
    return s


def hierarchical_cells(modules: dict[str, Any], name: str) -> dict[str, int]:
    """Primitive cell counts of a module including its submodules (Yosys ``stat -json`` without flattening;
    module keys may carry a leading backslash that cell types omit)."""
    mods = {k.lstrip("\\"): v for k, v in modules.items()}
    out: dict[str, int] = {}
    for cell, n in mods[name.lstrip("\\")]["num_cells_by_type"].items():
        if cell.lstrip("\\") in mods:
            for c, m in hierarchical_cells(modules, cell).items():
                out[c] = out.get(c, 0) + n * m
        else:
            out[cell] = out.get(cell, 0) + n
    return out


def resources(artifact_dir: str | Path, target: str = "ice40") -> dict[str, Any]:
    """Yosys resource estimate of every layer module and of the whole design (cached by source hash)."""
    art = Path(artifact_dir)
    meta = load_design(art)
    stats = toolchain.yosys_stats(toolchain.design_sources(art), meta["top"], target)
    mods = stats["modules"]
    out: dict[str, Any] = {"target": target, "seconds": stats.get("seconds"), "layers": {}}
    for lay in meta["layers"]:
        key = "\\" + lay["module"]
        if key in mods:
            out["layers"][lay["node"]] = _classify(hierarchical_cells(mods, key))
    out["total"] = _classify(hierarchical_cells(mods, "\\" + meta["top"]))
    return out


def attention_cycles(kind: str, dims: dict[str, int], events: list[np.ndarray], kc: int = 1, order: str = "qk_v",
                     a_int: int = 0) -> np.ndarray:
    """Bound of an attention unit's cycles per step (gather + compute), from its inputs' events
    ``[E_q, E_k, E_v]`` (``[T, B]`` arrays); see the module docstring."""
    eq, ek, ev = (np.asarray(e, dtype=np.float64) for e in events)
    h = dims["H"]
    gather = eq + ek + ev + PHASE_DEPTH["gather"]
    if kind == "linear":
        return gather + h * (1 + dims["DV"] * kc) + PHASE_DEPTH["attention"]
    n, m, dk, dv = dims["N"], dims["M"], dims["DK"], dims["DV"]
    if kind == "sc":
        return gather + h * n * (m + dv + 1) + PHASE_DEPTH["attention"]
    if order == "qk_v":
        return gather + h * n * m + PHASE_DEPTH["attention"]
    comp = 3 * h * (m + n) + kc * (ek + eq)
    if a_int:
        comp = comp + h * (m + n) + kc * (h * m * dk - ek + h * n * dk - eq)
    return gather + comp + PHASE_DEPTH["attention"]


def read_events(rtl: dict[str, Any], pop: str, delay: int = 0) -> np.ndarray:
    """Events ``[T, B]`` a reader finds in ``pop``'s list at each step: through a delayed edge the
    previous step's (none at a sample's first step), else the step's own."""
    ev = np.asarray(rtl["events"][pop], dtype=np.float64)
    if not delay:
        return ev
    out = np.zeros_like(ev)
    out[delay:] = ev[:-delay]
    return out


def _events(rtl: dict[str, Any], pops: list[str], delays: list[int] | None = None) -> list[np.ndarray]:
    return [read_events(rtl, p, d) for p, d in zip(pops, delays or [0] * len(pops))]


def neuron_cycles(lay: dict[str, Any], rtl: dict[str, Any]) -> np.ndarray | int:
    """The neuron pass beyond its fill: one neuron per cycle, or with neuron lanes one group of
    ``nl`` per cycle while its spikes leave at one event per cycle (whichever is longer)."""
    nl = int(lay.get("neuron_lanes", 1))
    spikes = read_events(rtl, lay["node"]) if nl > 1 and lay["ev"] is not None else 0  # no list: no queue
    return neuron_pass(int(lay["n"]), nl, spikes)


def array_bound(lay: dict[str, Any], rtl: dict[str, Any]) -> dict[str, np.ndarray]:
    """A neuron array layer's cycles from its start to its done when its early paths' events
    (`Path.early`: walked behind their producer, during the previous neuron pass) are all in
    before it starts: the other paths' walk, one slot after another through the one pipeline
    (``ARRAY_WALK``), its drain, the snapshot and the neuron pass. The early walk's tail, when the
    layer starts right behind its producer, comes on top (so this is a lower bound there)."""
    late = [read_events(rtl, p["source"], p["delay"]) for p in lay["paths"] if not p.get("early")]
    shape = np.shape(read_events(rtl, lay["paths"][0]["source"]))
    kick = np.ones(shape)                      # the cycle a slot's walk starts (start: cycle 0)
    last = np.full(shape, -np.inf)             # the cycle of the last event issued
    for ev in late:
        last = np.where(ev > 0, kick + ev, last)
        kick = kick + np.maximum(ev, 1) + 1    # the next slot's kick, or the drain state
    snap = np.maximum(kick, last + ARRAY_WALK["drain"]) if late else np.ones(shape)
    syn = sum(late) if late else np.zeros(shape)
    total = snap + neuron_cycles(lay, rtl) + ARRAY_WALK["neuron"]
    return {"synapse": syn, "pool": np.zeros(shape), "bound": total, "depth": np.float64(np.mean(total - syn) -
                                                                                       np.mean(neuron_cycles(lay, rtl)))}


def layer_bound(lay: dict[str, Any], rtl: dict[str, Any], pool_cols: list[int]) -> dict[str, np.ndarray]:
    if lay.get("array"):
        return array_bound(lay, rtl)
    if "unit" in lay:
        u = lay["unit"]
        kc = -(-u["dims"]["DK"] // u["lanes"]) if u["kind"] == "linear" else 1
        ev = _events(rtl, u["sources"], u.get("delays"))
        b = attention_cycles(u["kind"], u["dims"], ev, kc) + PHASE_DEPTH["control"]
        return {"synapse": b, "pool": np.zeros_like(b), "bound": b, "depth": np.float64(PHASE_DEPTH["control"])}
    syn = 0
    pool = 0
    fill = 0
    depth = PHASE_DEPTH["control"] + PHASE_DEPTH["neuron"]
    for p in lay["paths"]:
        if "attention" in p:
            a = p["attention"]
            ev = _events(rtl, a["sources"], a.get("delays"))
            syn = syn + attention_cycles("coincidence", a["dims"], ev, a["kc"], a["order"], a["a_int"])
            continue
        ev = read_events(rtl, p["source"], p["delay"])  # [T, B]
        if p["kind"] == "conv":  # the mean taps per event make this path's figure approximate anyway
            fill = fill + PHASE_DEPTH["syn_conv"] + 0 * ev
        else:
            fill = fill + np.where(ev > 0, PHASE_DEPTH["syn"], PHASE_DEPTH["syn_idle"])
        if p["pool"] is not None:
            col = pool_cols.pop(0)
            pooled = np.asarray(rtl["pooled"][:, :, col], dtype=np.float64)
            # accumulate: every window of every event; emit: every touched window (= nonzero
            # pooled values for spikes >= 0)
            pool = pool + ev * p["pool"]["windows_per_event"] + pooled
            depth += PHASE_DEPTH["pool"]
            ev = pooled
        syn = syn + ev * p["fanout_cycles"]
        if p.get("max_pool"):  # npuc_acc_max: every tap of every pooled neuron, then the clear
            pool = pool + p["max_pool"]["cycles"] + 0 * ev
            depth += PHASE_DEPTH["control"]
    syn_arr = np.asarray(syn, dtype=np.float64)
    pool_arr = np.asarray(pool, dtype=np.float64)
    total = syn_arr + pool_arr + neuron_cycles(lay, rtl) + depth + fill
    return {"synapse": syn_arr, "pool": pool_arr, "bound": total, "depth": np.float64(depth) + np.mean(fill)}


def rtl_report(graph: Any, artifact_dir: str | Path, run_result: Any = None, yosys: bool = True,
               target: str = "ice40") -> dict[str, Any]:
    """Per-layer cycles (measured vs event-driven bound) and resources of an emitted design.

    Args:
        graph: the quantized graph the design was emitted from (for node descriptions; may be None).
        artifact_dir: the emitted ``rtl/`` folder.
        run_result: a `SimResult` from `npuc.backends.rtl.run` on this design; without it
            the cycle figures are omitted.
        yosys: run (or reuse the cached) Yosys synthesis for LUT/FF/BRAM estimates.
        target: Yosys flow, ``"ice40"`` (``synth_ice40``), ``"ecp5"``, ``"xilinx"`` (xc7) or ``"generic"``.

    Returns:
        ``{"design", "lanes", "layers": [...], "total": {...}}``; each layer has
        ``neurons``, ``paths``, ``memory_bits``, and when available ``cycles``
        (``measured_mean``, ``measured_max``, ``bound_mean``, ``synapse_mean``,
        ``neuron``, ``efficiency`` = bound / measured) and ``resources``.
    """
    art = Path(artifact_dir)
    meta = load_design(art)
    res = resources(art, target) if yosys else None
    rtl = run_result.stats.get("rtl") if run_result is not None else None
    pool_cols = list(range(sum(1 for lay in meta["layers"] for p in lay["paths"] if p["pool"] is not None)))
    layers = []
    for lay in meta["layers"]:
        mem = dict(lay["memory_bits"])
        for p in lay["paths"]:
            for k, v in p["memory_bits"].items():
                mem[k] = mem.get(k, 0) + v
        if lay.get("array"):  # a neuron array: one ROM of rows, accumulators in registers
            mem["weights"] = mem.get("weights", 0) + lay["array"]["rom_bits"]
        entry: dict[str, Any] = {
            "node": lay["node"], "module": lay["module"], "kind": lay.get("kind", "lif"), "neurons": lay["n"],
            "spike": lay["spike"],
            "paths": [{"source": p["source"], "nodes": p["nodes"], "kind": p["kind"], "delay": p["delay"],
                       "pool": p["pool"]["nodes"][0] if p["pool"] else None,
                       "cycles_per_event": p["fanout_cycles"], "synapses_per_event": p["fanout_synapses"]}
                      for p in lay["paths"]],
            "memory_bits": {**mem, "total": int(sum(mem.values()))},
        }
        if lay.get("array"):
            entry["array"] = lay["array"]
        if graph is not None and lay["node"] in graph:
            entry["op"] = type(graph[lay["node"]].op).__name__
        if rtl is not None:
            measured = np.asarray(rtl["layer_cycles"][lay["node"]], dtype=np.float64)
            b = layer_bound(lay, rtl, pool_cols)
            entry["cycles"] = {
                "measured_mean": float(measured.mean()), "measured_max": float(measured.max()),
                "bound_mean": float(b["bound"].mean()), "synapse_mean": float(b["synapse"].mean()),
                "pool_mean": float(b["pool"].mean()), "neuron": lay["n"], "depth": float(b["depth"]),
                "efficiency": float(b["bound"].sum() / measured.sum()) if measured.sum() else None,
            }
        if res is not None:
            entry["resources"] = res["layers"].get(lay["node"])
        layers.append(entry)
    total: dict[str, Any] = {
        "neurons": sum(lay["n"] for lay in meta["layers"]),
        "memory_bits": int(sum(lay["memory_bits"]["total"] for lay in layers)
                           + sum(ev["bits"] for ev in meta["evlists"] if ev["pop"] not in
                                 {lay["node"] for lay in meta["layers"]})),
    }
    if rtl is not None:
        total.update(_throughput(meta, layers, rtl))
        total["cycles_per_step"] = rtl["cycles_per_step"]
        total["cycles_per_second"] = rtl.get("cycles_per_second")
        clock = 100e6
        total["steps_per_second_at_100MHz"] = clock / rtl["cycles_per_step"] if rtl["cycles_per_step"] else None
    if res is not None:
        total["resources"] = res["total"]
        total["yosys"] = {"target": res["target"], "seconds": res["seconds"]}
    return {"design": meta["top"], "graph": meta["graph"], "lanes": meta["lanes"], "layers": layers, "total": total,
            "pipeline": meta.get("pipeline"), "pipeline_note": meta.get("pipeline_note", "")}


def _throughput(meta: dict[str, Any], layers: list[dict[str, Any]], rtl: dict[str, Any]) -> dict[str, Any]:
    """Cycles per step against the slowest stage's event-driven bound, and latency per sample.

    The slowest stage is the layer with the largest mean bound, or the input stream (one cycle per
    input word; ``input=events``: per event, plus the count word) or the output stream (one cycle
    per output word of the run: the readouts, every layer's with PROBE=1) when that is larger; a
    pipelined design can at best reach it, a sequential one needs the sum of all stages.
    """
    bounds = {lay["node"]: lay["cycles"]["bound_mean"] for lay in layers if "cycles" in lay}
    words_in = sum(int(u["n"]) for u in meta["inputs"])
    if meta.get("input_events"):  # a count word and one word per event
        words_in = float(np.mean(sum(np.asarray(rtl["events"][u["node"]], dtype=np.float64)
                                     for u in meta["inputs"]))) + 2
    words_out = sum(int(r["n"]) for r in meta["readouts"] if rtl.get("probe") or not r["probe"])
    slowest = max(bounds, key=bounds.get) if bounds else None
    stages = {"input stream": float(words_in), "output stream": float(words_out)}
    if slowest:
        stages[slowest] = float(bounds[slowest])
    stage = max(stages, key=stages.get)
    bound = stages[stage]
    cps = float(rtl["cycles_per_step"])
    out = {"pipelined": meta.get("pipeline") is not None, "slowest_layer": slowest,
           "slowest_layer_bound": float(bounds[slowest]) if slowest else None, "input_words": words_in,
           "output_words": words_out,
           "slowest_stage": stage, "slowest_stage_bound": bound,
           "cycles_per_step_over_bound": cps / bound if bound else None}
    if "latency_cycles_mean" in rtl:
        out["latency_cycles_per_sample"] = float(rtl["latency_cycles_mean"])
    return out
