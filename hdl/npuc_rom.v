// npuc_rom: read-only memory initialised with $readmemh, synchronous read with enable.
`default_nettype none
module npuc_rom #(
    parameter integer WIDTH = 8,
    parameter integer DEPTH = 16,
    parameter integer AW = 4,
    parameter INIT_FILE = "rom.hex"
) (
    input  wire             clk,
    input  wire             re,
    input  wire [AW-1:0]    raddr,
    output reg  [WIDTH-1:0] rdata
);
    localparam integer IW = (DEPTH > 1) ? $clog2(DEPTH) : 1;
    reg [WIDTH-1:0] mem [0:DEPTH-1];
    initial $readmemh(INIT_FILE, mem);
    wire [IW-1:0] ra = raddr[IW-1:0];
    generate
        if (AW > IW) begin : g_wide
            wire _unused_ok = &{1'b0, raddr[AW-1:IW], 1'b0};
        end
    endgenerate
    always @(posedge clk) begin
        if (re) rdata <= mem[ra];
    end
endmodule
`default_nettype wire
