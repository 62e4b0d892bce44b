// npuc_attn: coincidence (spiking) self-attention engine of one synapse path, bit-exact with
// npuc.sim.attention_kernels.spike_attention_int (before the multiply-shift, which the neuron
// side applies: npuc_mulshift). For every head h, query i, key j and value channel d (binary
// spikes Q, K, V):
//   S[h,i,j] = popcount(Q[h,i] AND K[h,j]) << AF + AINT * popcount(NOT Q[h,i] AND NOT K[h,j])
//   Y[h,i,d] = sum_j S[h,i,j] V[h,j,d]
// Y is accumulated in L lane RAMs: lane l holds the channels d = k * L + l (chunk k < KC), word
// (h * N + i) * KC + k. The neuron unit reads and clears it like a synapse path (nu_*).
//
// Per time step (start .. done):
//   1. gather (npuc_gather): the Q, K, V events become query rows (RAM A, DK bits) and key rows
//      (RAM B, {V, K}: DK + DV bits); E_q + E_k + E_v + ~6 cycles.
//   2. compute, by ORDER:
//      0 (qk_v): for every pair (h, i, j), one per cycle: score S from the two rows (AND / NOR +
//        popcount), then if S != 0 add S to the lanes whose V bit is set, KC chunks:
//        cycles ~ H N M + (KC - 1) x (pairs with S != 0).
//      1 (q_kv): KV[h,d',:] = sum_{j: K[h,j,d']=1} V[h,j,:] (and, when AINT != 0, the complement
//        KbV[h,d',:] = sum_{j: K[h,j,d']=0} V[h,j,:]) into KV lane RAMs, walking only the set bits
//        of each key row; then Y[h,i,:] = sum_{d' in Q[h,i]} KV[h,d',:] << AF
//        (+ AINT sum_{d' not in Q[h,i]} KbV[h,d',:]), walking the set bits of each query row:
//        cycles ~ 2 (H M + H N) + KC x (E_k + E_q) (+ the complement bits when AINT != 0).
//      Both orders give the same integers (the sums are exact).
//   3. the row memories (and KV RAMs) are cleared in the background, overlapping the neuron pass.
// Every accumulator update is a read-modify-write with a 1-deep bypass. After reset all RAMs
// are cleared before the first start is accepted.
`default_nettype none
module npuc_attn #(
    parameter integer ORDER = 0,
    parameter integer H = 1,             // heads (product of the head axes)
    parameter integer N = 2,             // queries
    parameter integer M = 2,             // keys
    parameter integer DK = 4,
    parameter integer DV = 4,
    parameter integer L = 1,             // lanes over the value channels
    parameter integer KC = 4,            // chunks: ceil(DV / L)
    parameter integer KCB = 3,           // chunk counter width, holds KC
    parameter integer AF = 0,            // a_frac
    parameter integer AINT = 0,          // a_int (0 selects the plain AND score)
    parameter integer SW = 4,            // score width (unsigned)
    parameter integer AW = 8,            // accumulator width (signed, Y >= 0)
    parameter [SW-1:0] AI_S = 0,         // a_int at the score width
    parameter [AW-1:0] AI_W = 0,         // a_int at the accumulator width
    parameter integer YDEPTH = 8,        // H * N * KC
    parameter integer AAW = 3,           // Y accumulator address width
    parameter integer KVW = 4,           // KV accumulator width (unsigned, <= M)
    parameter integer KVDEPTH = 1,       // (AINT ? 2 : 1) * H * DK * KC (ORDER 1)
    parameter integer KVAW = 1,
    parameter integer CW = 4,            // loop counter width, holds max(H, N, M, DK) + 1
    parameter integer BB = 2,            // bit index width, holds DK - 1
    parameter integer FW = 1,            // row element width (spike rows; npuc_unit_rows.vh)
    // row address widths of the front end's RAM A and RAM B
    parameter integer A_AW = 2,          // query rows (H * N)
    parameter integer B_AW = 2           // key/value rows (H * M)
) (
`include "npuc_unit_rows.vh"
`include "npuc_acc_ports.vh"
);
    localparam [31:0] H32 = H;
    localparam [31:0] N32 = N;
    localparam [31:0] M32 = M;
    localparam [31:0] DK32 = DK;
    localparam [31:0] KC32 = KC;
    localparam [31:0] CMP = (ORDER == 0) ? 32'd1 : 32'd0;
    localparam integer VP = KC * L;      // padded value row


    wire [DK-1:0] qrow = a_rdata;
    wire [DK-1:0] krow = b_rdata[DK-1:0];
    wire [DV-1:0] vrow = b_rdata[DK+DV-1:DK];
    wire [VP-1:0] vpad = {{(VP-DV){1'b0}}, vrow};
    wire [VP-1:0] vsh = vpad >> (kc32 * L);           // chunk kc of the value row
    wire [L-1:0] vchunk = vsh[L-1:0];

    // ---- control ----
    reg crun;                            // computing
    reg cpend;                           // gather done, waiting for the KV RAMs to be clear
    wire kclearing;                      // the KV bank (ORDER 1) zeroes its words
    wire yclearing;                      // the Y bank zeroes its words (after reset)
    wire cgo = cpend && !kclearing && !yclearing;
    assign busy = rows_busy || crun || cpend;
    wire [CW-1:0] ch;
    wire [CW-1:0] ci;                    // query (ORDER 0, ORDER 1 phase 1) or key (phase 0) row
    wire [CW-1:0] cj;
    wire cmore;                          // rows left to walk
    reg ph;                              // ORDER 1: 0 KV phase, 1 Y phase
    wire [31:0] h32 = {{(32-CW){1'b0}}, ch};
    wire [31:0] i32 = {{(32-CW){1'b0}}, ci};
    wire [31:0] j32 = {{(32-CW){1'b0}}, cj};
    wire [31:0] qa32 = h32 * N32 + i32;      // query row
    wire [31:0] ka32 = h32 * M32 + j32;      // key row
    reg [KCB-1:0] kc;
    wire [31:0] kc32 = {{(32-KCB){1'b0}}, kc};
    wire kc_last = (kc32 == KC32 - 32'd1);

    // M stage: accumulator read done, add and write
    reg            my;                   // Y update in M
    reg            mk;                   // KV update in M (ORDER 1 phase 0)
    reg            m_kv;                 // Y delta from the KV RAM (ORDER 1 phase 1)
    reg            m_term;               // complement term
    reg [AAW-1:0]  maddr;
    reg [KVAW-1:0] mkaddr;
    reg [L*AW-1:0] mdelta;               // ORDER 0 lane deltas
    reg [L-1:0]    mbits;                // ORDER 1 phase 0 value bits

    // issue-stage outputs (one op per cycle)
    wire           op_y;                 // Y update issued
    wire           op_k;                 // KV update issued (phase 0)
    wire           op_kv_read;           // KV RAM read issued (phase 0 and 1)
    wire [31:0]    op_yaddr;
    wire [31:0]    op_kaddr;
    wire [L*AW-1:0] op_delta;
    wire [L-1:0]   op_bits;
    wire           op_term;
    wire           c_finish;             // compute finished (pipeline drained)

    genvar l;
    generate
        if (ORDER == 0) begin : g_qkv
            // ---- pair loop: (h, i, j) in row-major order ----
            reg sv;
            reg [31:0] s_row;
            integer t;
            reg [BB+1:0] both;
            reg [BB+1:0] none;
            always @(*) begin
                both = {(BB+2){1'b0}};
                none = {(BB+2){1'b0}};
                for (t = 0; t < DK; t = t + 1) begin
                    both = both + {{(BB+1){1'b0}}, qrow[t] & krow[t]};
                    none = none + {{(BB+1){1'b0}}, ~(qrow[t] | krow[t])};
                end
            end
            wire [SW-1:0] s_and = {{(SW-BB-2){1'b0}}, both} << AF;
            wire [SW-1:0] s_nor = AI_S * {{(SW-BB-2){1'b0}}, none};
            wire [SW-1:0] score = s_and + s_nor;
            wire s_nz = (score != {SW{1'b0}});
            wire s_last = sv && (!s_nz || kc_last);
            wire s_free = !sv || s_last;
            wire p_issue = crun && cmore && s_free;
            assign a_re = p_issue;
            assign a_raddr = qa32[A_AW-1:0];  // an address matters only with a_re / b_re
            assign b_re = p_issue;
            assign b_raddr = ka32[B_AW-1:0];
            assign op_y = sv && s_nz;
            assign op_k = 1'b0;
            assign op_kv_read = 1'b0;
            assign op_yaddr = s_row * KC32 + kc32;
            assign op_kaddr = 32'd0;
            assign op_bits = {L{1'b0}};
            assign op_term = 1'b0;
            for (l = 0; l < L; l = l + 1) begin : g_delta
                assign op_delta[l*AW +: AW] = vchunk[l] ? {{(AW-SW){1'b0}}, score} : {AW{1'b0}};
            end
            assign c_finish = crun && !cmore && !sv && !my;
            // pairs (h, i, j): key j innermost, then query i, then head h; one per issue
            wire w_valid;
            wire w_last;
            wire w_free;
            wire w_step1;
            wire w_step2;
            npuc_wincnt #(.B0(CW), .B1(CW), .B2(CW), .M0(M - 1), .M1(N - 1), .M2(H - 1)) u_pairs (
                .clk(clk), .rst(rst), .take(cgo), .adv(p_issue), .m0({CW{1'b0}}), .m1({CW{1'b0}}),
                .m2({CW{1'b0}}), .empty(1'b0), .gv(cmore), .c0(cj), .c1(ci), .c2(ch), .valid(w_valid),
                .last(w_last), .free(w_free), .step1(w_step1), .step2(w_step2));
            wire _unused_w = &{1'b0, w_valid, w_last, w_free, w_step1, w_step2, 1'b0};
            always @(posedge clk) begin
                if (rst) begin
                    sv <= 1'b0;
                    s_row <= 32'd0;
                    kc <= {KCB{1'b0}};
                    ph <= 1'b0;
                end else begin
                    if (p_issue) sv <= 1'b1;
                    else if (s_last) sv <= 1'b0;
                    if (sv && s_nz) kc <= s_last ? {KCB{1'b0}} : kc + 1'b1;
                    if (p_issue) s_row <= qa32;
                end
            end
            wire _unused_q = &{1'b0, ph, m_term, mk, 1'b0};
        end else begin : g_q_kv
            // ---- ORDER 1: KV phase over key rows, then Y phase over query rows ----
            // row state: 0 idle/next, 1 read issued, 2 walking the selected bits
            reg [1:0] rs;
            reg [DK-1:0] rem;
            reg term;
            wire [DK-1:0] sel_row = ph ? qrow : krow;
            reg [BB-1:0] bidx;
            integer t;
            always @(*) begin
                bidx = {BB{1'b0}};
                for (t = DK - 1; t >= 0; t = t - 1)
                    if (rem[t]) bidx = t[BB-1:0];
            end
            wire [31:0] b32 = {{(32-BB){1'b0}}, bidx};
            wire walking = crun && (rs == 2'd2) && (rem != {DK{1'b0}});
            // rows: key rows (phase 0) or query rows (phase 1) innermost, then head h; one step per
            // finished row; the walk restarts for phase 1 and ends after it
            localparam [CW-1:0] MC = M32[CW-1:0];
            localparam [CW-1:0] NC = N32[CW-1:0];
            wire row_done = crun && cmore && (rs == 2'd2) && (rem == {DK{1'b0}}) && !((AINT != 0) && !term);
            wire last_row_of_phase;
            wire [CW-1:0] row;
            wire w_c2;
            wire w_valid;
            wire w_free;
            wire w_step1;
            wire w_step2;
            npuc_wincnt #(.B0(CW), .B1(CW), .M1(H - 1), .M2(0)) u_rows (
                .clk(clk), .rst(rst), .take(cgo || (row_done && last_row_of_phase && !ph)), .adv(row_done),
                .m0(ph ? NC - 1'b1 : MC - 1'b1), .m1({CW{1'b0}}), .m2(1'b0), .empty(1'b0), .gv(cmore), .c0(row),
                .c1(ch), .c2(w_c2), .valid(w_valid),
                .last(last_row_of_phase), .free(w_free), .step1(w_step1), .step2(w_step2));
            assign ci = row;
            assign cj = row;
            wire _unused_w = &{1'b0, w_c2, w_valid, w_free, w_step1, w_step2, 1'b0};
            // issue a row read when idle in the phase (rs 0)
            wire row_issue = crun && cmore && (rs == 2'd0);
            assign a_re = row_issue && ph;
            assign a_raddr = qa32[A_AW-1:0];  // an address matters only with a_re / b_re
            assign b_re = row_issue && !ph;
            assign b_raddr = ka32[B_AW-1:0];
            wire [31:0] tm32 = {31'd0, term};
            assign op_kaddr = (((tm32 * H32 + h32) * DK32 + b32) * KC32) + kc32;
            assign op_kv_read = walking;
            assign op_k = walking && !ph;
            assign op_y = walking && ph;
            assign op_yaddr = qa32 * KC32 + kc32;
            assign op_term = term;
            assign op_delta = {(L*AW){1'b0}};
            assign op_bits = vchunk;
            assign c_finish = crun && !cmore && !my && !mk;
            always @(posedge clk) begin
                if (rst) begin
                    rs <= 2'd0;
                    rem <= {DK{1'b0}};
                    term <= 1'b0;
                    kc <= {KCB{1'b0}};
                    ph <= 1'b0;
                end else if (cgo) begin
                    rs <= 2'd0;
                    ph <= 1'b0;
                    kc <= {KCB{1'b0}};
                end else if (crun && cmore) begin
                    if (rs == 2'd0) begin
                        rs <= 2'd1;
                    end else if (rs == 2'd1) begin
                        rs <= 2'd2;
                        rem <= sel_row;
                        term <= 1'b0;
                    end else if (rem != {DK{1'b0}}) begin
                        if (kc_last) begin
                            kc <= {KCB{1'b0}};
                            rem <= rem & (rem - 1'b1);
                        end else begin
                            kc <= kc + 1'b1;
                        end
                    end else if ((AINT != 0) && !term) begin
                        term <= 1'b1;
                        rem <= ~sel_row;
                    end else begin
                        rs <= 2'd0;
                        if (last_row_of_phase) ph <= 1'b1;
                    end
                end
            end
            wire _unused_q = &{1'b0, mdelta, b32[31:BB], 1'b0};
        end
    endgenerate

    // ---- KV lane RAMs (ORDER 1): KV[...] += V bit; cleared after every compute ----
    wire [L*KVW-1:0] kv_rdata;
    generate
        if (ORDER == 1) begin : g_kvram
            wire [L*KVW-1:0] kv_delta;
            for (l = 0; l < L; l = l + 1) begin : g_lane
                assign kv_delta[l*KVW +: KVW] = {{(KVW-1){1'b0}}, mbits[l]};
            end
            npuc_acc_bank #(.L(L), .AW(KVW), .DEPTH(KVDEPTH), .AAW(KVAW)) u_kv (
                .clk(clk), .rst(rst), .clear(c_finish), .clearing(kclearing), .run(crun), .rd_re(op_kv_read),
                .rd_addr(op_kaddr[KVAW-1:0]), .upd(mk), .upd_addr(mkaddr), .delta(kv_delta), .rdata(kv_rdata),
                .nu_re(1'b0), .nu_raddr({KVAW{1'b0}}), .nu_clr(1'b0), .nu_caddr({KVAW{1'b0}}),
                .nu_clane({L{1'b0}}));
        end else begin : g_no_kvram
            assign kv_rdata = {(L*KVW){1'b0}};
            assign kclearing = 1'b0;
            wire _unused_kv = &{1'b0, mbits, mkaddr, op_kv_read, 1'b0};
        end
    endgenerate

    // ---- Y lane RAMs: Y[...] += score x V (ORDER 0) or the KV terms (ORDER 1) ----
    wire [L*AW-1:0] y_delta;
    generate
        for (l = 0; l < L; l = l + 1) begin : g_lane
            wire [AW-1:0] kv = {{(AW-KVW){1'b0}}, kv_rdata[l*KVW +: KVW]};
            assign y_delta[l*AW +: AW] = m_kv ? (m_term ? kv * AI_W : kv << AF) : mdelta[l*AW +: AW];
        end
    endgenerate
    npuc_acc_bank #(.L(L), .AW(AW), .DEPTH(YDEPTH), .AAW(AAW)) u_y (
        .clk(clk), .rst(rst), .clear(1'b0), .clearing(yclearing), .run(crun), .rd_re(op_y),
        .rd_addr(op_yaddr[AAW-1:0]), .upd(my), .upd_addr(maddr), .delta(y_delta), .rdata(nu_rdata),
        .nu_re(nu_re), .nu_raddr(nu_raddr), .nu_clr(nu_clr), .nu_caddr(nu_caddr), .nu_clane(nu_clane));
    wire _unused_addr = &{1'b0, op_yaddr, op_kaddr, vsh, qa32, ka32, 1'b0};

    always @(posedge clk) begin
        if (rst) begin
            done <= 1'b0;
            crun <= 1'b0;
            cpend <= 1'b0;
            rows_clear <= 1'b0;
            my <= 1'b0;
            mk <= 1'b0;
            m_kv <= 1'b0;
            m_term <= 1'b0;
            maddr <= {AAW{1'b0}};
            mkaddr <= {KVAW{1'b0}};
            mdelta <= {(L*AW){1'b0}};
            mbits <= {L{1'b0}};
        end else begin
            done <= 1'b0;
            rows_clear <= 1'b0;
            if (rows_done) cpend <= 1'b1;
            if (cgo) begin
                cpend <= 1'b0;
                crun <= 1'b1;
            end
            if (c_finish) begin
                crun <= 1'b0;
                done <= 1'b1;
                rows_clear <= 1'b1;
            end
            my <= op_y;
            mk <= op_k;
            m_kv <= (CMP == 32'd0);
            m_term <= op_term;
            maddr <= op_yaddr[AAW-1:0];
            mkaddr <= op_kaddr[KVAW-1:0];
            mdelta <= op_delta;
            mbits <= op_bits;
        end
    end
endmodule
`default_nettype wire
