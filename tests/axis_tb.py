"""cocotb testbench for a design's AXI4-Stream wrapper (``<top>_axis``), driven by test_rtl_axis.

Per cycle: drive on the falling edge (random tvalid gaps on s_axis, random tready on m_axis),
sample both handshakes in ReadOnly (what the next rising edge commits). Records every output
word (signed) and the index of every output word that carried tlast.

Environment: NPUC_AXIS_STIM (.npz, "words" int64 [B, T, words_in]), NPUC_AXIS_RESULT (.npz
written: "out" [B, T, words_out], "tlast" indices), NPUC_AXIS_WORDS_OUT, NPUC_AXIS_IN_W.
"""

import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge


@cocotb.test()
async def axis_samples(dut):
    words = np.load(os.environ["NPUC_AXIS_STIM"])["words"]
    words_out = int(os.environ["NPUC_AXIS_WORDS_OUT"])
    mask = (1 << int(os.environ["NPUC_AXIS_IN_W"])) - 1
    batch, steps, words_in = words.shape
    flat = [int(w) & mask for w in words.reshape(-1)]
    per_sample = steps * words_in
    want = batch * steps * words_out
    rng = np.random.default_rng(5)
    cocotb.start_soon(Clock(dut.aclk, 10, unit="ns").start())
    dut.aresetn.value = 0
    dut.s_axis_tvalid.value = 0
    dut.s_axis_tdata.value = 0
    dut.s_axis_tlast.value = 0
    dut.m_axis_tready.value = 0
    await ClockCycles(dut.aclk, 3)
    i, got, lasts, cycles = 0, [], [], 0
    while len(got) < want:
        await FallingEdge(dut.aclk)
        dut.aresetn.value = 1
        cycles += 1
        assert cycles < 20_000_000, "AXI4-Stream testbench timed out"
        if i < len(flat) and not (dut.s_axis_tvalid.value and not dut.s_axis_tready.value):
            # a new beat (or a gap) only when no beat is waiting: AXI keeps tvalid/tdata until taken
            show = rng.random() < 0.7
            dut.s_axis_tvalid.value = int(show)
            dut.s_axis_tdata.value = flat[i]
            dut.s_axis_tlast.value = int((i + 1) % per_sample == 0)
        elif i >= len(flat):
            dut.s_axis_tvalid.value = 0
        dut.m_axis_tready.value = int(rng.random() < 0.6)
        await ReadOnly()
        s_fire = bool(dut.s_axis_tvalid.value and dut.s_axis_tready.value)
        if dut.m_axis_tvalid.value and dut.m_axis_tready.value:
            if dut.m_axis_tlast.value:
                lasts.append(len(got))
            got.append(dut.m_axis_tdata.value.to_signed())
        await RisingEdge(dut.aclk)
        if s_fire:
            i += 1
    out = np.asarray(got, dtype=np.int64).reshape(batch, steps, words_out)
    np.savez(os.environ["NPUC_AXIS_RESULT"], out=out, tlast=np.asarray(lasts, dtype=np.int64))
