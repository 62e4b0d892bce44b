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


def explore(*args, **kwargs):
    """Search a design space for the best hardware per objective; see `npuc.dse.run.explore`."""
    from .dse.run import explore as _explore

    return _explore(*args, **kwargs)


def evaluate(*args, **kwargs):
    """Accuracy, confusion and spike rates of a build on a data set; see `npuc.dse.evaluate.evaluate`."""
    from .dse.evaluate import evaluate as _evaluate

    return _evaluate(*args, **kwargs)
