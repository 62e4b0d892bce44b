// npuc_mulshift: the current an attention path delivers (npuc.ir.values.QAttention /
// QLinearAttention): y = (acc * MULT) >> SHIFT, arithmetic (floor), exact in W bits
// (the emitter sizes W to hold acc * MULT).
`default_nettype none
module npuc_mulshift #(
    parameter integer AW = 16,
    parameter integer W = 32,
    parameter integer SHIFT = 0,
    parameter signed [W-1:0] MULT = 1
) (
    input  wire signed [AW-1:0] acc,
    output wire signed [W-1:0]  y
);
    wire signed [W-1:0] a = {{(W-AW){acc[AW-1]}}, acc};
    wire signed [W-1:0] p = a * MULT;
    npuc_rshift #(.W(W), .SHIFT(SHIFT), .ROUND(1)) u_shift (.p(p), .q(y));
endmodule
`default_nettype wire
