"""Every benchmark runs in its quick form, so none can rot (figures are not asserted here)."""

import importlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/ is not an installed package

from bench.run_all import BENCHMARKS  # noqa: E402

# What each quick benchmark starts (all of them compile, train or time models: slow).
ENGINES = {"sim_speed": [pytest.mark.lava, pytest.mark.rtl], "rtl_efficiency": [pytest.mark.rtl],
           "accuracy": [pytest.mark.lava, pytest.mark.rtl], "model_zoo": [pytest.mark.lava, pytest.mark.rtl]}


@pytest.mark.slow
@pytest.mark.parametrize("name", [pytest.param(b[0], marks=ENGINES.get(b[0], [])) for b in BENCHMARKS])
def test_benchmark_quick(name):
    module = importlib.import_module(f"bench.{name}")
    module.main(["--quick"])


def test_sim_speed_rounds_keep_each_engines_best_by_the_chosen_clock(monkeypatch):
    """`rounds` times with `sim_speed.CLOCK` (``--cpu-time`` sets it to process CPU time)."""
    from bench import sim_speed

    ticks = iter([0.0, 5.0, 5.0, 6.0, 10.0, 12.0, 12.0, 20.0])  # a: 5, then 2; b: 1, then 8
    monkeypatch.setattr(sim_speed, "CLOCK", lambda: next(ticks))
    best, last = sim_speed.rounds({"a": lambda: "x", "b": lambda: "y"}, 2)
    assert best == {"a": 2.0, "b": 1.0} and last == {"a": "x", "b": "y"}


def test_rtl_efficiency_host_rate_code_equals_the_on_chip_encoder(tmp_path):
    """`--mnist-target ...,input=events` feeds the MLP without its RateEncoder the encoder's spikes
    (coded on the host); the compiled integer graph must count the same output spikes as the MLP
    that encodes on chip, or its accuracy would not be the bench model's."""
    import numpy as np
    import torch

    from bench.rtl_efficiency import MLP784, digits28
    from npuc.api import compile as npuc_compile
    from npuc.demo.training import train_classifier

    x, y = digits28()
    torch.manual_seed(0)
    model = train_classifier(MLP784(), x[:200], y[:200], epochs=1, lr=3e-3)
    events = MLP784(encode=False)
    events.load_state_dict(model.state_dict())
    spikes = model.encode(torch.from_numpy(x[:200])).numpy()
    dense = npuc_compile(model, x[:200], target="fpga:weight_bits=5", out=tmp_path / "dense")
    coded = npuc_compile(events.eval(), spikes, target="fpga:weight_bits=5,input=events,input_bits=2",
                         out=tmp_path / "events")
    held = slice(1000, 1040)
    want = np.asarray(dense.simulate(x[held], "int"))
    got = np.asarray(coded.simulate(model.encode(torch.from_numpy(x[held])).numpy(), "int"))
    assert want.sum() > 0  # trained: output spikes to compare
    np.testing.assert_array_equal(got, want)
