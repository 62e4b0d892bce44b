// npuc_sc_mux: stochastic-computing scaled adder. With a select stream of probability s that is
// independent of both inputs, P(y) = s P(a) + (1 - s) P(b).
`default_nettype none
module npuc_sc_mux (
    input  wire sel,
    input  wire a,
    input  wire b,
    output wire y
);
    assign y = sel ? a : b;
endmodule
`default_nettype wire
