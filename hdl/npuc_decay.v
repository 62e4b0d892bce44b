// npuc_decay: y = R(x * MULT / 2^SHIFT) with the profile's rounding R (npuc.sim.int_kernels.decay):
//   ROUND 0 trunc0 (toward zero), 1 floor, 2 round_half_up (floor(p / 2^SHIFT + 1/2)).
// The product is exact in W bits (the emitter sizes W from the operand ranges).
`default_nettype none
module npuc_decay #(
    parameter integer W = 32,
    parameter integer SHIFT = 12,
    parameter integer ROUND = 1,
    parameter signed [W-1:0] MULT = 0
) (
    input  wire signed [W-1:0] x,
    output wire signed [W-1:0] y
);
    wire signed [W-1:0] p = x * MULT;
    generate
        if (ROUND == 0) begin : g_trunc0
            wire signed [W-1:0] neg = -p;
            wire signed [W-1:0] mag = p[W-1] ? neg : p;
            wire signed [W-1:0] q = mag >>> SHIFT;
            assign y = p[W-1] ? -q : q;
        end else if (ROUND == 2) begin : g_half_up
            localparam signed [W-1:0] HALF = {{(W-SHIFT){1'b0}}, 1'b1, {(SHIFT-1){1'b0}}};
            wire signed [W-1:0] ph = p + HALF;
            assign y = ph >>> SHIFT;
        end else begin : g_floor
            assign y = p >>> SHIFT;
        end
    endgenerate
endmodule
`default_nettype wire
