"""npuc: a deployment compiler for spiking neural networks.

PyTorch / NIR / ONNX models -> typed NPE graph (`npuc.ir`) -> passes
(`npuc.passes`) -> Lava processes for Loihi 2 and Verilog (`npuc.backends`),
verified bit-exact against golden simulators (`npuc.sim`).
"""

__version__ = "0.1.0"
