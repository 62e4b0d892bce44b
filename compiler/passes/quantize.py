"""Quantization: integer parameters for a target's numeric profile, calibrated on data.

For every neuron population the pass picks one integer threshold ``T`` and
membrane scales ``lam_n = T / theta_n`` (integer membrane ~= ``lam * v``).
Everything else follows from the canonical `LIF` fields:

* synapses into neuron ``n``: ``W_int * 2^e ~= lam_n * gain_n * W * u_in / 2^act_shift``
  where ``u_in`` is the float value of one integer unit of the source
  (1 for spikes, ``2^-frac_bits`` for quantized input currents) and ``e`` is
  the smallest exponent that fits the weights in the profile's range;
* decays ``dv = round(D (1 - alpha))``, ``du = round(D (1 - alpha_i)) - du_offset``
  (``du = D - du_offset`` without a current state: ``u`` is the input), one per neuron when the
  float decays differ (a learned per-neuron beta), by the same rule;
* bias ``lam (bias + gain * b_dense)`` as mantissa << exponent; reset value,
  bounds and initial value times ``lam``.

``T`` is the largest value that keeps every integer quantity in range for
the calibration data: the threshold mantissa, the membrane (a high percentile
of ``|alpha v + gain i + bias| / theta`` times a headroom), the current state,
the weights at the largest exponent, and the bias. Afterwards every op has
``q`` set and ``graph.profile`` is the target's profile; the log records the
float-vs-int spike agreement per layer, output agreement, accuracy when labels
are given, and overflow events per layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..inputs import accuracy
from ..ir import Graph, ops
from ..ir.analysis import SynapsePath, neuron_paths, spikes_read
from ..ir.values import QLIF, NumericProfile, QAttention, QInput, QLinearAttention, QScale, QSynapse
from ..sim import simulate
from .base import Pass, PassContext, PassError, PassResult


@dataclass(frozen=True)
class Quantize(Pass):
    """Attach integer parameters for ``ctx.target.profile`` (see module docstring).

    Options:
        percentile: percentile of the calibration membrane range that must fit
            without saturation (the rest saturates, counted in the report).
        headroom: extra factor on the membrane and current ranges.
        max_samples: calibration samples used.
    """

    name = "quantize"
    percentile: float = 99.99
    headroom: float = 1.25
    max_samples: int = 256

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        prof: NumericProfile = ctx.target.profile
        if ctx.calibration is None:
            raise PassError("quantization needs calibration inputs (--example-input or --calibration)")
        xs = [np.asarray(x)[: self.max_samples] if graph.inputs()[i].op.layout != "TB" else np.asarray(x)[:, : self.max_samples]
              for i, x in enumerate(ctx.calibration)]
        cal = simulate(graph, xs if len(xs) > 1 else xs[0], "float", probe=True)
        units: dict[str, float] = {}
        layers: dict[str, dict] = {}
        for node in graph.inputs():
            values = cal.probes[node.name]["out"]
            q, unit = self._input(node, values, prof)
            graph.replace_op(node.name, node.op.replace(q=q))
            units[node.name] = unit
            # a nonzero input value is one (graded) event per step for mapping and energy estimates
            node.meta["rate"] = (values != 0).mean(axis=(0, 1)).astype(np.float32)
        # a spike is one unit whatever its layer's scale: recurrent paths read a neuron
        # population before the topological walk reaches it
        units.update({n.name: 1.0 for n in graph if isinstance(n.op, (ops.LIF, ops.StochasticAttention))})
        for name in graph.topo_order():
            node = graph[name]
            if isinstance(node.op, ops.StochasticAttention):
                units[name] = 1.0  # binary spikes; LFSR widths and seeds are already integers
                continue
            if isinstance(node.op, ops.LinearAttention):
                layers[name], units[name] = self._linear_attention(graph, name, cal.probes, prof)
                continue
            if isinstance(node.op, ops.SpikeAttention):  # graded results: one event per nonzero value (mapping)
                node.meta["rate"] = (cal.probes[name]["out"] != 0).mean(axis=(0, 1)).astype(np.float32)
                continue
            if not isinstance(node.op, ops.LIF):
                continue
            layers[name] = self._neuron(graph, name, cal.probes, units, prof, ctx)
            units[name] = 1.0
            spikes = cal.probes[name]["spikes"]
            node.meta["rate"] = np.abs(spikes).mean(axis=(0, 1)).astype(np.float32)
        for node in graph:
            if isinstance(node.op, ops.Scale) and node.op.q is None:
                graph.replace_op(node.name, node.op.replace(q=_qscale(node.op.factor, node.name)))
        graph.profile = prof
        graph.meta["quantized_for"] = ctx.target.spec
        summary = self._measure(graph, ctx, xs)
        summary["layers"] = layers
        summary["calibration_given"] = int(_batch_size(graph, ctx.calibration))
        return PassResult(graph, summary)

    # -- inputs ----------------------------------------------------------------------
    def _input(self, node, values: np.ndarray, prof: NumericProfile) -> tuple[QInput, float]:
        if node.op.encoding.kind != "current":
            return QInput(0, prof.input_bits), 1.0
        m = float(np.max(np.abs(values))) if values.size else 0.0
        top = 2 ** (prof.input_bits - 1) - 1
        frac = 0 if m == 0 else math.floor(math.log2(top / m))
        frac = max(-32, min(32, frac))
        return QInput(frac, prof.input_bits), 2.0**-frac

    # -- neurons ---------------------------------------------------------------------
    @staticmethod
    def _current_bias_exact(graph: Graph, dense_bias: list, ctx: PassContext) -> bool:
        """Loihi 2: the biases of Dense layers feeding a current state stay on the synapses (the
        integer engine adds them to the accumulated input, as npuc's custom neuron process does)
        unless a convolution carries one or the target keeps stock processes only."""
        if ctx.target.options.get("stock_only"):
            return False
        for p, _ in dense_bias:
            if not isinstance(graph[p.weighted].op, ops.Dense):
                return False
            if p.post_delay:  # a delayed current lacks the bias at step 0: no constant the neuron adds
                return False
        return True

    def _neuron(self, graph: Graph, name: str, probes, units, prof: NumericProfile, ctx: PassContext) -> dict:
        """Quantize LIF population ``name`` and the weighted ops of its synapse paths: the largest
        power-of-two integer threshold that every range admits (membrane, current, each path's
        weights, bias, the threshold field), then every parameter times ``lam = t_eff / theta``."""
        shape = graph[name].shape
        op, theta, ratio = self._membrane_ratio(graph, name, probes)
        gain = np.broadcast_to(op.gain.astype(np.float64), shape)
        limits = {"membrane": (2 ** (prof.v_bits - 1) - 1) / ratio,
                  "threshold": float(((1 << prof.vth_bits) - 1) << prof.vth_shift)}
        # u holds gain * i in membrane units (the input itself without a current state)
        i = probes[name]["i"].astype(np.float64)
        cur = float(np.percentile(np.abs(gain * i) / theta, self.percentile)) * self.headroom
        if cur > 0:
            limits["current"] = (2 ** (prof.u_bits - 1) - 1) / cur
        paths = neuron_paths(graph, name)
        path_w = self._weight_limits(graph, name, paths, units, prof, gain / theta, limits)
        b_all, dense_bias = self._neuron_bias(graph, name, op, paths, gain, prof, ctx)
        if np.any(b_all != 0):
            bmax = float(((1 << (prof.bias_mant_bits - 1)) - 1) << prof.bias_exp_max)
            limits["bias"] = bmax / float(np.max(np.abs(b_all) / theta))
        binding = min(limits, key=limits.get)
        t_eff, vth, compare = _integer_threshold(op, prof, limits[binding], binding, name, ctx)
        lam = t_eff / theta  # per neuron
        self._quantize_paths(graph, name, op, path_w, dense_bias, gain * lam, units, prof, ctx)
        dv, du = _decays(self._stock_decays(op, name, ctx), prof)
        q = self._qlif(op, shape, lam, b_all, du, dv, vth, prof, name)
        graph.replace_op(name, op.replace(compare=compare, q=q))
        return {"threshold_int": int(t_eff), "limited_by": binding, "membrane_range_thresholds": round(ratio, 3),
                "dv": _decay_summary(dv), "du": _decay_summary(du), "bias_exp": q.bias_exp}

    def _membrane_ratio(self, graph: Graph, name: str, probes) -> tuple[ops.LIF, np.ndarray, float]:
        """The population's op (its threshold anchored on the membrane when unobservable), its
        per-neuron thresholds, and the membrane range in thresholds to provide (with headroom)."""
        node = graph[name]
        op: ops.LIF = node.op
        shape = node.shape
        theta = np.broadcast_to(op.threshold.astype(np.float64), shape)
        if np.any(theta <= 0):
            raise PassError(f"neuron '{name}' has a non-positive threshold: no integer threshold exists")
        gain = np.broadcast_to(op.gain.astype(np.float64), shape)
        bias = np.broadcast_to(op.bias.astype(np.float64), shape)
        # per-neuron membrane bound from calibration: |alpha v_{t-1}| + |gain i_t| + |bias|
        v = probes[name]["v"].astype(np.float64)
        i = probes[name]["i"].astype(np.float64)
        v_prev = np.concatenate([np.full_like(v[:1], op.v_init), v[:-1]], 0)
        alpha = np.broadcast_to(op.alpha.astype(np.float64), shape)
        h_bound = np.abs(alpha * v_prev) + np.abs(gain * i) + np.abs(bias)
        if op.reset == "none" and op.spike == "binary" and not spikes_read(graph, name) and v.size:
            # Its spikes reach nobody and reset nothing, so the threshold is unobservable: anchor
            # the scale on the calibrated membrane, not on a threshold the membrane may never
            # approach (sinabs ExpLeak's is the float32 maximum, which would round v to 0).
            m = float(np.max(np.abs(v)))
            if 0 < m < float(np.min(theta)):
                op = op.replace(threshold=np.float32(m))
                graph.replace_op(name, op)
                theta = np.broadcast_to(op.threshold.astype(np.float64), shape)
                node.meta["readout_threshold"] = {"calibrated_membrane_max": m}
        ratio = float(np.percentile(h_bound / theta, self.percentile)) if h_bound.size else 1.0
        extras = [1.0]
        if op.threshold_lo is not None:
            extras.append(float(np.max(np.abs(op.threshold_lo) / theta)))
        if op.reset == "value":
            extras.append(float(np.max(abs(op.reset_value) / theta)))
        if op.v_min is not None:
            extras.append(float(np.max(np.abs(op.v_min) / theta)))
        return op, theta, max(ratio, *extras) * self.headroom

    def _weight_limits(self, graph: Graph, name: str, paths, units, prof: NumericProfile, gain_theta: np.ndarray,
                       limits: dict[str, float]) -> list:
        """Each path's threshold limit from its weights at the largest usable exponent (into
        ``limits``); returns ``(path, e_min, e_max)`` per path."""
        path_w = []
        for p in paths:
            w_op = graph[p.weighted].op
            if isinstance(w_op, ops.SpikeAttention):
                path_w.append((p, 0, 0))
                continue
            row = self._row_factor(graph, p, name, gain_theta)  # per output channel of the weighted op
            per_t = np.abs(w_op.weight.astype(np.float64)) * row.reshape((-1,) + (1,) * (w_op.weight.ndim - 1))
            per_t *= units[p.source.node] / 2.0**prof.act_shift
            fixed = isinstance(w_op, (ops.Conv1d, ops.Conv2d)) and not prof.conv_weight_exp  # Lava's Conv has no exponent
            e_min, e_max = (0, 0) if fixed else (prof.weight_exp_min, prof.weight_exp_max)
            m = float(per_t.max()) if per_t.size else 0.0
            if m > 0:
                limits[f"weights:{p.weighted}"] = _weight_limit(prof, _sign_mode(w_op.weight)) * 2.0**e_max / m
            path_w.append((p, e_min, e_max))
        return path_w

    def _neuron_bias(self, graph: Graph, name: str, op: ops.LIF, paths, gain: np.ndarray, prof: NumericProfile,
                     ctx: PassContext) -> tuple[np.ndarray, list]:
        """The bias the neuron adds to its membrane (its own, plus its synapses' biases without a
        current state), and the synapse biases that stay on their paths (into a current state)."""
        shape = gain.shape
        b_all = np.broadcast_to(op.bias.astype(np.float64), shape).copy()
        dense_bias = [(p, graph[p.weighted].op.bias.astype(np.float64)) for p in paths
                      if getattr(graph[p.weighted].op, "bias", None) is not None]
        if not op.cuba:
            for p, b in dense_bias:
                b_all = b_all + gain * self._bias_to_neurons(graph, p, b, shape, name)
            return b_all, dense_bias
        if prof.weight_scheme != "loihi" or not dense_bias or self._current_bias_exact(graph, dense_bias, ctx):
            return b_all, dense_bias
        if not ctx.allow_approx:
            conv = next((p.weighted for p, _ in dense_bias if not isinstance(graph[p.weighted].op, ops.Dense)), None)
            if ctx.target.options.get("stock_only"):
                why = ("stock_only keeps lava-nc's stock neurons, which add biases to the membrane only (npuc's "
                       "custom neuron process adds them to the current)")
            elif conv:
                why = f"'{conv}' is a convolution, whose accumulator wraps at 24 bits before the neuron could add a bias"
            else:
                why = ("the biased synapse is read one step late, so its bias is missing at the first step; "
                       "delay the synapse's input instead")
            raise PassError(f"neuron '{name}' has a current state fed by a layer with a bias; {why}. Remove the "
                            "bias, or pass --allow-approx")
        ctx.warn(f"neuron '{name}': synapse bias of a CUBA neuron moved to the membrane (steady-state approximation)")
        ai = np.broadcast_to(op.alpha_i.astype(np.float64), shape)
        for p, b in dense_bias:
            b_all = b_all + gain * self._bias_to_neurons(graph, p, b, shape, name) / np.maximum(1 - ai, 1e-6)
        return b_all, []

    def _quantize_paths(self, graph: Graph, name: str, op: ops.LIF, path_w: list, dense_bias: list, scale: np.ndarray, units,
                        prof: NumericProfile, ctx: PassContext) -> None:
        """Integer weights (and current-state biases) of every path at the neuron scale ``gain * lam``."""
        for p, e_min, e_max in path_w:
            w_op = graph[p.weighted].op
            if isinstance(w_op, ops.SpikeAttention):
                graph.replace_op(p.weighted, w_op.replace(q=_qattention(w_op, scale, prof, p.weighted, ctx)))
                continue
            row_lam = self._row_factor(graph, p, name, scale)
            qb = None
            if op.cuba:  # a constant input current enters u through the synapse (FPGA; Loihi 2's custom neuron)
                for pp, b in dense_bias:
                    if pp is p:
                        qb = np.round(b * row_lam / 2.0**prof.act_shift).astype(np.int64)
            w_int, e = _quantize_weights(w_op.weight, row_lam * units[p.source.node] / 2.0**prof.act_shift,
                                         prof, e_min, e_max)
            lsb = prof.weight_lsb(_sign_mode(w_op.weight))
            levels = int(np.max(np.abs(w_int), initial=0)) // lsb
            available = int(_weight_limit(prof, _sign_mode(w_op.weight))) // lsb
            if np.any(w_op.weight != 0) and e == e_min and levels < available // 4:
                ctx.warn(f"weights of '{p.weighted}' use only {levels} of {available} integer levels at the smallest "
                         f"exponent {e}: the layer's scale is below what {prof.name} weights can represent")
            graph.replace_op(p.weighted, w_op.replace(q=QSynapse(w_int, e, qb)))

    def _qlif(self, op: ops.LIF, shape, lam: np.ndarray, b_all: np.ndarray, du, dv, vth: int, prof: NumericProfile,
              name: str) -> QLIF:
        """The neuron's integer parameters at scale ``lam`` (bias as mantissa << exponent)."""
        bias_int = np.round(lam * b_all)
        bias_exp = prof.bias_exp_min  # a fixed exponent (loihi2:netx=1) rounds the bias to its multiples
        bmant_max = (1 << (prof.bias_mant_bits - 1)) - 1
        while np.max(np.abs(bias_int), initial=0) / 2**bias_exp > bmant_max and bias_exp < prof.bias_exp_max:
            bias_exp += 1
        bias_mant = np.clip(np.round(bias_int / 2**bias_exp), -bmant_max - 1, bmant_max).astype(np.int64)
        lam_u = self._uniform_value(lam, name)
        vth_lo = None
        if op.threshold_lo is not None:
            lo = np.broadcast_to(op.threshold_lo.astype(np.float64), shape) * lam
            vth_lo = int(round(float(np.mean(lo)) / 2**prof.vth_shift))
        return QLIF(
            du=du, dv=dv, vth=vth, bias_mant=_compact(bias_mant), bias_exp=bias_exp, vth_lo=vth_lo,
            reset_value=int(round(op.reset_value * lam_u)) if op.reset == "value" else 0,
            v_min=None if op.v_min is None else _compact(np.round(np.broadcast_to(op.v_min, shape) * lam).astype(np.int64)),
            v_init=int(round(op.v_init * lam_u)), scale=float(1.0 / lam_u),
        )

    def _linear_attention(self, graph: Graph, name: str, probes, prof: NumericProfile) -> tuple[dict, float]:
        """State scale from an analytic bound, output scale from calibration."""
        op: ops.LinearAttention = graph[name].op
        ins = [probes[r.node][graph[r.node].port(r)] for r in graph[name].inputs]
        qmax, kmax, vmax = (float(np.max(np.abs(x), initial=0)) for x in ins)
        steps = ins[0].shape[0]
        a_min = float(np.min(op.a))
        horizon = steps if a_min >= 1 else min(steps, 1.0 / (1.0 - a_min))
        s_bound = max(abs(op.b) * vmax * kmax * horizon, 1e-30)
        lam_s = _pow2_floor((2 ** (prof.v_bits - 1) - 1) / (s_bound * self.headroom))
        if lam_s < 1:
            raise PassError(f"linear attention '{name}': its state range {s_bound:.3g} does not fit {prof.v_bits}-bit states")
        y = probes[name]["out"]
        ymax = max(float(np.max(np.abs(y), initial=0)), 1e-30)
        lam_y = 2.0 ** math.floor(math.log2((2 ** (prof.input_bits - 1) - 1) / (ymax * self.headroom)))
        mult, shift = _mult_shift(lam_y / lam_s)
        da = np.round(prof.decay_unity * (1.0 - np.asarray(op.a, dtype=np.float64))).astype(np.int64)
        q = QLinearAttention(_compact(da), int(round(op.b * lam_s)), mult, shift)
        graph.replace_op(name, op.replace(q=q))
        return {"state_scale": lam_s, "output_scale": lam_y}, 1.0 / lam_y

    @staticmethod
    def _stock_decays(op: ops.LIF, name: str, ctx: PassContext) -> ops.LIF:
        """``stock_only`` (Loihi 2 without custom processes) has one du / dv per population: per-neuron
        decays are refused there, or replaced by their mean with ``allow_approx``."""
        if not ctx.target.options.get("stock_only"):
            return op
        for field, what in (("alpha", "alpha (membrane decay)"), ("alpha_i", "alpha_i (current decay)")):
            a = getattr(op, field)
            if a is None or a.size <= 1 or np.all(a == a.reshape(-1)[0]):
                continue
            if not ctx.allow_approx:
                raise PassError(f"neuron '{name}' has a per-neuron {what}; stock_only keeps lava-nc's stock LIF, "
                                "which has one decay per population. Drop stock_only (npuc's custom neuron takes "
                                "per-neuron decays), or pass --allow-approx to use the mean")
            ctx.warn(f"neuron '{name}': per-neuron {what} replaced by its mean {a.mean():.4g} (stock_only)")
            op = op.replace(**{field: np.float32(a.mean())})
        return op

    def _uniform_value(self, lam: np.ndarray, name: str) -> float:
        return float(np.mean(lam))

    def _row_factor(self, graph: Graph, p: SynapsePath, neuron: str, per_neuron: np.ndarray) -> np.ndarray:
        """Map a per-neuron factor to the weighted op's output channels (must be constant per channel)."""
        w = graph[p.weighted]
        out_shape = w.shape
        f = np.asarray(per_neuron, dtype=np.float64)
        maxpool = [n for n in p.post if isinstance(graph[n].op, ops.MaxPool2d)]
        if maxpool and np.any(f <= 0):  # max(c x) = c max(x) only for c > 0
            raise PassError(f"neuron '{neuron}': max pool '{maxpool[0]}' of currents needs a positive gain / "
                            "threshold; a negative one turns the max into a min")
        if np.all(f == f.reshape(-1)[0]):
            return np.full(w.op.weight.shape[0], f.reshape(-1)[0])
        nshape = graph[neuron].shape
        if isinstance(w.op, (ops.Conv1d, ops.Conv2d)) and all(isinstance(graph[n].op, (ops.SumPool2d, ops.MaxPool2d)) for n in p.post) \
                and nshape[0] == out_shape[0]:
            flat = f.reshape(nshape[0], -1)
            if np.all(flat == flat[:, :1]):
                return flat[:, 0]
        if not p.post and len(out_shape) == 1:
            return f.reshape(-1)
        if not p.post and tuple(out_shape) == tuple(nshape):
            flat = f.reshape(-1, out_shape[-1])
            if np.all(flat == flat[:1]):
                return flat[0]
        raise PassError(f"neuron '{neuron}': its per-neuron threshold/gain varies within the output channels of "
                        f"'{p.weighted}' ({type(w.op).__name__}), which share weights")

    def _bias_to_neurons(self, graph: Graph, p: SynapsePath, b: np.ndarray, shape, neuron: str) -> np.ndarray:
        w = graph[p.weighted]
        if not p.post:  # Dense biases sit on the last axis, convolution biases on the channel axis
            return np.broadcast_to(b if _is_dense(w.op) else b.reshape((-1,) + (1,) * (len(w.shape) - 1)), shape)
        if all(isinstance(graph[n].op, ops.SumPool2d) for n in p.post):
            k = 1
            for n in p.post:
                kk = graph[n].op.kernel
                k *= kk[0] * kk[1]
            # zero padding makes border sums smaller; only exact without padding
            if any(graph[n].op.padding != (0, 0) for n in p.post):
                raise PassError(f"bias of '{p.weighted}' before a padded sum pool into '{neuron}' is not uniform per neuron")
            return np.broadcast_to((b * k).reshape(-1, 1, 1), shape)
        if all(isinstance(graph[n].op, ops.MaxPool2d) for n in p.post):  # max(x + b_c) = max(x) + b_c
            return np.broadcast_to(b.reshape(-1, 1, 1), shape)
        raise PassError(f"bias of '{p.weighted}' cannot be mapped onto neuron '{neuron}' through {p.post}")

    # -- measurement -----------------------------------------------------------------
    def _measure(self, graph: Graph, ctx: PassContext, xs) -> dict:
        ref = ctx.reference if ctx.reference is not None else graph
        x = xs if len(xs) > 1 else xs[0]
        fl = simulate(ref, x, "float", probe=True)
        it = simulate(graph, x, "int", probe=True)
        agree, state = {}, {}
        read = {(r.node, graph[r.node].port(r)) for n in graph for r in n.inputs}
        for name, ports in it.probes.items():
            node = graph[name]
            if not (isinstance(node.op, ops.LIF) and name in (fl.probes or {}) and "spikes" in fl.probes[name]):
                continue
            a, b = fl.probes[name]["spikes"], ports["spikes"]
            if a.shape != b.shape:
                continue
            if (name, "spikes") in read:
                agree[name] = round(float(np.mean(a == b)), 5)
                if not np.any(a):  # agreement is then trivially 1: say that the layer is silent
                    ctx.warn(f"layer '{name}' never spikes on the calibration data "
                             f"({_batch_size(graph, xs)} samples, float model)")
            elif node.op.q is not None:
                # a state read only through its membrane (e.g. an SSM): compare the dequantized state
                fv = fl.probes[name]["v"].astype(np.float64)
                iv = ports["v"].astype(np.float64) * node.op.q.scale
                state[name] = round(float(np.abs(fv - iv).max() / max(np.abs(fv).max(), 1e-12)), 5)
        out = {"spike_agreement": agree, "state_relative_error": state, "overflow_events": it.stats,
               "calibration_samples": int(_batch_size(graph, xs))}
        outs = []
        for k, (f, i) in enumerate(zip(fl.outputs, it.outputs)):
            o = graph.outputs()[k]
            src = graph[o.inputs[0].node]
            if isinstance(src.op, ops.LIF) and src.port(o.inputs[0]) == "spikes":
                outs.append(round(float(np.mean(f == i)), 5))
            else:
                outs.append(None)
        out["output_agreement"] = outs
        if ctx.labels is not None:
            lab = np.asarray(ctx.labels)[: out["calibration_samples"]]
            out["accuracy_float"] = accuracy(fl.outputs[0], graph.outputs()[0].op, lab)
            out["accuracy_int"] = accuracy(it.outputs[0], graph.outputs()[0].op, lab)
        return out


def _pow2_floor(x: float) -> int:
    return 1 << int(math.floor(math.log2(x))) if x >= 1 else 0


def _is_dense(op) -> bool:
    return not isinstance(op, (ops.Conv1d, ops.Conv2d))


def _batch_size(graph: Graph, xs) -> int:
    op = graph.inputs()[0].op
    return int(np.asarray(xs[0]).shape[1] if op.layout == "TB" else np.asarray(xs[0]).shape[0])


def _sign_mode(w: np.ndarray) -> str:
    if np.all(w >= 0):
        return "exc"
    if np.all(w <= 0):
        return "inh"
    return "mixed"


def _weight_limit(prof: NumericProfile, mode: str) -> float:
    lo, hi = prof.weight_range(mode)
    return float(min(abs(lo), abs(hi)) if mode == "mixed" else max(abs(lo), abs(hi)))


def _quantize_weights(w: np.ndarray, row: np.ndarray, prof: NumericProfile, e_min: int, e_max: int) -> tuple[np.ndarray, int]:
    """Integer weights and exponent: ``W_int * 2^e ~= w * row`` (row per output channel)."""
    mode = _sign_mode(w)
    lo, hi = prof.weight_range(mode)
    lsb = prof.weight_lsb(mode)
    target = w.astype(np.float64) * row.reshape((-1,) + (1,) * (w.ndim - 1))
    m = float(np.max(np.abs(target))) if target.size else 0.0
    limit = _weight_limit(prof, mode)
    if mode == "mixed" and prof.weight_scheme == "loihi":
        limit = min(abs(lo), (hi // lsb) * lsb)
    if limit <= 0:
        raise PassError(f"weight_bits={prof.weight_bits} leaves no magnitude bit for {mode}-sign weights under the "
                        f"'{prof.weight_scheme}' weight scheme: use more weight bits")
    e = e_min
    if m > 0:
        # smallest exponent whose rounded weights still fit: the most precise representation
        e = max(e_min, min(int(math.ceil(math.log2(m / limit))), e_max))
        while e > e_min and np.max(np.abs(np.round(target / 2.0**(e - 1) / lsb) * lsb)) <= limit:
            e -= 1
    q = np.round(target / 2.0**e / lsb) * lsb
    q = np.clip(q, math.ceil(lo / lsb) * lsb, math.floor(hi / lsb) * lsb)
    return q.astype(np.int64), e


def _mult_shift(factor: float, bits: int = 16) -> tuple[int, int]:
    """``mult / 2^shift ~= factor`` with ``mult`` below ``2^bits``."""
    if factor == 0:
        return 0, 0
    shift = max(0, min(62, bits - 1 - int(math.ceil(math.log2(abs(factor))))))
    return int(round(factor * 2.0**shift)), shift


def _qattention(op: ops.SpikeAttention, per_neuron: np.ndarray, prof: NumericProfile, name: str, ctx: PassContext) -> QAttention:
    """Integer coincidence weight ``a`` and the multiply-shift into the neuron's input units."""
    f = np.asarray(per_neuron, dtype=np.float64)
    if not np.all(f == f.reshape(-1)[0]):
        raise PassError(f"attention '{name}' feeds neurons with different thresholds/gains; they must share one scale")
    a_frac = 0
    while op.a * 2**a_frac != round(op.a * 2**a_frac) and a_frac < 12:
        a_frac += 1
    if op.a * 2**a_frac != round(op.a * 2**a_frac):
        ctx.warn(f"attention '{name}': a = {op.a} is not dyadic; rounded to {round(op.a * 4096) / 4096}")
    target = float(f.reshape(-1)[0]) * op.scale / 2.0**a_frac / 2.0**prof.act_shift
    mult, shift = _mult_shift(target)
    return QAttention(int(round(op.a * 2**a_frac)), a_frac, mult, shift)


def _integer_threshold(op: ops.LIF, prof: NumericProfile, limit: float, binding: str, name: str,
                       ctx: PassContext) -> tuple[int, int, str]:
    """``(t_eff, vth, compare)``: the power-of-two integer threshold below ``limit`` (dyadic float
    parameters then map to integers exactly, at the cost of at most one bit of membrane range), the
    target's threshold field, and the compare it runs."""
    # Loihi 2: v >= G + 1 is v > G, which the stock LIFReset computes; only multi-level spikes
    # (floor(v / theta)) need the custom process's native >=
    ge_native = op.compare == "ge" and "ge" in prof.compares and (
        prof.weight_scheme != "loihi" or op.spike == "multilevel")
    if op.compare == "ge" and not ge_native:
        # integer v >= G + 1  <=>  v > G: keep the strict compare, scale so lam * theta = G + 1
        g_eff = _pow2_floor(limit - 1)
        vth, t_eff, compare = g_eff >> prof.vth_shift, g_eff + 1, "gt"
    else:
        t_eff = _pow2_floor(limit)
        vth, compare = t_eff >> prof.vth_shift, op.compare
    if vth < 1:
        raise PassError(f"neuron '{name}': no integer threshold fits the target ({binding} range is too small: "
                        f"limit {limit:.3g}); lower the weights/bias magnitude relative to the threshold")
    if t_eff < 64:
        ctx.warn(f"neuron '{name}': integer threshold {t_eff} is small (limited by {binding}); expect coarse membranes")
    return t_eff, vth, compare


def _decays(op: ops.LIF, prof: NumericProfile) -> tuple[np.ndarray, np.ndarray]:
    """The integer decays ``dv = round(D (1 - alpha))`` and ``du = round(D (1 - alpha_i)) - du_offset``
    (clipped to ``[0, D - du_offset]``; ``D - du_offset`` without a current state), one per neuron
    where the float decays differ (a learned per-neuron beta), else one value: the same rule and
    bit width either way (`npuc.ir.values.QLIF`). ``round`` is numpy's half-to-even, as before."""
    D = prof.decay_unity
    dv = _compact(np.round(D * (1.0 - np.asarray(op.alpha, dtype=np.float64))).astype(np.int64))
    if op.cuba:
        du = np.round(D * (1.0 - np.asarray(op.alpha_i, dtype=np.float64))).astype(np.int64) - prof.du_offset
        du = _compact(np.clip(du, 0, D - prof.du_offset))
    else:
        du = np.asarray(D - prof.du_offset)
    return dv, du


def _decay_summary(d: np.ndarray) -> int | dict:
    """A decay for the quantize log: the integer, or the per-neuron range."""
    d = np.asarray(d)
    if d.ndim == 0:
        return int(d)
    return {"per_neuron": int(d.size), "min": int(d.min()), "max": int(d.max())}


def _compact(a: np.ndarray) -> np.ndarray:
    """A scalar array when every element is equal (smaller graphs and simpler hardware)."""
    a = np.asarray(a)
    return np.asarray(a.reshape(-1)[0]) if a.size and np.all(a == a.reshape(-1)[0]) else a


def _qscale(factor: np.ndarray, name: str, bits: int = 16) -> QScale:
    f = np.asarray(factor, dtype=np.float64)
    m = float(np.max(np.abs(f)))
    if m == 0:
        return QScale(np.zeros_like(f, dtype=np.int64), 0)
    shift = max(0, min(62, bits - 1 - int(math.ceil(math.log2(m)))))
    return QScale(np.round(f * 2.0**shift).astype(np.int64), shift)

