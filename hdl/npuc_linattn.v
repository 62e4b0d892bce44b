// npuc_linattn: linear attention / spiking SSM population, bit-exact with
// npuc.sim.attention_kernels.LinearAttentionInt. Per step t and head h, value channel c, key
// channel d (graded or binary q, k, v payloads):
//   S[h,c,d] = OVF_v( R(S[h,c,d] * MD[h,c,d] / 2^DB) + B_INT * v[h,c] * k[h,d] )   (S = 0 before a sample)
//   y[h,c]   = (sum_d S[h,c,d] q[h,d] * MULT) >> SHIFT                          (floor)
// MD = 2^DB - da: one constant (DMODE 0) or a ROM word per state element (DMODE 1, L lanes per
// word: per-channel and per-element decays). R and OVF are the profile's decay rounding and
// membrane overflow rule (npuc_vdecay, npuc_ovf); the output scale is npuc_decay (floor).
// y is a graded population: its nonzero values are appended to its event list (index h * DV + c)
// and every value is kept for readout (npuc_unit_out).
//
// State: L lane RAMs, lane l holds the key channels d = k * L + l, word (h * DV + c) * KC + k.
// Per time step (start .. done): gather q, k, v into rows (npuc_gather, one FW-bit field per
// element; RAM A = q rows, RAM B = {v, k} rows; E_q + E_k + E_v + ~6 cycles); then for each head
// one row-read cycle and DV x KC update cycles (L state elements per cycle, every element every
// step: the decay applies with or without input), 3 cycles to drain: H (1 + DV KC) + 3.
`default_nettype none
module npuc_linattn #(
    parameter integer H = 1,
    parameter integer DK = 4,
    parameter integer DV = 4,
    parameter integer L = 1,
    parameter integer KC = 4,            // ceil(DK / L)
    parameter integer KCB = 3,
    parameter integer FW = 2,            // payload field width (signed)
    parameter integer W = 40,            // compute width
    parameter integer SWD = 16,          // state width (signed)
    parameter integer SDEPTH = 4,        // H * DV * KC
    parameter integer SAW = 2,
    parameter integer DB = 12,
    parameter integer ROUND = 1,
    parameter integer V_BITS = 16,
    parameter integer V_MODE = 3,
    parameter integer DMODE = 0,
    parameter integer MDW = 14,          // decay multiplier width (signed)
    parameter signed [W-1:0] MD = 0,     // DMODE 0
    parameter DROM_FILE = "",            // DMODE 1
    parameter signed [W-1:0] B_INT = 1,
    parameter signed [W-1:0] MULT = 1,
    parameter integer SHIFT = 0,
    parameter integer CW = 4,            // loop counter width, holds max(H, DV) + 1
    parameter integer OIW = 2,           // output index width (H * DV outputs)
    parameter integer OPW = 8,           // output payload width (signed)
    parameter integer RW = OPW,          // readout value width
    // row address widths of the front end's RAM A (query rows) and RAM B (key/value rows)
    parameter integer A_AW = 1,
    parameter integer B_AW = 1
) (
`include "npuc_unit_io.vh"
);
    localparam integer WB = (DK + DV) * FW;
    localparam integer KP = KC * L;      // padded key row
    localparam [31:0] DV32 = DV;
    localparam [31:0] DK32 = DK;
    localparam [31:0] KC32 = KC;
    localparam [31:0] L32 = L;


    // ---- loop: LOAD reads the rows of head h, RUN walks (c, k): chunk k innermost, then the value
    //      channel c, then the head h (npuc_wincnt, advancing in RUN) ----
    localparam [1:0] S_IDLE = 2'd0, S_LOAD = 2'd1, S_RUN = 2'd2, S_DRAIN = 2'd3;
    reg [1:0] st;
    wire [CW-1:0] ch;
    wire [CW-1:0] cc;
    wire [KCB-1:0] kc;
    wire l_gv;
    wire l_valid;
    wire l_last;
    wire l_free;
    wire l_step1;
    wire l_next_head;
    npuc_wincnt #(.B0(KCB), .B1(CW), .B2(CW), .M0(KC - 1), .M1(DV - 1), .M2(H - 1)) u_loop (
        .clk(clk), .rst(rst), .take((st == S_IDLE) && rows_done), .adv(st == S_RUN), .m0({KCB{1'b0}}),
        .m1({CW{1'b0}}), .m2({CW{1'b0}}), .empty(1'b0), .gv(l_gv), .c0(kc), .c1(cc), .c2(ch), .valid(l_valid),
        .last(l_last), .free(l_free), .step1(l_step1), .step2(l_next_head));
    wire _unused_loop = &{1'b0, l_gv, l_valid, l_free, l_step1, 1'b0};
    reg [2:0] drain;
    wire [31:0] h32 = {{(32-CW){1'b0}}, ch};
    wire [31:0] c32 = {{(32-CW){1'b0}}, cc};
    wire [31:0] kc32 = {{(32-KCB){1'b0}}, kc};
    wire [31:0] row32 = h32 * DV32 + c32;
    wire [31:0] sa32 = row32 * KC32 + kc32;
    assign busy = rows_busy || (st != S_IDLE);
    wire load = (st == S_LOAD);
    assign a_re = load;
    assign a_raddr = h32[A_AW-1:0];  // an address matters only with a_re / b_re
    assign b_re = load;
    assign b_raddr = h32[B_AW-1:0];
    wire run = (st == S_RUN);
    wire kc_last = (kc32 == KC32 - 32'd1);

    // ---- stage A (run): fields of this (c, k) chunk, state and decay reads ----
    wire [KP*FW-1:0] kpad = {{((KP-DK)*FW){1'b0}}, b_rdata[DK*FW-1:0]};
    wire [KP*FW-1:0] qpad = {{((KP-DK)*FW){1'b0}}, a_rdata};
    wire [DV*FW-1:0] vfields = b_rdata[WB-1:DK*FW];
    wire [KP*FW-1:0] ksh = kpad >> (kc32 * L32 * FW);
    wire [KP*FW-1:0] qsh = qpad >> (kc32 * L32 * FW);
    wire [DV*FW-1:0] vsh = vfields >> (c32 * FW);
    reg          bv;                     // stage B valid
    reg          b_first_chunk;
    reg          b_last_chunk;
    reg [SAW-1:0] baddr;
    reg [OIW-1:0] brow;
    reg signed [FW-1:0] bvv;
    reg [L*FW-1:0] bk;
    reg [L*FW-1:0] bq;
    reg [L-1:0]    bvalid;               // lane holds a real key channel

    // ---- stage B: state update and readout partial sum ----
    wire [L*MDW-1:0] md_rdata;
    generate
        if (DMODE == 1) begin : g_drom
            npuc_rom #(.WIDTH(L * MDW), .DEPTH(SDEPTH), .AW(SAW), .INIT_FILE(DROM_FILE)) u_md (
                .clk(clk), .re(run), .raddr(sa32[SAW-1:0]), .rdata(md_rdata));
        end else begin : g_dconst
            assign md_rdata = {(L*MDW){1'b0}};
            wire _unused_ok = &{1'b0, md_rdata, 1'b0};
        end
    endgenerate
    // products at their exact operand widths (a W x W multiplier per lane would dominate the area)
    wire signed [FW-1:0] vq = bvv;
    reg  signed [W-1:0] ysum;
    wire signed [W-1:0] ypart;
    wire [L*W-1:0] prods;
    genvar l;
    generate
        for (l = 0; l < L; l = l + 1) begin : g_lane
            wire [SWD-1:0] rd;
            wire signed [SWD-1:0] s_old = first ? {SWD{1'b0}} : rd;
            wire signed [MDW-1:0] md;
            if (DMODE == 1) begin : g_md
                assign md = md_rdata[l*MDW +: MDW];
            end else begin : g_md_c
                assign md = MD[MDW-1:0];
                wire _unused_ok = &{1'b0, MD, 1'b0};
            end
            wire signed [W-1:0] dec;
            npuc_vdecay #(.XW(SWD), .MW(MDW), .W(W), .SHIFT(DB), .ROUND(ROUND)) u_dec (.x(s_old), .mult(md), .y(dec));
            wire signed [FW-1:0] kq = bk[l*FW +: FW];
            wire signed [FW-1:0] qq = bq[l*FW +: FW];
            wire signed [2*FW-1:0] vk = vq * kq;
            wire signed [W-1:0] outer = B_INT * {{(W-2*FW){vk[2*FW-1]}}, vk};
            wire signed [W-1:0] s0 = dec + outer;
            wire signed [W-1:0] s1;
            npuc_ovf #(.W(W), .BITS(V_BITS), .MODE(V_MODE)) u_ovf (.x(s0), .y(s1));
            wire signed [SWD-1:0] s_new = bvalid[l] ? s1[SWD-1:0] : {SWD{1'b0}};  // s1 fits SWD bits
            wire signed [SWD+FW-1:0] pr = s_new * qq;
            assign prods[l*W +: W] = {{(W-SWD-FW){pr[SWD+FW-1]}}, pr};
            npuc_ram #(.WIDTH(SWD), .DEPTH(SDEPTH), .AW(SAW)) u_state (
                .clk(clk), .we(bv), .waddr(baddr), .wdata(s_new),
                .re(run), .raddr(sa32[SAW-1:0]), .rdata(rd));
            wire _unused_ok = &{1'b0, s1[W-1:SWD], 1'b0};
        end
    endgenerate
    integer t;
    reg signed [W-1:0] psum;
    always @(*) begin
        psum = {W{1'b0}};
        for (t = 0; t < L; t = t + 1) psum = psum + $signed(prods[t*W +: W]);
    end
    assign ypart = psum;
    wire signed [W-1:0] ytot = (b_first_chunk ? {W{1'b0}} : ysum) + ypart;

    // ---- stage C: y = (ytot * MULT) >> SHIFT, output ----
    reg cv;
    reg signed [W-1:0] cy;
    reg [OIW-1:0] crow;
    wire signed [W-1:0] yo;
    npuc_decay #(.W(W), .SHIFT(SHIFT), .ROUND(1), .MULT(MULT)) u_out_scale (.x(cy), .y(yo));
    // yo fits OPW bits (the emitter sizes OPW from its range): nonzero iff its low OPW bits are
    npuc_unit_out #(.VW(OPW), .OPW(OPW), .OIW(OIW), .DEPTH(H * DV)) u_out (
        .clk(clk), .we(cv), .addr(crow), .val(yo[OPW-1:0]), .ev_wr_en(ev_wr_en), .ev_wr_data(ev_wr_data),
        .ro_re(ro_re && !busy), .ro_addr(ro_addr), .ro_data(ro_data));
    wire _unused_ok = &{1'b0, yo[W-1:OPW], row32, sa32, ksh, qsh, vsh, step_start, 1'b0};

    always @(posedge clk) begin
        if (rst) begin
            st <= S_IDLE;
            drain <= 3'd0;
            done <= 1'b0;
            rows_clear <= 1'b0;
            bv <= 1'b0;
            b_first_chunk <= 1'b0;
            b_last_chunk <= 1'b0;
            baddr <= {SAW{1'b0}};
            brow <= {OIW{1'b0}};
            bvv <= {FW{1'b0}};
            bk <= {(L*FW){1'b0}};
            bq <= {(L*FW){1'b0}};
            bvalid <= {L{1'b0}};
            ysum <= {W{1'b0}};
            cv <= 1'b0;
            cy <= {W{1'b0}};
            crow <= {OIW{1'b0}};
        end else begin
            done <= 1'b0;
            rows_clear <= 1'b0;
            // stage A -> B
            bv <= run;
            b_first_chunk <= (kc32 == 32'd0);
            b_last_chunk <= kc_last;
            baddr <= sa32[SAW-1:0];
            brow <= row32[OIW-1:0];
            bvv <= vsh[FW-1:0];
            bk <= ksh[L*FW-1:0];
            bq <= qsh[L*FW-1:0];
            for (t = 0; t < L; t = t + 1) bvalid[t] <= (kc32 * L32 + t) < DK32;
            // stage B -> C
            if (bv) ysum <= ytot;
            cv <= bv && b_last_chunk;
            cy <= ytot;
            crow <= brow;
            case (st)
                S_IDLE: if (rows_done) st <= S_LOAD;
                S_LOAD: st <= S_RUN;
                S_RUN: begin
                    if (l_last) begin
                        st <= S_DRAIN;
                        drain <= 3'd0;
                    end else if (l_next_head) begin
                        st <= S_LOAD;
                    end
                end
                default: begin  // S_DRAIN: stages B and C empty out
                    drain <= drain + 3'd1;
                    if (drain == 3'd2) begin
                        st <= S_IDLE;
                        done <= 1'b1;
                        rows_clear <= 1'b1;
                    end
                end
            endcase
        end
    end
endmodule
`default_nettype wire
