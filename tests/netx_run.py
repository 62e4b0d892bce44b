"""Run an npuc ``network.net`` with lava-dl netx in Lava's fixed_pt simulator (no npuc import).

Runs in the separate interpreter that has lava-dl (tests/test_netx_lava_dl.py starts it):

    python netx_run.py network.net inputs.npy T MESSAGE_BITS out.npy

``inputs.npy``: npuc's integer input stream ``[T, B, *shape]`` (C, H, W order); the samples run
back to back, each ``T`` steps (``MESSAGE_BITS``: 0 for binary input spikes, else graded), with netx's own resets (``reset_interval=T``). ``out.npy``: the last
block's spikes per Lava step, ``[steps, *out_shape]`` in npuc's order, for ``B * T + L`` steps
(``L`` layers of one-step synapses); the caller undoes the shift.
"""

import sys

import numpy as np
from lava.lib.dl.netx.hdf5 import Network
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.io.sink import RingBuffer as Sink
from lava.proc.io.source import RingBuffer as Source


def main(net_path: str, x_path: str, steps: int, bits: int, out_path: str) -> None:
    x = np.load(x_path)  # [T, B, *shape]
    t, b = x.shape[:2]
    lava_x = x.transpose(0, 1, *range(x.ndim - 1, 1, -1))  # (C, H, W) -> netx's (W, H, C)
    net = Network(net_config=net_path, input_shape=lava_x.shape[2:], input_message_bits=bits,
                  reset_interval=steps, reset_offset=1)
    layers = len(net.layers)
    total = b * t + layers
    stream = np.zeros(lava_x.shape[2:] + (total,), np.int64)
    flat = lava_x.transpose(1, 0, *range(2, lava_x.ndim)).reshape((b * t,) + lava_x.shape[2:])  # sample-major
    stream[..., : b * t] = np.moveaxis(flat, 0, -1)
    src = Source(data=stream)
    sink = Sink(shape=net.out.shape, buffer=total)
    src.s_out.connect(net.inp)
    net.out.connect(sink.a_in)
    net.run(condition=RunSteps(num_steps=total), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    data = sink.data.get()  # [*out_shape, steps]
    net.stop()
    out = np.moveaxis(data, -1, 0)
    np.save(out_path, out.transpose(0, *range(out.ndim - 1, 0, -1)))  # back to (C, H, W)
    print(f"netx: {layers} blocks, {total} steps")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
