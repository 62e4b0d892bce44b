// npuc_acc_max: max pooling of a convolution's accumulated currents (one lane).
//
// After the synapse engine (npuc_syn) has accumulated the convolution outputs of a step, this
// unit walks the pooled neurons n = 0 .. N-1 and, for each, the K window taps listed in its ROM
// (word n * K + t = {valid, accumulator address}; padding taps are invalid), reads the engine's
// accumulators through its neuron-unit port and stores the largest value in its own RAM at n.
// Then it clears every accumulator word (ADEPTH cycles) so the next step starts from zero. The
// neuron unit reads the pooled value of neuron n from this RAM (nu_*), exactly where it would
// read an accumulator: max(acc) then shift and per-channel bias equals the golden engine's
// max(shift(acc) + bias), because both are non-decreasing.
// Pipeline: ROM read -> accumulator read -> compare (one tap per cycle); N * K + ADEPTH + 4 cycles.
`default_nettype none
module npuc_acc_max #(
    parameter integer AW = 16,           // accumulator width (signed)
    parameter integer N = 4,             // pooled neurons
    parameter integer NAW = 2,           // neuron address width
    parameter integer K = 4,             // taps per window
    parameter integer ROM_DEPTH = 16,    // N * K
    parameter integer ROM_AW = 4,
    parameter ROM_FILE = "taps.hex",
    parameter integer AAW = 4,           // accumulator address width
    parameter integer ADEPTH = 16        // accumulator words to clear
) (
    input  wire             clk,
    input  wire             rst,
    input  wire             start,
    output reg              done,
    output wire             busy,
    output wire             acc_re,
    output wire [AAW-1:0]   acc_raddr,
    input  wire [AW-1:0]    acc_rdata,
    output wire             acc_clr,
    output wire [AAW-1:0]   acc_caddr,
    input  wire             nu_re,
    input  wire [NAW-1:0]   nu_raddr,
    output wire [AW-1:0]    nu_rdata
);
    localparam [31:0] TOTAL = ROM_DEPTH;
    localparam [31:0] K32 = K;
    localparam [31:0] AD32 = ADEPTH;
    localparam [31:0] N32 = N;
    localparam [NAW-1:0] LAST_N = N32[NAW-1:0] - 1'b1;
    localparam [AW-1:0] LOWEST = {1'b1, {(AW-1){1'b0}}};

    reg         walking;                 // issuing ROM reads
    reg         clearing;
    reg  [31:0] r;                       // ROM address (n * K + t)
    reg  [31:0] t;                       // tap of r within its window
    reg  [31:0] c;                       // accumulator word being cleared
    // stage 1: ROM word available
    reg         s1_v, s1_first, s1_last;
    reg  [NAW-1:0] s1_n;
    reg  [NAW-1:0] n_issue;
    // stage 2: accumulator word available
    reg         s2_v, s2_first, s2_last, s2_tap;
    reg  [NAW-1:0] s2_n;
    reg  signed [AW-1:0] best;

    wire [AAW:0] rom_q;                  // {valid, address}
    npuc_rom #(.WIDTH(AAW + 1), .DEPTH(ROM_DEPTH), .AW(ROM_AW), .INIT_FILE(ROM_FILE)) u_taps (
        .clk(clk), .re(walking), .raddr(r[ROM_AW-1:0]), .rdata(rom_q));
    assign acc_re = s1_v;
    assign acc_raddr = rom_q[AAW-1:0];
    assign acc_clr = clearing;
    assign acc_caddr = c[AAW-1:0];
    assign busy = walking || s1_v || s2_v || clearing;

    wire signed [AW-1:0] x = acc_rdata;
    wire signed [AW-1:0] start_v = s2_first ? LOWEST : best;
    wire signed [AW-1:0] next_best = (s2_tap && (x > start_v)) ? x : start_v;

    npuc_ram #(.WIDTH(AW), .DEPTH(N), .AW(NAW)) u_pooled (
        .clk(clk), .we(s2_v && s2_last), .waddr(s2_n), .wdata(next_best),
        .re(nu_re), .raddr(nu_raddr), .rdata(nu_rdata));

    wire _unused = &{1'b0, r[31:ROM_AW], c[31:AAW], 1'b0};

    always @(posedge clk) begin
        if (rst) begin
            walking <= 1'b0;
            clearing <= 1'b0;
            done <= 1'b0;
            r <= 32'd0;
            t <= 32'd0;
            c <= 32'd0;
            s1_v <= 1'b0;
            s1_first <= 1'b0;
            s1_last <= 1'b0;
            s1_n <= {NAW{1'b0}};
            n_issue <= {NAW{1'b0}};
            s2_v <= 1'b0;
            s2_first <= 1'b0;
            s2_last <= 1'b0;
            s2_tap <= 1'b0;
            s2_n <= {NAW{1'b0}};
            best <= {AW{1'b0}};
        end else begin
            done <= 1'b0;
            // stage 0: ROM read of tap t of neuron n_issue
            s1_v <= walking;
            s1_first <= (t == 32'd0);
            s1_last <= (t == K32 - 32'd1);
            s1_n <= n_issue;
            if (start && !busy) begin
                walking <= 1'b1;
                r <= 32'd0;
                t <= 32'd0;
                n_issue <= {NAW{1'b0}};
            end else if (walking) begin
                if (r == TOTAL - 32'd1) walking <= 1'b0;
                r <= r + 32'd1;
                if (t == K32 - 32'd1) begin
                    t <= 32'd0;
                    n_issue <= n_issue + 1'b1;
                end else begin
                    t <= t + 32'd1;
                end
            end
            // stage 1 -> 2: the accumulator read issued with the ROM's address
            s2_v <= s1_v;
            s2_first <= s1_first;
            s2_last <= s1_last;
            s2_tap <= rom_q[AAW];
            s2_n <= s1_n;
            // stage 2: running maximum of the window
            if (s2_v) best <= next_best;
            // clear the accumulators once the last read is done
            if (s2_v && s2_last && (s2_n == LAST_N) && !walking && !s1_v) begin
                clearing <= 1'b1;
                c <= 32'd0;
            end else if (clearing) begin
                if (c == AD32 - 32'd1) begin
                    clearing <= 1'b0;
                    done <= 1'b1;
                end
                c <= c + 32'd1;
            end
        end
    end
endmodule
`default_nettype wire
