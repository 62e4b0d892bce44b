// npuc_sc_decode: counter value -> Bernoulli probability of the next stochastic stage, exactly
// as npuc.sim.attention_kernels._round_div + clamp:
//   p = min(floor(c * MX / NORM + 1/2), MX) = min(floor((2 c MX + NORM) / (2 NORM)), MX)
// computed as p = min((c * MA + MB) >> K, MX) with MA = 2 MX m, MB = NORM m, m = ceil(2^K / (2 NORM)):
// the emitter picks K and proves the identity for every c in 0 .. CMAX (exhaustively), so the
// constant division costs one constant multiplication.
`default_nettype none
module npuc_sc_decode #(
    parameter integer CW = 4,            // counter width
    parameter integer WW = 32,           // work width, holds CMAX * MA + MB
    parameter integer PB = 16,           // probability width (LFSR width)
    parameter integer K = 0,
    parameter [WW-1:0] MA = 1,
    parameter [WW-1:0] MB = 0,
    parameter [WW-1:0] MX = 1
) (
    input  wire [CW-1:0] c,
    output wire [PB-1:0] p
);
    wire [WW-1:0] x = {{(WW-CW){1'b0}}, c} * MA + MB;
    wire [WW-1:0] q = x >> K;
    wire [WW-1:0] pc = (q > MX) ? MX : q;
    assign p = pc[PB-1:0];
    generate
        if (WW > PB) begin : g_unused
            wire _unused_ok = &{1'b0, pc[WW-1:PB], 1'b0};
        end
    endgenerate
endmodule
`default_nettype wire
