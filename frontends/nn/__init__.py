"""`npuc.nn`: trainable spiking modules whose forward is the IR's canonical float form.

Neurons (`LIF`, `IF`) take time-major ``[T, B, ...]`` tensors; encoders turn a
static ``[B, ...]`` input into ``[T, B, ...]`` spikes exactly as the IR input
encodings do. Inter-token NPEs (`SpikingSelfAttention`, `StochasticAttention`,
`LinearAttention`, `SpikingSSM`) take ``[T, B, ..., N, D]`` token tensors. A
model built from them and ``torch.nn`` layers trains with ordinary PyTorch and
compiles with `npuc.frontends.trace` / ``npuc compile`` without any special
code; its float graph equals the module output bit for bit.
"""

from .attention import LinearAttention, SpikingSelfAttention, SpikingSSM, StochasticAttention
from .encoders import BernoulliEncoder, CurrentEncoder, LatencyEncoder, RateEncoder, TimeCodeEncoder
from .neurons import IF, LIF
from .surrogate import ATan, Sigmoid, StraightThrough, Surrogate

__all__ = [
    "LIF", "IF",
    "RateEncoder", "BernoulliEncoder", "TimeCodeEncoder", "LatencyEncoder", "CurrentEncoder",
    "Surrogate", "Sigmoid", "ATan", "StraightThrough",
    "SpikingSelfAttention", "StochasticAttention", "LinearAttention", "SpikingSSM",
]
