"""Spikformer (Zhou et al., ICLR 2023) written the way its public CIFAR-10 reference
``model.py`` writes it (our own code, same structure): SpikingJelly ``MultiStepLIFNode``
(``tau=2.0, detach_reset=True``, backend 'torch'; see `_lif`), ``Linear`` + ``BatchNorm1d`` through
``.transpose(-1, -2)`` on the time-folded ``[T*B, N, C]`` tensor, heads by
``reshape(...).permute(0, 1, 3, 2, 4)``, ``(q @ k^T) * scale @ v``, residual adds of
spike tensors, the SPS patch embedding (Conv2d-BN-LIF[-MaxPool] with a relative
position conv) and the head ``head(x.mean(2).mean(0))``.

`SpikeDrivenMLP` / `SpikeDrivenSSA` are the Spike-driven Transformer's 1x1
``Conv1d``/``Conv2d`` + ``BatchNorm`` variants of the same layers.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from spikingjelly.activation_based import neuron


def _lif(v_threshold: float = 1.0) -> neuron.LIFNode:
    """The reference's ``MultiStepLIFNode(tau=2.0, detach_reset=True)``: SpikingJelly 0.0.0.0.14's
    ``clock_driven`` module no longer imports under torch 2.14 (its ``torch.jit.script`` fails), so the
    same neuron comes from ``activation_based`` in multi-step mode."""
    return neuron.LIFNode(tau=2.0, v_threshold=v_threshold, detach_reset=True, step_mode="m", backend="torch")


class MLP(nn.Module):
    def __init__(self, in_features: int, hidden_features: int) -> None:
        super().__init__()
        self.fc1_linear = nn.Linear(in_features, hidden_features)
        self.fc1_bn = nn.BatchNorm1d(hidden_features)
        self.fc1_lif = _lif()
        self.fc2_linear = nn.Linear(hidden_features, in_features)
        self.fc2_bn = nn.BatchNorm1d(in_features)
        self.fc2_lif = _lif()
        self.c_hidden = hidden_features
        self.c_output = in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, N, C = x.shape
        x_ = x.flatten(0, 1)
        x = self.fc1_linear(x_)
        x = self.fc1_bn(x.transpose(-1, -2)).transpose(-1, -2).reshape(T, B, N, self.c_hidden).contiguous()
        x = self.fc1_lif(x)
        x = self.fc2_linear(x.flatten(0, 1))
        x = self.fc2_bn(x.transpose(-1, -2)).transpose(-1, -2).reshape(T, B, N, C).contiguous()
        x = self.fc2_lif(x)
        return x


class SSA(nn.Module):
    def __init__(self, dim: int, num_heads: int = 8, scale: float = 0.125) -> None:
        super().__init__()
        self.dim, self.num_heads, self.scale = dim, num_heads, scale
        for n in ("q", "k", "v"):
            setattr(self, f"{n}_linear", nn.Linear(dim, dim))
            setattr(self, f"{n}_bn", nn.BatchNorm1d(dim))
            setattr(self, f"{n}_lif", _lif())
        self.attn_lif = _lif(0.5)
        self.proj_linear = nn.Linear(dim, dim)
        self.proj_bn = nn.BatchNorm1d(dim)
        self.proj_lif = _lif()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, N, C = x.shape
        x_for_qkv = x.flatten(0, 1)
        q_linear_out = self.q_linear(x_for_qkv)
        q_linear_out = self.q_bn(q_linear_out.transpose(-1, -2)).transpose(-1, -2).reshape(T, B, N, C).contiguous()
        q_linear_out = self.q_lif(q_linear_out)
        q = q_linear_out.reshape(T, B, N, self.num_heads, C // self.num_heads).permute(0, 1, 3, 2, 4).contiguous()

        k_linear_out = self.k_linear(x_for_qkv)
        k_linear_out = self.k_bn(k_linear_out.transpose(-1, -2)).transpose(-1, -2).reshape(T, B, N, C).contiguous()
        k_linear_out = self.k_lif(k_linear_out)
        k = k_linear_out.reshape(T, B, N, self.num_heads, C // self.num_heads).permute(0, 1, 3, 2, 4).contiguous()

        v_linear_out = self.v_linear(x_for_qkv)
        v_linear_out = self.v_bn(v_linear_out.transpose(-1, -2)).transpose(-1, -2).reshape(T, B, N, C).contiguous()
        v_linear_out = self.v_lif(v_linear_out)
        v = v_linear_out.reshape(T, B, N, self.num_heads, C // self.num_heads).permute(0, 1, 3, 2, 4).contiguous()

        attn = (q @ k.transpose(-2, -1)) * self.scale
        x = attn @ v
        x = x.transpose(2, 3).reshape(T, B, N, C).contiguous()
        x = self.attn_lif(x)
        x = x.flatten(0, 1)
        x = self.proj_lif(self.proj_bn(self.proj_linear(x).transpose(-1, -2)).transpose(-1, -2).reshape(T, B, N, C))
        return x


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, scale: float = 0.125) -> None:
        super().__init__()
        self.attn = SSA(dim, num_heads, scale)
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        x = x + self.mlp(x)
        return x


class SPS(nn.Module):
    """Spiking patch splitting (CIFAR-10 form): four Conv-BN-LIF stages with a max pool
    after the third and the fourth (H/4 x W/4 tokens), a relative position conv on the
    pooled spikes, ``x + x_feat``, tokens ``flatten(-2).transpose(-1, -2)``."""

    def __init__(self, img_size: int = 32, in_channels: int = 3, embed_dims: int = 384) -> None:
        super().__init__()
        self.H = self.W = img_size
        dims = (in_channels, embed_dims // 8, embed_dims // 4, embed_dims // 2, embed_dims)
        for i, suffix in enumerate(("", "1", "2", "3")):
            setattr(self, f"proj_conv{suffix}", nn.Conv2d(dims[i], dims[i + 1], 3, 1, 1, bias=False))
            setattr(self, f"proj_bn{suffix}", nn.BatchNorm2d(dims[i + 1]))
            setattr(self, f"proj_lif{suffix}", _lif())
        self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False)
        self.maxpool3 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False)
        self.rpe_conv = nn.Conv2d(embed_dims, embed_dims, 3, 1, 1, bias=False)
        self.rpe_bn = nn.BatchNorm2d(embed_dims)
        self.rpe_lif = _lif()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        x = self.proj_conv(x.flatten(0, 1))
        x = self.proj_bn(x).reshape(T, B, -1, H, W).contiguous()
        x = self.proj_lif(x).flatten(0, 1).contiguous()
        x = self.proj_conv1(x)
        x = self.proj_bn1(x).reshape(T, B, -1, H, W).contiguous()
        x = self.proj_lif1(x).flatten(0, 1).contiguous()
        x = self.proj_conv2(x)
        x = self.proj_bn2(x).reshape(T, B, -1, H, W).contiguous()
        x = self.proj_lif2(x).flatten(0, 1).contiguous()
        x = self.maxpool2(x)
        x = self.proj_conv3(x)
        x = self.proj_bn3(x).reshape(T, B, -1, H // 2, W // 2).contiguous()
        x = self.proj_lif3(x).flatten(0, 1).contiguous()
        x = self.maxpool3(x)
        x_feat = x.reshape(T, B, -1, H // 4, W // 4).contiguous()
        x = self.rpe_conv(x)
        x = self.rpe_bn(x).reshape(T, B, -1, H // 4, W // 4).contiguous()
        x = self.rpe_lif(x)
        x = x + x_feat
        x = x.flatten(-2).transpose(-1, -2)  # T, B, N, C
        return x


class Spikformer(nn.Module):
    """SPS -> ``depths`` blocks -> ``head(x.mean(2).mean(0))``; a static image repeated over ``T`` steps."""

    def __init__(self, img_size: int = 32, in_channels: int = 3, num_classes: int = 10, embed_dims: int = 384,
                 num_heads: int = 8, mlp_ratio: float = 4.0, depths: int = 4, T: int = 4) -> None:
        super().__init__()
        self.T = T
        self.patch_embed = SPS(img_size, in_channels, embed_dims)
        self.block = nn.ModuleList([Block(embed_dims, num_heads, mlp_ratio) for _ in range(depths)])
        self.head = nn.Linear(embed_dims, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for blk in self.block:
            x = blk(x)
        return x.mean(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        x = self.forward_features(x)
        return self.head(x.mean(0))


class OneBlock(nn.Module):
    """One Spikformer block at reduced width on ``[T, B, N, C]`` spike tokens (from an
    embedding Linear-BN-LIF), read out like the full model: ``head(x.mean(2).mean(0))``."""

    def __init__(self, features: int = 8, dim: int = 32, num_heads: int = 2, mlp_ratio: float = 4.0,
                 num_classes: int = 10, scale: float = 0.125) -> None:
        super().__init__()
        self.embed_linear = nn.Linear(features, dim)
        self.embed_bn = nn.BatchNorm1d(dim)
        self.embed_lif = _lif()
        self.block = Block(dim, num_heads, mlp_ratio, scale)
        self.head = nn.Linear(dim, num_classes)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, N, F]
        T, B, N, _ = x.shape
        x = self.embed_linear(x.flatten(0, 1))
        x = self.embed_bn(x.transpose(-1, -2)).transpose(-1, -2).reshape(T, B, N, self.dim).contiguous()
        x = self.block(self.embed_lif(x))
        return self.head(x.mean(2).mean(0))


def calibrate_bn(model: nn.Module, x: torch.Tensor, seed: int = 0, bias: float = 0.8, passes: int = 2) -> nn.Module:
    """Trained-looking batch norms: running statistics measured on ``x`` (train-mode passes,
    cumulative average), then ``weight ~ 1`` and ``bias ~ bias`` so that every LIF layer spikes at a
    moderate rate (tau = 2, threshold 1: a normalised input near 1 charges to threshold). Eval mode."""
    from spikingjelly.activation_based import functional

    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
            m.weight.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
            m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2 + bias)
        model.train()
        for _ in range(passes):
            functional.reset_net(model)
            model(x)
        functional.reset_net(model)
        for m in bns:
            m.momentum = 0.1
    return model.eval()


class ConvFormBlock(nn.Module):
    """The Spike-driven Transformer's layout (channels first, ``[T, B, C, N]`` or
    ``[T, B, C, H, W]``): every projection a 1x1 ``Conv1d``/``Conv2d`` + ``BatchNorm1d/2d`` on the
    time-folded tensor, Spikformer's SSA on the tokens ``x.flatten(3).transpose(-1, -2)``, spike
    residuals, and the head on ``x.flatten(3).mean(3)``. ``kind``: ``"conv1d"`` (input
    ``[T, B, F, N]``) or ``"conv2d"`` (input ``[T, B, F, H, W]``)."""

    def __init__(self, kind: str = "conv1d", features: int = 8, dim: int = 32, num_heads: int = 2,
                 hidden: int = 64, num_classes: int = 10, scale: float = 0.125) -> None:
        super().__init__()
        conv, bn = (nn.Conv1d, nn.BatchNorm1d) if kind == "conv1d" else (nn.Conv2d, nn.BatchNorm2d)
        self.kind, self.dim, self.num_heads, self.scale = kind, dim, num_heads, scale
        sizes = {"embed": (features, dim), "q": (dim, dim), "k": (dim, dim), "v": (dim, dim), "proj": (dim, dim),
                 "fc1": (dim, hidden), "fc2": (hidden, dim)}
        for n, (cin, cout) in sizes.items():
            setattr(self, f"{n}_conv", conv(cin, cout, kernel_size=1, stride=1))
            setattr(self, f"{n}_bn", bn(cout))
            setattr(self, f"{n}_lif", _lif())
        self.attn_lif = _lif(0.5)
        self.head = nn.Linear(dim, num_classes)

    def _cbl(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """conv-bn-lif on the time-folded tensor: ``[T, B, C, ...] -> [T, B, C', ...]``."""
        T, B = x.shape[:2]
        y = getattr(self, f"{name}_bn")(getattr(self, f"{name}_conv")(x.flatten(0, 1)))
        return getattr(self, f"{name}_lif")(y.reshape(T, B, *y.shape[1:]).contiguous())

    def _attention(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C = x.shape[:3]
        h = self.num_heads
        q, k, v = (self._cbl(n, x).flatten(3).transpose(-1, -2) for n in ("q", "k", "v"))
        N = q.shape[2]
        q, k, v = (t.reshape(T, B, N, h, C // h).permute(0, 1, 3, 2, 4).contiguous() for t in (q, k, v))
        y = (q @ k.transpose(-2, -1)) * self.scale @ v
        y = y.transpose(3, 4).reshape(T, B, C, *x.shape[3:]).contiguous()  # back to channels first
        return self._cbl("proj", self.attn_lif(y))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._cbl("embed", x)
        x = x + self._attention(x)
        x = x + self._cbl("fc2", self._cbl("fc1", x))
        return self.head(x.flatten(3).mean(3).mean(0))
