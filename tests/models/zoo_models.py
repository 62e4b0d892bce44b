"""Zoo models written the way the libraries' tutorials and reference code write them
(snntorch tutorial 2's ``Lapicque``, a ``spk.mean((-2, -1))`` classifier head, SpikingJelly's
SEW-ResNet block); shared by tests/test_zoo_*.py and bench/model_zoo.py."""

from __future__ import annotations

import snntorch as snn
import torch
import torch.nn as nn
from snntorch import utils


def spread_batchnorm(model: nn.Module, mean: float) -> None:
    """Seeded running statistics (mean in [-mean, mean), variance in [0.5, 1.5)) for every
    BatchNorm2d, in module order, so that eval-mode batch norm is not the identity."""
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-mean, mean)
            mod.running_var.uniform_(0.5, 1.5)


class LapicqueNet(nn.Module):
    """snntorch tutorial style: Linear -> Lapicque, explicit ``mem`` from ``init_lapicque()``."""

    def __init__(self, **neuron) -> None:
        super().__init__()
        self.fc = nn.Linear(20, 16)
        self.lif = snn.Lapicque(**neuron)

    def forward(self, x):
        mem = self.lif.init_lapicque()
        spk_rec, mem_rec = [], []
        for step in range(x.shape[0]):
            spk, mem = self.lif(self.fc(x[step]), mem)
            spk_rec.append(spk)
            mem_rec.append(mem)
        return torch.stack(spk_rec), torch.stack(mem_rec)


class GlobalAveragePoolNet(nn.Module):
    """Conv -> Leaky -> ``spk.mean((-2, -1))`` -> Linear -> Leaky, ``init_hidden`` style."""

    def __init__(self, keepdim: bool = False) -> None:
        super().__init__()
        self.keepdim = keepdim
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.lif1 = snn.Leaky(beta=0.9, init_hidden=True)
        self.fc = nn.Linear(8, 10)
        self.lif2 = snn.Leaky(beta=0.9, init_hidden=True, output=True)

    def forward(self, x):
        utils.reset(self)
        spk_rec = []
        for step in range(x.shape[0]):
            s = self.lif1(self.conv(x[step]))
            s = s.mean((-2, -1), keepdim=self.keepdim)
            spk, _ = self.lif2(self.fc(s.flatten(1)))
            spk_rec.append(spk)
        return torch.stack(spk_rec)


class SEWBlock(nn.Module):
    """SpikingJelly SEW-ResNet basic block (multi-step): two Conv-BN-IF stages and the connect
    function ``sew_function(identity, out, cnf)`` as the reference code writes it."""

    def __init__(self, channels: int, cnf: str) -> None:
        super().__init__()
        from spikingjelly.activation_based import layer, neuron, surrogate

        self.cnf = cnf
        self.conv = nn.Sequential(
            layer.Conv2d(channels, channels, 3, padding=1, bias=False), layer.BatchNorm2d(channels),
            neuron.IFNode(surrogate_function=surrogate.ATan()),
            layer.Conv2d(channels, channels, 3, padding=1, bias=False), layer.BatchNorm2d(channels),
            neuron.IFNode(surrogate_function=surrogate.ATan()))

    def forward(self, x):
        identity, out = x, self.conv(x)
        if self.cnf == "ADD":
            return identity + out
        if self.cnf == "AND":
            return identity * out
        return identity * (1. - out)  # IAND


class SEWNet(nn.Module):
    def __init__(self, cnf: str) -> None:
        super().__init__()
        from spikingjelly.activation_based import functional, layer, neuron, surrogate

        self.stem = nn.Sequential(layer.Conv2d(2, 16, 3, padding=1, bias=False), layer.BatchNorm2d(16),
                                  neuron.IFNode(surrogate_function=surrogate.ATan()))
        self.block = SEWBlock(16, cnf)
        self.head = nn.Sequential(layer.AdaptiveAvgPool2d((1, 1)), layer.Flatten(), layer.Linear(16, 10),
                                  neuron.IFNode(surrogate_function=surrogate.ATan()))
        functional.set_step_mode(self, "m")

    def forward(self, x):
        return self.head(self.block(self.stem(x)))


def sew_net(cnf: str) -> SEWNet:
    """A SEW block between a stem and a classifier, with weights that make every stage spike."""
    torch.manual_seed(0)
    model = SEWNet(cnf).eval()
    with torch.no_grad():
        model.head[2].weight.mul_(40.0)
        for conv in (model.stem[0], model.block.conv[0], model.block.conv[3]):
            conv.weight.mul_(4.0)  # enough drive that the block's spikes overlap the identity's
        spread_batchnorm(model, 0.2)
    return model


class SpeckNet(nn.Module):
    """sinabs as deployed to Speck: Conv -> IAFSqueeze (default MultiSpike) -> SumPool2d blocks on
    the batch-major folded ``[B*T, 2, H, W]`` DVS tensor, then Linear -> IAFSqueeze."""

    def __init__(self, batch: int, side: int = 64) -> None:
        super().__init__()
        import sinabs.layers as sl

        s = side // 8
        self.seq = nn.Sequential(
            nn.Conv2d(2, 8, 3, padding=1, bias=False), sl.IAFSqueeze(batch_size=batch), sl.SumPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1, bias=False), sl.IAFSqueeze(batch_size=batch), sl.SumPool2d(2),
            nn.Conv2d(16, 16, 3, padding=1, bias=False), sl.IAFSqueeze(batch_size=batch), sl.SumPool2d(2),
            nn.Flatten(), nn.Linear(16 * s * s, 10, bias=False), sl.IAFSqueeze(batch_size=batch))

    def forward(self, x):  # [B, T, 2, H, W] DVS events
        b, t = x.shape[:2]
        return self.seq(x.flatten(0, 1)).unflatten(0, (b, t))


class SJCSNN(nn.Module):
    """SpikingJelly's convolutional Fashion-MNIST example network (``activation_based/examples/
    conv_fashion_mnist.py``: Conv-BN-IF-MaxPool twice, Flatten, Linear-IF twice, multi-step
    mode, input repeated over T) at a reduced width."""

    def __init__(self, channels: int = 8, steps: int = 4) -> None:
        super().__init__()
        from spikingjelly.activation_based import functional, layer, neuron, surrogate

        self.T = steps
        c = channels
        self.conv_fc = nn.Sequential(
            layer.Conv2d(1, c, kernel_size=3, padding=1, bias=False), layer.BatchNorm2d(c),
            neuron.IFNode(surrogate_function=surrogate.ATan()), layer.MaxPool2d(2, 2),
            layer.Conv2d(c, c, kernel_size=3, padding=1, bias=False), layer.BatchNorm2d(c),
            neuron.IFNode(surrogate_function=surrogate.ATan()), layer.MaxPool2d(2, 2),
            layer.Flatten(),
            layer.Linear(c * 7 * 7, c * 4 * 4, bias=False), neuron.IFNode(surrogate_function=surrogate.ATan()),
            layer.Linear(c * 4 * 4, 10, bias=False), neuron.IFNode(surrogate_function=surrogate.ATan()),
        )
        functional.set_step_mode(self, step_mode="m")

    def forward(self, x):  # [B, 1, 28, 28]: the image repeated over T, firing rates out
        x_seq = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        return self.conv_fc(x_seq).mean(0)


def sj_csnn(channels: int = 8) -> SJCSNN:
    """The example network with seeded weights and batch-norm statistics that make every layer spike
    (the example's default width is ``channels=128``)."""
    torch.manual_seed(0)
    m = SJCSNN(channels).eval()
    with torch.no_grad():
        for mod, f in zip((m.conv_fc[0], m.conv_fc[4], m.conv_fc[9], m.conv_fc[11]), (3.0, 3.0, 4.0, 6.0)):
            mod.weight.mul_(f)
        spread_batchnorm(m, 0.1)
    return m


class SEWStem(nn.Module):
    """sew_resnet18's stem as SpikingJelly writes it (``conv1 -> bn1 -> sn1 -> maxpool``, the max pool
    3x3, stride 2, padding 1: overlapping windows of spikes), then a Conv-BN-IF stage and an IF
    classifier (multi-step, [T, B, C, H, W])."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        from spikingjelly.activation_based import functional, layer, neuron, surrogate

        c = channels
        self.conv1 = layer.Conv2d(2, c, 3, padding=1, bias=False)
        self.bn1 = layer.BatchNorm2d(c)
        self.sn1 = neuron.IFNode(surrogate_function=surrogate.ATan())
        self.maxpool = layer.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.conv2 = layer.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = layer.BatchNorm2d(c)
        self.sn2 = neuron.IFNode(surrogate_function=surrogate.ATan())
        self.avgpool, self.flatten = layer.AdaptiveAvgPool2d((1, 1)), layer.Flatten()
        self.fc = layer.Linear(c, 10)
        self.sn3 = neuron.IFNode(surrogate_function=surrogate.ATan())
        functional.set_step_mode(self, "m")

    def forward(self, x):
        x = self.maxpool(self.sn1(self.bn1(self.conv1(x))))
        x = self.sn2(self.bn2(self.conv2(x)))
        return self.sn3(self.fc(self.flatten(self.avgpool(x))))


def sew_stem(channels: int = 8) -> SEWStem:
    """The stem with seeded weights and batch-norm statistics that make every stage spike."""
    torch.manual_seed(0)
    m = SEWStem(channels).eval()
    with torch.no_grad():
        m.conv1.weight.mul_(3.0)
        m.conv2.weight.mul_(3.0)
        m.fc.weight.mul_(30.0)
        spread_batchnorm(m, 0.2)
    return m
