// npuc_decay: y = R(x * MULT / 2^SHIFT) with the profile's rounding R (npuc.sim.int_kernels.decay;
// ROUND as npuc_rshift: 0 trunc0, 1 floor, 2 round_half_up).
// The product is exact in W bits (the emitter sizes W from the operand ranges). An XW-bit x is
// sign-extended to W here, where the multiplier sees its narrow range (npuc_attn's currents).
`default_nettype none
module npuc_decay #(
    parameter integer W = 32,
    parameter integer XW = W,            // input width (<= W)
    parameter integer SHIFT = 12,
    parameter integer ROUND = 1,
    parameter signed [W-1:0] MULT = 0
) (
    input  wire signed [XW-1:0] x,
    output wire signed [W-1:0] y
);
    generate
        if (MULT == 0) begin : g_zero
            // R(0) = 0 for every rounding; no shifter (its logic would not fold across the boundary)
            assign y = {W{1'b0}};
            wire _unused_ok = &{1'b0, x, 1'b0};
        end else begin : g_mul
            wire signed [W-1:0] xe;
            if (W > XW) begin : g_ext
                assign xe = {{(W-XW){x[XW-1]}}, x};
            end else begin : g_same
                assign xe = x;
            end
            wire signed [W-1:0] p = xe * MULT;
            npuc_rshift #(.W(W), .SHIFT(SHIFT), .ROUND(ROUND)) u_shift (.p(p), .q(y));
        end
    endgenerate
endmodule
`default_nettype wire
