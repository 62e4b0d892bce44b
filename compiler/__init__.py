"""npuc: a deployment compiler for spiking neural networks.

PyTorch / NIR / ONNX models -> typed NPE graph (`npuc.ir`) -> passes
(`npuc.passes`) -> Lava processes for Loihi 2 and Verilog (`npuc.backends`),
verified bit-exact against golden simulators (`npuc.sim`).
"""

__version__ = "0.1.0"


def compile(*args, **kwargs):  # noqa: A001
    """Compile a model for hardware targets; see `npuc.api.compile`."""
    from .api import compile as _compile

    return _compile(*args, **kwargs)


compile.__doc__ = "Compile a PyTorch model or an npuc Graph for hardware targets (see npuc.api.compile)."


def load(path):
    """Open a build directory as a `npuc.api.Compiled` (see `npuc.api.load`)."""
    from .api import load as _load

    return _load(path)
