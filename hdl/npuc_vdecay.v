// npuc_vdecay: y = R(x * mult / 2^SHIFT) with a run-time multiplier (per-element decays), rounding
// as npuc.sim.int_kernels.decay (ROUND as npuc_rshift: 0 trunc0, 1 floor, 2 round_half_up).
// The product is formed at its exact width XW + MW (signed operands) and the result is
// sign-extended to W (the emitter guarantees XW + MW > SHIFT and that y fits W).
`default_nettype none
module npuc_vdecay #(
    parameter integer XW = 16,
    parameter integer MW = 14,
    parameter integer W = 32,
    parameter integer SHIFT = 12,
    parameter integer ROUND = 1
) (
    input  wire signed [XW-1:0] x,
    input  wire signed [MW-1:0] mult,
    output wire signed [W-1:0]  y
);
    localparam integer PW = XW + MW;
    wire signed [PW-1:0] p = x * mult;
    wire signed [PW-1:0] q;
    npuc_rshift #(.W(PW), .SHIFT(SHIFT), .ROUND(ROUND)) u_shift (.p(p), .q(q));
    generate
        if (W >= PW) begin : g_ext
            assign y = {{(W-PW){q[PW-1]}}, q};
        end else begin : g_trunc
            assign y = q[W-1:0];
            wire _unused_ok = &{1'b0, q[PW-1:W], 1'b0};
        end
    endgenerate
endmodule
`default_nettype wire
