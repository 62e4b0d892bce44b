"""The Loihi-style mapping section of ``report.json``: cores, utilisation, traffic and an
energy estimate, from the ``map-cores`` / ``place-cores`` results stored on a graph."""

from __future__ import annotations

from typing import Any

import numpy as np

from .ir import Graph
from .passes.packing import RESOURCES


def estimate_energy(graph: Graph, target: Any, steps: int | None = None) -> dict[str, Any] | None:
    """Estimated synaptic operations and energy per inference (an estimate, not a measurement).

    With per-step figures from the mapping and placement (rate-weighted) and
    ``T = steps or graph.num_steps or 1`` steps::

        synops   = T * sum over synapses of the source's rate
        messages = T * rate-weighted (source neuron, destination core) pairs
        updates  = T * neurons                     (every neuron updates every step)
        hops     = T * rate-weighted message hops  (0 without a placement)
        energy   = synops * synop_pj + messages * spike_pj
                   + updates * neuron_update_pj + hops * hop_pj

    The pJ figures come from ``target.energy`` (which cites its source; for
    Loihi 2 they are Loihi 1 pre-silicon numbers). Returns None when the
    target has no energy figures.
    """
    mapping = graph.meta.get("mapping")
    fig = getattr(target, "energy", None) or {}
    keys = ("synop_pj", "spike_pj", "neuron_update_pj", "hop_pj")
    if not mapping or not all(k in fig for k in keys):
        return None
    T = int(steps or graph.num_steps or 1)
    tot = mapping["totals"]
    hops = float(graph.meta.get("placement", {}).get("hop_traffic_per_step", 0.0))
    counts = {"synops": T * tot["synops_per_step"], "messages": T * tot["messages_per_step"],
              "neuron_updates": T * tot["neurons"], "hops": T * hops}
    pj = {"synops": counts["synops"] * fig["synop_pj"], "messages": counts["messages"] * fig["spike_pj"],
          "neuron_updates": counts["neuron_updates"] * fig["neuron_update_pj"], "hops": counts["hops"] * fig["hop_pj"]}
    return {
        "steps": T,
        "counts": counts,
        "energy_uj": {k: v * 1e-6 for k, v in pj.items()},
        "total_uj": sum(pj.values()) * 1e-6,
        "figures_pj": {k: fig[k] for k in keys},
        "rates": mapping["rates"],
        "note": "estimate: per-event energies x counted events; rates "
                + ("measured" if mapping["rates"] == "measured" else "partly assumed (1 spike/step where missing)"),
        "source": (fig.get("sources") or {}).get("all", "target energy figures"),
    }


def mapping_report(graph: Graph, target: Any) -> dict[str, Any]:
    """The mapping section of ``report.json`` for a mapped (and placed) graph.

    Returns::

        {"target", "cores": {"used", "chips", "chips_target", "cores_per_chip",
                             "capacity_lower_bound", "lower_bounds": {resource: cores}},
         "limits": {resource: per-core limit},
         "utilisation": {resource: {"total", "min", "mean", "max"}}  (fractions of the limit),
         "per_core": {"id", "chip", "x", "y", "neurons", "synapse_bits", "input_axons",
                      "output_axons", "groups", "populations"}  (columns, one entry per core),
         "layers": [{"node", "shape", "neurons", "synapses", "cores", "tiling", "messages_per_step"}],
         "traffic": {"messages_per_step", "multicast_pairs", "input_messages_per_step",
                     "synops_per_step", "spikes_per_step", "hop_traffic_per_step",
                     "initial_hop_traffic_per_step", "row_major_hop_traffic_per_step",
                     "max_link_load", "host_link_load"},
         "placement": {"initial", "seed", "moves", "temperatures", "stopped_early"} | None,
         "energy": `estimate_energy` | None, "rates", "unmapped"}
    (pass times are in the report's pass log)

    Raises:
        KeyError: the graph has no ``meta["mapping"]``.
    """
    m = graph.meta["mapping"]
    p = graph.meta.get("placement")
    lim = m["limits"]
    cores = m["cores"]
    util = {}
    for r in RESOURCES:
        used = np.array([c["usage"][r] for c in cores], dtype=np.float64)
        frac = used / lim[r] if used.size else np.zeros(1)
        util[r] = {"total": int(used.sum()), "min": float(frac.min()), "mean": float(frac.mean()),
                   "max": float(frac.max())}
    per_core: dict[str, list] = {"id": [c["id"] for c in cores], "chip": [c["chip"] for c in cores]}
    pos = p["positions"] if p else [[None, None]] * len(cores)
    per_core["x"] = [q[0] for q in pos]
    per_core["y"] = [q[1] for q in pos]
    for r in RESOURCES:
        per_core[r] = [c["usage"][r] for c in cores]
    per_core["populations"] = [",".join(dict.fromkeys(s["node"] for s in c["slices"])) for c in cores]
    t = m["totals"]
    traffic = {k: t[k] for k in ("messages_per_step", "multicast_pairs", "input_messages_per_step",
                                 "synops_per_step", "spikes_per_step")}
    for k in ("hop_traffic_per_step", "initial_hop_traffic_per_step", "row_major_hop_traffic_per_step",
              "max_link_load", "host_link_load"):
        traffic[k] = p[k] if p else None
    return {
        "target": getattr(target, "name", str(target)),
        "cores": {"used": t["cores"], "chips": m["chips"], "chips_target": m["chips_target"],
                  "cores_per_chip": m["cores_per_chip"], "capacity_lower_bound": t["capacity_lower_bound"],
                  "lower_bounds": t["lower_bounds"]},
        "limits": lim,
        "utilisation": util,
        "per_core": per_core,
        "layers": m["populations"],
        "traffic": traffic,
        "placement": ({k: p[k] for k in ("initial", "seed", "moves", "temperatures", "stopped_early")}
                      if p else None),
        "energy": estimate_energy(graph, target),
        "rates": m["rates"],
        "unmapped": m["unmapped"],
    }
