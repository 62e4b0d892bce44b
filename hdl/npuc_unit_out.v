// npuc_unit_out: the output side of an attention unit (npuc_sc_attn, npuc_linattn): output
// `addr` gets value `val` when `we`; a nonzero value is also appended to the unit's event list as
// {payload, addr} (payload: val zero-extended to OPW bits, i.e. 1 for a spike), and every value
// is kept in an output RAM for readout (read while the unit is idle).
`default_nettype none
module npuc_unit_out #(
    parameter integer VW = 1,            // value width
    parameter integer OPW = 2,           // event payload width (>= VW)
    parameter integer OIW = 4,           // output index width
    parameter integer DEPTH = 4          // outputs
) (
    input  wire               clk,
    input  wire               we,
    input  wire [OIW-1:0]     addr,
    input  wire [VW-1:0]      val,
    output wire               ev_wr_en,
    output wire [OPW+OIW-1:0] ev_wr_data,
    input  wire               ro_re,
    input  wire [OIW-1:0]     ro_addr,
    output wire [VW-1:0]      ro_data
);
    assign ev_wr_en = we && (val != {VW{1'b0}});
    generate
        if (OPW > VW) begin : g_ext
            assign ev_wr_data = {{(OPW-VW){1'b0}}, val, addr};
        end else begin : g_same
            assign ev_wr_data = {val, addr};
        end
    endgenerate
    npuc_ram #(.WIDTH(VW), .DEPTH(DEPTH), .AW(OIW)) u_out (
        .clk(clk), .we(we), .waddr(addr), .wdata(val), .re(ro_re), .raddr(ro_addr), .rdata(ro_data));
endmodule
`default_nettype wire
