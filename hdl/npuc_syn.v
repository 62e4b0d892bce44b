// npuc_syn: event-driven synapse engine of one synapse path, with L parallel lanes.
//
// Per time step (start .. done) it walks only the active events (payload p, index e) of its
// source's event list and adds the weight column (dense) or kernel (conv) of each event to the
// path's accumulators:   acc[o] += W[o, e] * p      (BINARY: p is always 1, no multiply)
// KIND 2 is a dense layer applied to every token of a (tokens, features) input (the same matrix
// for each token): the decode ROM gives the event's {token t, feature f} and
//   acc[t, o] += W[o, f] * p.
//
// Lanes split the output channels: lane l owns the channels co with (co mod CG) mod L == l, and
// all lanes address the same word of their own accumulator RAM and of the shared, L-wide weight
// ROM in a cycle. Memory layout (chunk k = (co mod CG) / L, group g = co / CG):
//   dense  weights  [e * KC + k]                                  accumulators [k]
//   token  weights  [f * KC + k]                                  accumulators [t * KC + k]
//   conv   weights  [(((g * KC + k) * CIG + ci) * KH + u) * KW + v]  accumulators [((g * KC + k) * OH + i) * OW + j]
// Conv events are decoded by a ROM indexed by the source index e (pre-synaptic reshapes,
// permutes and pooling outputs are folded into it by the emitter):
//   {nv, j0, v0, nu, i0, u0, ci, g}: the valid kernel taps are u = u0 + a * USTEP (a < nu) with
//   output row i = i0 - a * ISTEP, and v = v0 + b * VSTEP (b < nv) with output column j = j0 - b * JSTEP.
//
// Pipeline (one accumulator update per lane per cycle, stalls only upstream of the address
// generator): F fetch event -> 1 event data -> [2 decode ROM] -> G address generator (one tap x
// chunk per cycle) -> read weight -> R register the weight row -> Q lane products (payload x
// weight, masked) registered, read accumulator -> M add and write back. (The weight ROM, many
// block RAMs deep, has its output mux in R, the multiply in Q and the add in M.)
// A write and a read of the same accumulator word in one cycle is forwarded (1-deep bypass), so
// back-to-back updates of one neuron are exact. Cycles per step ~ sum over events of (taps x KC) + 7.
//
// Outside a run the accumulators belong to the neuron unit (nu_*): it reads a word and clears the
// lane it consumed. After reset the engine first zeroes all ADEPTH accumulator words (a start
// arriving meanwhile is held), so a reset in the middle of a step leaves no partial sums.
`default_nettype none
module npuc_syn #(
    parameter integer KIND = 0,          // 0 dense, 1 conv, 2 token-wise dense
    parameter integer L = 1,             // lanes
    parameter integer WW = 8,            // weight width (signed)
    parameter integer PW = 2,            // event payload width (signed)
    parameter integer BINARY = 1,        // payload is always 1
    parameter integer AW = 16,           // accumulator width (signed; exact for the path)
    parameter integer IW = 4,            // event index width
    parameter integer EAW = 4,           // event list address / count width
    parameter integer WDEPTH = 16,
    parameter integer WAW = 4,
    parameter W_FILE = "w.hex",
    parameter integer ADEPTH = 4,        // accumulator words per lane
    parameter integer AAW = 2,
    parameter integer KC = 1,            // lane chunks per group: ceil(CG / L)
    parameter integer KCB = 1,           // width of the chunk counter, >= clog2(KC + 1)
    parameter integer CG = 1,            // output channels per group (dense: outputs)
    parameter CROM_FILE = "",
    parameter integer CROM_DEPTH = 1,
    parameter integer CROM_AW = 1,
    parameter integer GB = 1,            // conv decode field widths
    parameter integer CIB = 1,
    parameter integer KB = 1,
    parameter integer OB = 1,
    parameter integer NB = 1,
    parameter integer CIG = 1,
    parameter integer KH = 1,
    parameter integer KW = 1,
    parameter integer OH = 1,
    parameter integer OW = 1,
    parameter integer USTEP = 1,
    parameter integer ISTEP = 1,
    parameter integer VSTEP = 1,
    parameter integer JSTEP = 1,
    parameter integer TOKB = 1,          // token-wise dense decode field widths
    parameter integer FEATB = 1
) (
`include "npuc_stage_ports.vh"
`include "npuc_acc_ports.vh"
);
    localparam [31:0] KC32 = KC;
    localparam [31:0] CG32 = CG;
    localparam [31:0] L32 = L;

    // x * KC as shifts and adds when KC has at most 3 set bits (KC = 6: one add), else a multiply:
    // the row base is computed from the event list's block RAM output, and on ecp5 a MULT18 with
    // its routing was the critical path there.
    function [31:0] times_kc(input [31:0] x);
        integer b;
        begin
            times_kc = 32'd0;
            for (b = 0; b < 32; b = b + 1)
                if (KC32[b]) times_kc = times_kc + (x << b);
        end
    endfunction
    function integer ones(input [31:0] x);
        integer b;
        begin
            ones = 0;
            for (b = 0; b < 32; b = b + 1)
                ones = ones + (x[b] ? 1 : 0);
        end
    endfunction
    localparam integer KC_ONES = ones(KC32);

    reg running;
    reg start_pending;
    wire clearing;
    wire go = (start || start_pending) && !clearing;
    assign busy = running;

    // ---- front end: event fetch (+ conv decode ROM) ------------------------------------------
    localparam integer RW = (KIND == 1) ? GB + CIB + 2 * KB + 2 * OB + 2 * NB : (KIND == 2) ? TOKB + FEATB : 1;
    wire           fv;
    wire signed [PW-1:0] fpay;
    wire [IW-1:0]  fidx;
    wire [RW-1:0]  rom;
    wire           fdone;
    wire           g_take;
    wire [EAW-1:0] ev_addr_nx;           // for npuc_evlist RA_NEXT, which only array layers use
    wire _unused_nx = &{1'b0, ev_addr_nx, 1'b0};
    wire       front_issued;
    wire [1:0] front_inflight;
    npuc_evfront #(.IW(IW), .PW(PW), .EAW(EAW), .USE_ROM(KIND), .RW(RW), .ROM_FILE(CROM_FILE),
                   .ROM_DEPTH(CROM_DEPTH), .ROM_AW(CROM_AW)) u_front (
        .clk(clk), .rst(rst), .start(go), .running(running),
        .ev_count(ev_count), .ev_re(ev_re), .ev_addr(ev_addr), .ev_addr_nx(ev_addr_nx), .ev_data(ev_data),
        .fv(fv), .fpay(fpay), .fidx(fidx), .from(rom), .ftake(g_take), .fdone(fdone),
        .issued(front_issued), .inflight(front_inflight));
    wire _unused_front = &{1'b0, front_issued, front_inflight, 1'b0};

    // ---- G: address generator: chunk k innermost (npuc_wincnt level 0), then the conv taps ----
    wire        gv;
    wire [KCB-1:0] k;
    wire [31:0] k32 = {{(32-KCB){1'b0}}, k};
    reg  signed [PW-1:0] gpay;
    wire        g_free;
    wire        op_valid;
    wire        g_step1;
    wire        g_step2;
    assign      g_take = fv && g_free;
    wire [31:0] op_waddr;
    wire [31:0] op_aaddr;

    // ---- R: weight read; Q: weight row registered, product, accumulator read; M: add, write ----
    reg            rv;
    reg  [L-1:0]   rmask;
    reg  signed [PW-1:0] rpay;
    reg  [AAW-1:0] raddr;
    reg  [L*WW-1:0] wrow_q;
    reg            qv;
    reg  [L-1:0]   qmask;
    reg  signed [PW-1:0] qpay;
    reg  [AAW-1:0] qaddr;
    reg            mv;
    reg  [AAW-1:0] maddr;
    wire [L*WW-1:0] wrow;
    wire [L-1:0]    op_mask;

    generate
        if (KIND == 1) begin : g_conv
            localparam [31:0] CIG32 = CIG;
            localparam [31:0] KH32 = KH;
            localparam [31:0] KW32 = KW;
            localparam [31:0] OH32 = OH;
            localparam [31:0] OW32 = OW;
            localparam [31:0] USTEP32 = USTEP;
            localparam [31:0] VSTEP32 = VSTEP;
            localparam [31:0] ISTEP32 = ISTEP;
            localparam [31:0] JSTEP32 = JSTEP;
            localparam [KB-1:0] USTEPB = USTEP32[KB-1:0];
            localparam [KB-1:0] VSTEPB = VSTEP32[KB-1:0];
            localparam [OB-1:0] ISTEPB = ISTEP32[OB-1:0];
            localparam [OB-1:0] JSTEPB = JSTEP32[OB-1:0];
            // decoded fields, LSB first: g, ci, u0, i0, nu, v0, j0, nv
            wire [GB-1:0]  r_g  = rom[GB-1:0];
            wire [CIB-1:0] r_ci = rom[GB+CIB-1:GB];
            wire [KB-1:0]  r_u0 = rom[GB+CIB+KB-1:GB+CIB];
            wire [OB-1:0]  r_i0 = rom[GB+CIB+KB+OB-1:GB+CIB+KB];
            wire [NB-1:0]  r_nu = rom[GB+CIB+KB+OB+NB-1:GB+CIB+KB+OB];
            wire [KB-1:0]  r_v0 = rom[GB+CIB+2*KB+OB+NB-1:GB+CIB+KB+OB+NB];
            wire [OB-1:0]  r_j0 = rom[GB+CIB+2*KB+2*OB+NB-1:GB+CIB+2*KB+OB+NB];
            wire [NB-1:0]  r_nv = rom[GB+CIB+2*KB+2*OB+2*NB-1:GB+CIB+2*KB+2*OB+NB];
            wire _unused_ok = &{1'b0, fidx, 1'b0};
            reg [GB-1:0]  cg_g;
            reg [CIB-1:0] cg_ci;
            reg [KB-1:0]  cg_v0;
            reg [OB-1:0]  cg_j0;
            reg [NB-1:0]  cg_nu;
            reg [NB-1:0]  cg_nv;
            reg [KB-1:0]  cu;
            reg [KB-1:0]  cv;
            reg [OB-1:0]  ci_;
            reg [OB-1:0]  cj;
            wire [NB-1:0] kv;
            wire [NB-1:0] ku;
            wire g_last;
            // k over the chunks, kv over the kernel columns, ku over the kernel rows
            npuc_wincnt #(.B0(KCB), .B1(NB), .B2(NB), .M0(KC - 1), .EMPTY(1)) u_win (
                .clk(clk), .rst(rst), .take(g_take), .adv(1'b1), .m0({KCB{1'b0}}), .m1(cg_nv - 1'b1),
                .m2(cg_nu - 1'b1), .empty((cg_nu == {NB{1'b0}}) || (cg_nv == {NB{1'b0}})), .gv(gv), .c0(k),
                .c1(kv), .c2(ku), .valid(op_valid), .last(g_last), .free(g_free), .step1(g_step1),
                .step2(g_step2));
            wire _unused_win = &{1'b0, kv, ku, g_last, 1'b0};
            wire [31:0] g32 = {{(32-GB){1'b0}}, cg_g};
            wire [31:0] slot = g32 * KC32 + k32;
            wire [31:0] cin = {{(32-CIB){1'b0}}, cg_ci};
            wire [31:0] u32 = {{(32-KB){1'b0}}, cu};
            wire [31:0] v32 = {{(32-KB){1'b0}}, cv};
            wire [31:0] i32 = {{(32-OB){1'b0}}, ci_};
            wire [31:0] j32 = {{(32-OB){1'b0}}, cj};
            assign op_waddr = ((slot * CIG32 + cin) * KH32 + u32) * KW32 + v32;
            assign op_aaddr = (slot * OH32 + i32) * OW32 + j32;
            always @(posedge clk) begin
                if (rst) begin
                    cu <= {KB{1'b0}};
                    cv <= {KB{1'b0}};
                    ci_ <= {OB{1'b0}};
                    cj <= {OB{1'b0}};
                    cg_g <= {GB{1'b0}};
                    cg_ci <= {CIB{1'b0}};
                    cg_v0 <= {KB{1'b0}};
                    cg_j0 <= {OB{1'b0}};
                    cg_nu <= {NB{1'b0}};
                    cg_nv <= {NB{1'b0}};
                    gpay <= {PW{1'b0}};
                end else if (g_take) begin
                    gpay <= fpay;
                    cg_g <= r_g;
                    cg_ci <= r_ci;
                    cg_v0 <= r_v0;
                    cg_j0 <= r_j0;
                    cg_nu <= r_nu;
                    cg_nv <= r_nv;
                    cu <= r_u0;
                    ci_ <= r_i0;
                    cv <= r_v0;
                    cj <= r_j0;
                end else if (g_step1) begin
                    cv <= cv + VSTEPB;
                    cj <= cj - JSTEPB;
                end else if (g_step2) begin
                    cv <= cg_v0;
                    cj <= cg_j0;
                    cu <= cu + USTEPB;
                    ci_ <= ci_ - ISTEPB;
                end
            end
        end else begin : g_flat
            // dense (KIND 0): weight row = event index j, accumulator row 0;
            // token-wise dense (KIND 2): decoded {token t, feature f}: weight row f, accumulator row t
            localparam integer RB = (KIND == 2) ? FEATB : IW;
            localparam integer TB = (KIND == 2) ? TOKB : 1;
            wire [RB-1:0] row_in;
            wire [TB-1:0] tok_in;
            if (KIND == 2) begin : g_token
                assign row_in = rom[FEATB-1:0];
                assign tok_in = rom[TOKB+FEATB-1:FEATB];
                wire _unused_ok = &{1'b0, fidx, 1'b0};
            end else begin : g_dense
                assign row_in = fidx;
                assign tok_in = 1'b0;
                wire _unused_ok = &{1'b0, rom, 1'b0};
            end
            // The row and token bases are multiplied by KC when the event is taken (`times_kc`), so
            // the weight ROM's address (fanned out to all its block RAMs) is one add from registers,
            // not a multiply (a MULT18 on ecp5) and an add.
            reg [31:0] gwbase;
            reg [31:0] gabase;
            wire c1;
            wire c2;
            wire g_last;
            npuc_wincnt #(.B0(KCB), .M0(KC - 1), .M1(0), .M2(0)) u_win (
                .clk(clk), .rst(rst), .take(g_take), .adv(1'b1), .m0({KCB{1'b0}}), .m1(1'b0), .m2(1'b0),
                .empty(1'b0), .gv(gv), .c0(k), .c1(c1),
                .c2(c2), .valid(op_valid), .last(g_last), .free(g_free), .step1(g_step1), .step2(g_step2));
            wire [31:0] r32 = {{(32-RB){1'b0}}, row_in};
            wire [31:0] t32 = {{(32-TB){1'b0}}, tok_in};
            assign op_waddr = gwbase + k32;
            assign op_aaddr = gabase + k32;
            wire _unused_win = &{1'b0, c1, c2, g_last, g_step1, g_step2, 1'b0};
            always @(posedge clk) begin
                if (rst) begin
                    gwbase <= 32'd0;
                    gabase <= 32'd0;
                    gpay <= {PW{1'b0}};
                end else if (g_take) begin
                    gwbase <= (KC_ONES <= 3) ? times_kc(r32) : r32 * KC32;
                    gabase <= (KC_ONES <= 3) ? times_kc(t32) : t32 * KC32;
                    gpay <= fpay;
                end
            end
        end
    endgenerate

    // lane masks: lane l carries channel k * L + l of the group, if it exists; only the last chunk
    // (KC - 1) can be partial, so this is a compare of k with a constant (k * L was a MULT18 on
    // ecp5, and the critical path of the MNIST-size MLP)
    localparam [31:0] LAST_N = CG32 - (KC32 - 32'd1) * L32;
    genvar l;
    generate
        for (l = 0; l < L; l = l + 1) begin : g_mask
            localparam [31:0] LI = l;
            assign op_mask[l] = (k32 != KC32 - 32'd1) || (LI < LAST_N);
        end
    endgenerate

    npuc_rom #(.WIDTH(L * WW), .DEPTH(WDEPTH), .AW(WAW), .INIT_FILE(W_FILE)) u_w (
        .clk(clk), .re(op_valid), .raddr(op_waddr[WAW-1:0]), .rdata(wrow));

    wire _unused_addr = &{1'b0, op_waddr[31:WAW], op_aaddr[31:AAW], 1'b0};

    // ---- accumulators: read-modify-write of the lane deltas ----------------------------------
    // The lane products (masked) are registered in Q, so M is only the accumulator's
    // read -> add -> write loop (the product used to be on it: a MULT18 on ecp5).
    localparam integer DW = (BINARY != 0) ? WW : WW + PW;
    wire [L*AW-1:0] deltas;
    generate
        for (l = 0; l < L; l = l + 1) begin : g_lane
            wire signed [WW-1:0] w = wrow_q[l*WW +: WW];
            wire signed [DW-1:0] prod;
            reg  signed [DW-1:0] dq;
            if (BINARY != 0) begin : g_bin
                assign prod = w;
            end else begin : g_mul
                assign prod = w * qpay;
            end
            always @(posedge clk) dq <= qmask[l] ? prod : {DW{1'b0}};
            assign deltas[l*AW +: AW] = {{(AW-DW){dq[DW-1]}}, dq};
        end
        if (BINARY != 0) begin : g_bin_unused
            wire _unused_ok = &{1'b0, qpay, 1'b0};
        end
    endgenerate
    npuc_acc_bank #(.L(L), .AW(AW), .DEPTH(ADEPTH), .AAW(AAW)) u_acc (
        .clk(clk), .rst(rst), .clear(1'b0), .clearing(clearing), .run(running), .rd_re(qv),
        .rd_addr(qaddr), .upd(mv), .upd_addr(maddr), .delta(deltas), .rdata(nu_rdata),
        .nu_re(nu_re), .nu_raddr(nu_raddr), .nu_clr(nu_clr), .nu_caddr(nu_caddr), .nu_clane(nu_clane));

    always @(posedge clk) wrow_q <= wrow;

    // ---- control ----------------------------------------------------------------------------
    always @(posedge clk) begin
        if (rst) begin
            running <= 1'b0;
            start_pending <= 1'b0;
            done <= 1'b0;
            rv <= 1'b0;
            rmask <= {L{1'b0}};
            rpay <= {PW{1'b0}};
            raddr <= {AAW{1'b0}};
            qv <= 1'b0;
            qmask <= {L{1'b0}};
            qpay <= {PW{1'b0}};
            qaddr <= {AAW{1'b0}};
            mv <= 1'b0;
            maddr <= {AAW{1'b0}};
        end else begin
            done <= 1'b0;
            start_pending <= (start || start_pending) && clearing;
            if (go) begin
                running <= 1'b1;
            end else if (running && fdone && !gv && !rv && !qv && !mv) begin
                running <= 1'b0;
                done <= 1'b1;
            end
            rv <= op_valid;
            rmask <= op_mask;
            rpay <= gpay;
            raddr <= op_aaddr[AAW-1:0];
            qv <= rv;
            qmask <= rmask;
            qpay <= rpay;
            qaddr <= raddr;
            mv <= qv;
            maddr <= qaddr;
        end
    end
endmodule
`default_nettype wire
