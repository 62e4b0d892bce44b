// npuc_rshift: q = R(p / 2^SHIFT) at width W with rounding R (npuc.sim.int_kernels.decay):
//   ROUND 0 trunc0 (toward zero), 1 floor, 2 round_half_up (floor(p / 2^SHIFT + 1/2)).
// The one rounding shift behind npuc_decay, npuc_vdecay and npuc_mulshift.
`default_nettype none
module npuc_rshift #(
    parameter integer W = 32,
    parameter integer SHIFT = 12,
    parameter integer ROUND = 1
) (
    input  wire signed [W-1:0] p,
    output wire signed [W-1:0] q
);
    generate
        if (ROUND == 0) begin : g_trunc0
            wire signed [W-1:0] neg = -p;
            wire signed [W-1:0] mag = p[W-1] ? neg : p;
            wire signed [W-1:0] m = mag >>> SHIFT;
            assign q = p[W-1] ? -m : m;
        end else if (ROUND == 2) begin : g_half_up
            localparam signed [W-1:0] HALF = {{(W-SHIFT){1'b0}}, 1'b1, {(SHIFT-1){1'b0}}};
            wire signed [W-1:0] ph = p + HALF;
            assign q = ph >>> SHIFT;
        end else begin : g_floor
            assign q = p >>> SHIFT;
        end
    endgenerate
endmodule
`default_nettype wire
