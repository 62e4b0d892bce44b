    // the handshake and the Q, K, V rows of the unit's front end (npuc_gather, instantiated next to
    // the core); one port group for npuc_attn and (via npuc_unit_io.vh) npuc_sc_attn and npuc_linattn (Verilog-2005 has no
    // interfaces: the emitter inlines this file into each, so no tool needs an include path).
    // FW: bits per row element (1: spike rows).
    input  wire                  clk,
    input  wire                  rst,
    output reg                   done,
    output wire                  busy,
    input  wire                  rows_done,
    input  wire                  rows_busy,
    output reg                   rows_clear,
    output wire                  a_re,
    output wire [A_AW-1:0]        a_raddr,
    input  wire [DK*FW-1:0]      a_rdata,
    output wire                  b_re,
    output wire [B_AW-1:0]        b_raddr,
    input  wire [(DK+DV)*FW-1:0] b_rdata,
