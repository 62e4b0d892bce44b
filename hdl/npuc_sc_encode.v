// npuc_sc_encode: comparator Bernoulli encoder of stochastic computing. With r uniform over the
// nonzero LFSR states 1 .. 2^BITS - 1, s = (r <= p) is 1 with probability p / (2^BITS - 1).
`default_nettype none
module npuc_sc_encode #(
    parameter integer BITS = 16
) (
    input  wire [BITS-1:0] r,
    input  wire [BITS-1:0] p,
    output wire            s
);
    assign s = (r <= p);
endmodule
`default_nettype wire
