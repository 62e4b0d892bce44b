// npuc_sweep: the address walk that zeroes a memory in the background, one word per cycle:
// addr = 0 .. DEPTH-1 while `busy`. It starts at reset (AT_RESET 1) and on `restart` (which
// takes priority over a running sweep). The owner writes zero to `addr` while `busy`.
`default_nettype none
module npuc_sweep #(
    parameter integer AW = 4,            // address width
    parameter integer DEPTH = 16,        // words to clear
    parameter integer AT_RESET = 1
) (
    input  wire          clk,
    input  wire          rst,
    input  wire          restart,
    output reg           busy,
    output reg  [AW-1:0] addr
);
    localparam [31:0] LAST = DEPTH - 1;
    wire [31:0] addr32 = {{(32-AW){1'b0}}, addr};
    always @(posedge clk) begin
        if (rst) begin
            busy <= (AT_RESET != 0);
            addr <= {AW{1'b0}};
        end else if (restart) begin
            busy <= 1'b1;
            addr <= {AW{1'b0}};
        end else if (busy) begin
            if (addr32 == LAST) busy <= 1'b0;
            else addr <= addr + 1'b1;
        end
    end
endmodule
`default_nettype wire
