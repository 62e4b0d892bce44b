"""`Builder`: constructs the per-step IR graph while a traced model is converted,
folding the T copies of an unrolled time loop into one.

A Python ``for t in range(T)`` loop in ``forward`` is unrolled by tracing into T
copies of the same computation. The builder creates IR nodes only for the
first copy: every node is registered under a structural key (what it computes
plus the IR refs of its inputs), and when step ``t > 0`` asks for a node, the
node of step 0 with the same key is returned. A step that computes something
step 0 did not fails with a `FrontendError`, so copies that differ (e.g.
``if t == 0: ...``) are never folded silently. Neuron state carried from step
``t-1`` to ``t`` (explicit ``mem`` arguments, or the module's own hidden state)
is checked to come from the same neuron one step earlier.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn

from ..ir.graph import Graph, GraphError, Ref
from ..ir.ops import Op, Reshape
from .errors import FrontendError, LayoutError
from .values import LEADS, Const, Seq, Struct, Sym, Value

_BAD = re.compile(r"[^A-Za-z0-9_.:\-]")


def sanitize(name: str) -> str:
    """A valid IR node name derived from a module path or fx node name."""
    s = _BAD.sub("_", name) or "node"
    return s if re.match(r"[A-Za-z0-9_]", s[0]) else "n" + s


def source_line(node: fx.Node | None) -> str:
    """``file.py:line`` of the user code that created an fx node (if recorded)."""
    if node is None or not node.stack_trace:
        return ""
    lines = [ln.strip() for ln in node.stack_trace.strip().splitlines() if ln.strip().startswith("File ")]
    for ln in reversed(lines):
        m = re.match(r'File "([^"]+)", line (\d+)', ln)
        if m and "/torch/" not in m.group(1) and "/frontends/" not in m.group(1):
            return f"{m.group(1).rsplit('/', 1)[-1]}:{m.group(2)}"
    return ""


def f32(x: Any, what: str) -> np.ndarray:
    """A parameter tensor as a float32 numpy array (float32 models only)."""
    if isinstance(x, torch.Tensor):
        if x.dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
            raise FrontendError(f"{what}: expected a floating point tensor, got {x.dtype}")
        return x.detach().cpu().to(torch.float32).numpy().copy()
    return np.asarray(x, dtype=np.float32)


@dataclass
class Call:
    """One call of a leaf module, as seen by its converter."""

    b: Builder
    module: nn.Module
    qualname: str
    args: list[Value]
    kwargs: dict[str, Value]
    value: Any
    node: fx.Node | None = None

    @property
    def name(self) -> str:
        """IR node name base for this module."""
        return sanitize(self.qualname)

    def where(self) -> str:
        return f"module '{self.qualname}' ({type(self.module).__name__})"

    def error(self, msg: str, cls: type[FrontendError] = FrontendError) -> FrontendError:
        return cls(f"{self.b.where()}{self.where()}: {msg}")

    def new_op(self, factory: Callable[..., Op], *args: Any, **kwargs: Any) -> Op:
        """``factory(*args, **kwargs)``, with the op's own parameter check (a ValueError) reported
        as this module's error."""
        try:
            return factory(*args, **kwargs)
        except ValueError as e:
            raise self.error(str(e)) from None

    def tensor(self, i: int = 0, what: str = "input") -> Sym:
        """Argument ``i`` as a `Sym` (errors if it is not computed from the inputs)."""
        if i >= len(self.args):
            raise self.error(f"missing {what}")
        v = self.args[i]
        if not isinstance(v, Sym):
            raise self.error(f"its {what} is not computed from the model input ({type(v).__name__})")
        if v.decode:
            v = self.b.time_reduction(f"{self.name}.time_{v.decode}", v)
        return self.b.resolve(self.name + ".unsqueeze", v)

    def arg(self, i: int, name: str, default: Any = None) -> Value:
        """Positional argument ``i`` or keyword ``name``."""
        if i < len(self.args):
            return self.args[i]
        return self.kwargs.get(name, Const(default))


@dataclass
class Builder:
    """Accumulates the IR graph of one conversion (see module docstring)."""

    name: str
    batch: int
    seq_len: int | None = None
    graph: Graph = field(init=False)
    fx_node: fx.Node | None = None
    encoder_steps: int | None = None
    _canon: dict[tuple, str] = field(default_factory=dict)
    _calls: dict[str, list[int | None]] = field(default_factory=dict)  # neuron node -> steps of its calls
    _implicit: dict[str, int] = field(default_factory=dict)  # module qualname -> implicit-state calls so far
    _seq_neurons: set[str] = field(default_factory=set)
    final_states: dict[tuple[str, str | None], str] = field(default_factory=dict)
    """Neuron outputs ``(node, port)`` a sequence module also returns as its final state (norse's
    ``(outputs, state)``) -> the module; computing on them is refused with the module's name."""
    state_alias: dict[str, str] = field(default_factory=dict)
    """Nodes whose values count as a neuron's own state (e.g. its graded-spike `Scale`)."""
    choices: Sequence[int] = ()
    """Forced picks at the ambiguous layout decisions, in the order they occur (default 0)."""
    choice_points: list[int] = field(default_factory=list)
    """How many interpretations each ambiguous decision of this conversion had."""

    def __post_init__(self) -> None:
        self.graph = Graph(sanitize(self.name))

    # -- errors -------------------------------------------------------------------
    def where(self) -> str:
        """Prefix naming the source line being converted."""
        line = source_line(self.fx_node)
        return f"{line}: " if line else ""

    def error(self, msg: str, cls: type[FrontendError] = FrontendError) -> FrontendError:
        return cls(f"{self.where()}{msg}")

    # -- node creation with folding ---------------------------------------------
    def emit(self, key: Hashable, inputs: Sequence[Ref], step: int | None, make: Callable[[], str], what: str) -> str:
        """The node for ``key`` applied to ``inputs``: created by ``make()`` the first
        time, reused afterwards. Creating a node at loop step > 0 is an error."""
        full = (key, tuple(inputs))
        name = self._canon.get(full)
        if name is not None:
            return name
        if step is not None and step > 0:
            final = next((self.final_states[(r.node, r.port)] for r in inputs if (r.node, r.port) in self.final_states), None)
            if final is not None:
                raise self.error(
                    f"{what} reads the final state (last time step) of {final}: npuc compiles it only as a model "
                    "output (return it); compute on the module's stacked outputs instead"
                )
            raise self.error(
                f"step {step} of the time loop computes {what} differently from step 0; npuc folds a "
                "loop only when every step runs the same computation (no step-dependent branches)"
            )
        try:
            name = make()
        except GraphError as e:
            raise self.error(str(e)) from None
        self._canon[full] = name
        return name

    def add(self, name: str, op: Op, inputs: Sequence[Any], meta: dict | None = None) -> str:
        """Add a node under a fresh name derived from ``name``."""
        unique = self.graph.unique_name(sanitize(name))
        try:
            return self.graph.add(unique, op, inputs, meta=meta)
        except GraphError as e:
            raise self.error(str(e)) from None

    def apply(self, name: str, op_factory: Callable[[], Op], x: Sym, key: Hashable, meta: dict | None = None) -> Sym:
        """A stateless per-step op on ``x``; returns the result with ``x``'s lead and step.

        Synapse ops on a sequence get ``meta["time_folded"]`` so the float engine
        issues the same matmul call shape as the model did.
        """
        if x.decode:
            x = self.time_reduction(f"{name}.time_{x.decode}", x)
        x = self.resolve(name + ".unsqueeze", x)
        meta = dict(meta or {})
        folded = _folded(x.lead)
        if folded:
            meta["time_folded"] = folded

        def make() -> str:
            try:
                op = op_factory()
            except ValueError as e:
                raise self.error(f"'{name}': {e}") from None
            return self.add(name, op, [x.ref], meta)

        node = self.emit((key, folded), [x.ref], x.step, make, f"'{name}'")
        return x.with_(ref=Ref(node), shape=self.graph[node].shape)

    def combine(self, name: str, op_factory: Callable[[], Op], xs: Sequence[Sym], key: Hashable) -> Sym:
        """A stateless op on several values of the same step and layout (e.g. `Add`)."""
        xs = [self.time_reduction(f"{name}.time_{x.decode}", x) if x.decode else x for x in xs]
        xs = [self.resolve(name + ".unsqueeze", x) for x in xs]
        leads = {x.lead for x in xs}
        if len(leads) != 1:
            raise self.error(f"'{name}' combines tensors with different layouts: {[LEADS[x.lead] for x in xs]}", LayoutError)
        steps = {x.step for x in xs if x.step is not None}
        if len(steps) > 1:
            raise self.error(
                f"'{name}' combines values of different time steps {sorted(steps)}: recurrence written "
                "in Python across loop steps is not supported (use a recurrent neuron such as snntorch RLeaky)"
            )
        step = steps.pop() if steps else None
        if any(x.decode for x in xs):
            raise self.error(f"'{name}' is applied to a reduction over time; reductions must be the model's output")
        refs = [x.ref for x in xs]

        def make() -> str:
            try:
                op = op_factory()
            except ValueError as e:
                raise self.error(f"'{name}': {e}") from None
            return self.add(name, op, refs)

        node = self.emit(key, refs, step, make, f"'{name}'")
        return xs[0].with_(ref=Ref(node), shape=self.graph[node].shape, step=step)

    def time_reduction(self, name: str, x: Sym) -> Sym:
        """A reduction over time consumed by a layer (`npuc.frontends.reductions.time_reduction`)."""
        from .reductions import time_reduction

        return time_reduction(self, name, x)

    # -- layouts ------------------------------------------------------------------
    def choose(self, n: int) -> int:
        """Pick one of ``n`` interpretations of an ambiguous layout decision (see `choices`)."""
        k = len(self.choice_points)
        self.choice_points.append(n)
        return self.choices[k] if k < len(self.choices) else 0

    def lead_sizes(self, lead: tuple[str, ...]) -> tuple[int | None, ...]:
        """Sizes of the leading axes of a tensor with this lead."""
        bsz, t = self.batch, self.seq_len
        sizes = {"B": bsz, "T": t, "U": 1, "TxB": None if t is None else t * bsz, "BxT": None if t is None else t * bsz}
        return tuple(sizes[a] for a in lead)

    def resolve(self, name: str, x: Sym) -> Sym:
        """A value with a pending size-1 axis (``x.unsqueeze(d)`` not followed by
        ``.repeat``) as an ordinary per-step value: the axis joins the per-sample shape."""
        if x.lead not in (("U", "B"), ("B", "U")):
            return x
        if x.lead == ("U", "B"):
            raise self.error("x.unsqueeze(0) of a [B, ...] input is only supported before .repeat(T, 1, ...) "
                             "(presenting a static input at every step)", LayoutError)
        origin = x.origin
        sample = (1, *origin.shape)
        return self.apply(name, lambda: Reshape(sample), origin, ("reshape", sample))

    def unsqueeze(self, name: str, x: Sym, dim: int) -> Sym:
        """``x.unsqueeze(dim)``; on a static ``[B, ...]`` value at dim 0 or 1 the new axis
        may become a time axis (decided by the next use, see `resolve`)."""
        x = self.resolve(name, x)
        if x.lead == ("B",) and x.step is None and dim in (0, 1) and not x.decode:
            return x.with_(lead=("U", "B") if dim == 0 else ("B", "U"), origin=x)
        full = list(self.lead_sizes(x.lead)) + list(x.shape)
        d = dim % (len(full) + 1)
        return self.reshape(name, x, full[:d] + [1] + full[d:])

    def reshape(self, name: str, x: Sym, out_shape: Sequence[int]) -> Sym:
        """Reshape the user tensor of ``x`` to the concrete ``out_shape``: a per-sample
        `Reshape`, and/or folding (``[T, B] -> [T*B]``) or unfolding of the leading axes."""
        x = self.resolve(name, x)
        out = tuple(int(s) for s in out_shape)
        n_sample = int(np.prod(x.shape))
        options = [(x.lead, len(x.lead))]
        merge = {("T", "B"): ("TxB",), ("B", "T"): ("BxT",)}
        split = {("TxB",): ("T", "B"), ("BxT",): ("B", "T")}
        if x.lead in merge:
            options.append((merge[x.lead], 1))
        if x.lead in split:
            # with batch 1, [T*1, C, ...] -> [T, 1, C, ...] also reads as a new size-1 feature axis;
            # SpikingJelly/Spikformer code writes reshape(T, B, ...) to unfold time, so that wins
            options.insert(0 if self.batch == 1 else len(options), (split[x.lead], 2))

        fits = []
        for lead, k in options:
            want = self.lead_sizes(lead)
            if None not in want and out[:k] == want and len(out) > k and int(np.prod(out[k:])) == n_sample:
                fits.append((lead, out[k:]))
        if not fits:
            sizes = list(self.lead_sizes(x.lead))
            raise self.error(
                f"reshaping a {LEADS[x.lead]} tensor {sizes + list(x.shape)} to {list(out)} mixes its batch/time "
                "axes with its features", LayoutError
            )
        # With a batch (or time axis) of 1 the concrete shapes can fit several readings: [T*1, C]
        # -> [T, 1, C] unfolds the batch or adds a feature axis. The conversion tries each reading
        # (`choices`) until the whole model converts, as it would with any other batch size.
        lead, sample = fits[self.choose(len(fits))] if len(fits) > 1 else fits[0]
        if sample == tuple(x.shape):
            return x.with_(lead=lead)
        return self.apply(name, lambda s=sample: Reshape(s), x, ("reshape", sample)).with_(lead=lead)

    # -- neurons ------------------------------------------------------------------
    def step_neuron(
        self,
        call: Call,
        x: Sym,
        make: Callable[[], str],
        state: Sequence[Value] = (),
        hidden: bool = True,
    ) -> tuple[str, int]:
        """Register one call of a per-step neuron (one time step per call).

        Args:
            call: the module call.
            x: its input (one step, ``[B, ...]``).
            make: builds the neuron's IR node(s) (first call only); returns the LIF node.
            state: the explicit state arguments. Each is ``None``, an initial state
                (`Const` zeros) or a value this neuron returned one step earlier.
            hidden: whether the module keeps its own state between calls when it is
                given no state (snntorch, SpikingJelly); if not (norse), a call
                without state starts from the initial state.

        Returns:
            ``(lif_node, step)``.
        """
        x = self.resolve(call.name + ".unsqueeze", x)
        if x.lead != ("B",):
            raise call.error(
                f"it takes one time step [B, ...] per call but got a {LEADS[x.lead]} tensor", LayoutError
            )
        explicit = any(not (isinstance(s, Const) and s.value is None) for s in state)
        node_name = None
        if not explicit and not hidden:
            step = 0
        elif explicit:
            owners = [_state_owner(s, self.state_alias) for s in state]
            prev = {o for o in owners if o is not None}
            if not prev:
                for s in state:
                    if not (isinstance(s, Const) and s.is_zero_state()):
                        raise call.error(
                            "its initial state must be the library's reset state (None, reset_mem()/init_*() or zeros); "
                            f"got {_describe(s)}"
                        )
                    v_leak = getattr(getattr(call.module, "p", None), "v_leak", None)  # norse resets v to v_leak
                    if s.value is not None and v_leak is not None and bool(torch.any(torch.as_tensor(v_leak) != 0)):
                        raise call.error("an all-zero initial state differs from its reset state (v = v_leak "
                                         "!= 0); pass None as the first state")
                step = 0
            else:
                if len(prev) != 1 or any(o is None for o in owners):
                    raise call.error("its state arguments do not all come from its own previous call")
                (node_name, pstep), = prev
                step = (pstep if pstep is not None else -1) + 1
        else:
            step = self._implicit.get(call.qualname, 0)
        if x.step is not None and x.step != step:
            raise call.error(
                f"is called for time step {step} (its {'state' if explicit else 'call count'}) on an input of step {x.step}"
            )
        node = self.emit(("neuron", call.qualname), [x.ref], step, make, call.where())
        if node_name is not None and node_name != node:
            raise call.error(f"its state comes from '{node_name}', not from its own previous call")
        self._implicit[call.qualname] = step + 1
        self._calls.setdefault(node, []).append(step)
        return node, step

    def seq_neuron(self, call: Call, x: Sym, lead: tuple[str, ...], make: Callable[[], str]) -> str:
        """Register the call of a neuron that consumes a whole sequence (SpikingJelly
        multi-step, sinabs, npuc.nn)."""
        x = self.resolve(call.name + ".unsqueeze", x)
        if x.lead != lead:
            raise call.error(f"it takes a {LEADS[lead]} tensor but got a {LEADS[x.lead]} one", LayoutError)
        if call.qualname in self._seq_neurons:
            raise call.error(
                "is called more than once in one forward pass; its state would carry over between the calls"
            )
        self._seq_neurons.add(call.qualname)
        node = self.emit(("neuron", call.qualname), [x.ref], None, make, call.where())
        self._calls.setdefault(node, []).append(None)
        return node

    def port(self, x: Sym, node: str, port: str) -> Sym:
        """A value read from ``node.port`` with ``x``'s layout and step."""
        return x.with_(ref=Ref(node, port), shape=self.graph[node].shapes[port])

    def neuron_calls(self) -> dict[str, list[int | None]]:
        return self._calls


def _folded(lead: tuple[str, ...]) -> Any:
    if lead in (("T", "B"), ("TxB",)):
        return True
    if lead in (("B", "T"), ("BxT",)):
        return "BT"
    return False


def _state_owner(s: Value, alias: dict[str, str]) -> tuple[str, int | None] | None:
    """``(node, step)`` of the neuron that produced a state value, else None."""
    if isinstance(s, Sym):
        return (alias.get(s.ref.node, s.ref.node), s.step)
    if isinstance(s, Struct) and s.owner:
        return (s.owner, s.step)
    if isinstance(s, Seq):
        owners = {_state_owner(i, alias) for i in s.items}
        if len(owners) == 1:
            return owners.pop()
    return None


def _describe(v: Value) -> str:
    if isinstance(v, Const):
        if isinstance(v.value, torch.Tensor):
            return f"a constant tensor of shape {list(v.value.shape)} that is not all zeros"
        return repr(v.value)[:60]
    return type(v).__name__
