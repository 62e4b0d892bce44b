"""Rich tables for ``npuc report DIR``: what a build contains and what it costs.

`print_report` takes the parsed ``report.json``::

    {"npuc", "model", "graph", "targets": {name: {"spec", "passes": [...], "warnings": [...],
                                                  "compile_seconds", "artifacts", "mapping": {...}, ...}}}

and prints, per target, the pass log, the warnings, and (for many-core
targets) the mapping section built by `npuc.report_mapping.mapping_report`:
cores vs the capacity lower bound, per-resource utilisation, per-layer
tiling and messages, per-core use, traffic and the energy estimate. Keys it
does not know are printed as plain key/value rows, so new report sections show
up without changes here.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

MAX_CORE_ROWS = 24  # larger maps print the busiest cores only

_RESOURCE_LABELS = {
    "neurons": "neurons",
    "synapse_bits": "synapse memory (bits)",
    "input_axons": "input axons",
    "output_axons": "output axons",
    "groups": "neuron groups",
}


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 1e5 or abs(v) < 1e-3:
            return f"{v:.3e}"
        return f"{v:,.3f}".rstrip("0").rstrip(".")
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, (list, tuple)):
        return "x".join(str(x) for x in v) if all(isinstance(x, int) for x in v) else ", ".join(map(str, v))
    return str(v)


def _pct(f: float) -> str:
    return f"{100 * f:.1f}%"


def _kv_table(title: str, items: dict[str, Any]) -> Table:
    t = Table(title=title, show_header=False, title_justify="left")
    t.add_column("key", style="bold")
    t.add_column("value", justify="right")
    for k, v in items.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a}={_fmt(b)}" for a, b in v.items())
        t.add_row(str(k), _fmt(v))
    return t


def _passes_table(passes: list[dict[str, Any]]) -> Table:
    t = Table(title="passes", title_justify="left")
    t.add_column("pass", style="bold")
    t.add_column("seconds", justify="right")
    t.add_column("nodes", justify="right")
    t.add_column("summary")
    for e in passes:
        nodes = e.get("nodes")
        extra = ", ".join(f"{k}={_fmt(v)}" for k, v in e.items()
                          if k not in ("pass", "seconds", "nodes") and not isinstance(v, (dict, list)))
        t.add_row(str(e.get("pass", "?")), _fmt(e.get("seconds")),
                  f"{nodes[0]} -> {nodes[1]}" if isinstance(nodes, list) and len(nodes) == 2 else _fmt(nodes), extra)
    return t


def print_mapping(m: dict[str, Any], console: Console) -> None:
    """Print the mapping section (`npuc.report_mapping.mapping_report`)."""
    c = m["cores"]
    tr = m.get("traffic", {})
    summary = {
        "cores used": c["used"],
        "capacity lower bound (cores)": c["capacity_lower_bound"],
        "bound by": max(c["lower_bounds"], key=c["lower_bounds"].get) if c.get("lower_bounds") else None,
        "chips used / target": f"{c['chips']} / {c['chips_target']} ({c['cores_per_chip']} cores each)",
        "firing rates": m.get("rates"),
        "messages per step": tr.get("messages_per_step"),
        "  of which from the host": tr.get("input_messages_per_step"),
        "multicast pairs": tr.get("multicast_pairs"),
        "synaptic ops per step": tr.get("synops_per_step"),
        "hop traffic per step": tr.get("hop_traffic_per_step"),
        "  initial placement": tr.get("initial_hop_traffic_per_step"),
        "  row-major placement": tr.get("row_major_hop_traffic_per_step"),
        "max link load (msgs/step)": tr.get("max_link_load"),
        "host link load (msgs/step)": tr.get("host_link_load"),
    }
    if m.get("placement"):
        p = m["placement"]
        summary["placement"] = (f"{p['initial']} + annealing, seed {p['seed']}, {p['moves']:,} moves"
                                + (" (time budget hit)" if p.get("stopped_early") else ""))
    if m.get("unmapped"):
        summary["host-side readouts (not mapped)"] = m["unmapped"]
    console.print(_kv_table(f"mapping on {m.get('target', '?')}", summary))

    u = Table(title="per-core utilisation (fraction of the per-core limit)", title_justify="left")
    for col, just in (("resource", "left"), ("limit", "right"), ("total", "right"), ("min", "right"),
                      ("mean", "right"), ("max", "right")):
        u.add_column(col, justify=just)
    for r, s in m["utilisation"].items():
        u.add_row(_RESOURCE_LABELS.get(r, r), _fmt(m["limits"][r]), _fmt(s["total"]), _pct(s["min"]),
                  _pct(s["mean"]), _pct(s["max"]))
    console.print(u)

    lt = Table(title="layers", title_justify="left")
    for col in ("node", "shape", "neurons", "synapses", "cores", "tiling", "messages/step in"):
        lt.add_column(col, justify="left" if col in ("node", "tiling") else "right")
    for layer in m.get("layers", []):
        til = layer.get("tiling", {})
        desc = (f"tiles {_fmt(til['tile'])} (grid {_fmt(til['grid'])})" if til.get("tile")
                else f"{til.get('order', '?')} order")
        lt.add_row(layer["node"], _fmt(layer["shape"]), _fmt(layer["neurons"]), _fmt(layer["synapses"]),
                   _fmt(len(layer["cores"])), desc, _fmt(layer["messages_per_step"]))
    console.print(lt)

    pc = m.get("per_core", {})
    ids = pc.get("id", [])
    if ids:
        lim = m["limits"]
        resources = [r for r in _RESOURCE_LABELS if r in pc]
        peak = [max(pc[r][i] / lim[r] for r in resources) for i in range(len(ids))]
        rows = list(range(len(ids)))
        title = "cores"
        if len(rows) > MAX_CORE_ROWS:
            rows = sorted(sorted(rows, key=lambda i: -peak[i])[:MAX_CORE_ROWS])
            title = f"busiest {MAX_CORE_ROWS} of {len(ids)} cores"
        ct = Table(title=title + " (use as % of the limit)", title_justify="left")
        for col in ("core", "chip", "x,y", *(_RESOURCE_LABELS[r] for r in resources), "populations"):
            ct.add_column(col, justify="left" if col == "populations" else "right")
        for i in rows:
            xy = "-" if pc["x"][i] is None else f"{pc['x'][i]},{pc['y'][i]}"
            ct.add_row(str(ids[i]), str(pc["chip"][i]), xy,
                       *(_pct(pc[r][i] / lim[r]) for r in resources), pc.get("populations", [""] * len(ids))[i])
        console.print(ct)

    e = m.get("energy")
    if e:
        et = Table(title=f"energy estimate per inference ({e['steps']} steps; {e['note']})", title_justify="left")
        for col in ("event", "count", "pJ each", "uJ"):
            et.add_column(col, justify="left" if col == "event" else "right")
        fig = {"synops": "synop_pj", "messages": "spike_pj", "neuron_updates": "neuron_update_pj", "hops": "hop_pj"}
        for k, n in e["counts"].items():
            et.add_row(k.replace("_", " "), _fmt(float(n)), _fmt(e["figures_pj"][fig[k]]), _fmt(e["energy_uj"][k]))
        et.add_row("total", "", "", _fmt(e["total_uj"]), style="bold")
        console.print(et)
        console.print(f"[dim]energy figures: {e['source']}[/dim]")


def print_target(name: str, t: dict[str, Any], console: Console) -> None:
    """Print one target's section of ``report.json``."""
    console.rule(f"target {name}")
    scalars = {k: v for k, v in t.items() if not isinstance(v, (dict, list)) and k != "custom_processes_note"}
    if t.get("artifacts") is not None:
        scalars["artifacts"] = f"{len(t['artifacts'])} files"
    if scalars:
        console.print(_kv_table("build", scalars))
    if t.get("passes"):
        console.print(_passes_table(t["passes"]))
    for w in t.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {w}")
    if t.get("custom_processes"):
        table = Table(title="custom processes (Loihi 2)")
        for col in ("node", "process", "needs"):
            table.add_column(col)
        for c in t["custom_processes"]:
            table.add_row(c["node"], c["process"], "; ".join(c["needs"]))
        console.print(table)
        console.print(t.get("custom_processes_note", ""))
    for k, v in t.items():
        if k in ("passes", "warnings", "artifacts", "mapping", "custom_processes") or not isinstance(v, dict) or not v:
            continue
        flat = {a: b for a, b in v.items() if not isinstance(b, (dict, list))}
        nested = {a: b for a, b in v.items() if isinstance(b, dict) and all(not isinstance(x, (dict, list)) for x in b.values())}
        if flat or nested:
            console.print(_kv_table(k, {**flat, **nested}))
    if t.get("mapping"):
        print_mapping(t["mapping"], console)


def print_report(report: dict[str, Any], console: Console | None = None) -> None:
    """Print a build's ``report.json`` (or a bare mapping section) as tables."""
    console = console or Console()
    if "limits" in report and "cores" in report:
        print_mapping(report, console)
        return
    head = {k: report[k] for k in ("model", "graph", "npuc") if k in report}
    if head:
        console.print(_kv_table("build", head))
    for name, t in report.get("targets", {}).items():
        print_target(name, t, console)
    if "ann_to_snn" in report:
        print_ann_sweep(report["ann_to_snn"], console)


def print_ann_sweep(sweep: dict[str, Any], console: Console) -> None:
    """ANN accuracy vs the converted SNN's (float engine over T, integer per target at the compiled T)."""
    table = Table(title=f"ANN-to-SNN accuracy ({sweep['samples']} labelled calibration samples)")
    for col in ("network", "T", "accuracy", "vs ANN (points)"):
        table.add_column(col)
    ann = sweep["ann_accuracy"]
    table.add_row("ANN", "-", f"{ann:.4f}", "")
    for r in sweep["snn"]:
        table.add_row("SNN float", str(r["steps"]), f"{r['accuracy']:.4f}", f"{100 * (r['accuracy'] - ann):+.1f}")
    for name, acc in sorted((sweep.get("int_accuracy") or {}).items()):
        if acc is not None:
            table.add_row(f"SNN integer ({name})", str(sweep["steps"]), f"{acc:.4f}", f"{100 * (acc - ann):+.1f}")
    console.print(table)
    if sweep.get("plot"):
        console.print(f"plot: {sweep['plot']}")
