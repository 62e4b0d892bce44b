// npuc_attn_iter: where neuron n's accumulator lives for a path whose accumulator layout is not a
// counter pattern (attention: the Permute/Reshape ops after the unit are folded into this table).
// A ROM indexed by the neuron holds {lane, word}; same interface as npuc_acc_iter. The neuron
// unit walks n = 0, 1, ... with `step`; the ROM is read one neuron ahead (address n + 1 while
// stepping, n otherwise), so {lane, addr} of neuron n are valid in the cycle it is stepped. The
// first step must come at least one cycle after `restart` (the layer's synapse phases sit between).
`default_nettype none
module npuc_attn_iter #(
    parameter integer N = 4,             // neurons
    parameter integer NAW = 3,           // counter width, holds N
    parameter integer L = 1,
    parameter integer LB = 1,            // lane index width
    parameter integer AAW = 4,           // accumulator word address width
    parameter ROM_FILE = "iter.hex",
    parameter integer ROM_AW = 2         // ROM address width, holds N - 1
) (
    input  wire           clk,
    input  wire           rst,
    input  wire           restart,
    input  wire           step,
    output wire [L-1:0]   lane,          // one-hot
    output wire [AAW-1:0] addr,
    output wire [0:0]     co
);
    localparam [31:0] N32 = N;
    reg [NAW-1:0] c;
    wire [31:0] c32 = {{(32-NAW){1'b0}}, c};
    wire [31:0] nxt = step ? c32 + 32'd1 : c32;
    wire [31:0] ra = (nxt < N32) ? nxt : 32'd0;  // never read past the table
    wire [LB+AAW-1:0] entry;
    npuc_rom #(.WIDTH(LB + AAW), .DEPTH(N), .AW(ROM_AW), .INIT_FILE(ROM_FILE)) u_rom (
        .clk(clk), .re(1'b1), .raddr(ra[ROM_AW-1:0]), .rdata(entry));
    assign addr = entry[AAW-1:0];
    wire [LB-1:0] li = entry[LB+AAW-1:AAW];
    genvar i;
    generate
        for (i = 0; i < L; i = i + 1) begin : g_lane
            localparam [31:0] I32 = i;
            assign lane[i] = (li == I32[LB-1:0]);
        end
    endgenerate
    assign co = 1'b0;
    wire _unused_ok = &{1'b0, ra[31:ROM_AW], 1'b0};
    always @(posedge clk) begin
        if (rst || restart) c <= {NAW{1'b0}};
        else if (step) c <= c + 1'b1;
    end
endmodule
`default_nettype wire
