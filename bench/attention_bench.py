"""Spiking attention benchmark: coincidence scores vs stochastic computing, and SC stream error.

Run ``python -m bench.attention_bench`` from the repository root (``--quick``: a
smoke run of well under a minute, no plot written). Two parts:

(a) **Accuracy.** The Spikformer-style `NnSpikformer` of
    ``tests/models/spikformer_models.py`` (embedding LIF, Q/K/V LIFs in 2 heads
    of 16 features over 8 tokens, attention, projection LIF, integrator readout;
    ``T = 4``) on scikit-learn's digits (8 tokens x 8 features; 1400 train /
    397 test), with each attention: AND, a-XNOR (a = 1/4), XNOR coincidence
    scores and stochastic-computing (SC) attention. Same architecture, data,
    optimizer and budget (epochs) for every variant; only the attention's
    scale / normalisation differs (`ATTENTIONS`). SC trains with torch's RNG and
    a straight-through estimator and is evaluated with the hardware LFSR
    streams. Float accuracy is the model's own (the float engine equals it bit
    for bit); int accuracy is the golden integer engine after the ``fpga``
    pipeline (fold, legalize, quantize at 8-bit weights, calibrated on 200
    training samples). Mean +- std over seeds.

(b) **SC product error vs stream length T.** For random ``p1, p2`` (16-bit
    probabilities), the AND of two Bernoulli streams ``1[r <= p M]`` estimates
    ``p1 p2`` by its mean over ``T`` samples. Streams from `npuc.sim.lfsr` (random
    seeds per pair), see `CASES`: *independent* (two different primitive
    polynomials, as `StochasticAttention` uses; also with consecutive LFSR states
    as samples, "stride 1"), *same polynomial* with random or adjacent seeds, and
    *one shared LFSR* (estimates ``min(p1, p2)``). Mean absolute and RMS error
    against the binomial theory ``sqrt(p (1 - p) / T)``; a log-log plot goes to
    ``docs/img/sc_error_vs_T.png`` (deterministic bytes).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import Table, machine
from npuc.sim import lfsr

ROOT = Path(__file__).resolve().parent.parent
PLOT = ROOT / "docs" / "img" / "sc_error_vs_T.png"
VARIANTS = ("and", "axnor", "xnor", "sc")
LABELS = {"and": "AND", "axnor": "a-XNOR (a=1/4)", "xnor": "XNOR", "sc": "SC (LFSR)"}


# -- (a) accuracy ------------------------------------------------------------------------------------


def _models():
    tests = str(ROOT / "tests")  # the models live with the tests that check them
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from models import spikformer_models

    return spikformer_models


def accuracy(variant: str, seed: int, epochs: int, n_train: int) -> dict[str, float]:
    """Train one variant and measure float (model) and integer-engine test accuracy."""
    import torch

    from npuc.frontends import trace
    from npuc.passes.base import PassContext, run_pipeline
    from npuc.pipeline import build_passes
    from npuc.sim import simulate
    from npuc.targets import load_target

    M = _models()
    xtr, ytr, xte, yte = M.digits()
    xtr, ytr = xtr[:n_train], ytr[:n_train]
    torch.manual_seed(seed)
    model = M.NnSpikformer(variant)
    t0 = time.perf_counter()
    M.train(model, xtr, ytr, epochs=epochs, seed=seed)
    train_s = time.perf_counter() - t0
    model.use_lfsr()
    ref = M.predict(model, xte)
    graph = trace(model, xtr[:4])
    ctx = PassContext(target=load_target("fpga"), calibration=[xtr[:200]], reference=graph)
    q = run_pipeline(graph.copy(), build_passes("fpga"), ctx)
    out = simulate(q, xte, "int").output
    return {"float": float(np.mean(ref.argmax(1) == yte)), "int": float(np.mean(out.argmax(1) == yte)),
            "train_s": train_s}


def accuracy_rows(seeds: list[int], epochs: int, n_train: int) -> list[dict]:
    rows = []
    for v in VARIANTS:
        runs = [accuracy(v, s, epochs, n_train) for s in seeds]
        f = np.array([r["float"] for r in runs]) * 100
        i = np.array([r["int"] for r in runs]) * 100
        rows.append({"attention": LABELS[v], "float acc %": f"{f.mean():.1f} +- {f.std():.1f}",
                     "int acc %": f"{i.mean():.1f} +- {i.std():.1f}",
                     "int - float": f"{(i - f).mean():+.1f}", "seeds": len(seeds),
                     "train s/seed": float(np.mean([r["train_s"] for r in runs]))})
    return rows


# -- (b) SC product error --------------------------------------------------------------------------------


CASES = {
    # name: (polynomial of stream b: 0 or 1, seed of stream b, LFSR steps per sample)
    "independent": (1, "random", 16),
    "independent, stride 1": (1, "random", 1),
    "same poly, random seeds": (0, "random", 16),
    "same poly, adjacent seeds": (0, "adjacent", 16),
    "shared LFSR": (0, "shared", 16),
}
"""Stream pairs compared in (b). Stream a always uses `primitive_taps(16, 0)` and a random
seed. ``stride``: LFSR steps between two samples of one stream; `StochasticAttention` and
the Bernoulli encoder advance once per element per time step, so an element's samples are
(number of elements) steps apart: 16 stands for a 4x4 score matrix."""


def sc_errors(lengths: list[int], pairs: int, bits: int = 16, seed: int = 0) -> dict[str, dict[int, np.ndarray]]:
    """Signed errors ``mean_t(a_t AND b_t) - p1 p2`` per case (`CASES`), stream length and pair,
    and the binomial standard deviation ``sqrt(p (1 - p) / T)`` under ``"theory"``.

    Every pair gets its own random seeds; the streams of all pairs advance together
    (`npuc.sim.lfsr.step` on a vector of states) and the estimate at each length is
    the running mean over the first ``T`` samples.
    """
    rng = np.random.default_rng(seed)
    m = (1 << bits) - 1
    p1 = np.floor(rng.random(pairs) * m + 0.5).astype(np.uint64)
    p2 = np.floor(rng.random(pairs) * m + 0.5).astype(np.uint64)
    target = (p1.astype(np.float64) / m) * (p2.astype(np.float64) / m)
    seeds = rng.integers(1, m + 1, size=(2, pairs)).astype(np.uint64)
    taps = (lfsr.primitive_taps(bits, 0), lfsr.primitive_taps(bits, 1))
    out: dict[str, dict[int, np.ndarray]] = {}
    marks = set(lengths)
    for case, (poly_b, seed_b, stride) in CASES.items():
        ta, tb = taps[0], taps[poly_b]
        s1 = seeds[0].copy()
        s2 = lfsr.step(s1.copy(), tb, bits) if seed_b == "adjacent" else seeds[1].copy()
        hits = np.zeros(pairs)
        out[case] = {}
        for t in range(1, max(lengths) + 1):
            for _ in range(stride):
                s1 = lfsr.step(s1, ta, bits)
                s2 = s1 if seed_b == "shared" else lfsr.step(s2, tb, bits)
            hits += (s1 <= p1) & (s2 <= p2)
            if t in marks:
                out[case][t] = hits / t - target
    out["theory"] = {t: np.sqrt(target * (1 - target) / t) for t in lengths}
    return out


def sc_rows(err: dict[str, dict[int, np.ndarray]]) -> list[dict]:
    rows = []
    for t, sd in err["theory"].items():
        row: dict = {"T": t, "theory MAE": float(np.mean(sd) * np.sqrt(2 / np.pi)),
                     "theory RMS": float(np.sqrt(np.mean(sd**2)))}
        for case in CASES:
            e = err[case][t]
            row[f"{case} MAE"] = float(np.mean(np.abs(e)))
            row[f"{case} RMS"] = float(np.sqrt(np.mean(e**2)))
        rows.append(row)
    return rows


SC_COLUMNS = ["T", "theory MAE", "independent MAE", "theory RMS"] + [f"{c} RMS" for c in CASES]


def plot(rows: list[dict], path: Path) -> Path:
    """Log-log RMS error vs T (deterministic PNG bytes: Agg, no software/date metadata)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = [r["T"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.loglog(ts, [r["theory RMS"] for r in rows], "k--", label="theory sqrt(p(1-p)/T)")
    for case, style in zip(CASES, ("o-", "o:", "s-", "v-", "^-")):
        ax.loglog(ts, [r[f"{case} RMS"] for r in rows], style, label=case)
    ax.set_xlabel("stream length T (steps)")
    ax.set_ylabel("RMS error of p1*p2 estimate")
    ax.set_title("AND of two LFSR Bernoulli streams (16-bit)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 seed, short training, no plot")
    ap.add_argument("--plot", type=Path, default=None, help=f"PNG path (default {PLOT.relative_to(ROOT)}; "
                                                            "none with --quick)")
    ap.add_argument("--markdown", action="store_true", help="also print the tables as markdown")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if args.quick:
        seeds, epochs, n_train = [0], 2, 600
        lengths, pairs = [16, 64, 256, 1024], 200
    else:
        seeds, epochs, n_train = [0, 1, 2, 3, 4], 8, 1400
        lengths, pairs = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096], 1000
    print(f"spiking attention benchmark {machine()}")
    cols = ["attention", "float acc %", "int acc %", "int - float", "seeds", "train s/seed"]
    acc_rows = accuracy_rows(seeds, epochs, n_train)
    t_acc = Table(f"(a) digits, NnSpikformer T=4, {epochs} epochs on {n_train} samples, 397 test samples", cols)
    t_acc.print(acc_rows)
    rows = sc_rows(sc_errors(lengths, pairs))
    t_sc = Table(f"(b) SC product error, {pairs} random (p1, p2) pairs, 16-bit LFSRs", SC_COLUMNS)
    t_sc.print(rows)
    path = args.plot if args.plot is not None else (None if args.quick else PLOT)
    if path is not None:
        print(f"plot: {plot(rows, path)}")
    if args.markdown:
        print(t_acc.markdown(acc_rows))
        print(t_sc.markdown(rows))
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
