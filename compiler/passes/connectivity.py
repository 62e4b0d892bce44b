"""Neuron-level connectivity of a graph: which source neurons feed which neurons.

A *population* is a group of neurons that sends spikes: every `LIF` node
(its neurons are also destinations) and every `Input` node (a source only;
input spikes enter the chip from the host). Between populations lie chains of
synapse and shape ops (Dense, Conv, pools, Add, Scale, Reshape, Permute, ...).
A *projection* is the composed relation of such a chain: the set of distinct
pairs ``(source neuron j, destination neuron i)`` with a nonzero composed
weight, i.e. the synapses a many-core chip stores for destination neuron ``i``.

Pairs are computed without materialising dense matrices:

* ``Dense`` (weight ``[out, in]`` on the last axis): the nonzero entries of the
  (quantized if present, else float) weight, repeated over leading axes.
* ``Conv1d``/``Conv2d``: geometrically, ``y[o, i, j]`` is fed by
  ``x[g(o) + c, s*i + d*u - p, s*j + d*v - p]`` for every in-bounds kernel tap
  with ``W[o, c, u, v] != 0`` (zero taps store no synapse).
* pools (sum, average, max): every in-bounds tap of the window, per channel.
* ``Scale``, ``BatchNorm``, ``Reshape``: element ``k`` feeds element ``k``;
  ``Permute``: the permuted index map.
* ``Add``: the union of its inputs' relations.
* chains compose: ``(j, m)`` then ``(m, i)`` gives ``(j, i)``; duplicate pairs
  (e.g. overlapping pool windows before a conv) are merged into one synapse.

Every edge array is sorted by destination (a CSR layout), and everything is
vectorised over synapses, so a 10M-synapse conv net takes seconds.

Projections are keyed by ``(source population, delay)``: a pair reached over
a delayed (recurrent) edge and over a same-step path needs two synapses.
Chains that end in an `Output` without a neuron population (a readout of
synaptic currents) have no destination neurons on the chip; they are listed
in `Connectivity.unmapped`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..ir import Graph, ops
from .base import PassError

IDX = np.int32  # neuron indices (populations are far below 2**31 neurons)


@dataclass
class Population:
    """A group of spike-sending neurons: a `LIF` node or an `Input` node.

    Attributes:
        name: node name.
        shape: per-sample neuron shape.
        kind: ``"neuron"`` (LIF: mapped to cores) or ``"input"`` (a source off the neuro cores: a
            host input, or a `SpikeAttention`, which runs as a custom process and sends its
            graded results one-to-one into the neurons that read them).
        offset: first global source id (sources of all populations are numbered
            consecutively, inputs first).
    """

    name: str
    shape: tuple[int, ...]
    kind: str
    offset: int = 0

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass
class TokenBlocks:
    """The synapses of a Dense applied per token, kept compact: for every token ``t`` and nonzero
    weight ``(o, i)``, source neuron ``src[t, i]`` feeds destination neuron ``dst[t, o]``.

    ``src`` (``[tokens, in]``, -1 where no source neuron reaches the input element) and ``dst``
    (``[tokens, out]``) are injective per token, so the pairs are distinct; ``mask`` (``[out, in]``)
    is the weight's nonzero pattern. Memory is ``tokens x (in + out) + out x in`` instead of
    ``tokens x`` nonzeros (a 64-token 1536 x 384 Linear: 0.7 MB instead of 300 MB of pairs).
    """

    src: np.ndarray
    dst: np.ndarray
    mask: np.ndarray
    _where: np.ndarray | None = field(default=None, repr=False)

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """The explicit ``(src, dst)`` pairs, sorted by destination."""
        tok, o, i = np.nonzero(self.mask[None, :, :] & (self.src[:, None, :] >= 0))
        src, dst = self.src[tok, i], self.dst[tok, o]
        order = np.argsort(dst, kind="stable")
        return src[order].astype(IDX), dst[order].astype(IDX)

    def counts(self, n: int) -> np.ndarray:
        """Synapses into each of the ``n`` destination neurons."""
        out = np.zeros(n, np.int64)
        out[self.dst.ravel()] = self._per_row().ravel()
        return out

    def _per_row(self) -> np.ndarray:
        """Synapses per ``(token, out)``: float BLAS, exact (counts are far below 2**53)."""
        return ((self.src >= 0).astype(np.float64) @ self.mask.T.astype(np.float64)).astype(np.int64)

    def _token_rows(self, neurons: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(ok, token, out)`` of ``neurons`` (``ok``: the neuron is a destination here; the others
        only for those)."""
        if self._where is None:
            self._where = np.full(n, -1, np.int64)
            self._where[self.dst.ravel()] = np.arange(self.dst.size, dtype=np.int64)
        w = self._where[neurons]
        ok = w >= 0
        tok, o = np.divmod(w[ok], self.dst.shape[1])
        return ok, tok, o

    def gather(self, neurons: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``(lens, src)``: synapses of each of ``neurons`` and their sources, grouped per neuron in order."""
        ok, tok, o = self._token_rows(neurons, n)
        a = self.src[tok]
        m = self.mask[o] & (a >= 0)
        lens = np.zeros(neurons.size, np.int64)
        lens[ok] = m.sum(axis=1)
        return lens, a[m]

    def distinct(self, neurons: np.ndarray, n: int) -> np.ndarray:
        """The sorted distinct sources of ``neurons``: per token, the inputs any of its rows read."""
        _, tok, o = self._token_rows(neurons, n)
        toks, inv = np.unique(tok, return_inverse=True)
        rows = np.zeros((toks.size, self.mask.shape[0]), np.float64)
        rows[inv, o] = 1.0
        read = (rows @ self.mask.astype(np.float64)) > 0  # [tokens, in]
        a = self.src[toks]
        return np.unique(a[read & (a >= 0)])

    def rate_sum(self, rates: np.ndarray) -> float:
        """Sum over synapses of the source's rate (``rates`` of the source population)."""
        r = np.where(self.src >= 0, rates[np.maximum(self.src, 0)], 0.0)
        return float((r * self.mask.sum(axis=0)[None, :]).sum())

    @property
    def synapses(self) -> int:
        return int(self._per_row().sum())


@dataclass
class WindowTaps:
    """The synapses of a convolution or pool, kept compact (its kernel is shared by all positions):
    output element ``(o, y, x)`` (flat ``e``, written to destination neuron ``dst[e]``) reads input
    element ``(chan[o, c], s*y + d*u - p, s*x + d*v - p)`` for every in-bounds tap with
    ``tap[o, c, u, v]``, whose source neuron is ``src[element]`` (-1: none). Arguments as
    `_window_edges`; ``src`` (one entry per input element) is injective, so pairs are distinct."""

    src: np.ndarray
    dst: np.ndarray
    out_shape: tuple[int, int, int]
    in_hw: tuple[int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    chan: np.ndarray
    tap: np.ndarray
    _where: np.ndarray | None = field(default=None, repr=False)

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """The explicit ``(src, dst)`` pairs, sorted by destination."""
        mid, out = _window_edges(self.out_shape, self.in_hw, self.kernel, self.stride, self.padding, self.dilation,
                                 self.chan, self.tap)
        src, dst = self.src[mid], self.dst[out]
        keep = src >= 0
        src, dst = src[keep], dst[keep]
        order = np.argsort(dst, kind="stable")
        return src[order].astype(IDX), dst[order].astype(IDX)

    def _tap_sums(self, values: np.ndarray) -> np.ndarray:
        """Per output element: the sum over its valid taps of ``values`` (one per input element;
        zero where no source), by im2col and float BLAS (exact for counts)."""
        (h, w), (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.in_hw, self.kernel, self.stride, self.padding, self.dilation
        cout, ho, wo = self.out_shape
        v = np.pad(values.reshape(-1, h, w).astype(np.float64), ((0, 0), (ph, ph + sh * ho), (pw, pw + sw * wo)))
        rows = sh * np.arange(ho)[None, :] + dh * np.arange(kh)[:, None]  # [kh, ho]
        cols = sw * np.arange(wo)[None, :] + dw * np.arange(kw)[:, None]  # [kw, wo]
        patches = v[:, rows[:, None, :, None], cols[None, :, None, :]]  # [cin, kh, kw, ho, wo]
        out = np.empty((cout, ho * wo))
        for key in np.unique(self.chan, axis=0):  # output channels reading the same input channels
            sel = np.flatnonzero((self.chan == key).all(axis=1))
            t = self.tap[sel].reshape(sel.size, -1).astype(np.float64)
            out[sel] = t @ patches[key].reshape(t.shape[1], ho * wo)
        return out.ravel()

    def counts(self, n: int) -> np.ndarray:
        """Synapses into each of the ``n`` destination neurons."""
        out = np.zeros(n, np.int64)
        out[self.dst] = np.rint(self._tap_sums((self.src >= 0).astype(np.float64))).astype(np.int64)
        return out

    def gather(self, neurons: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``(lens, src)``: synapses of each of ``neurons`` and their sources, grouped per neuron in order."""
        if self._where is None:
            self._where = np.full(n, -1, np.int64)
            self._where[self.dst] = np.arange(self.dst.size, dtype=np.int64)
        e = self._where[neurons]
        ok = e >= 0
        o, y, x = np.unravel_index(e[ok], self.out_shape)
        (h, w), (kh, kw) = self.in_hw, self.kernel
        rows = self.stride[0] * y[:, None] + self.dilation[0] * np.arange(kh)[None, :] - self.padding[0]  # [k, kh]
        cols = self.stride[1] * x[:, None] + self.dilation[1] * np.arange(kw)[None, :] - self.padding[1]  # [k, kw]
        inside = ((rows >= 0) & (rows < h))[:, None, :, None] & ((cols >= 0) & (cols < w))[:, None, None, :]
        elem = (self.chan[o].astype(np.int64)[:, :, None, None] * (h * w) + np.clip(rows, 0, h - 1)[:, None, :, None] * w
                + np.clip(cols, 0, w - 1)[:, None, None, :])  # [k, cg, kh, kw]
        src = self.src[elem]
        m = self.tap[o] & inside & (src >= 0)
        lens = np.zeros(neurons.size, np.int64)
        lens[ok] = m.reshape(m.shape[0], -1).sum(axis=1)
        return lens, src[m]

    def rate_sum(self, rates: np.ndarray) -> float:
        """Sum over synapses of the source's rate (``rates`` of the source population)."""
        return float(self._tap_sums(np.where(self.src >= 0, rates[np.maximum(self.src, 0)], 0.0)).sum())

    @property
    def synapses(self) -> int:
        return int(np.rint(self._tap_sums((self.src >= 0).astype(np.float64))).sum())


Compact = TokenBlocks | WindowTaps


class Projection:
    """Synapses from one source population into one destination population.

    Explicit: ``src[k] -> dst[k]`` are neuron indices (flat, row-major) into the source and
    destination populations; pairs are distinct and sorted by ``dst``. Compact (``blocks``: a
    per-token Dense, `TokenBlocks`, or a convolution / pool, `WindowTaps`): ``src`` / ``dst``
    materialise the pairs on access (tests, relays); the packer reads ``counts`` / ``gather``.
    """

    def __init__(self, source: str, delay: int, src: np.ndarray | None = None, dst: np.ndarray | None = None,
                 blocks: Compact | None = None) -> None:
        self.source, self.delay, self.blocks = source, delay, blocks
        self._src, self._dst = src, dst
        self._indptr: np.ndarray | None = None

    @property
    def src(self) -> np.ndarray:
        return self._src if self.blocks is None else self.blocks.pairs()[0]

    @property
    def dst(self) -> np.ndarray:
        return self._dst if self.blocks is None else self.blocks.pairs()[1]

    @property
    def synapses(self) -> int:
        return int(self._src.size) if self.blocks is None else self.blocks.synapses

    def counts(self, n: int) -> np.ndarray:
        """Synapses into each of the ``n`` destination neurons."""
        if self.blocks is not None:
            return self.blocks.counts(n)
        return np.bincount(self._dst, minlength=n).astype(np.int64)

    def gather(self, neurons: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``(lens, src)``: synapses of each of ``neurons`` and their (local) sources, grouped per neuron."""
        if self.blocks is not None:
            return self.blocks.gather(neurons, n)
        if self._indptr is None:
            self._indptr = np.concatenate([[0], np.cumsum(self.counts(n))])
        lens = self._indptr[neurons + 1] - self._indptr[neurons]
        return lens, self._src[gather_ranges(self._indptr[neurons], lens)]

    def distinct(self, neurons: np.ndarray, n: int) -> np.ndarray:
        """The sorted distinct (local) sources of ``neurons``."""
        if isinstance(self.blocks, TokenBlocks):
            return self.blocks.distinct(neurons, n)
        return np.unique(self.gather(neurons, n)[1])

    def rate_sum(self, rates: np.ndarray) -> float:
        """Sum over synapses of the source's rate (``rates`` of the source population)."""
        if self.blocks is not None:
            return self.blocks.rate_sum(rates)
        return float(rates[self._src.astype(np.int64)].sum())


def gather_ranges(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Indices ``concat(arange(s, s + l) for s, l in zip(starts, lens))``, vectorised."""
    lens = lens.astype(np.int64)
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    shift = np.repeat(starts.astype(np.int64) - (np.cumsum(lens) - lens), lens)
    return shift + np.arange(total, dtype=np.int64)


@dataclass
class Connectivity:
    """Populations and the projections into every neuron population.

    Attributes:
        populations: every population (inputs first, then LIF nodes in
            topological order), by name.
        projections: per LIF population, the projections into it.
        unmapped: nodes read by an `Output` that end a synapse chain without a
            neuron population (host-side readout; not mapped to cores).
    """

    populations: dict[str, Population]
    projections: dict[str, list[Projection]]
    unmapped: list[str] = field(default_factory=list)

    @property
    def neuron_populations(self) -> list[Population]:
        return [p for p in self.populations.values() if p.kind == "neuron"]

    @property
    def num_sources(self) -> int:
        return sum(p.size for p in self.populations.values())

    def fan_in(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """CSR of the synapses into population ``name``: ``(indptr, src)`` where
        ``src[indptr[i]:indptr[i+1]]`` are the global source ids of neuron ``i``
        (projections concatenated per neuron; a source may appear once per
        projection)."""
        pop = self.populations[name]
        projs = self.projections.get(name, [])
        n = pop.size
        if not projs:
            return np.zeros(n + 1, np.int64), np.zeros(0, IDX)
        if len(projs) == 1:
            p = projs[0]
            dst = p.dst
            src = (p.src.astype(np.int64) + self.populations[p.source].offset).astype(IDX)
        else:
            dst_all = np.concatenate([p.dst for p in projs])
            src_all = np.concatenate(
                [(p.src.astype(np.int64) + self.populations[p.source].offset).astype(IDX) for p in projs]
            )
            order = np.argsort(dst_all, kind="stable")
            dst, src = dst_all[order], src_all[order]
        counts = np.bincount(dst, minlength=n)
        indptr = np.zeros(n + 1, np.int64)
        np.cumsum(counts, out=indptr[1:])
        return indptr, src

    def synapse_count(self) -> int:
        return sum(p.synapses for ps in self.projections.values() for p in ps)

    def compact(self, name: str) -> bool:
        """Whether a projection into ``name`` is kept compact (`TokenBlocks`, `WindowTaps`): its CSR is
        never built."""
        return any(p.blocks is not None for p in self.projections.get(name, []))

    def counts(self, name: str) -> np.ndarray:
        """Incoming synapses of every neuron of population ``name``."""
        n = self.populations[name].size
        out = np.zeros(n, np.int64)
        for p in self.projections.get(name, []):
            out += p.counts(n)
        return out

    def distinct_sources(self, name: str, neurons: np.ndarray) -> np.ndarray:
        """Sorted distinct global source ids feeding ``neurons`` of population ``name`` (int32)."""
        n = self.populations[name].size
        neurons = np.asarray(neurons, np.int64)
        projs = self.projections.get(name, [])
        parts = [p.distinct(neurons, n).astype(np.int64) + self.populations[p.source].offset for p in projs]
        if not parts:
            return np.zeros(0, IDX)
        out = np.concatenate(parts)
        if len({p.source for p in projs}) < len(projs):  # a population read over several delays
            return np.unique(out).astype(IDX)
        order = np.argsort([self.populations[p.source].offset for p in projs], kind="stable")
        return np.concatenate([parts[k] for k in order]).astype(IDX)  # disjoint, increasing id ranges

    def gather(self, name: str, neurons: np.ndarray) -> np.ndarray:
        """Global source ids of the synapses into ``neurons`` of population ``name``, grouped per
        neuron in the given order (per neuron: projections in order, as `fan_in`), built only for
        these neurons."""
        n = self.populations[name].size
        neurons = np.asarray(neurons, np.int64)
        parts = [(lens, src.astype(np.int64) + self.populations[p.source].offset)
                 for p in self.projections.get(name, []) for lens, src in [p.gather(neurons, n)]]
        if not parts:
            return np.zeros(0, IDX)
        total = sum(lens for lens, _ in parts)
        starts = np.cumsum(total) - total
        out = np.empty(int(total.sum()), IDX)
        acc = np.zeros(neurons.size, np.int64)
        for lens, src in parts:
            out[gather_ranges(starts + acc, lens)] = src
            acc += lens
        return out


# -- relations -----------------------------------------------------------------


@dataclass
class _Rel:
    """Pairs (src neuron of a population, element of a node's output), sorted by element."""

    src: np.ndarray
    dst: np.ndarray
    identity: bool = False  # src == dst == arange (a population read directly)


def _identity(n: int) -> _Rel:
    a = np.arange(n, dtype=IDX)
    return _Rel(a, a, True)


def _window_edges(
    out_shape: tuple[int, int, int],
    in_hw: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    chan: np.ndarray,
    tap: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Edges of a windowed op, sorted by output element.

    Output ``(o, i, j)`` reads input ``(chan[o, c], s*i + d*u - p, s*j + d*v - p)``
    for every ``c`` and kernel tap ``(u, v)`` with ``tap[o, c, u, v]`` true and
    the position in bounds. Returns ``(src, dst)`` flat indices.
    """
    cout, ho, wo = out_shape
    h, w = in_hw
    kh, kw = kernel
    rows = stride[0] * np.arange(ho)[:, None] + dilation[0] * np.arange(kh)[None, :] - padding[0]
    cols = stride[1] * np.arange(wo)[:, None] + dilation[1] * np.arange(kw)[None, :] - padding[1]
    vr = (rows >= 0) & (rows < h)  # [ho, kh]
    vc = (cols >= 0) & (cols < w)  # [wo, kw]
    # [cout, ho, wo, ng, kh, kw]: one entry per potential synapse, in destination order.
    mask = (
        tap[:, None, None, :, :, :]
        & vr[None, :, None, None, :, None]
        & vc[None, None, :, None, None, :]
    )
    src = (
        chan.astype(np.int64)[:, None, None, :, None, None] * (h * w)
        + np.clip(rows, 0, h - 1)[None, :, None, None, :, None] * w
        + np.clip(cols, 0, w - 1)[None, None, :, None, None, :]
    )
    src = np.broadcast_to(src, mask.shape)[mask].astype(IDX)
    counts = mask.reshape(cout * ho * wo, -1).sum(axis=1)
    dst = np.repeat(np.arange(cout * ho * wo, dtype=IDX), counts)
    return src, dst


def _conv_edges(op: ops.Conv1d | ops.Conv2d, in_shape: tuple[int, ...], out_shape: tuple[int, ...]):
    return _window_edges(*_conv_geometry(op, in_shape, out_shape))


def _conv_geometry(op: ops.Conv1d | ops.Conv2d, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple:
    """`_window_edges`' arguments for a convolution (a Conv1d as a one-row Conv2d)."""
    weight = op.q.weight if op.q is not None else op.weight
    if isinstance(op, ops.Conv1d):
        weight = weight[:, :, None, :]
        in_shape, out_shape = (in_shape[0], 1, in_shape[1]), (out_shape[0], 1, out_shape[1])
        kernel, stride = (1, op.kernel[0]), (1, op.stride[0])
        padding, dilation = (0, op.padding[0]), (1, op.dilation[0])
    else:
        kernel, stride, padding, dilation = op.kernel, op.stride, op.padding, op.dilation
    cout, cg = weight.shape[:2]
    per_group = cout // op.groups
    chan = (np.arange(cout)[:, None] // per_group) * cg + np.arange(cg)[None, :]
    return (tuple(out_shape), tuple(in_shape[1:]), tuple(kernel), tuple(stride), tuple(padding), tuple(dilation),
            chan, np.asarray(weight) != 0)


def _pool_edges(op, in_shape: tuple[int, ...], out_shape: tuple[int, ...]):
    c = in_shape[0]
    chan = np.arange(c)[:, None]
    tap = np.ones((c, 1, *op.kernel), dtype=bool)
    return _window_edges(out_shape, in_shape[1:], op.kernel, op.stride, op.padding, (1, 1), chan, tap)


def _dense_edges(op: ops.Dense, in_shape: tuple[int, ...], out_shape: tuple[int, ...]):
    weight = op.q.weight if op.q is not None else op.weight
    o, i = np.nonzero(weight)  # row-major: sorted by output feature
    lead = int(np.prod(in_shape[:-1], dtype=np.int64))
    fin, fout = weight.shape[1], weight.shape[0]
    t = np.arange(lead, dtype=np.int64)[:, None]
    src = (t * fin + i[None, :]).ravel().astype(IDX)
    dst = (t * fout + o[None, :]).ravel().astype(IDX)
    return src, dst


def _compose(rel: _Rel, src_mid: np.ndarray, dst: np.ndarray, n_mid: int) -> _Rel:
    """Compose ``rel`` (population -> mid elements) with op edges (mid -> out, sorted by out)."""
    if rel.identity:
        return _Rel(src_mid, dst)
    counts = np.bincount(rel.dst, minlength=n_mid).astype(np.int64)
    starts = np.zeros(n_mid + 1, np.int64)
    np.cumsum(counts, out=starts[1:])
    rep = counts[src_mid]
    total = int(rep.sum())
    out_dst = np.repeat(dst, rep)
    base = np.repeat(starts[src_mid] - (np.cumsum(rep) - rep), rep)
    out_src = rel.src[base + np.arange(total, dtype=np.int64)]
    # Pairs are distinct when every source element reaches at most one mid element.
    if rel.src.size and np.bincount(rel.src).max() > 1:
        return _dedupe(out_src, out_dst)
    return _Rel(out_src, out_dst)


def _blocked(rel: _Rel, op: ops.Dense, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> TokenBlocks | None:
    """``rel`` (population -> Dense input) through a Dense applied per token, kept compact; None
    when the Dense has one token or ``rel`` is not one-to-one (then pairs are materialised)."""
    lead = int(np.prod(in_shape[:-1], dtype=np.int64))
    src = _one_to_one(rel, lead * in_shape[-1]) if lead > 1 else None
    if src is None:
        return None
    weight = op.q.weight if op.q is not None else op.weight
    fout = weight.shape[0]
    dst = np.arange(lead * fout, dtype=IDX).reshape(lead, fout)
    return TokenBlocks(src.reshape(lead, in_shape[-1]), dst, np.asarray(weight) != 0)


def _one_to_one(rel: _Rel, n_in: int) -> np.ndarray | None:
    """The source neuron of each of ``n_in`` elements (-1: none) when ``rel`` maps sources to
    elements one to one (else None: pairs must be composed explicitly)."""
    if not rel.identity and rel.src.size and (np.bincount(rel.src).max() > 1 or np.bincount(rel.dst).max() > 1):
        return None
    src = np.full(n_in, -1, IDX)
    src[rel.dst] = rel.src
    return src


def _windowed(rel: _Rel, op, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> WindowTaps | None:
    """``rel`` (population -> conv / pool input) through the op's shared kernel, kept compact."""
    src = _one_to_one(rel, int(np.prod(in_shape, dtype=np.int64)))
    if src is None:
        return None
    if isinstance(op, (ops.Conv1d, ops.Conv2d)):
        geo = _conv_geometry(op, in_shape, out_shape)
    else:
        c = in_shape[0]
        geo = (out_shape, in_shape[1:], op.kernel, op.stride, op.padding, (1, 1), np.arange(c)[:, None],
               np.ones((c, 1, *op.kernel), dtype=bool))
    n_out = int(np.prod(out_shape, dtype=np.int64))
    return WindowTaps(src, np.arange(n_out, dtype=IDX), *geo)


def _explicit(rel: _Rel | Compact) -> _Rel:
    return _Rel(*rel.pairs()) if isinstance(rel, (TokenBlocks, WindowTaps)) else rel


def _dedupe(src: np.ndarray, dst: np.ndarray) -> _Rel:
    if src.size == 0:
        return _Rel(src, dst)
    span = int(src.max()) + 1
    key = np.unique(dst.astype(np.int64) * span + src)
    return _Rel((key % span).astype(IDX), (key // span).astype(IDX))


class _Builder:
    def __init__(self, graph: Graph, compact: bool = True) -> None:
        self.graph = graph
        self.compact = compact
        self.pops: dict[str, Population] = {}
        self.memo: dict[tuple[str, str | None], dict[tuple[str, int], _Rel]] = {}
        self.active: set[str] = set()

    def rel(self, name: str, port: str | None) -> dict[tuple[str, int], _Rel]:
        """Relations from every (source population, delay) to ``name``'s output elements."""
        node = self.graph[name]
        if name in self.pops:
            return {(name, 0): _identity(self.pops[name].size)}
        key = (name, port)
        if key in self.memo:
            return self.memo[key]
        if name in self.active:
            raise PassError(
                f"node '{name}': a recurrent loop closes through synapse ops only; map-cores "
                "needs a neuron (LIF) in every loop"
            )
        self.active.add(name)
        try:
            out = self._op_rel(node)
        finally:
            self.active.discard(name)
        self.memo[key] = out
        return out

    def _input_rel(self, node, k: int) -> dict[tuple[str, int], _Rel]:
        r = node.inputs[k]
        rels = self.rel(r.node, r.port)
        if r.delay:
            rels = {(s, d + r.delay): v for (s, d), v in rels.items()}
        return rels

    def _op_rel(self, node) -> dict[tuple[str, int], _Rel]:
        op = node.op
        in_shapes = []
        for r in node.inputs:
            src = self.graph[r.node]
            in_shapes.append(tuple(src.shapes[src.port(r)]))
        out_shape = tuple(node.shape)
        if isinstance(op, ops.Add):
            merged: dict[tuple[str, int], list[_Rel]] = {}
            for k in range(len(node.inputs)):
                for key, rel in self._input_rel(node, k).items():
                    merged.setdefault(key, []).append(rel)
            out = {}
            for key, rels in merged.items():
                if len(rels) == 1:
                    out[key] = rels[0]
                    continue
                first = rels[0]
                if all(isinstance(r, TokenBlocks) and isinstance(first, TokenBlocks) and np.array_equal(r.src, first.src)
                       and np.array_equal(r.dst, first.dst) for r in rels):  # one weight pattern: a union
                    out[key] = TokenBlocks(first.src, first.dst, np.logical_or.reduce([r.mask for r in rels]))
                    continue
                rels = [_explicit(r) for r in rels]
                out[key] = _dedupe(np.concatenate([r.src for r in rels]), np.concatenate([r.dst for r in rels]))
            return out
        if len(node.inputs) != 1:
            raise PassError(f"node '{node.name}' ({type(op).__name__}): map-cores cannot derive its connectivity")
        n_in = int(np.prod(in_shapes[0], dtype=np.int64))
        if isinstance(op, (ops.Scale, ops.BatchNorm, ops.Reshape)):
            return self._input_rel(node, 0)
        inputs = self._input_rel(node, 0)
        if isinstance(op, ops.Permute):
            perm = np.arange(n_in, dtype=IDX).reshape(in_shapes[0]).transpose(op.dims).ravel()
            edges = (perm, np.arange(n_in, dtype=IDX))
            inverse = np.empty(n_in, IDX)
            inverse[perm] = np.arange(n_in, dtype=IDX)
            return {k: replace(r, dst=inverse[r.dst], _where=None) if isinstance(r, (TokenBlocks, WindowTaps))
                    else _compose(r, edges[0], edges[1], n_in) for k, r in inputs.items()}
        if isinstance(op, ops.Dense):
            out = {}
            for key, rel in inputs.items():
                blocks = _blocked(_explicit(rel), op, in_shapes[0], out_shape) if self.compact else None
                if blocks is None:
                    src, dst = _dense_edges(op, in_shapes[0], out_shape)
                    out[key] = _compose(_explicit(rel), src, dst, n_in)
                else:
                    out[key] = blocks
            return out
        if not isinstance(op, (ops.Conv1d, ops.Conv2d, ops.SumPool2d, ops.AvgPool2d, ops.MaxPool2d)):
            raise PassError(
                f"node '{node.name}' ({type(op).__name__}): map-cores cannot derive the neuron "
                "connectivity of this op"
            )
        out = {}
        for key, rel in inputs.items():
            taps = _windowed(_explicit(rel), op, in_shapes[0], out_shape) if self.compact else None
            if taps is None:
                conv = isinstance(op, (ops.Conv1d, ops.Conv2d))
                src, dst = (_conv_edges if conv else _pool_edges)(op, in_shapes[0], out_shape)
                taps = _compose(_explicit(rel), src, dst, n_in)
            out[key] = taps
        return out


def extract_connectivity(graph: Graph, compact: bool = True) -> Connectivity:
    """Compute the neuron-level connectivity of ``graph`` (see module docstring).

    ``compact``: keep per-token Dense projections as `TokenBlocks` and convolutions / pools as
    `WindowTaps` (``False`` materialises every
    pair: the reference the compact form is tested against).

    Raises:
        PassError: an op whose connectivity is unknown, or a recurrent loop
            without a neuron population in it.
    """
    b = _Builder(graph, compact)
    offset = 0
    for n in graph.inputs():
        b.pops[n.name] = Population(n.name, tuple(n.shape), "input", offset)
        offset += b.pops[n.name].size
    topo = graph.topo_order()
    for name in topo:  # Loihi 2: a custom process off the neuro cores whose graded outputs enter like inputs
        n = graph[name]
        if isinstance(n.op, ops.SpikeAttention):
            b.pops[name] = Population(name, tuple(n.shape), "input", offset)
            offset += b.pops[name].size
    for name in topo:
        n = graph[name]
        if isinstance(n.op, ops.LIF):
            b.pops[name] = Population(name, tuple(n.shape), "neuron", offset)
            offset += b.pops[name].size
    projections: dict[str, list[Projection]] = {}
    for name in topo:
        n = graph[name]
        if not isinstance(n.op, ops.LIF):
            continue
        rels = b._input_rel(n, 0)
        projections[name] = [
            Projection(src_name, delay, blocks=rel) if isinstance(rel, (TokenBlocks, WindowTaps))
            else Projection(src_name, delay, rel.src, rel.dst)
            for (src_name, delay), rel in sorted(rels.items(), key=lambda kv: (b.pops[kv[0][0]].offset, kv[0][1]))
            if (rel.synapses if isinstance(rel, (TokenBlocks, WindowTaps)) else rel.src.size)
        ]
    unmapped = []
    for o in graph.outputs():
        r = o.inputs[0]
        if r.node not in b.pops and not isinstance(graph[r.node].op, (ops.Output, ops.Input)):
            unmapped.append(r.node)
    return Connectivity(b.pops, projections, sorted(set(unmapped)))


def source_rates(graph: Graph, conn: Connectivity) -> tuple[np.ndarray, str]:
    """Mean spikes per step of every source neuron (global ids), and where they came from.

    ``node.meta["rate"]`` is a scalar (mean over the population) or an array of
    one value per neuron (any shape with the population's size). Populations
    without it get 1.0 (every neuron spikes every step: a worst case).

    Returns:
        ``(rates, provenance)`` with provenance ``"measured"``, ``"default"``
        (no population has a rate) or ``"partial"``.

    Raises:
        PassError: a rate of the wrong size, negative or not finite.
    """
    rates = np.ones(conn.num_sources, np.float64)
    have = 0
    for pop in conn.populations.values():
        if pop.name not in graph:  # a fan-in relay (map-cores): a graded message every step at worst
            continue
        meta = graph[pop.name].meta
        if "rate" not in meta or meta["rate"] is None:
            continue
        r = np.asarray(meta["rate"], dtype=np.float64).ravel()
        if r.size not in (1, pop.size):
            raise PassError(
                f"node '{pop.name}': meta['rate'] has {r.size} values for {pop.size} neurons (give a scalar or one per neuron)"
            )
        if not np.all(np.isfinite(r)) or np.any(r < 0):
            raise PassError(f"node '{pop.name}': meta['rate'] must be finite and non-negative")
        rates[pop.offset : pop.offset + pop.size] = r
        have += 1
    n = sum(1 for p in conn.populations if p in graph)
    return rates, ("measured" if have == n and n else "default" if have == 0 else "partial")


# -- fan-in relays ---------------------------------------------------------------


def relay_blocks(sizes: list[tuple[str, int]], axons: int) -> list[tuple[str, int, int]]:
    """The relay blocks of a neuron population whose fan-in exceeds ``axons`` input axons.

    ``sizes``: its source populations ``(name, neurons)`` in connectivity order. Each source
    population is cut into ``ceil(n / axons)`` balanced chunks of consecutive (row-major)
    neurons; each chunk ``(source, lo, hi)`` feeds one block of relay neurons (one relay per
    destination neuron) that forwards its partial sum. The Lava backend emits the same blocks
    from ``node.meta["fan_in_relays"]``."""
    blocks = []
    for name, n in sizes:
        k = max(1, -(-n // axons))
        step = -(-n // k)
        blocks += [(name, lo, min(lo + step, n)) for lo in range(0, n, step)]
    return blocks


def max_distinct_fan_in(conn: Connectivity, name: str) -> int:
    """The largest number of distinct source neurons feeding one neuron of population ``name``.

    One projection holds distinct pairs and different source populations have different neurons,
    so only projections sharing a source (several delays) are deduplicated, as explicit pairs."""
    n = conn.populations[name].size
    by_source: dict[str, list[Projection]] = {}
    for p in conn.projections.get(name, []):
        by_source.setdefault(p.source, []).append(p)
    distinct = np.zeros(n, np.int64)
    for source, ps in by_source.items():
        if len(ps) == 1:
            distinct += ps[0].counts(n)
            continue
        span = conn.populations[source].size
        pairs = np.unique(np.concatenate([p.dst.astype(np.int64) * span + p.src for p in ps]))
        distinct += np.bincount(pairs // span, minlength=n)
    return int(distinct.max(initial=0))


def insert_relays(conn: Connectivity, name: str, blocks: list[tuple[str, int, int]]) -> str:
    """Route every synapse into population ``name`` through relay neurons (see `relay_blocks`).

    Adds population ``<name>.relay`` (``len(blocks) x`` the destination's neurons; relay ``(b, i)``
    receives block ``b``'s synapses into neuron ``i``) just before ``name``, which then reads one
    relay per block instead of the sources. Global source ids are renumbered. Returns the relay's
    name."""
    dst_pop = conn.populations[name]
    n = dst_pop.size
    relay = f"{name}.relay"
    into_relay: list[Projection] = []
    used = []
    for b, (source, lo, hi) in enumerate(blocks):
        parts = [p for p in conn.projections.get(name, []) if p.source == source]
        for p in parts:
            keep = (p.src >= lo) & (p.src < hi)
            if keep.any():
                into_relay.append(Projection(source, p.delay, p.src[keep], (p.dst[keep] + b * n).astype(IDX)))
                used.append(np.unique(p.dst[keep]).astype(np.int64) + b * n)
    rsrc = np.sort(np.concatenate(used)).astype(IDX) if used else np.zeros(0, IDX)
    by_source: dict[str, list[Projection]] = {}
    for p in into_relay:
        by_source.setdefault(p.source, []).append(p)
    merged = []
    for source, ps in by_source.items():  # one projection per (source, delay), sorted by destination
        for delay in sorted({p.delay for p in ps}):
            sel = [p for p in ps if p.delay == delay]
            s = np.concatenate([p.src for p in sel])
            d = np.concatenate([p.dst for p in sel])
            order = np.argsort(d, kind="stable")
            merged.append(Projection(source, delay, s[order], d[order]))
    pops: dict[str, Population] = {}
    for k, p in conn.populations.items():
        if k == name:
            pops[relay] = Population(relay, (len(blocks) * n,), "neuron")
        pops[k] = p
    offset = 0
    for p in pops.values():
        p.offset = offset
        offset += p.size
    order = np.argsort(rsrc % n, kind="stable")
    conn.populations.clear()
    conn.populations.update(pops)
    conn.projections[relay] = merged
    conn.projections[name] = [Projection(relay, 0, rsrc[order], (rsrc[order] % n).astype(IDX))]
    return relay
