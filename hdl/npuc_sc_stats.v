// npuc_sc_stats: stochastic-computing characterization design (a standalone top, not part of a
// network). Four streams of an LFSR bank feed comparator encoders; over a window of WINDOW
// cycles it counts the ones of
//   x1 = (rA <= p1), x2 = (rB <= p2)                  two independent streams (polynomials A, B)
//   x1 AND x2                                         AND multiplier: P = p1 p2
//   x1 AND (rA <= p2)                                 one LFSR shared by both inputs: P = min(p1, p2)
//   x1 AND (rS <= p2)                                 polynomial A again, other seed: correlated
//   (rC <= ps) ? x1 : x2                              MUX scaled adder: P = ps p1 + (1 - ps) p2
// (probabilities p / (2^BITS - 1)). Two LFSR banks hold the streams: `leap` = 0 uses the
// single-step bank (one LFSR step per sample, as the attention units), `leap` = 1 the leap-forward
// bank (LEAP steps per sample). The streams never restart (consecutive windows of a bank are
// consecutive stream segments); `start` clears the counters and opens a window.
`default_nettype none
module npuc_sc_stats #(
    parameter integer BITS = 16,
    parameter integer LEAP = 16,
    parameter [BITS-1:0] TAPS_A = {BITS{1'b1}},
    parameter [BITS-1:0] TAPS_B = {BITS{1'b1}},
    parameter [BITS-1:0] TAPS_C = {BITS{1'b1}},
    parameter [BITS-1:0] SEED_A = {{(BITS-1){1'b0}}, 1'b1},
    parameter [BITS-1:0] SEED_B = {{(BITS-1){1'b0}}, 1'b1},
    parameter [BITS-1:0] SEED_S = {{(BITS-2){1'b0}}, 2'b10},
    parameter [BITS-1:0] SEED_C = {{(BITS-1){1'b0}}, 1'b1}
) (
    input  wire            clk,
    input  wire            rst,
    input  wire            start,
    input  wire [31:0]     window,
    input  wire [BITS-1:0] p1,
    input  wire [BITS-1:0] p2,
    input  wire [BITS-1:0] ps,
    input  wire            leap,
    output reg             busy,
    output reg  [31:0]     n1,
    output reg  [31:0]     n2,
    output reg  [31:0]     n_ind,
    output reg  [31:0]     n_shared,
    output reg  [31:0]     n_samepoly,
    output reg  [31:0]     n_mux
);
    wire [4*BITS-1:0] rnd1;
    wire [4*BITS-1:0] rndl;
    npuc_lfsr_bank #(.K(4), .WIDTH(BITS), .LEAP(1), .TAPS({TAPS_C, TAPS_A, TAPS_B, TAPS_A}),
                     .SEEDS({SEED_C, SEED_S, SEED_B, SEED_A})) u_bank1 (
        .clk(clk), .rst(rst), .reload(1'b0), .step({4{busy && !leap}}), .next(rnd1));
    npuc_lfsr_bank #(.K(4), .WIDTH(BITS), .LEAP(LEAP), .TAPS({TAPS_C, TAPS_A, TAPS_B, TAPS_A}),
                     .SEEDS({SEED_C, SEED_S, SEED_B, SEED_A})) u_bankl (
        .clk(clk), .rst(rst), .reload(1'b0), .step({4{busy && leap}}), .next(rndl));
    wire [4*BITS-1:0] rnd = leap ? rndl : rnd1;
    wire [BITS-1:0] ra = rnd[BITS-1:0];
    wire [BITS-1:0] rb = rnd[2*BITS-1:BITS];
    wire [BITS-1:0] rs = rnd[3*BITS-1:2*BITS];
    wire [BITS-1:0] rc = rnd[4*BITS-1:3*BITS];
    wire x1, x2, x2_shared, x2_samepoly, sel, y_mux;
    npuc_sc_encode #(.BITS(BITS)) u_e1 (.r(ra), .p(p1), .s(x1));
    npuc_sc_encode #(.BITS(BITS)) u_e2 (.r(rb), .p(p2), .s(x2));
    npuc_sc_encode #(.BITS(BITS)) u_e2s (.r(ra), .p(p2), .s(x2_shared));
    npuc_sc_encode #(.BITS(BITS)) u_e2p (.r(rs), .p(p2), .s(x2_samepoly));
    npuc_sc_encode #(.BITS(BITS)) u_es (.r(rc), .p(ps), .s(sel));
    npuc_sc_mux u_mux (.sel(sel), .a(x1), .b(x2), .y(y_mux));
    reg [31:0] cnt;
    always @(posedge clk) begin
        if (rst || start) begin
            busy <= !rst;
            cnt <= 32'd0;
            n1 <= 32'd0;
            n2 <= 32'd0;
            n_ind <= 32'd0;
            n_shared <= 32'd0;
            n_samepoly <= 32'd0;
            n_mux <= 32'd0;
        end else if (busy) begin
            n1 <= n1 + {31'd0, x1};
            n2 <= n2 + {31'd0, x2};
            n_ind <= n_ind + {31'd0, x1 & x2};
            n_shared <= n_shared + {31'd0, x1 & x2_shared};
            n_samepoly <= n_samepoly + {31'd0, x1 & x2_samepoly};
            n_mux <= n_mux + {31'd0, y_mux};
            cnt <= cnt + 32'd1;
            if (cnt == window - 32'd1) busy <= 1'b0;
        end
    end
endmodule
`default_nettype wire
