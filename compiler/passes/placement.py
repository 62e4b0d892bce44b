"""``place-cores``: put the mapped cores on the chip mesh, minimising hop traffic.

Mesh model. A chip is a ``mesh = (nx, ny)`` grid of core slots (x = column,
y = row); core slot ``k`` of a chip is ``(k % nx, k // nx)`` and only the first
``cores_per_chip`` slots are used. Several chips sit side by side along x
(chip ``c`` occupies columns ``c*nx .. c*nx + nx - 1``), and a link between
neighbouring chips counts as one hop like any other (an optimistic model:
real chip-to-chip links are slower and costlier). Messages use
dimension-ordered XY routing: first along x in the source row, then along y in
the destination column, so the hop count is the Manhattan distance. Host
input spikes enter through a port west of slot (0, 0) of chip 0: they travel
``x + 1 + y`` hops to core (x, y).

Cost. With ``m(a, b)`` the rate-weighted messages per step from core a to core
b (``graph.meta["mapping"]["traffic"]``), hop traffic per step is
``H = sum over (a, b) of m(a, b) * (|x_a - x_b| + |y_a - y_b|)``, plus host
messages times their hops. The maximum link load (messages per step over the
busiest directed link) is reported, not optimised.

Algorithm. An initial placement puts cores in mapping order (which follows
the layers and, inside conv layers, the spatial tiles) on slots in row-major
order (default) or along a generalised Hilbert curve (``initial="hilbert"``:
consecutive cores become neighbours; on the conv benchmarks both start
points end within a few percent of each other after annealing). Simulated annealing then moves a core
to a random slot within a range window (swapping with its occupant) and
accepts by the Metropolis rule; the cost change is computed incrementally
from the moved cores' neighbours only. The schedule is VPR's (Betz & Rose,
"VPR: A New Packing, Placement and Routing Tool for FPGA Research", FPL 1997):
``T0 = 20 * std(cost change of min(n, 4096) random moves)``, ``inner * n^(4/3)`` moves per
temperature, ``T *= 0.5 / 0.9 / 0.95 / 0.8`` for acceptance rates
``> 0.96 / > 0.8 / > 0.15 / else``, window ``rlim *= 1 - 0.44 + acceptance``
clamped to ``[1, grid size]``, stop when ``T < 0.005 * cost / nets``, then one
greedy pass at ``T = 0``. The random stream is `random.Random(seed)`, so a
fixed seed gives the same placement, unless the ``time_budget`` (checked
every 1,024 moves) cuts the schedule short (then the pass warns that the
result depends on machine speed). The result is never worse than the initial placement: the better of
the two is kept.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..ir import Graph
from .base import Pass, PassContext, PassError, PassResult

INITIAL = ("hilbert", "row-major")


# -- geometry ---------------------------------------------------------------------


def _sgn(v: int) -> int:
    return (v > 0) - (v < 0)


def _gilbert(x: int, y: int, ax: int, ay: int, bx: int, by: int) -> Iterator[tuple[int, int]]:
    """Generalised Hilbert curve over the rectangle spanned by (ax, ay) and (bx, by)
    (Jakub Cerveny's 'gilbert' construction); every cell once, neighbours consecutive
    (one diagonal step may occur when a side is odd)."""
    w, h = abs(ax + ay), abs(bx + by)
    dax, day, dbx, dby = _sgn(ax), _sgn(ay), _sgn(bx), _sgn(by)
    if h == 1:
        for _ in range(w):
            yield x, y
            x, y = x + dax, y + day
        return
    if w == 1:
        for _ in range(h):
            yield x, y
            x, y = x + dbx, y + dby
        return
    ax2, ay2, bx2, by2 = ax // 2, ay // 2, bx // 2, by // 2
    w2, h2 = abs(ax2 + ay2), abs(bx2 + by2)
    if 2 * w > 3 * h:
        if w2 % 2 and w > 2:
            ax2, ay2 = ax2 + dax, ay2 + day
        yield from _gilbert(x, y, ax2, ay2, bx, by)
        yield from _gilbert(x + ax2, y + ay2, ax - ax2, ay - ay2, bx, by)
    else:
        if h2 % 2 and h > 2:
            bx2, by2 = bx2 + dbx, by2 + dby
        yield from _gilbert(x, y, bx2, by2, ax2, ay2)
        yield from _gilbert(x + bx2, y + by2, ax, ay, bx - bx2, by - by2)
        yield from _gilbert(x + (ax - dax) + (bx2 - dbx), y + (ay - day) + (by2 - dby),
                            -bx2, -by2, -(ax - ax2), -(ay - ay2))


def hilbert_order(nx: int, ny: int) -> list[tuple[int, int]]:
    """All cells of an ``nx`` x ``ny`` grid along a generalised Hilbert curve from (0, 0)."""
    if nx >= ny:
        return list(_gilbert(0, 0, nx, 0, 0, ny))
    return list(_gilbert(0, 0, 0, ny, nx, 0))


@dataclass(frozen=True)
class Mesh:
    """The global slot grid: ``chips`` chips of ``nx`` x ``ny`` side by side along x."""

    nx: int
    ny: int
    chips: int
    cores_per_chip: int

    @property
    def width(self) -> int:
        return self.nx * self.chips

    def slots(self, initial: str) -> list[tuple[int, int]]:
        """Usable slots in initial-placement order (chip by chip)."""
        local = [(k % self.nx, k // self.nx) for k in range(self.nx * self.ny)]
        usable = set(local[: self.cores_per_chip])
        if initial == "hilbert":
            local = [c for c in hilbert_order(self.nx, self.ny) if c in usable]
        else:
            local = local[: self.cores_per_chip]
        return [(c * self.nx + x, y) for c in range(self.chips) for x, y in local]

    def usable(self) -> np.ndarray:
        """``[width, ny]`` mask of usable slots."""
        m = np.zeros((self.width, self.ny), bool)
        for x, y in self.slots("row-major"):
            m[x, y] = True
        return m


def mesh_of(mapping: dict[str, Any]) -> Mesh:
    nx, ny = (int(v) for v in mapping["mesh"])
    cpc = int(mapping["cores_per_chip"])
    if cpc > nx * ny:
        raise PassError(f"place-cores: {cpc} cores per chip do not fit a {nx} x {ny} mesh")
    return Mesh(nx, ny, int(mapping["chips"]), cpc)


# -- traffic and cost ------------------------------------------------------------------


def _traffic(mapping: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = mapping["traffic"]
    return (np.asarray(t["src"], np.int64), np.asarray(t["dst"], np.int64),
            np.asarray(t["messages"], np.float64))


def hop_traffic(mapping: dict[str, Any], pos: np.ndarray) -> float:
    """Rate-weighted message hops per step for core positions ``pos`` (``[cores, 2]``)."""
    src, dst, m = _traffic(mapping)
    if src.size == 0:
        return 0.0
    pd = pos[dst]
    ps = np.where(src[:, None] >= 0, pos[np.maximum(src, 0)], np.array([-1, 0]))
    return float((m * np.abs(ps - pd).sum(axis=1)).sum())


def link_loads(mapping: dict[str, Any], pos: np.ndarray, mesh: Mesh) -> dict[str, np.ndarray]:
    """Messages per step on every directed mesh link under XY routing.

    Returns ``{"east", "west": [width - 1, ny], "north", "south": [width, ny - 1],
    "host": scalar array}``: ``east[x, y]`` is the link (x, y) -> (x + 1, y),
    ``north[x, y]`` the link (x, y) -> (x, y + 1) ("north" = increasing y).
    Host input enters at (0, 0) through the host link.
    """
    W, H = mesh.width, mesh.ny
    src, dst, m = _traffic(mapping)
    keep = src != dst
    src, dst, m = src[keep], dst[keep], m[keep]
    host = float(m[src < 0].sum())
    ps = np.where(src[:, None] >= 0, pos[np.maximum(src, 0)], np.array([0, 0]))
    pd = pos[dst]
    x1, y1, x2, y2 = ps[:, 0], ps[:, 1], pd[:, 0], pd[:, 1]
    out = {}
    for name, sel, lo, hi, row, n, other in (
        ("east", x2 > x1, x1, x2, y1, W, H), ("west", x2 < x1, x2, x1, y1, W, H),
        ("north", y2 > y1, y1, y2, x2, H, W), ("south", y2 < y1, y2, y1, x2, H, W),
    ):
        diff = np.zeros((other, n + 1))
        np.add.at(diff, (row[sel], lo[sel]), m[sel])
        np.add.at(diff, (row[sel], hi[sel]), -m[sel])
        loads = np.cumsum(diff, axis=1)[:, : n - 1]  # link k joins k and k + 1
        out[name] = loads.T  # [n - 1, other]: east/west [x, y], north/south [y, x]
    out["north"], out["south"] = out["north"].T, out["south"].T  # -> [x, y]
    out["host"] = np.array(host)
    return out


def max_link_load(loads: dict[str, np.ndarray]) -> float:
    return float(max([float(v.max()) if v.size else 0.0 for v in loads.values()] + [0.0]))


# -- annealing -------------------------------------------------------------------------


@dataclass
class AnnealResult:
    pos: np.ndarray
    moves: int
    temperatures: int
    stopped_early: bool


def _neighbours(mapping: dict[str, Any], n: int) -> tuple[list[list[tuple[int, float]]], list[float], int]:
    """The annealer's view of the traffic: per core its neighbours ``(core, messages)`` by core index
    (both directions of a pair summed), its host input messages, and the number of nets (distinct
    sending cores, the host counting as one). Vectorized (millions of pairs on large maps); every
    sum adds in the traffic list's order, as a dict accumulation would."""
    src, dst, m = _traffic(mapping)
    keep = m > 0
    src, dst, m = src[keep], dst[keep], m[keep]
    from_host = src < 0
    host = np.bincount(dst[from_host], weights=m[from_host], minlength=n).tolist()
    pair = ~from_host & (src != dst)
    nets = int(np.unique(src[pair]).size) + int(bool(from_host.any()))
    lo, hi = np.minimum(src[pair], dst[pair]), np.maximum(src[pair], dst[pair])
    keys, inv = np.unique(lo * n + hi, return_inverse=True)
    w = np.bincount(inv, weights=m[pair], minlength=keys.size)
    a, b = keys // n, keys % n
    ends, others = np.concatenate([a, b]), np.concatenate([b, a])
    order = np.lexsort((others, ends))  # by core, then by neighbour
    ends, others, ws = ends[order], others[order], np.concatenate([w, w])[order]
    cuts = np.searchsorted(ends, np.arange(n + 1))
    ol, wl = others.tolist(), ws.tolist()
    nb = [list(zip(ol[cuts[k]:cuts[k + 1]], wl[cuts[k]:cuts[k + 1]])) for k in range(n)]
    return nb, host, max(nets, 1)


def anneal(mapping: dict[str, Any], mesh: Mesh, pos0: np.ndarray, seed: int = 0, moves: int | None = None,
           inner: float = 1.0, time_budget: float | None = None) -> AnnealResult:
    """VPR-style simulated annealing of core positions (see module docstring).

    Args:
        pos0: initial ``[cores, 2]`` positions on usable slots.
        moves: cap on the number of moves (None = run the schedule to its end).
        inner: VPR's ``inner_num``: moves per temperature = ``inner * n^(4/3)``.
        time_budget: stop after this many seconds (the result then depends on speed).
    """
    # One function on purpose: the move loop runs millions of times in pure Python, so the state
    # (X, Y, occ) lives in closures over plain lists instead of an object with method lookups.
    n = len(pos0)
    X = [int(v) for v in pos0[:, 0]]
    Y = [int(v) for v in pos0[:, 1]]
    W, H = mesh.width, mesh.ny
    usable = mesh.usable()
    occ = [[-1] * H for _ in range(W)]
    for a in range(n):
        occ[X[a]][Y[a]] = a
    nb, host, nets = _neighbours(mapping, n)
    rng = random.Random(seed)
    t_start = time.perf_counter()
    n_slots = int(usable.sum())
    if n < 2 or n_slots < 2 or moves == 0:
        return AnnealResult(pos0.copy(), 0, 0, False)

    def cost_of(a: int, x: int, y: int, skip: int) -> float:
        c = host[a] * (x + y)
        for k, w in nb[a]:
            if k != skip:
                c += w * (abs(x - X[k]) + abs(y - Y[k]))
        return c

    def propose(rlim: int) -> tuple[int, int, int, int] | None:
        a = rng.randrange(n)
        xa, ya = X[a], Y[a]
        x = rng.randint(max(0, xa - rlim), min(W - 1, xa + rlim))
        y = rng.randint(max(0, ya - rlim), min(H - 1, ya + rlim))
        if (x == xa and y == ya) or not usable[x, y]:
            return None
        return a, x, y, occ[x][y]

    def delta(a: int, x: int, y: int, b: int) -> float:
        d = cost_of(a, x, y, b) - cost_of(a, X[a], Y[a], b)
        if b >= 0:
            d += cost_of(b, X[a], Y[a], a) - cost_of(b, x, y, a)
        return d

    def commit(a: int, x: int, y: int, b: int) -> None:
        xa, ya = X[a], Y[a]
        occ[x][y] = a
        occ[xa][ya] = b
        X[a], Y[a] = x, y
        if b >= 0:
            X[b], Y[b] = xa, ya

    cost = float(sum(host[a] * (X[a] + Y[a] + 1) for a in range(n)))
    cost += sum(w * (abs(X[a] - X[k]) + abs(Y[a] - Y[k])) for a in range(n) for k, w in nb[a] if k > a)
    if cost <= 0:
        return AnnealResult(pos0.copy(), 0, 0, False)
    rmax = max(W, H)
    rlim = float(rmax)
    done = 0
    stopped = False
    # Initial temperature: 20 x the standard deviation of random move costs (all accepted).
    deltas = []
    for _ in range(min(n, 4096)):  # (enough samples for a standard deviation)
        p = propose(rmax)
        if p is None:
            continue
        d = delta(*p)
        commit(*p)
        cost += d
        deltas.append(d)
        done += 1
    T = 20.0 * float(np.std(deltas)) if len(deltas) > 1 else 1.0
    per_temp = max(1, int(inner * n ** (4 / 3)))
    temps = 0
    best_cost, best = cost, (list(X), list(Y))
    while True:
        accepted = tried = 0
        for _ in range(per_temp):
            p = propose(max(1, int(rlim)))
            if p is None:
                continue
            tried += 1
            d = delta(*p)
            if d <= 0 or (T > 0 and rng.random() < math.exp(-d / T)):
                commit(*p)
                cost += d
                accepted += 1
            done += 1
            if moves is not None and done >= moves:
                break
            if time_budget is not None and not done % 1024 and time.perf_counter() - t_start > time_budget:
                break  # a temperature holds inner * n^(4/3) moves: hours on tens of thousands of cores
        temps += 1
        if cost < best_cost:
            best_cost, best = cost, (list(X), list(Y))
        if moves is not None and done >= moves:
            break
        if time_budget is not None and time.perf_counter() - t_start > time_budget:
            stopped = True
            break
        if T <= 0:
            break
        rate = accepted / max(tried, 1)
        if rate > 0.96:
            T *= 0.5
        elif rate > 0.8:
            T *= 0.9
        elif rate > 0.15 or rlim > 1:
            T *= 0.95
        else:
            T *= 0.8
        rlim = min(max(rlim * (1 - 0.44 + rate), 1.0), float(rmax))
        if T < 0.005 * cost / nets:
            T = 0.0  # final greedy pass
    if best_cost < cost:
        X, Y = best
    return AnnealResult(np.array([X, Y], dtype=np.int64).T.reshape(n, 2), done, temps, stopped)


# -- the pass ----------------------------------------------------------------------------


def initial_positions(n: int, mesh: Mesh, initial: str) -> np.ndarray:
    slots = mesh.slots(initial)
    if n > len(slots):
        raise PassError(f"place-cores: {n} cores do not fit {mesh.chips} chip(s) of {mesh.cores_per_chip} cores")
    return np.array(slots[:n], dtype=np.int64).reshape(n, 2)


def place_cores(graph: Graph, seed: int = 0, initial: str = "row-major", moves: int | None = None,
                inner: float = 2.0, time_budget: float | None = 60.0, warn: Any = None) -> dict[str, Any]:
    """Place the cores of ``graph.meta["mapping"]`` (see module docstring).

    Sets ``graph.meta["placement"]`` and returns it::

        {"initial", "seed", "mesh": [nx, ny], "chips", "grid": [width, ny],
         "positions": [[x, y] per core], "chip": [per core],
         "hop_traffic_per_step", "initial_hop_traffic_per_step",
         "row_major_hop_traffic_per_step", "max_link_load", "initial_max_link_load",
         "host_link_load", "moves", "temperatures", "stopped_early", "seconds"}

    and updates each mapping core's ``chip``.

    Raises:
        PassError: no mapping (run map-cores first) or an unknown option.
    """
    t0 = time.perf_counter()
    if initial not in INITIAL:
        raise PassError(f"place-cores: initial '{initial}' is not one of {list(INITIAL)}")
    mapping = graph.meta.get("mapping")
    if not mapping:
        raise PassError("place-cores needs graph.meta['mapping']: run map-cores first")
    mesh = mesh_of(mapping)
    n = len(mapping["cores"])
    pos_init = initial_positions(n, mesh, initial)
    pos_row = initial_positions(n, mesh, "row-major")
    h_init = hop_traffic(mapping, pos_init)
    res = anneal(mapping, mesh, pos_init, seed, moves, inner, time_budget)
    pos = res.pos
    h = hop_traffic(mapping, pos)
    if h > h_init:
        pos, h = pos_init, h_init
    if res.stopped_early and warn is not None:
        warn(f"place-cores stopped after the {time_budget} s time budget ({res.moves} moves): "
             "the placement depends on machine speed; raise time_budget for a reproducible result")
    loads = link_loads(mapping, pos, mesh)
    chips = (pos[:, 0] // mesh.nx).astype(int).tolist() if n else []
    for core, c in zip(mapping["cores"], chips):
        core["chip"] = int(c)
    placement = {
        "initial": initial,
        "seed": seed,
        "mesh": [mesh.nx, mesh.ny],
        "chips": mesh.chips,
        "grid": [mesh.width, mesh.ny],
        "positions": pos.tolist(),
        "chip": chips,
        "hop_traffic_per_step": h,
        "initial_hop_traffic_per_step": h_init,
        "row_major_hop_traffic_per_step": hop_traffic(mapping, pos_row),
        "max_link_load": max_link_load({k: v for k, v in loads.items() if k != "host"}),
        "initial_max_link_load": max_link_load(
            {k: v for k, v in link_loads(mapping, pos_init, mesh).items() if k != "host"}),
        "host_link_load": float(loads["host"]),
        "moves": res.moves,
        "temperatures": res.temperatures,
        "stopped_early": res.stopped_early,
        "seconds": round(time.perf_counter() - t0, 4),
    }
    graph.meta["placement"] = {k: v for k, v in placement.items() if k != "seconds"}  # deterministic part
    return placement


@dataclass(frozen=True)
class PlaceCores(Pass):
    """Place mapped cores on the chip mesh by simulated annealing (see module docstring).

    Options:
        seed: random seed (same seed, same placement).
        initial: ``"row-major"`` (default) or ``"hilbert"`` initial placement.
        moves: cap on annealing moves (``None`` = the full VPR schedule; 0 = no annealing).
        inner: VPR ``inner_num`` (moves per temperature = inner * cores^(4/3)).
        time_budget: seconds after which annealing stops (warns; not reproducible then).

    Afterwards ``graph.meta["placement"]`` holds positions and traffic figures
    and the mapping's per-core ``chip`` follows the placement. The IR is unchanged.
    """

    name: ClassVar[str] = "place-cores"
    seed: int = 0
    initial: str = "row-major"
    moves: int | None = None
    inner: float = 2.0
    time_budget: float | None = 60.0

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        p = place_cores(graph, self.seed, self.initial, self.moves, self.inner, self.time_budget, ctx.warn)
        return PassResult(graph, dict(hop_traffic_per_step=round(p["hop_traffic_per_step"], 3),
                     initial_hop_traffic_per_step=round(p["initial_hop_traffic_per_step"], 3),
                     max_link_load=round(p["max_link_load"], 3), moves=p["moves"]))
