"""Trained snntorch and SpikingJelly MLPs and convs: integer accuracy within 1 point of float on both targets.

Models are trained on the digits training split, traced from the live
modules and compiled for loihi2 and fpga with calibration on 300 training
samples only.

The float-vs-int gap is a property of the compiled model, not of
generalization, so it is measured on all 1797 digits: with ~2% of predictions
differing between the engines, the gap's standard error is ~0.9 points on the
297 held-out samples alone but ~0.35 points on all 1797 (measured: snntorch conv
on Loihi 2, held-out -1.0 points, all samples +0.3). The held-out split gets a
looser sanity bound. An under-trained model (SpikingJelly conv after 6 epochs,
82% float) lost 1.1-1.4 held-out points: marginal decisions flip first.
"""

import numpy as np
import pytest
import snntorch as snn
import torch
import torch.nn as nn
from models.digits_models import STEPS, SnnTorchMLP
from spikingjelly.activation_based import functional, layer, neuron

import npuc
from npuc.demo.models import digits_split
from npuc.demo.training import accuracy, train_classifier


class SnnTorchConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.lif1 = nn.Conv2d(1, 8, 3, padding=1), snn.Leaky(beta=0.9, reset_mechanism="zero")
        self.pool = nn.AvgPool2d(2)
        self.conv2, self.lif2 = nn.Conv2d(8, 12, 3, stride=2, padding=1), snn.Leaky(beta=0.9, reset_mechanism="zero")
        self.fc, self.lif3 = nn.Linear(12 * 2 * 2, 10), snn.Leaky(beta=0.9, reset_mechanism="zero")

    def forward(self, x):
        m1, m2, m3 = self.lif1.reset_mem(), self.lif2.reset_mem(), self.lif3.reset_mem()
        out = []
        for _ in range(STEPS):
            s1, m1 = self.lif1(self.conv1(x), m1)
            s2, m2 = self.lif2(self.conv2(self.pool(s1)), m2)
            s3, m3 = self.lif3(self.fc(s2.flatten(1)), m3)
            out.append(s3)
        return torch.stack(out).sum(0)


def sj_mlp() -> nn.Module:
    net = nn.Sequential(layer.Linear(64, 48), neuron.LIFNode(tau=2.0), layer.Linear(48, 10), neuron.LIFNode(tau=2.0))
    functional.set_step_mode(net, "m")
    return net


def sj_conv() -> nn.Module:
    net = nn.Sequential(
        layer.Conv2d(1, 8, 3, padding=1), neuron.LIFNode(tau=2.0), layer.AvgPool2d(2),
        layer.Conv2d(8, 12, 3, stride=2, padding=1), neuron.LIFNode(tau=2.0),
        layer.Flatten(), layer.Linear(12 * 2 * 2, 10), neuron.LIFNode(tau=2.0),
    )
    functional.set_step_mode(net, "m")
    return net


def _sj_forward(model, x):
    functional.reset_net(model)
    return model(x.unsqueeze(0).repeat(STEPS, *([1] * x.dim()))).sum(0)


pytestmark = pytest.mark.slow  # trains four classifiers

MODELS = {
    "snntorch-mlp": (SnnTorchMLP, None, (64,)),
    "snntorch-conv": (SnnTorchConv, None, (1, 8, 8)),
    "spikingjelly-mlp": (sj_mlp, _sj_forward, (64,)),
    "spikingjelly-conv": (sj_conv, _sj_forward, (1, 8, 8)),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_int_accuracy_within_one_point(name, tmp_path):
    make, forward, shape = MODELS[name]
    (xtr, ytr), (xte, yte) = digits_split()
    xtr, xte = xtr.reshape(-1, *shape), xte.reshape(-1, *shape)
    torch.manual_seed(0)
    model = train_classifier(make(), xtr, ytr, epochs=12, forward=forward)
    seq = forward is not None  # SpikingJelly multi-step models take [T, B, ...]
    to_in = (lambda x: np.repeat(x[None], STEPS, 0)) if seq else (lambda x: x)
    if seq:
        functional.reset_net(model)
    hw = npuc.compile(model, to_in(xtr[:300]), target=["loihi2", "fpga"], out=tmp_path / "b")
    xall, yall = np.concatenate([xtr, xte]), np.concatenate([ytr, yte])
    held = slice(len(xtr), None)

    def predict(engine, target=None):
        out = np.asarray(hw.simulate(to_in(xall), engine, target=target))
        return (out.sum(0) if seq else out).argmax(1)

    pf = predict("float")
    assert np.mean(pf[held] == yte) == pytest.approx(accuracy(model, xte, yte, forward))  # the float engine is the model
    acc_f, acc_f_held = np.mean(pf == yall), np.mean(pf[held] == yte)
    assert acc_f_held > 0.85, acc_f_held
    for target in ("loihi2", "fpga"):
        pi = predict("int", target)
        acc_i, acc_i_held = np.mean(pi == yall), np.mean(pi[held] == yte)
        assert acc_i >= acc_f - 0.01, (name, target, "all digits", acc_f, acc_i)
        assert acc_i_held >= acc_f_held - 0.025, (name, target, "held-out", acc_f_held, acc_i_held)
