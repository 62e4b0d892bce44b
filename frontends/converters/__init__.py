"""Module converters: one function per PyTorch module type, in a table.

A converter turns one call of a leaf module into IR nodes::

    @converter(nn.Linear, role="synapse")
    def linear(call: Call) -> Value: ...

``call`` gives the module, its qualified name, the abstract arguments and the
`Builder` (see `npuc.frontends.values` and `npuc.frontends.builder`). Lookup is by
*exact* type: a subclass with its own ``forward`` is traced through instead,
so it can never be silently converted as its base class. Converter modules of
the SNN libraries are imported only when the library is installed.

Roles group types for error messages: an unsupported module is reported with
its qualified name, its type and the supported types of its role.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch.nn as nn

ROLES = ("neuron", "synapse", "normalization", "pooling", "shape", "identity", "container", "encoder")

LIBRARIES = {
    "torch": ("torch", "torch_nn"),
    "npuc": ("torch", "npuc_nn"),
    "snntorch": ("snntorch", "snntorch"),
    "spikingjelly": ("spikingjelly", "spikingjelly"),
    "norse": ("norse", "norse"),
    "sinabs": ("sinabs", "sinabs"),
}
"""Library name -> (package that must be importable, converter module)."""


@dataclass
class Entry:
    """A registered converter."""

    fn: Callable[..., Any]
    role: str
    library: str


class Registry:
    """Converters keyed by module type (exact match)."""

    def __init__(self) -> None:
        self._by_type: dict[type, Entry] = {}
        self._loaded: set[str] = set()

    def register(self, *types: type, role: str, library: str = "torch") -> Callable:
        if role not in ROLES:
            raise ValueError(f"unknown converter role {role!r}")

        def deco(fn: Callable) -> Callable:
            for t in types:
                if t in self._by_type:
                    raise ValueError(f"two converters for {t.__module__}.{t.__qualname__}")
                self._by_type[t] = Entry(fn, role, library)
            return fn

        return deco

    def load(self, everything: bool = False) -> None:
        """Import the converter modules of the libraries a model can use: those
        already imported (a model's module imports its library), or with
        ``everything`` all installed ones (to list supported types in errors)."""
        for lib, (package, module) in LIBRARIES.items():
            if lib in self._loaded:
                continue
            if package not in sys.modules and not (everything and importlib.util.find_spec(package) is not None):
                continue
            self._loaded.add(lib)
            importlib.import_module(f"{__name__}.{module}")

    def lookup(self, module: nn.Module) -> Entry | None:
        self.load()
        return self._by_type.get(type(module))

    def lookup_type(self, t: type) -> Entry | None:
        self.load()
        return self._by_type.get(t)

    def is_leaf(self, module: nn.Module) -> bool:
        return self.lookup(module) is not None

    def supported(self, role: str) -> list[str]:
        self.load(everything=True)
        return sorted(_type_name(t) for t, e in self._by_type.items() if e.role == role)

    def role_guess(self, module: nn.Module) -> str:
        """The role an unregistered module probably has (for error messages)."""
        names = [c.__name__ for c in type(module).__mro__]
        text = " ".join(names).lower()
        for role, words in (
            ("neuron", ("neuron", "node", "cell", "leaky", "lif", "iaf", "spiking", "stateful", "synaptic", "alif",
                        "relu", "gelu", "sigmoid", "tanh", "softmax", "elu", "silu", "activation", "hardswish")),
            ("pooling", ("pool",)),
            ("normalization", ("norm",)),
            ("synapse", ("linear", "conv", "bilinear", "embedding")),
            ("shape", ("flatten", "reshape", "unflatten", "squeeze")),
            ("identity", ("dropout", "identity")),
            ("encoder", ("encoder",)),
        ):
            if any(w in text for w in words):
                return role
        return "synapse"


def _type_name(t: type) -> str:
    mod = t.__module__
    for short, long in (("nn", "torch.nn.modules"), ("snntorch", "snntorch._neurons"),
                        ("spikingjelly", "spikingjelly.activation_based"), ("norse", "norse.torch.module"),
                        ("sinabs.layers", "sinabs.layers"), ("npuc.nn", "npuc.frontends.nn")):
        if mod.startswith(long):
            return f"{short}.{t.__qualname__}" if short != "spikingjelly" else f"spikingjelly.{mod.split('.')[-1]}.{t.__qualname__}"
    return f"{mod}.{t.__qualname__}"


REGISTRY = Registry()


def converter(*types: type, role: str, library: str = "torch") -> Callable:
    """Register ``fn(call) -> value`` as the converter of ``types``."""
    return REGISTRY.register(*types, role=role, library=library)
