"""Running a compiled graph over a labelled data set in chunks: predictions, per-layer spike
counts and events per step. Chunks are independent (the integer engine is exact at any
batch split), so `npuc evaluate` spreads them over workers and sums the parts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_CHUNK = 512


@dataclass
class Tally:
    """What a run over (part of) a data set produced; parts add up with `merge`."""

    predictions: list[np.ndarray] = field(default_factory=list)
    spikes: dict[str, float] = field(default_factory=dict)  # population -> spikes summed over T, B, neurons
    neurons: dict[str, int] = field(default_factory=dict)
    events: dict[str, list[np.ndarray]] = field(default_factory=dict)  # population -> [T, b] nonzero counts
    samples: int = 0
    steps: int = 0

    def merge(self, other: Tally) -> Tally:
        self.predictions += other.predictions
        for k, v in other.spikes.items():
            self.spikes[k] = self.spikes.get(k, 0.0) + v
        self.neurons.update(other.neurons)
        for k, v in other.events.items():
            self.events.setdefault(k, []).extend(v)
        self.samples += other.samples
        self.steps = other.steps or self.steps
        return self

    def prediction(self) -> np.ndarray:
        return np.concatenate(self.predictions) if self.predictions else np.zeros(0, dtype=np.int64)

    def event_arrays(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate(v, axis=1) for k, v in self.events.items()}

    def rates(self) -> dict[str, float]:
        """Mean spikes per neuron per time step, per population."""
        return {k: round(v / max(1, self.neurons[k] * self.samples * self.steps), 6) for k, v in self.spikes.items()}


def populations(graph: Any) -> list[str]:
    """Nodes whose outputs are events on hardware (inputs and neurons)."""
    return [n.name for n in graph if n.op.has_role("population")]


def run_chunk(graph: Any, x: np.ndarray, engine: str = "int", events: bool = False) -> Tally:
    """One chunk through a golden engine (``x``: one input, batch first or ``[T, B, ...]``)."""
    from ..sim import simulate

    return tally(graph, simulate(graph, x, engine, probe=populations(graph)), events)


def tally(graph: Any, res: Any, events: bool = False) -> Tally:
    """Predictions, spike counts and (``events``) per-step events of one probed `SimResult`."""
    pops = populations(graph)
    neurons = {n.name for n in graph if n.name in pops and n.op.kind != "io"}  # inputs carry values, not spikes
    out = np.asarray(res.outputs[0], dtype=np.float64)
    op = graph.outputs()[0].op
    if op.decoding == "sequence":
        out = out.sum(0) if op.layout == "TB" else out.sum(1)
    t = Tally(predictions=[out.reshape(out.shape[0], -1).argmax(1)], samples=out.shape[0], steps=res.steps)
    for name in pops:
        ports = res.probes.get(name) or {}
        trace = ports.get("spikes", ports.get("out"))
        if trace is None:
            continue
        trace = np.asarray(trace)
        nz = (trace.reshape(trace.shape[0], trace.shape[1], -1) != 0).sum(2)  # [T, B] events
        if name in neurons:
            t.neurons[name] = int(np.prod(trace.shape[2:]))
            t.spikes[name] = float(np.abs(trace).sum())
        if events:
            t.events[name] = [nz]
    return t


def run_chunked(graph: Any, x: np.ndarray, engine: str = "int", chunk: int = DEFAULT_CHUNK,
                events: bool = False) -> Tally:
    """A whole data set, ``chunk`` samples at a time, in one process (`npuc.sim.simulate_chunks`)."""
    from ..sim import simulate_chunks

    total = Tally()
    for _, _, res in simulate_chunks(graph, x, engine, chunk, probe=populations(graph)):
        total.merge(tally(graph, res, events))
    return total


def confusion(pred: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """``m[true, predicted]`` counts."""
    m = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(m, (np.asarray(labels).reshape(-1), pred.reshape(-1)), 1)
    return m
