// npuc_sc_attn: stochastic-computing attention population (Xpikeformer), bit-exact with
// npuc.sim.attention_kernels.StochasticAttentionInt. With MX = 2^BITS - 1 and two LFSR streams
// r1, r2 of different primitive polynomials (npuc_lfsr_bank; restarted on a sample's first
// step, advancing once per element in row-major order and continuing across steps):
//   C1[h,i,j] = popcount(Q[h,i] AND K[h,j])                 AND multipliers + popcount
//   A[h,i,j]  = (r1 <= min(round(C1 MX / NQK), MX))          npuc_sc_decode + npuc_sc_encode
//   C2[h,i,d] = sum_j (A[h,i,j] AND V[h,j,d])                AND multipliers + DV counters
//   O[h,i,d]  = (r2 <= min(round(C2 MX / NAV), MX))          npuc_sc_decode + npuc_sc_encode
// O is a spike population: its nonzero elements are appended to its event list (index
// (h * N + i) * DV + d) and every element is kept in a 1-bit output RAM for readout (npuc_unit_out).
//
// Per time step (start .. done): gather Q, K, V rows (npuc_gather, E_q + E_k + E_v + ~6 cycles);
// for each query row (h, i): the M keys, one per cycle (r1 steps once per key), then the DV
// outputs, one per cycle (r2 steps once per output): H N (M + DV + 1) cycles; the row memories
// are cleared in the background afterwards.
`default_nettype none
module npuc_sc_attn #(
    parameter integer H = 1,
    parameter integer N = 2,
    parameter integer M = 2,
    parameter integer DK = 4,
    parameter integer DV = 4,
    parameter integer BITS = 16,
    parameter [BITS-1:0] TAPS1 = {BITS{1'b1}},
    parameter [BITS-1:0] SEED1 = {{(BITS-1){1'b0}}, 1'b1},
    parameter [BITS-1:0] TAPS2 = {BITS{1'b1}},
    parameter [BITS-1:0] SEED2 = {{(BITS-1){1'b0}}, 1'b1},
    parameter integer C1W = 3,           // popcount width, holds DK
    parameter integer D1W = 32,          // decoder work widths and constants (npuc_sc_decode)
    parameter integer D1K = 0,
    parameter [D1W-1:0] D1MA = 1,
    parameter [D1W-1:0] D1MB = 0,
    parameter integer C2W = 3,           // counter width, holds M
    parameter integer D2W = 32,
    parameter integer D2K = 0,
    parameter [D2W-1:0] D2MA = 1,
    parameter [D2W-1:0] D2MB = 0,
    parameter integer CW = 4,            // loop counter width, holds max(H, N, M, DV) + 1
    parameter integer OIW = 4,           // output index width
    parameter integer OPW = 2,           // output event payload width
    parameter integer FW = 1,            // row element width (spike rows; npuc_unit_rows.vh)
    parameter integer RW = 1,            // readout value width (spikes)
    // row address widths of the front end's RAM A (query rows) and RAM B (key/value rows)
    parameter integer A_AW = 2,
    parameter integer B_AW = 2
) (
`include "npuc_unit_io.vh"
);
    localparam [31:0] N32 = N;
    localparam [31:0] M32 = M;
    localparam [31:0] DV32 = DV;
    localparam [D1W-1:0] MX1 = {{(D1W-BITS){1'b0}}, {BITS{1'b1}}};
    localparam [D2W-1:0] MX2 = {{(D2W-BITS){1'b0}}, {BITS{1'b1}}};

    wire [DK-1:0] qrow = a_rdata;
    wire [DK-1:0] krow = b_rdata[DK-1:0];
    wire [DV-1:0] vrow = b_rdata[DK+DV-1:DK];

    // ---- streams ----
    wire s_step;                         // a key pair is evaluated (r1 advances)
    wire o_step;                         // an output is evaluated (r2 advances)
    wire [2*BITS-1:0] rnd;
    npuc_lfsr_bank #(.K(2), .WIDTH(BITS), .TAPS({TAPS2, TAPS1}), .SEEDS({SEED2, SEED1})) u_streams (
        .clk(clk), .rst(rst), .reload(step_start && first), .step({o_step, s_step}), .next(rnd));
    wire [BITS-1:0] r1 = rnd[BITS-1:0];
    wire [BITS-1:0] r2 = rnd[2*BITS-1:BITS];

    // ---- control: S_PAIR issues keys j of row (h, i); S_LAST evaluates the row's last key;
    //      S_EMIT evaluates the DV outputs of the row ----
    localparam [1:0] S_IDLE = 2'd0, S_PAIR = 2'd1, S_LAST = 2'd2, S_EMIT = 2'd3;
    reg [1:0] st;
    reg [CW-1:0] cj;
    reg [CW-1:0] cd;
    reg sv;                              // a pair's rows are on the RAM outputs
    // rows (h, i): query i innermost, then head h, one step at the end of each row's outputs
    wire [CW-1:0] ch;
    wire [CW-1:0] ci;
    wire [31:0] h32 = {{(32-CW){1'b0}}, ch};
    wire [31:0] i32 = {{(32-CW){1'b0}}, ci};
    wire [31:0] j32 = {{(32-CW){1'b0}}, cj};
    wire [31:0] d32 = {{(32-CW){1'b0}}, cd};
    wire row_last_out = (d32 == DV32 - 32'd1);
    wire row_end = (st == S_EMIT) && row_last_out;
    wire rows_last;
    wire r_gv;
    wire r_valid;
    wire r_free;
    wire r_step1;
    wire r_step2;
    wire r_c2;
    npuc_wincnt #(.B0(CW), .B1(CW), .M0(N - 1), .M1(H - 1), .M2(0)) u_rows (
        .clk(clk), .rst(rst), .take((st == S_IDLE) && rows_done), .adv(row_end), .m0({CW{1'b0}}),
        .m1({CW{1'b0}}), .m2(1'b0), .empty(1'b0),
        .gv(r_gv), .c0(ci), .c1(ch), .c2(r_c2), .valid(r_valid), .last(rows_last), .free(r_free),
        .step1(r_step1), .step2(r_step2));
    wire _unused_rows = &{1'b0, r_gv, r_valid, r_free, r_step1, r_step2, r_c2, 1'b0};
    wire [31:0] qa32 = h32 * N32 + i32;
    wire [31:0] ka32 = h32 * M32 + j32;
    wire [31:0] oa32 = qa32 * DV32 + d32;
    assign busy = rows_busy || (st != S_IDLE);
    wire p_issue = (st == S_PAIR);
    assign a_re = p_issue;
    assign a_raddr = qa32[A_AW-1:0];  // an address matters only with a_re / b_re
    assign b_re = p_issue;
    assign b_raddr = ka32[B_AW-1:0];

    // ---- key stage: C1 -> p1 -> A, then C2 += A AND V ----
    reg [C1W-1:0] c1;
    integer t;
    always @(*) begin
        c1 = {C1W{1'b0}};
        for (t = 0; t < DK; t = t + 1) c1 = c1 + {{(C1W-1){1'b0}}, qrow[t] & krow[t]};
    end
    wire [BITS-1:0] p1;
    npuc_sc_decode #(.CW(C1W), .WW(D1W), .PB(BITS), .K(D1K), .MA(D1MA), .MB(D1MB), .MX(MX1)) u_dec1 (
        .c(c1), .p(p1));
    wire a_bit;
    npuc_sc_encode #(.BITS(BITS)) u_enc1 (.r(r1), .p(p1), .s(a_bit));
    assign s_step = sv;
    reg [DV*C2W-1:0] c2;

    // ---- output stage: O from C2[d] ----
    wire [DV*C2W-1:0] c2sh = c2 >> (d32 * C2W);
    wire [C2W-1:0] c2d = c2sh[C2W-1:0];
    wire [BITS-1:0] p2;
    npuc_sc_decode #(.CW(C2W), .WW(D2W), .PB(BITS), .K(D2K), .MA(D2MA), .MB(D2MB), .MX(MX2)) u_dec2 (
        .c(c2d), .p(p2));
    wire o_bit;
    npuc_sc_encode #(.BITS(BITS)) u_enc2 (.r(r2), .p(p2), .s(o_bit));
    assign o_step = (st == S_EMIT);
    npuc_unit_out #(.VW(1), .OPW(OPW), .OIW(OIW), .DEPTH(H * N * DV)) u_out (
        .clk(clk), .we(o_step), .addr(oa32[OIW-1:0]), .val(o_bit), .ev_wr_en(ev_wr_en), .ev_wr_data(ev_wr_data),
        .ro_re(ro_re && !busy), .ro_addr(ro_addr), .ro_data(ro_data));
    wire _unused_ok = &{1'b0, qa32, ka32, oa32, c2sh, 1'b0};

    wire row_last_key = (j32 == M32 - 32'd1);
    genvar d;
    generate
        for (d = 0; d < DV; d = d + 1) begin : g_count
            always @(posedge clk) begin
                if (rst || (o_step && row_last_out)) c2[d*C2W +: C2W] <= {C2W{1'b0}};
                else if (sv) c2[d*C2W +: C2W] <= c2[d*C2W +: C2W] + {{(C2W-1){1'b0}}, a_bit & vrow[d]};
            end
        end
    endgenerate

    always @(posedge clk) begin
        if (rst) begin
            st <= S_IDLE;
            cj <= {CW{1'b0}};
            cd <= {CW{1'b0}};
            sv <= 1'b0;
            done <= 1'b0;
            rows_clear <= 1'b0;
        end else begin
            done <= 1'b0;
            rows_clear <= 1'b0;
            sv <= p_issue;
            case (st)
                S_IDLE: if (rows_done) begin
                    st <= S_PAIR;
                    cj <= {CW{1'b0}};
                end
                S_PAIR: begin
                    if (row_last_key) begin
                        cj <= {CW{1'b0}};
                        st <= S_LAST;
                    end else begin
                        cj <= cj + 1'b1;
                    end
                end
                S_LAST: begin
                    st <= S_EMIT;
                    cd <= {CW{1'b0}};
                end
                default: begin  // S_EMIT
                    if (!row_last_out) begin
                        cd <= cd + 1'b1;
                    end else if (rows_last) begin
                        st <= S_IDLE;
                        done <= 1'b1;
                        rows_clear <= 1'b1;
                    end else begin
                        st <= S_PAIR;
                    end
                end
            endcase
        end
    end
endmodule
`default_nettype wire
