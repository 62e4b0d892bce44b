// npuc_ovf: resolve a value outside a BITS-wide register the way the numeric profile says
// (npuc.sim.int_kernels.overflow), computed exactly in W bits (W > BITS + 1, checked by the emitter).
//   MODE 0 none:          y = x
//   MODE 1 wrap:          y = two's complement wrap of x to BITS bits
//   MODE 2 wrap_sym:      y = x - 2^BITS if x > 2^(BITS-1); then x + 2^BITS if that is <= -2^(BITS-1)
//   MODE 3 saturate:      y = clamp(x, -2^(BITS-1), 2^(BITS-1) - 1)
//   MODE 4 saturate_sym:  y = clamp(x, -(2^(BITS-1) - 1), 2^(BITS-1) - 1)
`default_nettype none
module npuc_ovf #(
    parameter integer W = 32,
    parameter integer BITS = 16,
    parameter integer MODE = 0
) (
    input  wire signed [W-1:0] x,
    output wire signed [W-1:0] y
);
    localparam signed [W-1:0] HALF = {{(W-BITS){1'b0}}, 1'b1, {(BITS-1){1'b0}}};
    localparam signed [W-1:0] FULL = {{(W-BITS-1){1'b0}}, 1'b1, {BITS{1'b0}}};
    localparam signed [W-1:0] MAXV = HALF - 1;
    localparam signed [W-1:0] MINV = -HALF;
    localparam signed [W-1:0] MINS = 1 - HALF;
    generate
        if (MODE == 1) begin : g_wrap
            assign y = {{(W-BITS){x[BITS-1]}}, x[BITS-1:0]};
            wire _unused_ok = &{1'b0, x[W-1:BITS], 1'b0};
        end else if (MODE == 2) begin : g_wrap_sym
            wire signed [W-1:0] y1 = (x > HALF) ? x - FULL : x;
            assign y = (y1 <= MINV) ? x + FULL : y1;
        end else if (MODE == 3) begin : g_sat
            assign y = (x > MAXV) ? MAXV : ((x < MINV) ? MINV : x);
        end else if (MODE == 4) begin : g_sat_sym
            assign y = (x > MAXV) ? MAXV : ((x < MINS) ? MINS : x);
        end else begin : g_none
            assign y = x;
        end
    endgenerate
endmodule
`default_nettype wire
