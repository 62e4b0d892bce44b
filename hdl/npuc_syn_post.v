// npuc_syn_post: the current a synapse path delivers to one neuron (npuc.ir.values.QSynapse):
//   y = acc << EXP (EXP >= 0) or acc >> -EXP (arithmetic, floor); y += bias; y = OVF(y)
// OVF is the profile's convolution accumulator rule (MODE 0 for dense paths). W holds every
// intermediate exactly (sized by the emitter).
`default_nettype none
module npuc_syn_post #(
    parameter integer AW = 16,
    parameter integer BW = 2,
    parameter integer W = 32,
    parameter integer EXP = 0,
    parameter integer OVF_BITS = 16,
    parameter integer OVF_MODE = 0
) (
    input  wire signed [AW-1:0] acc,
    input  wire signed [BW-1:0] bias,
    output wire signed [W-1:0]  y
);
    wire signed [W-1:0] a = {{(W-AW){acc[AW-1]}}, acc};
    wire signed [W-1:0] b = {{(W-BW){bias[BW-1]}}, bias};
    wire signed [W-1:0] sh;
    generate
        if (EXP >= 0) begin : g_left
            assign sh = a <<< EXP;
        end else begin : g_right
            assign sh = a >>> (-EXP);
        end
    endgenerate
    npuc_ovf #(.W(W), .BITS(OVF_BITS), .MODE(OVF_MODE)) u_ovf (.x(sh + b), .y(y));
endmodule
`default_nettype wire
