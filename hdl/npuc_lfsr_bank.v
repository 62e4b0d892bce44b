// npuc_lfsr_bank: K independent pseudo-random streams for stochastic computing, one Fibonacci LFSR
// each (npuc.sim.lfsr.step): fb = parity(state & TAPS_k); state' = {state[WIDTH-2:0], fb}.
// Streams that meet in one AND must come from different primitive polynomials
// (npuc.sim.lfsr.primitive_taps(WIDTH, k)): one shared register makes AND compute min(p1, p2)
// instead of p1 p2 (DESIGN.md section 6). `next[k]` is the value for the current element: the
// state after LEAP steps (LEAP = 1: the golden engines' streams; a leap-forward LEAP >= 5 makes
// consecutive values nearly uncorrelated, since a single step only shifts the state by one bit);
// `step[k]` commits it; `reload` restarts every stream from its seed.
`default_nettype none
module npuc_lfsr_bank #(
    parameter integer K = 2,
    parameter integer WIDTH = 16,
    parameter integer LEAP = 1,
    parameter [K*WIDTH-1:0] TAPS = {K{{WIDTH{1'b1}}}},
    parameter [K*WIDTH-1:0] SEEDS = {K{{{(WIDTH-1){1'b0}}, 1'b1}}}
) (
    input  wire               clk,
    input  wire               rst,
    input  wire               reload,
    input  wire [K-1:0]       step,
    output wire [K*WIDTH-1:0] next
);
    genvar k, s;
    generate
        for (k = 0; k < K; k = k + 1) begin : g_stream
            localparam [WIDTH-1:0] T = TAPS[k*WIDTH +: WIDTH];
            reg  [WIDTH-1:0] state;
            wire [(LEAP+1)*WIDTH-1:0] chain;     // chain[s]: the state after s steps
            assign chain[WIDTH-1:0] = state;
            for (s = 0; s < LEAP; s = s + 1) begin : g_leap
                wire [WIDTH-1:0] cur = chain[s*WIDTH +: WIDTH];
                assign chain[(s+1)*WIDTH +: WIDTH] = {cur[WIDTH-2:0], ^(cur & T)};
            end
            assign next[k*WIDTH +: WIDTH] = chain[LEAP*WIDTH +: WIDTH];
            always @(posedge clk) begin
                if (rst || reload) state <= SEEDS[k*WIDTH +: WIDTH];
                else if (step[k]) state <= chain[LEAP*WIDTH +: WIDTH];
            end
        end
    endgenerate
endmodule
`default_nettype wire
