// npuc_ram: one write port, one synchronous read port (read-first), optional $readmemh init.
// A registered read with a read enable is what Yosys maps to block RAM; `rdata` holds its value
// while `re` is low, so pipeline stages can stall on it.
`default_nettype none
module npuc_ram #(
    parameter integer WIDTH = 8,
    parameter integer DEPTH = 16,
    parameter integer AW = 4,            // address width, >= clog2(DEPTH), >= 1 (upper bits ignored)
    parameter INIT_FILE = ""             // hex file (one word per line) or "" for all-zero
) (
    input  wire             clk,
    input  wire             we,
    input  wire [AW-1:0]    waddr,
    input  wire [WIDTH-1:0] wdata,
    input  wire             re,
    input  wire [AW-1:0]    raddr,
    output reg  [WIDTH-1:0] rdata
);
    localparam integer IW = (DEPTH > 1) ? $clog2(DEPTH) : 1;
    reg [WIDTH-1:0] mem [0:DEPTH-1];
    generate
        if (INIT_FILE != "") begin : g_init
            initial $readmemh(INIT_FILE, mem);
        end
    endgenerate
    wire [IW-1:0] wa = waddr[IW-1:0];
    wire [IW-1:0] ra = raddr[IW-1:0];
    generate
        if (AW > IW) begin : g_wide
            wire _unused_ok = &{1'b0, waddr[AW-1:IW], raddr[AW-1:IW], 1'b0};
        end
    endgenerate
    always @(posedge clk) begin
        if (we) mem[wa] <= wdata;
        if (re) rdata <= mem[ra];
    end
endmodule
`default_nettype wire
