// npuc_acc_iter: walks the neurons n = co * P + pos of a population in order (n = 0, 1, ...)
// and gives, for one synapse path, where neuron n's accumulator lives in that path's lane RAMs
// (see npuc_syn): lane = (co mod CG) mod L, word = ((co / CG) * KC + (co mod CG) / L) * P + pos,
// plus the output channel co (for per-channel synapse biases). Counters only, no division.
`default_nettype none
module npuc_acc_iter #(
    parameter integer P = 1,             // positions per channel (conv OH * OW, dense 1)
    parameter integer CG = 1,            // channels per group
    parameter integer L = 1,
    parameter integer KC = 1,            // ceil(CG / L)
    parameter integer AAW = 4,           // accumulator word address width
    parameter integer CHW = 4,           // channel index width
    parameter integer NW = 16            // counter width (holds P, CG, L and every word address)
) (
    input  wire           clk,
    input  wire           rst,
    input  wire           restart,
    input  wire           step,
    output wire [L-1:0]   lane,          // one-hot
    output wire [AAW-1:0] addr,
    output wire [CHW-1:0] co
);
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
    genvar i;
    generate
        for (i = 0; i < L; i = i + 1) begin : g_lane
            localparam [31:0] I32 = i;
            assign lane[i] = (ln == I32[NW-1:0]);
        end
    endgenerate
    generate
        if (NW > AAW) begin : g_wide
            wire _unused_ok = &{1'b0, an[NW-1:AAW], 1'b0};
        end
    endgenerate
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
endmodule
`default_nettype wire
