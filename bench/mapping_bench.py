"""Mapping benchmark: naive layer packing vs tiled packing + annealing on conv SNNs.

Run ``python -m bench.mapping_bench`` (``--quick`` for a smoke run of a few
seconds). Two networks are built directly as IR graphs with random weights:

* ``conv60k``: input 2x64x64 (rate coded) -> conv 2->8 -> LIF -> conv 8->16 /2
  -> LIF -> 2x2 sum pool -> conv 16->32 -> LIF -> conv 32->32 /2 -> LIF ->
  dense 256 -> LIF -> dense 10 -> LIF: 59,658 neurons, 7.6M synapses.
  Firing rates per neuron come from a short float simulation (8 steps, 2
  samples) with thresholds set per layer so that about 10% of neurons fire
  per step on average; they are stored in ``node.meta["rate"]``.
* ``conv11M``: input 3x64x64 -> conv 3->16 -> conv 16->32 /2 -> conv 32->32 /2
  -> conv 32->64 /2 -> dense 256 -> dense 10 (LIF after each): 110k neurons,
  11.3M synapses; only mapping + placement time is measured (rates 0.1).

Rows: ``naive`` = flatten-order (CHW) layer packing + row-major placement;
``tiled`` = spatial tiles x all channels, greedy packing; ``+ anneal`` = VPR
annealing placement. Targets: Loihi 2 limits from ``compiler/targets/loihi2.json``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from npuc.ir import LIF, Conv2d, Dense, Encoding, Graph, Input, Output, Reshape, SumPool2d
from npuc.passes.mapping import map_cores
from npuc.passes.placement import place_cores
from npuc.targets import load_target


def conv_snn(name: str, inp: tuple[int, int, int], layers: list[tuple], dense: list[int], seed: int = 0) -> Graph:
    """A feed-forward conv SNN. ``layers``: ("conv", out, stride) or ("pool", k)."""
    rng = np.random.default_rng(seed)
    g = Graph(name, num_steps=8)
    prev = g.add("x", Input(inp, Encoding("rate")))
    c = inp[0]
    i = 0
    for spec in layers:
        if spec[0] == "pool":
            prev = g.add(f"pool{i}", SumPool2d(spec[1]), [prev])
            continue
        _, co, stride = spec
        i += 1
        w = rng.normal(0, np.sqrt(2 / (c * 9)), (co, c, 3, 3)).astype(np.float32)
        prev = g.add(f"conv{i}", Conv2d(w, stride=stride, padding=1), [prev])
        prev = g.add(f"lif{i}", LIF(alpha=0.9), [prev])
        c = co
    prev = g.add("flat", Reshape((-1,)), [prev])
    n = g[prev].shape[0]
    for j, m in enumerate(dense):
        w = rng.normal(0, np.sqrt(2 / n), (m, n)).astype(np.float32)
        prev = g.add(f"fc{j}", Dense(w), [prev])
        prev = g.add(f"flif{j}", LIF(alpha=0.9), [prev])
        n = m
    g.add("out", Output("sum", "B"), [prev])
    return g.verify()


NETS = {
    "conv60k": ((2, 64, 64), [("conv", 8, 1), ("conv", 16, 2), ("pool", 2), ("conv", 32, 1), ("conv", 32, 2)], [256, 10]),
    "conv11M": ((3, 64, 64), [("conv", 16, 1), ("conv", 32, 2), ("conv", 32, 2), ("conv", 64, 2)], [256, 10]),
    "quick": ((2, 32, 32), [("conv", 8, 1), ("conv", 16, 2), ("pool", 2), ("conv", 32, 1)], [64, 10]),
}


def simulated_rates(g: Graph, samples: int = 2, target: float = 0.1, seed: int = 0) -> None:
    """Set ``meta["rate"]`` per neuron from a float simulation of ``g`` on random inputs.

    Layer by layer (in topological order), the LIF threshold is set to the
    ``1 - target`` quantile of the layer's input drive, so that roughly
    ``target`` of the neurons are driven above threshold; then the layer's
    spikes over the run give each neuron's rate.
    """
    import torch

    from npuc.sim import simulate

    rng = np.random.default_rng(seed)
    x = rng.random((samples, *g.inputs()[0].shape)).astype(np.float32)
    g["x"].meta["rate"] = np.clip(x, 0, 1).mean(axis=0)  # rate coding: x spikes per step on average
    with torch.no_grad():
        for name in g.topo_order():
            node = g[name]
            if not isinstance(node.op, LIF):
                continue
            drive = simulate(g, x, probe=[node.inputs[0].node]).probes[node.inputs[0].node]
            d = np.asarray(next(iter(drive.values())), np.float32)
            th = float(np.quantile(d, 1 - target)) if np.any(d > 0) else 1.0
            g.replace_op(name, node.op.replace(threshold=np.float32(max(th, 1e-3))))
            spikes = simulate(g, x, probe=[name]).probes[name]["spikes"]
            g[name].meta["rate"] = np.asarray(spikes, np.float32).mean(axis=(0, 1))


def run_case(g: Graph, target, order: str, anneal: bool, initial: str = "row-major", seed: int = 0) -> dict:
    h = g.copy()
    t0 = time.perf_counter()
    m = map_cores(h, target, order=order)
    t1 = time.perf_counter()
    p = place_cores(h, seed=seed, initial=initial, moves=None if anneal else 0, time_budget=300)
    t2 = time.perf_counter()
    return {"cores": m["totals"]["cores"], "bound": m["totals"]["capacity_lower_bound"], "chips": m["chips"],
            "messages": m["totals"]["messages_per_step"], "hops": p["hop_traffic_per_step"],
            "row_major_hops": p["row_major_hop_traffic_per_step"], "max_link": p["max_link_load"],
            "map_s": t1 - t0, "place_s": t2 - t1, "moves": p["moves"], "synapses": m["totals"]["synapses"],
            "neurons": m["totals"]["neurons"]}


def _table(rows: list[tuple[str, str, dict]], naive: dict[str, dict]) -> str:
    head = (f"{'net':<9} {'method':<28} {'cores':>6} {'bound':>6} {'chips':>5} {'msgs/step':>11} {'x naive':>8} "
            f"{'hops/step':>11} {'x rowmaj':>8} {'maxlink':>9} {'map s':>7} {'place s':>8}")
    lines = [head, "-" * len(head)]
    for net, method, r in rows:
        base = naive.get(net)
        lines.append(
            f"{net:<9} {method:<28} {r['cores']:>6} {r['bound']:>6} {r['chips']:>5} {r['messages']:>11.1f} "
            f"{(r['messages'] / base['messages'] if base else float('nan')):>8.3f} {r['hops']:>11.1f} "
            f"{r['hops'] / r['row_major_hops'] if r['row_major_hops'] else float('nan'):>8.3f} "
            f"{r['max_link']:>9.1f} {r['map_s']:>7.2f} {r['place_s']:>8.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small net only (CI smoke run, a few seconds)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    target = load_target("loihi2")
    rows: list[tuple[str, str, dict]] = []
    naive: dict[str, dict] = {}
    nets = ["quick"] if args.quick else ["conv60k"]
    for net in nets:
        inp, layers, dense = NETS[net]
        g = conv_snn(net, inp, layers, dense, args.seed)
        t0 = time.perf_counter()
        simulated_rates(g, samples=1 if args.quick else 2)
        print(f"{net}: {sum(int(np.prod(n.shape)) for n in g if isinstance(n.op, LIF))} neurons; "
              f"rates from a float simulation in {time.perf_counter() - t0:.1f} s "
              f"(mean {np.mean([np.mean(n.meta['rate']) for n in g if isinstance(n.op, LIF)]):.3f} spikes/step)")
        naive[net] = run_case(g, target, "chw", anneal=False)
        rows.append((net, "naive: CHW packing, row-major", naive[net]))
        rows.append((net, "tiled, row-major", run_case(g, target, "tiled", anneal=False)))
        rows.append((net, "tiled + anneal (row-major)", run_case(g, target, "tiled", True, "row-major", args.seed)))
        rows.append((net, "tiled + anneal (hilbert)", run_case(g, target, "tiled", True, "hilbert", args.seed)))
    if not args.quick:
        inp, layers, dense = NETS["conv11M"]
        g = conv_snn("conv11M", inp, layers, dense, args.seed)
        for n in g:
            if isinstance(n.op, (LIF, Input)):
                n.meta["rate"] = 0.1
        r = run_case(g, target, "tiled", True, "row-major", args.seed)
        print(f"conv11M: {r['neurons']} neurons, {r['synapses']:,} synapses")
        rows.append(("conv11M", "tiled + anneal (row-major)", r))
    print(_table(rows, naive))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
