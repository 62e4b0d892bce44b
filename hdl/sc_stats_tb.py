"""cocotb testbench of npuc_sc_stats (static; driven by npuc.backends.rtl.sc_stats.measure).

Environment:
  NPUC_SC_STIM    .npz with "rows": int64 [R, 5] = (p1, p2, ps, window, leap) per window
  NPUC_SC_RESULT  .npz written at the end: "counts" int64 [R, 6] = n1, n2, n_ind, n_shared, n_samepoly, n_mux
"""

import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge

PORTS = ("n1", "n2", "n_ind", "n_shared", "n_samepoly", "n_mux")


@cocotb.test()
async def run_windows(dut):
    rows = np.load(os.environ["NPUC_SC_STIM"])["rows"]
    counts = np.zeros((len(rows), len(PORTS)), dtype=np.int64)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.start.value = 0
    dut.window.value = 1
    dut.p1.value = 0
    dut.p2.value = 0
    dut.ps.value = 0
    dut.leap.value = 0
    await ClockCycles(dut.clk, 3)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    for r, (p1, p2, ps, window, leap) in enumerate(rows):
        await FallingEdge(dut.clk)
        dut.p1.value = int(p1)
        dut.p2.value = int(p2)
        dut.ps.value = int(ps)
        dut.window.value = int(window)
        dut.leap.value = int(leap)
        dut.start.value = 1
        await FallingEdge(dut.clk)
        dut.start.value = 0
        await ClockCycles(dut.clk, int(window))
        while dut.busy.value:
            await RisingEdge(dut.clk)
        await FallingEdge(dut.clk)
        for j, name in enumerate(PORTS):
            counts[r, j] = int(getattr(dut, name).value)
    np.savez(os.environ["NPUC_SC_RESULT"], counts=counts)
