// npuc_acc_iter: walks the neurons n = 0, 1, ... of a population (one per `step`) and gives, for
// one synapse path, where neuron n's accumulator lives in that path's lane RAMs: a one-hot lane
// and a word address, valid in the cycle n is stepped.
//   TABLE 0 (npuc_syn paths): n = co * P + pos, lane = (co mod CG) mod L,
//     word = ((co / CG) * KC + (co mod CG) / L) * P + pos, plus the output channel co (for
//     per-channel synapse biases). Counters only, no division.
//   TABLE 1 (attention paths, whose layout is not a counter pattern: the Permute/Reshape ops
//     after the unit are folded into the table): a ROM indexed by the neuron holds {lane, word};
//     it is read one neuron ahead (address n + 1 while stepping, n otherwise). The first step
//     must come at least one cycle after `restart` (the layer's synapse phases sit between).
`default_nettype none
module npuc_acc_iter #(
    parameter integer TABLE = 0,
    parameter integer L = 1,
    parameter integer AAW = 4,           // accumulator word address width
    parameter integer CHW = 4,           // channel index width (TABLE 1: 1, co = 0)
    parameter integer NW = 16,           // counter width (holds P, CG, L and every word address; TABLE 1: N)
    parameter integer P = 1,             // TABLE 0: positions per channel (conv OH * OW, dense 1)
    parameter integer CG = 1,            //   channels per group
    parameter integer KC = 1,            //   ceil(CG / L)
    parameter integer N = 4,             // TABLE 1: neurons
    parameter integer LB = 1,            //   lane index width
    parameter ROM_FILE = "",
    parameter integer ROM_AW = 1         //   ROM address width, holds N - 1
) (
    input  wire           clk,
    input  wire           rst,
    input  wire           restart,
    input  wire           step,
    output wire [L-1:0]   lane,          // one-hot
    output wire [AAW-1:0] addr,
    output wire [CHW-1:0] co
);
    wire [31:0] lsel;                    // the lane index
    genvar i;
    generate
        for (i = 0; i < L; i = i + 1) begin : g_lane
            assign lane[i] = (lsel == i);
        end
        if (TABLE != 0) begin : g_table
            localparam [31:0] N32 = N;
            reg [NW-1:0] c;
            wire [31:0] c32 = {{(32-NW){1'b0}}, c};
            wire [31:0] nxt = step ? c32 + 32'd1 : c32;
            wire [31:0] ra = (nxt < N32) ? nxt : 32'd0;  // never read past the table
            wire [LB+AAW-1:0] entry;
            npuc_rom #(.WIDTH(LB + AAW), .DEPTH(N), .AW(ROM_AW), .INIT_FILE(ROM_FILE)) u_rom (
                .clk(clk), .re(1'b1), .raddr(ra[ROM_AW-1:0]), .rdata(entry));
            assign addr = entry[AAW-1:0];
            assign lsel = {{(32-LB){1'b0}}, entry[LB+AAW-1:AAW]};
            assign co = {CHW{1'b0}};
            wire _unused_ok = &{1'b0, ra[31:ROM_AW], 1'b0};
            always @(posedge clk) begin
                if (rst || restart) c <= {NW{1'b0}};
                else if (step) c <= c + 1'b1;
            end
        end else begin : g_count
            localparam [31:0] P32 = P;
            localparam [31:0] CG32 = CG;
            localparam [31:0] L32 = L;
            localparam [31:0] KCP32 = KC * P;
            localparam [NW-1:0] PN = P32[NW-1:0];
            localparam [NW-1:0] CGN = CG32[NW-1:0];
            localparam [NW-1:0] LN = L32[NW-1:0];
            localparam [NW-1:0] KCPN = KCP32[NW-1:0];
            localparam [NW-1:0] ZERO = {NW{1'b0}};
            localparam [NW-1:0] ONE = {{(NW-1){1'b0}}, 1'b1};
            reg [NW-1:0] pos;
            reg [NW-1:0] lc;                     // channel within the group
            reg [NW-1:0] ln;                     // lane
            reg [NW-1:0] gbase;                  // (group * KC) * P
            reg [NW-1:0] sbase;                  // slot * P
            reg [CHW-1:0] c;
            wire [NW-1:0] an = sbase + pos;
            assign addr = an[AAW-1:0];
            assign co = c;
            assign lsel = {{(32-NW){1'b0}}, ln};
            if (NW > AAW) begin : g_wide
                wire _unused_ok = &{1'b0, an[NW-1:AAW], 1'b0};
            end
            always @(posedge clk) begin
                if (rst || restart) begin
                    pos <= ZERO;
                    lc <= ZERO;
                    ln <= ZERO;
                    gbase <= ZERO;
                    sbase <= ZERO;
                    c <= {CHW{1'b0}};
                end else if (step) begin
                    if (pos != PN - ONE) begin
                        pos <= pos + ONE;
                    end else begin
                        pos <= ZERO;
                        c <= c + 1'b1;
                        if (lc == CGN - ONE) begin
                            lc <= ZERO;
                            ln <= ZERO;
                            gbase <= gbase + KCPN;
                            sbase <= gbase + KCPN;
                        end else begin
                            lc <= lc + ONE;
                            if (ln == LN - ONE) begin
                                ln <= ZERO;
                                sbase <= sbase + PN;
                            end else begin
                                ln <= ln + ONE;
                            end
                        end
                    end
                end
            end
        end
    endgenerate
endmodule
`default_nettype wire
