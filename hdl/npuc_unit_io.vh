`include "npuc_unit_rows.vh"
    // a unit with its own output population (npuc_sc_attn, npuc_linattn): the step handshake,
    // the append port of its event list and the readout of every output value (npuc_unit_out)
    input  wire                  step_start,
    input  wire                  first,
    output wire                  ev_wr_en,
    output wire [OPW+OIW-1:0]    ev_wr_data,
    input  wire                  ro_re,
    input  wire [OIW-1:0]        ro_addr,
    output wire [RW-1:0]         ro_data
