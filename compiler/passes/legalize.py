"""Legalization: rewrite a float graph into the structure a hardware target implements.

After `Legalize` every neuron's input is a sum of synapse paths, each with
exactly one weighted op (`npuc.ir.analysis.neuron_paths`), and every neuron
uses only features the target's numeric profile lists; anything that cannot
be made so raises `PassError` naming the node, unless the user allowed
approximations (then each approximation is a named warning).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import Graph, Ref, ops
from ..ir.analysis import StructureError, is_population, neuron_paths, spikes_read
from .base import Pass, PassContext, PassError, PassResult
from .fold import FoldScale, canonical
from .readout import commute_time_reductions, fold_token_means, insert_current_readouts


@dataclass(frozen=True)
class Legalize(Pass):
    """Make the graph implementable by the context's target.

    Rewrites (all targets):

    * an output reading synapse currents (a classifier's logits) reads them through a
      ``LIF(alpha_i=0, reset="none")``'s current port ``i`` (`insert_current_readouts`);

    * ``AvgPool2d`` -> ``SumPool2d`` + ``Scale(1 / (kh kw))``, then every
      constant scale is folded into weights or gains (`FoldScale`);
    * a sum pool of a convolution's currents (``Conv2d`` with stride 1 -> ``SumPool2d``
      with stride = kernel; average pools are sum pools plus a scale by now) is one
      convolution: kernel ``W * box`` (size ``k + kp - 1``), stride ``kp``, bias ``kp^2 b``;
    * a weighted op reading a sum of populations (SEW-style residual
      ``fc(s1 + s2)``, possibly through reshapes, permutes, pools and scales)
      is distributed over the sum: ``fc(s1) + fc(s2)`` with the bias once; each
      branch is an ordinary synapse path (the weights are stored once per branch);
    * a synapse op or Add read by several consumers is duplicated per consumer
      (each neuron scales its own inputs when quantized);
    * a path with no weighted op (input or spikes straight into a neuron)
      gets an identity Dense (1-d / token shapes) or depthwise 1x1 Conv; a
      constant `Scale` that is such a path's only op (snntorch ``RLeaky``'s
      one-to-one ``V`` recurrence) becomes that op's weights (a diagonal Dense,
      or a depthwise 1x1 Conv for a per-channel factor).

    Target-specific (from ``target.profile``):

    * max pooling of binary spikes is kept where the target pools spikes
      (FPGA) and otherwise becomes a sum pool into an OR neuron (fires when the
      count is positive); max pooling of one convolution's currents into a neuron is kept
      (`_check_current_maxpool`; an error for Loihi 2 with ``stock_only``);
    * neuron features the profile lacks: a delayed zero reset becomes a
      same-step reset (identical spikes), other missing features raise, or
      with ``allow_approx`` are approximated with a warning naming the node;
    * Loihi 2: ``StochasticAttention`` and ``LinearAttention`` raise (no Lava process);
      ``SpikeAttention`` raises only with ``stock_only`` (otherwise the Lava backend emits
      npuc's custom ``NpucAttention`` process);
    * a diagonal SSM state (`_ssm_states`) on a target without ``reset="none"``:
      a LIF without reset whose spikes nobody reads (only its membrane is an
      output) keeps its exact dynamics as a reset-to-0 neuron whose threshold
      lies above the largest membrane it can reach, so it never fires.
    """

    name = "legalize"

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        prof = ctx.target.profile
        counts = {"avgpool": 0, "duplicated": 0, "identity": 0, "or_neurons": 0, "neurons_changed": 0,
                  "ssm_states": 0}
        # before any rewrite: an attention is the reason, whatever else would also need work
        if prof.weight_scheme == "loihi":
            # coincidence attention runs as npuc's custom NpucAttention process (not with stock_only)
            kinds = (ops.StochasticAttention, ops.LinearAttention) + ((ops.SpikeAttention,) if _stock_only(ctx) else ())
            for node in graph.of_type(*kinds):
                custom = (", drop stock_only (npuc then emits its custom NpucAttention process)"
                          if isinstance(node.op, ops.SpikeAttention) else "")
                raise PassError(
                    f"'{node.name}' ({type(node.op).__name__}) has no Loihi 2 process in lava-nc: compile it with "
                    f"--target fpga{custom}, or split the model and run this part on the host (see "
                    "docs/lava-backend.md)"
                )
        counts["time_reductions"] = commute_time_reductions(graph)
        counts["current_readouts"] = insert_current_readouts(graph)
        for node in graph.of_type(ops.AvgPool2d):
            self._split_avgpool(graph, node.name)
            counts["avgpool"] += 1
        counts["distributed_over_adds"] = self._distribute_over_adds(graph)
        _flatten_adds(graph)
        counts["pools_into_convs"] = self._fold_current_pools(graph)
        counts["or_neurons"] = self._maxpools(graph, ctx)
        graph = FoldScale().apply(graph, ctx).graph
        counts["diagonal_scales"] = self._diagonal_scales(graph)
        counts["token_means_into_weights"] = fold_token_means(graph)
        if prof.weight_scheme == "loihi":
            counts["pools_into_weights"] = self._fold_pools(graph)
        counts["duplicated"] = self._duplicate_shared(graph)
        counts["identity"] = self._insert_identities(graph)
        if "none" not in prof.reset_modes or prof.weight_scheme == "loihi":  # loihi2: keeps the stock LIFReset
            counts["ssm_states"] = self._ssm_states(graph, ctx)
        for node in graph.of_type(ops.LIF):
            new = self._neuron(node.name, node.op, ctx)
            if new is not node.op:
                graph.replace_op(node.name, new)
                counts["neurons_changed"] += 1
        remaining_scales = [n.name for n in graph.of_type(ops.Scale)]
        if remaining_scales:
            raise PassError(f"scale node(s) {remaining_scales} could not fold into weights or neurons; "
                            f"target '{ctx.target.name}' has no multiplier between layers")
        for node in graph.of_type(ops.LIF):
            try:
                neuron_paths(graph, node.name)
            except StructureError as e:
                raise PassError(str(e)) from None
        return PassResult(graph, counts)

    # -- pooling -------------------------------------------------------------------
    def _split_avgpool(self, graph: Graph, name: str) -> None:
        op = graph[name].op
        (src,) = graph[name].inputs
        k = op.kernel[0] * op.kernel[1]
        graph.replace_op(name, ops.SumPool2d(op.kernel, op.stride, op.padding))
        sc = graph.add(graph.unique_name(f"{name}.scale"), ops.Scale(np.float32(1.0 / k)), [name])
        graph.redirect(name, sc)

    def _fold_current_pools(self, graph: Graph) -> int:
        """``SumPool2d(kp, stride=kp)(Conv2d(W, stride=1)(x))`` -> ``Conv2d(W * box, stride=kp)(x)``.

        ``y[i] = sum_a conv[kp i + a] = sum_a sum_u W[u] x[kp i + a + u - p]``: the taps at offset
        ``a + u`` sum into one kernel of size ``k + kp - 1``; the floor-mode output sizes agree.
        """
        done = 0
        for pool in graph.of_type(ops.SumPool2d):
            src = pool.inputs[0]
            conv = graph[src.node]
            if (src.delay or not isinstance(conv.op, ops.Conv2d) or len(graph.users(conv.name)) != 1
                    or pool.op.padding != (0, 0) or pool.op.stride != pool.op.kernel
                    or conv.op.stride != (1, 1) or conv.op.dilation != (1, 1)):
                continue
            (ph, pw), w = pool.op.kernel, conv.op.weight.astype(np.float64)
            kh, kw = w.shape[2:]
            w2 = np.zeros((*w.shape[:2], kh + ph - 1, kw + pw - 1))
            for a in range(ph):
                for b in range(pw):
                    w2[:, :, a:a + kh, b:b + kw] += w
            bias = None if conv.op.bias is None else (conv.op.bias.astype(np.float64) * ph * pw).astype(np.float32)
            new = conv.op.replace(weight=w2.astype(np.float32), bias=bias, stride=(ph, pw))
            # the pool becomes a 1x1 pass-through (shapes stay consistent), then goes
            graph.replace_ops({conv.name: new, pool.name: ops.SumPool2d(1)})
            graph.bypass(pool.name)
            done += 1
        return done

    def _distribute_over_adds(self, graph: Graph) -> int:
        """``W(chain(a_1 + ... + a_m))`` -> ``W(chain(a_1)) + ... + W(chain(a_m))`` (see class docstring).

        ``chain`` holds only linear shape ops (Reshape, Permute, SumPool2d, Scale), so the sum of
        the branches equals the original in exact arithmetic and each branch has one weighted op.
        """
        linear = (ops.Reshape, ops.Permute, ops.SumPool2d, ops.Scale)
        done = 0
        while True:
            for node in graph.of_type(ops.Dense, ops.Conv1d, ops.Conv2d):
                chain, ref = [], node.inputs[0]
                while ref.delay == 0 and isinstance(graph[ref.node].op, linear):
                    chain.append(ref.node)
                    ref = graph[ref.node].inputs[0]
                if ref.delay == 0 and isinstance(graph[ref.node].op, ops.Add):
                    break
            else:
                return done
            add = graph[ref.node]
            branches = []
            for j, r in enumerate(add.inputs):
                prev = r
                for c in reversed(chain):
                    prev = graph.add(graph.unique_name(f"{c}.{j}"), graph[c].op, [prev], meta=dict(graph[c].meta))
                op = node.op if j == 0 else node.op.replace(bias=None)
                branches.append(graph.add(graph.unique_name(f"{node.name}.{j}"), op, [prev], meta=dict(node.meta)))
            total = graph.add(graph.unique_name(f"{node.name}.sum"), ops.Add(), branches)
            graph.redirect(node.name, total)
            for name in [node.name, *chain, add.name]:
                if not graph.users(name):
                    graph.remove(name)
            done += 1

    def _maxpools(self, graph: Graph, ctx: PassContext) -> int:
        prof = ctx.target.profile
        added = 0
        for node in graph.of_type(ops.MaxPool2d):
            src = node.inputs[0]
            if not _binary_spikes(graph, src):
                self._check_current_maxpool(graph, node, ctx)
                continue
            if prof.weight_scheme != "loihi":
                continue  # the FPGA pools spikes by OR-ing addresses
            users = graph.users(node.name)
            graph.replace_op(node.name, ops.SumPool2d(node.op.kernel, node.op.stride, node.op.padding))
            count = graph.add(graph.unique_name(f"{node.name}.count"), _identity_for(graph[node.name].shape), [node.name])
            # OR neuron: fires when the pooled spike count is positive, and never keeps charge
            lif = graph.add(graph.unique_name(f"{node.name}.or"), ops.LIF(alpha=0.0, threshold=0.5, reset="value"), [count])
            for user, idx in users:
                refs = list(graph[user].inputs)
                refs[idx] = Ref(lif, None, refs[idx].delay)
                graph.set_inputs(user, refs)
            added += 1
        return added

    def _check_current_maxpool(self, graph: Graph, node, ctx: PassContext) -> None:
        """Max pooling of a convolution's currents, read by one neuron as its only input: kept as a
        post-synaptic op (max commutes with the positive per-channel scale quantization applies, and
        with a per-channel bias). The FPGA neuron unit reads the window's largest accumulated
        current; Loihi 2 runs it in npuc's custom neuron process (refused with ``stock_only``)."""
        src = node.inputs[0]
        users = graph.users(node.name)
        conv = graph[src.node]
        if src.delay or not isinstance(conv.op, ops.Conv2d) or len(graph.users(conv.name)) != 1:
            raise PassError(f"max pool '{node.name}' pools '{src.node}' ({type(conv.op).__name__}), which is neither "
                            "spikes nor the currents of one convolution; pool spikes, or pool a Conv2d's output")
        if len(users) != 1 or not isinstance(graph[users[0][0]].op, ops.LIF) or node.inputs[0].delay \
                or graph[users[0][0]].inputs[0].delay:
            raise PassError(f"max pool '{node.name}' of the currents of '{src.node}' must feed one neuron directly "
                            "(as its only input): the hardware takes the maximum where the neuron reads its input")
        if _stock_only(ctx):
            raise PassError(f"max pool '{node.name}' pools currents from '{src.node}': lava-nc's stock processes have "
                            "no max of currents; drop stock_only (npuc then emits a custom neuron process), or pool "
                            "after the neuron (on spikes)")

    def _fold_pools(self, graph: Graph) -> int:
        """Fold sum pools of spikes into the weighted op that reads them (Loihi 2 synapses read
        population spikes only): pool(k, stride k) then conv(K, stride S, pad P) equals one conv
        with each tap repeated over the k x k window, stride k S, padding k P; pool, flatten,
        dense equals one dense layer whose columns repeat over each window."""
        folded = 0
        for node in list(graph.of_type(ops.SumPool2d)):
            users = graph.users(node.name)
            if len(users) != 1 or not _spikes_source(graph, node.inputs[0]):
                continue
            (user, _), = users
            u = graph[user]
            if isinstance(u.op, ops.Conv2d) and u.inputs[0].delay == 0:
                graph.replace_ops({user: _pool_into_conv(graph, node, u)}, {user: [node.inputs[0]]})
            elif isinstance(u.op, ops.Reshape) and len(u.shape) == 1 and len(graph.users(user)) == 1 \
                    and isinstance(graph[graph.users(user)[0][0]].op, ops.Dense):
                dense = graph[graph.users(user)[0][0]]
                graph.replace_ops({user: ops.Reshape((-1,)), dense.name: _pool_into_dense(graph, node, dense)},
                                  {user: [node.inputs[0]]})
            else:
                continue
            graph.remove(node.name)
            folded += 1
        return folded

    # -- structure -------------------------------------------------------------------
    def _duplicate_shared(self, graph: Graph) -> int:
        """Give every neuron its own copy of shared synapse ops (weighted, post-synaptic, Add)."""
        dup = 0
        changed = True
        while changed:
            changed = False
            for node in list(graph):
                if not _is_current_op(graph, node.name):
                    continue
                users = graph.users(node.name)
                if len(users) <= 1:
                    continue
                for k, (user, idx) in enumerate(users[1:], start=1):
                    copy = graph.add(graph.unique_name(f"{node.name}.dup{k}"), node.op, node.inputs, meta=dict(node.meta))
                    refs = list(graph[user].inputs)
                    refs[idx] = Ref(copy, refs[idx].port, refs[idx].delay)
                    graph.set_inputs(user, refs)
                    dup += 1
                changed = True
                break
        return dup

    def _insert_identities(self, graph: Graph) -> int:
        added = 0
        for node in graph.of_type(ops.LIF):
            (start,) = node.inputs
            heads = [(None, 0, start)]
            if isinstance(graph[start.node].op, ops.Add):
                heads = [(start.node, i, r) for i, r in enumerate(graph[start.node].inputs)]
            for owner, idx, ref in heads:
                if _has_weighted(graph, ref):
                    continue
                src = graph[ref.node]
                shape = src.shapes[src.port(ref)]
                ident = graph.add(graph.unique_name(f"{node.name}.in"), _identity_for(shape), [ref])
                target = owner if owner is not None else node.name
                refs = list(graph[target].inputs)
                refs[idx] = Ref(ident)
                graph.set_inputs(target, refs)
                added += 1
        return added

    def _diagonal_scales(self, graph: Graph) -> int:
        """A Scale reading a population (spikes or an input, any delay) straight into neurons
        or sums is a synapse path without weights: it becomes a diagonal weighted op."""
        changed = 0
        for node in graph.of_type(ops.Scale):
            (src,) = node.inputs
            users = graph.users(node.name)
            if not is_population(graph, src) or not users or \
                    not all(isinstance(graph[u].op, (ops.LIF, ops.Add)) for u, _ in users):
                continue
            shape = node.shape
            f = np.broadcast_to(node.op.factor.astype(np.float32), shape)
            if len(shape) == 1:
                op = ops.Dense(np.diag(f).astype(np.float32))
            elif len(shape) == 3 and np.all(f == f[:, :1, :1]):
                op = ops.Conv2d(f[:, 0, 0].reshape(-1, 1, 1, 1).copy(), groups=shape[0])
            else:
                continue
            graph.replace_op(node.name, op)
            changed += 1
        return changed

    # -- diagonal SSM states ---------------------------------------------------------
    def _ssm_states(self, graph: Graph, ctx: PassContext) -> int:
        """Rewrite each diagonal SSM state neuron into a never-firing reset-to-0 neuron.

        A LIF with ``reset="none"`` whose spikes nobody reads computes
        ``h_t = alpha h_{t-1} + gain i_t + bias`` and exposes only ``h`` (port
        ``v``): its threshold, spike type and compare do not influence anything
        observable. With ``B`` the largest ``|h_t|`` the layer can reach over the
        graph's steps (`_state_bound`, from the weights, the sources' largest
        values and the neuron's decays), setting ``threshold = 4 B`` and
        ``reset="value"`` keeps every observable value exactly while the neuron
        never fires. The factor 4 covers integer rounding (a weight rounded to
        nearest is at most twice its magnitude in integer units); the backends
        check the integer bound exactly (the Lava backend refuses a state whose
        integer bound reaches the integer threshold). Marks the node ``meta["ssm_state"]``.
        """
        changed = 0
        for node in graph.of_type(ops.LIF):
            op = node.op
            if op.reset != "none" or spikes_read(graph, node.name):
                continue
            try:
                bound = self._state_bound(graph, node.name, op, ctx)
            except PassError:
                if "none" in ctx.target.profile.reset_modes:
                    continue  # no static bound: the target runs the reset-free neuron itself (Loihi 2's custom process)
                raise
            theta = 4.0 * bound if bound > 0 else 1.0
            graph.replace_op(node.name, canonical(op, reset="value", reset_value=0.0, reset_timing="same",
                                                  compare="gt", spike="binary", threshold_lo=None, levels=None,
                                                  threshold=np.float32(theta)))
            node.meta["ssm_state"] = {"membrane_bound": float(bound)}
            changed += 1
        return changed

    def _state_bound(self, graph: Graph, name: str, op: ops.LIF, ctx: PassContext) -> float:
        """An upper bound of ``|h_t|`` of neuron ``name`` over the graph's steps (float units)."""

        def fail(why: str) -> PassError:
            return PassError(f"neuron '{name}' (LIF without reset, read through its membrane) has no reset on target "
                             f"'{ctx.target.name}', which is exact only if it never fires; {why}")

        per_step = 0.0
        try:
            paths = neuron_paths(graph, name)
        except StructureError as e:
            raise PassError(str(e)) from None
        for p in paths:
            w = graph[p.weighted].op if p.weighted is not None else None
            if not isinstance(w, (ops.Dense, ops.Conv2d, ops.Conv1d)):
                raise fail(f"its input path from '{p.source.node}' has no Dense/Conv to bound")
            odd = [n for n in p.pre + p.post if not isinstance(graph[n].op, (ops.Reshape, ops.Permute))]
            if odd:
                raise fail(f"'{odd[0]}' ({type(graph[odd[0]].op).__name__}) on its input path has no static bound")
            rows = np.abs(w.weight.astype(np.float64)).reshape(w.weight.shape[0], -1).sum(1)
            bias = np.abs(w.bias.astype(np.float64)) if w.bias is not None else 0.0
            per_step += float(np.max(rows * self._source_max(graph, p.source, ctx, fail) + bias))
        alpha = float(np.max(np.abs(op.alpha)))
        gain = float(np.max(np.abs(op.gain)))
        bias = float(np.max(np.abs(op.bias)))
        alpha_i = None if op.alpha_i is None else float(np.max(np.abs(op.alpha_i)))
        steps = graph.num_steps
        if steps is None:
            if alpha >= 1 or (alpha_i is not None and alpha_i >= 1):
                raise fail("without a decay its membrane grows with the number of steps, and the graph has no "
                           "num_steps to bound it: fix the number of time steps (--steps / steps=)")
            i_inf = per_step / (1 - alpha_i) if alpha_i is not None else per_step
            return float(abs(op.v_init) + (gain * i_inf + bias) / (1 - alpha))
        i_b, v_b, peak = 0.0, abs(op.v_init), 0.0
        for _ in range(steps):
            i_b = alpha_i * i_b + per_step if alpha_i is not None else per_step
            v_b = alpha * v_b + gain * i_b + bias
            peak = max(peak, v_b)
        return peak

    @staticmethod
    def _source_max(graph: Graph, ref: Ref, ctx: PassContext, fail) -> float:
        """The largest magnitude a population's output reaches (float units)."""
        node = graph[ref.node]
        op = node.op
        if isinstance(op, ops.LIF):
            if op.spike == "multilevel":
                if op.levels is None:
                    raise fail(f"its source '{ref.node}' emits unbounded multilevel spikes")
                return float(op.levels - 1)
            return 1.0
        if isinstance(op, ops.Input):
            if op.encoding.kind != "current":
                return 1.0
            if ctx.calibration is None:
                raise fail(f"its input '{ref.node}' is a current and there is no calibration data to bound it")
            idx = [n.name for n in graph.inputs()].index(ref.node)
            m = float(np.max(np.abs(np.asarray(ctx.calibration[idx], dtype=np.float64)), initial=0.0))
            return 2.0 * m * 1.01  # quantized inputs saturate at 2^(bits-1) units, at most ~2x the calibration range
        if isinstance(op, ops.StochasticAttention):
            return 1.0
        raise fail(f"its source '{ref.node}' ({type(op).__name__}) has no static bound")

    # -- neurons -------------------------------------------------------------------
    def _neuron(self, name: str, op: ops.LIF, ctx: PassContext) -> ops.LIF:
        prof = ctx.target.profile
        new = op

        def approx(feature: str, fix: str, **changes) -> None:
            nonlocal new
            if not ctx.allow_approx:
                raise PassError(f"neuron '{name}' uses {feature}, which target '{ctx.target.name}' does not "
                                f"implement; {fix}, or pass --allow-approx to approximate it")
            ctx.warn(f"neuron '{name}': {feature} approximated ({', '.join(f'{k}={v}' for k, v in changes.items())})")
            new = canonical(new, **changes)

        if op.spike not in prof.spike_types:
            raise PassError(f"neuron '{name}' emits {op.spike} spikes; target '{ctx.target.name}' supports {list(prof.spike_types)}")
        if op.reset == "value" and op.reset_timing == "delayed" and (
                "delayed" not in prof.reset_timings or prof.weight_scheme == "loihi"):
            # same spikes: the old membrane is zeroed either way (on Loihi 2 this keeps the stock LIFReset)
            new = canonical(new, reset_timing="same")
        if new.reset not in prof.reset_modes:
            approx(f"{new.reset} reset", "train with reset to a value (e.g. snntorch reset_mechanism='zero', reset_delay=False)",
                   reset="value", reset_value=0.0)
        if new.reset_timing not in prof.reset_timings:
            approx(f"'{new.reset_timing}' reset timing", "use a same-step reset (snntorch: reset_delay=False)",
                   reset_timing="same")
        stock = _stock_only(ctx)  # Loihi 2 without custom processes
        if new.reset == "value" and new.reset_value != 0 and stock:
            approx(f"reset to {new.reset_value}", "reset to 0", reset_value=0.0)
        if new.v_min is not None and stock:
            approx("a lower membrane bound (v_min)", "drop the bound (v_min; sinabs min_v_mem)", v_min=None)
        if new.v_init != 0 and stock:
            approx(f"initial membrane {new.v_init}", "start from 0", v_init=0.0)
        return new


def _stock_only(ctx: PassContext) -> bool:
    """Loihi 2 limited to lava-nc's stock processes (target option ``stock_only``, implied by ``netx``)."""
    opts = ctx.target.options
    return ctx.target.profile.weight_scheme == "loihi" and bool(opts.get("stock_only") or opts.get("netx"))


def _spikes_source(graph: Graph, ref: Ref) -> bool:
    """Whether a pool reads a population (its pooled values are spike counts, not currents)."""
    while not is_population(graph, ref):
        node = graph[ref.node]
        if isinstance(node.op, (ops.SumPool2d, ops.Reshape)) and len(node.inputs) == 1:
            ref = node.inputs[0]
            continue
        return False
    return True


def _pool_factor(graph: Graph, pool) -> int:
    """The pool's window k, checking it is k x k with stride k, no padding, tiling its input map."""
    src = graph[pool.inputs[0].node]
    _, h, w = src.shapes[src.port(pool.inputs[0])]
    k, st = pool.op.kernel, pool.op.stride
    if k[0] != k[1] or st != k or pool.op.padding != (0, 0) or h % k[0] or w % k[1]:
        raise PassError(f"sum pool '{pool.name}' ({k}, stride {st}, padding {pool.op.padding}) on a {h}x{w} map "
                        "cannot fold into the next layer for Loihi 2: use square non-overlapping pools that tile the map")
    return k[0]


def _pool_into_conv(graph: Graph, pool, conv) -> ops.Conv2d:
    """conv(pool(x)) as one convolution of x: every kernel tap repeated over the k x k window.
    A pointwise conv (1x1, stride 1, no padding; e.g. the count of a max pool of spikes) takes any
    pool, overlapping and padded ones included: each weight spread over the pool's window, with the
    pool's stride and padding (its zero padding adds nothing, as in the sum)."""
    op = conv.op
    if op.kernel == (1, 1) and op.stride == (1, 1) and op.padding == (0, 0):
        kh, kw = pool.op.kernel
        w = np.repeat(np.repeat(op.weight, kh, axis=2), kw, axis=3)
        return ops.Conv2d(w.astype(np.float32), op.bias, tuple(pool.op.stride), tuple(pool.op.padding), (1, 1),
                      op.groups)
    k = _pool_factor(graph, pool)
    if op.dilation != (1, 1):
        raise PassError(f"conv '{conv.name}' after sum pool '{pool.name}' is dilated: cannot fold the pool for Loihi 2")
    w = np.repeat(np.repeat(op.weight, k, axis=2), k, axis=3)
    return ops.Conv2d(w.astype(np.float32), op.bias, (op.stride[0] * k, op.stride[1] * k),
                      (op.padding[0] * k, op.padding[1] * k), (1, 1), op.groups)


def _pool_into_dense(graph: Graph, pool, dense) -> ops.Dense:
    """dense(flatten(pool(x))) as one dense layer of flatten(x): columns repeated over each window."""
    k = _pool_factor(graph, pool)
    c, h, w = pool.shape
    wd = dense.op.weight.reshape(dense.op.weight.shape[0], c, h, w)
    wd = np.repeat(np.repeat(wd, k, axis=2), k, axis=3).reshape(dense.op.weight.shape[0], -1)
    return ops.Dense(wd.astype(np.float32), dense.op.bias)


def _identity_for(shape: tuple[int, ...]):
    """An identity weighted op: depthwise 1x1 conv for (C, H, W), else a Dense on the last axis."""
    if len(shape) == 3:
        c = shape[0]
        return ops.Conv2d(np.ones((c, 1, 1, 1), np.float32), groups=c)
    return ops.Dense(np.eye(shape[-1], dtype=np.float32))


def _binary_spikes(graph: Graph, ref: Ref) -> bool:
    node = graph[ref.node]
    if isinstance(node.op, ops.LIF):
        return node.port(ref) == "spikes" and node.op.spike == "binary"
    if isinstance(node.op, ops.Input):
        return node.op.encoding.kind in ("rate", "bernoulli", "timecode", "latency")
    if isinstance(node.op, (ops.MaxPool2d,)) or type(node.op).__name__ in ("Reshape", "Permute"):
        return _binary_spikes(graph, node.inputs[0])
    return False


def _is_current_op(graph: Graph, name: str) -> bool:
    """A node carrying synaptic currents (downstream of a weighted op, up to a neuron)."""
    node = graph[name]
    if isinstance(node.op, (ops.Input, ops.LIF, ops.Output)):
        return False
    if node.op.has_role("weighted") or isinstance(node.op, ops.Add):
        return True
    return any(_is_current_op(graph, r.node) for r in node.inputs)


def _has_weighted(graph: Graph, ref: Ref) -> bool:
    while not is_population(graph, ref):
        node = graph[ref.node]
        if node.op.has_role("weighted"):
            return True
        if isinstance(node.op, (ops.LIF, ops.Add)) or not node.inputs:
            return False
        ref = node.inputs[0]
    return False


def _flatten_adds(graph: Graph) -> None:
    """Merge an `Add` read only by another `Add` into it (nested residual sums distributed
    twice, e.g. ``fc((s0 + s1) + s2)``), so every neuron input is one flat sum of paths."""
    changed = True
    while changed:
        changed = False
        for node in graph.of_type(ops.Add):
            refs: list[Ref] = []
            for i, r in enumerate(node.inputs):
                inner = graph[r.node]
                if isinstance(inner.op, ops.Add) and r.delay == 0 and graph.users(r.node) == [(node.name, i)]:
                    refs += list(inner.inputs)
                    changed = True
                else:
                    refs.append(r)
            if changed:
                old = [r.node for r in node.inputs]
                graph.set_inputs(node.name, refs)
                for name in old:
                    if name in graph and not graph.users(name) and isinstance(graph[name].op, ops.Add):
                        graph.remove(name)
                break
