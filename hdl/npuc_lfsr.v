// npuc_lfsr: Fibonacci LFSR exactly as npuc.sim.lfsr.step:
//   fb = parity(state & TAPS); state' = {state[WIDTH-2:0], fb}
// `next` is the value the golden engines use for the current element (the state after one step);
// `step` commits it, `reload` restarts the stream from SEED (first step of every sample).
`default_nettype none
module npuc_lfsr #(
    parameter integer WIDTH = 16,
    parameter [WIDTH-1:0] TAPS = {WIDTH{1'b1}},
    parameter [WIDTH-1:0] SEED = {{(WIDTH-1){1'b0}}, 1'b1}
) (
    input  wire             clk,
    input  wire             rst,
    input  wire             reload,
    input  wire             step,
    output wire [WIDTH-1:0] next
);
    reg [WIDTH-1:0] state;
    wire fb = ^(state & TAPS);
    assign next = {state[WIDTH-2:0], fb};
    always @(posedge clk) begin
        if (rst || reload) state <= SEED;
        else if (step) state <= next;
    end
endmodule
`default_nettype wire
