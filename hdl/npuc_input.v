// npuc_input: input encoder of one Input node (npuc.sim.encoding). It receives one word per
// input element per time step, in row-major order, and appends the nonzero results as events
// (payload, index) to the input population's event list:
//   KIND 0 current:   payload = x (the host sends QInput's integer current)
//   KIND 1 spikes:    payload = x (integer spikes or graded counts)
//   KIND 2 rate:      s = 1 if 2 T xq >= (2t + 1) MQ          (the first round(x T) steps; the
//                     threshold is a register stepped with t)
//   KIND 3 bernoulli: s = 1 if r <= xq, r = next LFSR value (one per element per step,
//                     restarted from SEED on the first step of a sample)
//   KIND 4 timecode:  s = bit T-1-t of xq (xq has T bits)
//   KIND 5 latency:   s = 1 if t == floor((2 (MQ - xq)(T - 1) + MQ) / (2 MQ)), checked with two
//                     multiplications instead of a division
// For KIND >= 2 the host sends xq = floor(clip(x, 0, 1) MQ + 1/2) (npuc.sim.encoding.quantize_unit).
`default_nettype none
module npuc_input #(
    parameter integer KIND = 0,
    parameter integer IN_W = 8,         // stream word width
    parameter integer XW = 8,           // value bits used from the word
    parameter integer PW = 8,           // event payload width (signed)
    parameter integer IW = 4,           // element index width
    parameter integer T = 1,
    parameter integer TW = 1,           // step index width
    parameter integer CW = 32,          // compute width of the rate / latency comparisons
    parameter integer LW = 16,          // LFSR width (bernoulli)
    parameter [LW-1:0] TAPS = {LW{1'b1}},
    parameter [LW-1:0] SEED = {{(LW-1){1'b0}}, 1'b1},
    parameter [CW-1:0] MQ = 1
) (
    input  wire              clk,
    input  wire              rst,
    input  wire              step_start,
    input  wire              first,
    input  wire [TW-1:0]     t,
    input  wire              valid,
    input  wire [IN_W-1:0]   word,
    input  wire [IW-1:0]     idx,
    output wire              ev_wr_en,
    output wire [PW+IW-1:0]  ev_wr_data
);
    wire [XW-1:0] x = word[XW-1:0];
    generate
        if (IN_W > XW) begin : g_word_unused
            wire _unused_ok = &{1'b0, word[IN_W-1:XW], 1'b0};
        end
        if (KIND <= 1) begin : g_value
            assign ev_wr_en = valid && (x != {XW{1'b0}});
            assign ev_wr_data = {{(PW-XW){x[XW-1]}}, x, idx};
            wire _unused_ok = &{1'b0, clk, rst, step_start, first, t, 1'b0};
        end else begin : g_spike
            localparam [PW-1:0] ONE = {{(PW-1){1'b0}}, 1'b1};
            wire s;
            assign ev_wr_en = valid && s;
            assign ev_wr_data = {ONE, idx};
            wire [CW-1:0] xq = {{(CW-XW){1'b0}}, x};
            wire [CW-1:0] tt = {{(CW-TW){1'b0}}, t};
            localparam [31:0] T32 = T;
            localparam [CW-1:0] TC = {{(CW-32){1'b0}}, T32};
            localparam [CW-1:0] ONEC = {{(CW-1){1'b0}}, 1'b1};
            localparam [CW-1:0] TWO = {{(CW-2){1'b0}}, 2'b10};
            if (KIND == 3) begin : g_bernoulli
                wire [LW-1:0] r;
                npuc_lfsr #(.WIDTH(LW), .TAPS(TAPS), .SEED(SEED)) u_lfsr (
                    .clk(clk), .rst(rst), .reload(step_start && first), .step(valid), .next(r));
                assign s = ({{(CW-LW){1'b0}}, r} <= xq);
                wire _unused_ok = &{1'b0, tt, 1'b0};
            end else begin : g_clocked
                if (KIND == 2) begin : g_rate
                    // thr = (2t + 1) MQ follows the top's step counter (0 on a sample's first step,
                    // + 1 on the others, both at step_start) by adding 2 MQ: the multiply of t was
                    // the critical path on ecp5 (a MULT18 and a compare into the event list write)
                    reg [CW-1:0] thr;
                    always @(posedge clk) begin
                        if (rst) thr <= MQ;
                        else if (step_start) thr <= first ? MQ : thr + TWO * MQ;
                    end
                    assign s = (TWO * TC * xq) >= thr;
                    wire _unused_t = &{1'b0, tt, 1'b0};
                end else if (KIND == 4) begin : g_timecode
                    wire [CW-1:0] sh = xq >> (TC - ONEC - tt);
                    assign s = sh[0];
                    wire _unused_sh = &{1'b0, sh[CW-1:1], 1'b0};
                end else begin : g_latency
                    wire [CW-1:0] a = TWO * (MQ - xq) * (TC - ONEC) + MQ;
                    assign s = (TWO * MQ * tt <= a) && (a < TWO * MQ * (tt + ONEC));
                end
                if (KIND != 2) begin : g_unused_ctl
                    wire _unused_ok = &{1'b0, clk, rst, step_start, first, 1'b0};
                end
            end
        end
    endgenerate
endmodule
`default_nettype wire
