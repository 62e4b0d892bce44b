// npuc_gather: collects the events of the three inputs (Q, K, V) of an attention unit into row
// memories, one FW-bit field per element, so the unit can read whole rows afterwards:
//   RAM A: DA rows of WA bits (query rows)
//   RAM B: DB rows of WB bits (key fields, then value fields, of one key position)
// Source s (0 = Q, 1 = K, 2 = V) is walked entry by entry; an event (payload p, index e) is
// decoded by one ROM at BASE_s + e into {field, word, sel} (sel 0: RAM A, 1: RAM B; the emitter
// folds the Reshape/Permute ops in front of the unit into this ROM) and merged into its row:
//   row[word] |= (p mod 2^FW) << (field * FW)
// Rows are zero at the start of a step and every element arrives at most once, so OR sets the
// field (binary spikes: FW = 1; graded payloads: their two's complement bits).
// Pipeline, one event per cycle: E fetch event -> D decode ROM -> R row read -> W merge and write;
// a row written in W and read in the same cycle is forwarded (1-deep bypass), so back-to-back
// events of one row are exact. Sources run one after another (they may share an event list);
// `act` tells the owner which source's event list is being read (for its bank select).
// `clear` zeroes every row of both RAMs (one word per cycle, both RAMs in parallel), as does reset;
// a `start` arriving meanwhile is held until the rows are zero.
`default_nettype none
module npuc_gather #(
    parameter integer PW = 2,            // event payload width (signed)
    parameter integer IW = 4,            // event index width
    parameter integer EAW = 4,           // event list address / count width
    parameter integer FW = 1,            // field width (<= PW)
    parameter integer WA = 4,
    parameter integer DA = 4,
    parameter integer AAW = 2,
    parameter integer WB = 8,
    parameter integer DB = 4,
    parameter integer BAW = 2,
    parameter integer RWW = 2,           // word field width of a ROM entry (>= AAW, BAW)
    parameter integer FB = 2,            // element position width of a ROM entry
    parameter ROM_FILE = "gather.hex",
    parameter integer ROM_DEPTH = 1,
    parameter integer ROM_AW = 1,
    parameter integer BASE1 = 0,         // first ROM entry of source 1 (K)
    parameter integer BASE2 = 0,         // first ROM entry of source 2 (V)
    parameter integer CAW = 2            // clear counter width, holds max(DA, DB)
) (
    input  wire                  clk,
    input  wire                  rst,
    input  wire                  start,
    output reg                   done,
    output wire                  busy,
    input  wire                  clear,
    output wire                  clearing_o,
    input  wire [3*EAW-1:0]      ev_count,
    output wire [2:0]            ev_re,
    output wire [3*EAW-1:0]      ev_addr,
    input  wire [3*(PW+IW)-1:0]  ev_data,
    output wire [2:0]            act,
    input  wire                  a_re,
    input  wire [AAW-1:0]        a_raddr,
    output wire [WA-1:0]         a_rdata,
    input  wire                  b_re,
    input  wire [BAW-1:0]        b_raddr,
    output wire [WB-1:0]         b_rdata
);
    localparam integer RW = 1 + RWW + FB;
    localparam integer WM = (WA > WB) ? WA : WB;
    localparam integer DW = PW + IW;
    localparam [31:0] DA32 = DA;
    localparam [31:0] DB32 = DB;
    localparam integer DMAX = (DA > DB) ? DA : DB;
    localparam [31:0] B1 = BASE1;
    localparam [31:0] B2 = BASE2;

    reg running;
    wire clearing;
    reg pend;
    wire [CAW-1:0] caddr;
    wire [31:0] caddr32 = {{(32-CAW){1'b0}}, caddr};
    reg [1:0] src;
    reg [EAW-1:0] e;
    assign busy = running || pend;
    assign clearing_o = clearing;
    wire go = (start || pend) && !clearing && !running;
    // the rows are zeroed after reset and on `clear` (once the walk is over)
    npuc_sweep #(.AW(CAW), .DEPTH(DMAX)) u_clear (
        .clk(clk), .rst(rst), .restart(clear && !running && !clearing), .busy(clearing), .addr(caddr));

    // ---- E: fetch ----
    wire live = running && (src != 2'd3);
    wire [EAW-1:0] cnt = (src == 2'd0) ? ev_count[EAW-1:0] :
                         (src == 2'd1) ? ev_count[2*EAW-1:EAW] : ev_count[3*EAW-1:2*EAW];
    wire issue = live && (e < cnt);
    assign act = {live && (src == 2'd2), live && (src == 2'd1), live && (src == 2'd0)};
    assign ev_re = act & {3{issue}};
    assign ev_addr = {(ev_re[2] ? e : {EAW{1'b0}}), (ev_re[1] ? e : {EAW{1'b0}}), (ev_re[0] ? e : {EAW{1'b0}})};

    // ---- D: event data -> decode ROM ----
    reg vd;
    reg [1:0] sd;
    wire [DW-1:0] dd = (sd == 2'd0) ? ev_data[DW-1:0] : (sd == 2'd1) ? ev_data[2*DW-1:DW] : ev_data[3*DW-1:2*DW];
    wire [IW-1:0] didx = dd[IW-1:0];
    wire [PW-1:0] dpay = dd[DW-1:IW];
    wire [31:0] base = (sd == 2'd0) ? 32'd0 : (sd == 2'd1) ? B1 : B2;
    wire [31:0] raddr32 = base + {{(32-IW){1'b0}}, didx};
    wire [RW-1:0] rom;
    npuc_rom #(.WIDTH(RW), .DEPTH(ROM_DEPTH), .AW(ROM_AW), .INIT_FILE(ROM_FILE)) u_rom (
        .clk(clk), .re(vd), .raddr(raddr32[ROM_AW-1:0]), .rdata(rom));
    wire _unused_raddr = &{1'b0, raddr32[31:ROM_AW], 1'b0};

    // ---- R: row read ----
    reg vr;
    reg [PW-1:0] pay_r;
    wire r_sel = rom[0];
    wire [RWW-1:0] r_word = rom[RWW:1];
    wire [FB-1:0] r_field = rom[RW-1:RWW+1];

    // ---- W: merge and write ----
    reg vw;
    reg w_sel;
    reg [RWW-1:0] w_word;
    reg [FB-1:0] w_field;
    reg [PW-1:0] w_pay;
    reg fwd_v;
    reg fwd_sel;
    reg [RWW-1:0] fwd_addr;
    reg [WM-1:0] fwd;
    wire [WM-1:0] a_ext = {{(WM-WA){1'b0}}, a_rdata};
    wire [WM-1:0] b_ext = {{(WM-WB){1'b0}}, b_rdata};
    wire [WM-1:0] old = (fwd_v && (fwd_sel == w_sel) && (fwd_addr == w_word)) ? fwd : (w_sel ? b_ext : a_ext);
    wire [31:0] fpos = {{(32-FB){1'b0}}, w_field} * FW;
    wire [WM-1:0] ins = {{(WM-FW){1'b0}}, w_pay[FW-1:0]} << fpos;
    wire [WM-1:0] merged = old | ins;
    generate
        if (PW > FW) begin : g_pay_unused
            wire _unused_ok = &{1'b0, w_pay[PW-1:FW], 1'b0};
        end
    endgenerate

    wire [WA-1:0] wa_data = merged[WA-1:0];
    wire [WB-1:0] wb_data = merged[WB-1:0];
    npuc_ram #(.WIDTH(WA), .DEPTH(DA), .AW(AAW)) u_a (
        .clk(clk),
        .we(clearing ? (caddr32 < DA32) : (vw && !w_sel)),
        .waddr(clearing ? caddr[AAW-1:0] : w_word[AAW-1:0]),
        .wdata(clearing ? {WA{1'b0}} : wa_data),
        .re(running ? (vr && !r_sel) : a_re),
        .raddr(running ? r_word[AAW-1:0] : a_raddr),
        .rdata(a_rdata));
    npuc_ram #(.WIDTH(WB), .DEPTH(DB), .AW(BAW)) u_b (
        .clk(clk),
        .we(clearing ? (caddr32 < DB32) : (vw && w_sel)),
        .waddr(clearing ? caddr[BAW-1:0] : w_word[BAW-1:0]),
        .wdata(clearing ? {WB{1'b0}} : wb_data),
        .re(running ? (vr && r_sel) : b_re),
        .raddr(running ? r_word[BAW-1:0] : b_raddr),
        .rdata(b_rdata));
    generate
        if (RWW > AAW || RWW > BAW || CAW > AAW || CAW > BAW) begin : g_addr_unused
            wire _unused_ok = &{1'b0, w_word, r_word, caddr, 1'b0};
        end
        if (WM > WA || WM > WB) begin : g_merged_unused
            wire _unused_ok = &{1'b0, merged, 1'b0};
        end
    endgenerate

    always @(posedge clk) begin
        if (rst) begin
            running <= 1'b0;
            pend <= 1'b0;
            src <= 2'd0;
            e <= {EAW{1'b0}};
            done <= 1'b0;
            vd <= 1'b0;
            sd <= 2'd0;
            vr <= 1'b0;
            pay_r <= {PW{1'b0}};
            vw <= 1'b0;
            w_sel <= 1'b0;
            w_word <= {RWW{1'b0}};
            w_field <= {FB{1'b0}};
            w_pay <= {PW{1'b0}};
            fwd_v <= 1'b0;
            fwd_sel <= 1'b0;
            fwd_addr <= {RWW{1'b0}};
            fwd <= {WM{1'b0}};
        end else begin
            done <= 1'b0;
            pend <= (start || pend) && !go;
            if (go) begin
                running <= 1'b1;
                src <= 2'd0;
                e <= {EAW{1'b0}};
            end else if (running) begin
                if (issue) begin
                    e <= e + 1'b1;
                end else if (src != 2'd3) begin
                    src <= src + 2'd1;
                    e <= {EAW{1'b0}};
                end else if (!vd && !vr && !vw) begin
                    running <= 1'b0;
                    done <= 1'b1;
                end
            end
            vd <= issue;
            sd <= src;
            vr <= vd;
            pay_r <= dpay;
            vw <= vr;
            w_sel <= r_sel;
            w_word <= r_word;
            w_field <= r_field;
            w_pay <= pay_r;
            fwd_v <= vw;
            fwd_sel <= w_sel;
            fwd_addr <= w_word;
            fwd <= merged;
        end
    end
endmodule
`default_nettype wire
