// npuc_pool: event-driven pooling of a source event list into a new event list.
//
//   sum pooling (OR = 0):  y[q] = sum of the payloads of the source events inside window q
//   max pooling of binary spikes (OR = 1):  y[q] = 1 if any source event lies inside window q
//
// A decode ROM indexed by the source event index gives {nx, ny, w0}: the windows that contain
// the event are q = w0 + dy * OWP + dx (dy < ny, dx < nx); the emitter folds reshapes, permutes
// and padding into it. Phase ACC walks the source events and updates the pooled values in a RAM
// (read-modify-write, 1-deep bypass), appending each window to an index list the first time it
// is touched. Phase EMIT walks that list, writes the nonzero windows as (payload, index) pairs to
// the output list read by the path's synapse engine, and clears the pooled RAM for the next step.
// After reset the unit zeroes the pooled RAM first (a start arriving meanwhile is held).
// Cycles per step ~ sum over events of (windows per event) + touched windows + 6.
`default_nettype none
module npuc_pool #(
    parameter integer OR = 0,
    parameter integer PW = 2,            // source payload width (signed)
    parameter integer QPW = 4,           // pooled payload width (signed)
    parameter integer IW = 4,            // source index width
    parameter integer EAW = 4,           // source event count width
    parameter integer QW = 4,            // pooled index width
    parameter integer NQ = 16,           // pooled size
    parameter integer QAW = 4,           // address width of NQ-deep memories
    parameter integer QCW = 5,           // pooled count width, >= clog2(NQ + 1)
    parameter ROM_FILE = "pool.hex",
    parameter integer ROM_DEPTH = 16,
    parameter integer ROM_AW = 4,
    parameter integer NYB = 1,
    parameter integer NXB = 1,
    parameter integer OWP = 1
) (
`include "npuc_stage_ports.vh"
    output wire [QCW-1:0]    out_count,
    input  wire              out_re,
    input  wire [QCW-1:0]    out_addr,
    output wire [QPW+QW-1:0] out_data
);
    localparam integer RW = QW + NYB + NXB;
    localparam [31:0] OWP32 = OWP;
    localparam [1:0] IDLE = 2'd0, ACC = 2'd1, EMIT = 2'd2;
    reg [1:0] phase;
    wire clearing;                   // the value memory is zeroed after reset
    reg start_pending;
    wire [QW-1:0] caddr;
    npuc_sweep #(.AW(QW), .DEPTH(NQ)) u_clear (
        .clk(clk), .rst(rst), .restart(1'b0), .busy(clearing), .addr(caddr));
    wire go = (start || start_pending) && !clearing;
    assign busy = (phase != IDLE);

    // ---- ACC: front end ---------------------------------------------------------------------
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
    npuc_evfront #(.IW(IW), .PW(PW), .EAW(EAW), .USE_ROM(1), .RW(RW), .ROM_FILE(ROM_FILE),
                   .ROM_DEPTH(ROM_DEPTH), .ROM_AW(ROM_AW)) u_front (
        .clk(clk), .rst(rst), .start(go), .running(phase == ACC),
        .ev_count(ev_count), .ev_re(ev_re), .ev_addr(ev_addr), .ev_addr_nx(ev_addr_nx), .ev_data(ev_data),
        .fv(fv), .fpay(fpay), .fidx(fidx), .from(rom), .ftake(g_take), .fdone(fdone),
        .issued(front_issued), .inflight(front_inflight));
    wire _unused_front = &{1'b0, front_issued, front_inflight, 1'b0};
    wire _unused_idx = &{1'b0, fidx, 1'b0};

    // ---- ACC: window generator (dx innermost, then dy) -----------------------------------------
    wire           gv;
    reg  [QW-1:0]  gw0;
    reg  [NYB-1:0] gny;
    reg  [NXB-1:0] gnx;
    wire [NYB-1:0] dy;
    wire [NXB-1:0] dx;
    wire           dz;
    reg  signed [PW-1:0] gpay;
    wire           g_free;
    wire           op_valid;
    wire           g_last;
    wire           g_step1;
    wire           g_step2;
    assign g_take = fv && g_free;
    npuc_wincnt #(.B0(NXB), .B1(NYB), .M2(0), .EMPTY(1)) u_win (
        .clk(clk), .rst(rst), .take(g_take), .adv(1'b1), .m0(gnx - 1'b1), .m1(gny - 1'b1), .m2(1'b0),
        .empty((gny == {NYB{1'b0}}) || (gnx == {NXB{1'b0}})), .gv(gv), .c0(dx), .c1(dy), .c2(dz),
        .valid(op_valid), .last(g_last), .free(g_free), .step1(g_step1), .step2(g_step2));
    wire _unused_win = &{1'b0, dz, g_last, g_step1, g_step2, 1'b0};
    wire [31:0] w32 = {{(32-QW){1'b0}}, gw0} + {{(32-NYB){1'b0}}, dy} * OWP32 + {{(32-NXB){1'b0}}, dx};
    wire [QW-1:0] op_addr = w32[QW-1:0];
    wire _unused_w = &{1'b0, w32[31:QW], 1'b0};
    always @(posedge clk) begin
        if (rst) begin
            gw0 <= {QW{1'b0}};
            gny <= {NYB{1'b0}};
            gnx <= {NXB{1'b0}};
            gpay <= {PW{1'b0}};
        end else if (g_take) begin
            gw0 <= rom[QW-1:0];
            gny <= rom[QW+NYB-1:QW];
            gnx <= rom[QW+NYB+NXB-1:QW+NYB];
            gpay <= fpay;
        end
    end

    // ---- ACC: read-modify-write of the pooled values ------------------------------------------
    reg            mv;
    reg  [QW-1:0]  maddr;
    reg  signed [PW-1:0] mpay;
    reg            fwd_v;
    reg  [QW-1:0]  fwd_addr;
    reg  [QPW:0]    fwd;
    wire [QPW:0]    prd;              // {touched, value}
    wire [QPW:0]    old = (fwd_v && (fwd_addr == maddr)) ? fwd : prd;
    wire signed [QPW-1:0] oldv = old[QPW-1:0];
    wire signed [QPW-1:0] add = {{(QPW-PW){mpay[PW-1]}}, mpay};
    wire signed [QPW-1:0] newv;
    generate
        if (OR != 0) begin : g_or
            assign newv = {{(QPW-1){1'b0}}, 1'b1};
            wire _unused_ok = &{1'b0, oldv, add, 1'b0};
        end else begin : g_sum
            assign newv = oldv + add;
        end
    endgenerate
    wire [QPW:0] mnew = {1'b1, newv};
    reg [QCW-1:0] cnt;               // windows touched so far
    wire push = mv && !old[QPW];

    // ---- EMIT ------------------------------------------------------------------------------------
    reg  [QCW-1:0] ek;
    reg            x1;
    reg            x2;
    reg  [QW-1:0]  q2;
    reg  [QCW-1:0] m;
    wire [QW-1:0]  irdata;
    wire           e_issue = (phase == EMIT) && (ek < cnt);
    wire signed [QPW-1:0] eval_ = prd[QPW-1:0];
    wire           e_write = x2 && (eval_ != {QPW{1'b0}});
    assign out_count = m;

    npuc_ram #(.WIDTH(QW), .DEPTH(NQ), .AW(QAW)) u_idx (
        .clk(clk), .we(push), .waddr(cnt[QAW-1:0]), .wdata(maddr),
        .re(e_issue), .raddr(ek[QAW-1:0]), .rdata(irdata));
    npuc_ram #(.WIDTH(QPW + 1), .DEPTH(NQ), .AW(QW)) u_val (
        .clk(clk),
        .we(mv || x2 || clearing),
        .waddr(clearing ? caddr : (x2 ? q2 : maddr)),
        .wdata((x2 || clearing) ? {(QPW + 1){1'b0}} : mnew),
        .re(op_valid || x1),
        .raddr(x1 ? irdata : op_addr),
        .rdata(prd));
    npuc_ram #(.WIDTH(QPW + QW), .DEPTH(NQ), .AW(QAW)) u_out (
        .clk(clk), .we(e_write), .waddr(m[QAW-1:0]), .wdata({eval_, q2}),
        .re(out_re), .raddr(out_addr[QAW-1:0]), .rdata(out_data));
    generate
        if (QCW > QAW) begin : g_cw
            wire _unused_ok = &{1'b0, cnt[QCW-1:QAW], ek[QCW-1:QAW], m[QCW-1:QAW], out_addr[QCW-1:QAW], 1'b0};
        end
    endgenerate

    always @(posedge clk) begin
        if (rst) begin
            phase <= IDLE;
            start_pending <= 1'b0;
            done <= 1'b0;
            mv <= 1'b0;
            maddr <= {QW{1'b0}};
            mpay <= {PW{1'b0}};
            fwd_v <= 1'b0;
            fwd_addr <= {QW{1'b0}};
            fwd <= {(QPW + 1){1'b0}};
            cnt <= {QCW{1'b0}};
            ek <= {QCW{1'b0}};
            x1 <= 1'b0;
            x2 <= 1'b0;
            q2 <= {QW{1'b0}};
            m <= {QCW{1'b0}};
        end else begin
            done <= 1'b0;
            start_pending <= (start || start_pending) && clearing;
            mv <= op_valid;
            maddr <= op_addr;
            mpay <= gpay;
            fwd_v <= mv;
            fwd_addr <= maddr;
            if (mv) fwd <= mnew;
            if (push) cnt <= cnt + 1'b1;
            x1 <= e_issue;
            x2 <= x1;
            if (x1) q2 <= irdata;
            if (e_write) m <= m + 1'b1;
            if (e_issue) ek <= ek + 1'b1;
            case (phase)
                IDLE: if (go) begin
                    phase <= ACC;
                    cnt <= {QCW{1'b0}};
                end
                ACC: if (fdone && !gv && !mv) begin
                    phase <= EMIT;
                    ek <= {QCW{1'b0}};
                    m <= {QCW{1'b0}};
                end
                EMIT: if (!e_issue && !x1 && !x2) begin
                    phase <= IDLE;
                    done <= 1'b1;
                end
                default: phase <= IDLE;
            endcase
        end
    end
endmodule
`default_nettype wire
