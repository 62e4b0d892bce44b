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
// chunk per cycle) -> M read weight + accumulator -> add and write back. A write and a read of the
// same accumulator word in one cycle is forwarded (1-deep bypass), so back-to-back updates of one
// neuron are exact. Cycles per step ~ sum over events of (taps x KC) + 5.
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
    input  wire              clk,
    input  wire              rst,
    input  wire              start,
    output reg               done,
    output wire              busy,
    input  wire [EAW-1:0]    ev_count,
    output wire              ev_re,
    output wire [EAW-1:0]    ev_addr,
    input  wire [PW+IW-1:0]  ev_data,
    input  wire              nu_re,
    input  wire [AAW-1:0]    nu_raddr,
    output wire [L*AW-1:0]   nu_rdata,
    input  wire              nu_clr,
    input  wire [AAW-1:0]    nu_caddr,
    input  wire [L-1:0]      nu_clane
);
    localparam [31:0] KC32 = KC;
    localparam [31:0] CG32 = CG;
    localparam [31:0] L32 = L;

    reg running;
    reg clearing;
    reg start_pending;
    reg [AAW-1:0] caddr;
    localparam [31:0] ADEPTH32 = ADEPTH;
    wire [31:0] caddr32 = {{(32-AAW){1'b0}}, caddr};
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
    npuc_evfront #(.IW(IW), .PW(PW), .EAW(EAW), .USE_ROM(KIND), .RW(RW), .ROM_FILE(CROM_FILE),
                   .ROM_DEPTH(CROM_DEPTH), .ROM_AW(CROM_AW)) u_front (
        .clk(clk), .rst(rst), .start(go), .running(running),
        .ev_count(ev_count), .ev_re(ev_re), .ev_addr(ev_addr), .ev_data(ev_data),
        .fv(fv), .fpay(fpay), .fidx(fidx), .from(rom), .ftake(g_take), .fdone(fdone));

    // ---- G: address generator state ---------------------------------------------------------
    reg         gv;
    reg  [KCB-1:0] k;
    wire [31:0] k32 = {{(32-KCB){1'b0}}, k};
    reg  signed [PW-1:0] gpay;
    wire        g_last;
    wire        g_free = !gv || g_last;
    assign      g_take = fv && g_free;
    wire        op_valid;
    wire [31:0] op_waddr;
    wire [31:0] op_aaddr;
    wire        k_last = (k32 == KC32 - 32'd1);

    // ---- M: memory read done, add and write ---------------------------------------------------
    reg            mv;
    reg  [L-1:0]   mmask;
    reg  signed [PW-1:0] mpay;
    reg  [AAW-1:0] maddr;
    reg            fwd_v;
    reg  [AAW-1:0] fwd_addr;
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
            reg [NB-1:0]  ku;
            reg [NB-1:0]  kv;
            reg [KB-1:0]  cu;
            reg [KB-1:0]  cv;
            reg [OB-1:0]  ci_;
            reg [OB-1:0]  cj;
            reg           gempty;
            wire kv_last = (kv == cg_nv - 1'b1);
            wire ku_last = (ku == cg_nu - 1'b1);
            assign g_last = gv && (gempty || (k_last && kv_last && ku_last));
            assign op_valid = gv && !gempty;
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
                    gv <= 1'b0;
                    gempty <= 1'b0;
                    k <= {KCB{1'b0}};
                    ku <= {NB{1'b0}};
                    kv <= {NB{1'b0}};
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
                    gv <= 1'b1;
                    gempty <= (r_nu == {NB{1'b0}}) || (r_nv == {NB{1'b0}});
                    gpay <= fpay;
                    cg_g <= r_g;
                    cg_ci <= r_ci;
                    cg_v0 <= r_v0;
                    cg_j0 <= r_j0;
                    cg_nu <= r_nu;
                    cg_nv <= r_nv;
                    k <= {KCB{1'b0}};
                    ku <= {NB{1'b0}};
                    kv <= {NB{1'b0}};
                    cu <= r_u0;
                    ci_ <= r_i0;
                    cv <= r_v0;
                    cj <= r_j0;
                end else if (g_last) begin
                    gv <= 1'b0;
                end else if (gv) begin
                    if (!k_last) begin
                        k <= k + 1'b1;
                    end else begin
                        k <= {KCB{1'b0}};
                        if (!kv_last) begin
                            kv <= kv + 1'b1;
                            cv <= cv + VSTEPB;
                            cj <= cj - JSTEPB;
                        end else begin
                            kv <= {NB{1'b0}};
                            cv <= cg_v0;
                            cj <= cg_j0;
                            ku <= ku + 1'b1;
                            cu <= cu + USTEPB;
                            ci_ <= ci_ - ISTEPB;
                        end
                    end
                end
            end
        end else if (KIND == 2) begin : g_token
            // decoded fields, LSB first: feature f, token t
            reg [FEATB-1:0] gf;
            reg [TOKB-1:0] gt;
            assign g_last = gv && k_last;
            assign op_valid = gv;
            wire [31:0] f32 = {{(32-FEATB){1'b0}}, gf};
            wire [31:0] t32 = {{(32-TOKB){1'b0}}, gt};
            assign op_waddr = f32 * KC32 + k32;
            assign op_aaddr = t32 * KC32 + k32;
            wire _unused_ok = &{1'b0, fidx, 1'b0};
            always @(posedge clk) begin
                if (rst) begin
                    gv <= 1'b0;
                    gf <= {FEATB{1'b0}};
                    gt <= {TOKB{1'b0}};
                    gpay <= {PW{1'b0}};
                    k <= {KCB{1'b0}};
                end else if (g_take) begin
                    gv <= 1'b1;
                    gf <= rom[FEATB-1:0];
                    gt <= rom[TOKB+FEATB-1:FEATB];
                    gpay <= fpay;
                    k <= {KCB{1'b0}};
                end else if (g_last) begin
                    gv <= 1'b0;
                end else if (gv) begin
                    k <= k + 1'b1;
                end
            end
        end else begin : g_dense
            reg [IW-1:0] gj;
            assign g_last = gv && k_last;
            assign op_valid = gv;
            wire [31:0] j32 = {{(32-IW){1'b0}}, gj};
            assign op_waddr = j32 * KC32 + k32;
            assign op_aaddr = k32;
            wire _unused_ok = &{1'b0, rom, 1'b0};
            always @(posedge clk) begin
                if (rst) begin
                    gv <= 1'b0;
                    gj <= {IW{1'b0}};
                    gpay <= {PW{1'b0}};
                    k <= {KCB{1'b0}};
                end else if (g_take) begin
                    gv <= 1'b1;
                    gj <= fidx;
                    gpay <= fpay;
                    k <= {KCB{1'b0}};
                end else if (g_last) begin
                    gv <= 1'b0;
                end else if (gv) begin
                    k <= k + 1'b1;
                end
            end
        end
    endgenerate

    // lane masks: lane l carries channel k * L + l of the group, if it exists
    genvar l;
    generate
        for (l = 0; l < L; l = l + 1) begin : g_mask
            localparam [31:0] LI = l;
            assign op_mask[l] = (k32 * L32 + LI) < CG32;
        end
    endgenerate

    npuc_rom #(.WIDTH(L * WW), .DEPTH(WDEPTH), .AW(WAW), .INIT_FILE(W_FILE)) u_w (
        .clk(clk), .re(op_valid), .raddr(op_waddr[WAW-1:0]), .rdata(wrow));

    wire _unused_addr = &{1'b0, op_waddr[31:WAW], op_aaddr[31:AAW], 1'b0};

    generate
        for (l = 0; l < L; l = l + 1) begin : g_lane
            wire signed [WW-1:0] w = wrow[l*WW +: WW];
            wire signed [AW-1:0] delta;
            if (BINARY != 0) begin : g_bin
                assign delta = {{(AW-WW){w[WW-1]}}, w};
                wire _unused_ok = &{1'b0, mpay, 1'b0};
            end else begin : g_mul
                wire signed [WW+PW-1:0] prod = w * mpay;
                assign delta = {{(AW-WW-PW){prod[WW+PW-1]}}, prod};
            end
            wire [AW-1:0] rdata;
            reg  signed [AW-1:0] fwd;
            wire signed [AW-1:0] old = (fwd_v && (fwd_addr == maddr)) ? fwd : rdata;
            wire signed [AW-1:0] sum = old + (mmask[l] ? delta : {AW{1'b0}});
            always @(posedge clk) begin
                if (rst) fwd <= {AW{1'b0}};
                else if (mv) fwd <= sum;
            end
            npuc_ram #(.WIDTH(AW), .DEPTH(ADEPTH), .AW(AAW)) u_acc (
                .clk(clk),
                .we(running ? mv : (clearing || (nu_clr && nu_clane[l]))),
                .waddr(running ? maddr : (clearing ? caddr : nu_caddr)),
                .wdata(running ? sum : {AW{1'b0}}),
                .re(running ? op_valid : nu_re),
                .raddr(running ? op_aaddr[AAW-1:0] : nu_raddr),
                .rdata(rdata));
            assign nu_rdata[l*AW +: AW] = rdata;
        end
    endgenerate

    // ---- control ----------------------------------------------------------------------------
    always @(posedge clk) begin
        if (rst) begin
            running <= 1'b0;
            clearing <= 1'b1;
            start_pending <= 1'b0;
            caddr <= {AAW{1'b0}};
            done <= 1'b0;
            mv <= 1'b0;
            mmask <= {L{1'b0}};
            mpay <= {PW{1'b0}};
            maddr <= {AAW{1'b0}};
            fwd_v <= 1'b0;
            fwd_addr <= {AAW{1'b0}};
        end else begin
            done <= 1'b0;
            if (clearing) begin
                if (caddr32 == ADEPTH32 - 32'd1) clearing <= 1'b0;
                else caddr <= caddr + 1'b1;
            end
            start_pending <= (start || start_pending) && clearing;
            if (go) begin
                running <= 1'b1;
            end else if (running && fdone && !gv && !mv) begin
                running <= 1'b0;
                done <= 1'b1;
            end
            mv <= op_valid;
            mmask <= op_mask;
            mpay <= gpay;
            maddr <= op_aaddr[AAW-1:0];
            fwd_v <= mv;
            fwd_addr <= maddr;
        end
    end
endmodule
`default_nettype wire
