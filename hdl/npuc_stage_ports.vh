    // an event-driven stage (npuc_syn, npuc_pool): the step handshake and the read port of the
    // source event list it walks (npuc_evfront). Verilog-2005 has no interfaces: the emitter
    // inlines this file into each module, so no tool needs an include path.
    input  wire              clk,
    input  wire              rst,
    input  wire              start,
    output reg               done,
    output wire              busy,
    input  wire [EAW-1:0]    ev_count,
    output wire              ev_re,
    output wire [EAW-1:0]    ev_addr,
    input  wire [PW+IW-1:0]  ev_data,
