// npuc_array: the synapses of a neuron array layer (docs/rtl-backend.md, "Neuron array
// layers"): one accumulator register per neuron, shared by every dense path into the layer.
// Each path phase walks its source's events, one per cycle; an event reads one ROM word, the
// whole weight row of its source (every neuron's weight, already shifted left by the path's
// exponent over the layer's smallest one), and adds payload x weight to all N accumulators at
// once:   acc[o] += W[base + e][o] * p      (BINARY: p is always 1)
// `walk` walks the list the layer selects (its count and data) from entry 0, following a count
// that still grows while `ev_final` is low (the producer appends this step's events). `issued`
// says the walk's last entry is issued in this cycle (or was), so the layer may select the next
// path's list and walk it from the next cycle on: its events follow the previous list's through
// the same pipeline with one idle cycle between them. The layer keeps the list select of each
// event in flight itself (its data one cycle after the issue, `base` two), as the fetch pipeline
// here has a fixed latency. `snap` copies every accumulator to its shadow and zeroes it in the
// same cycle: the neuron pass reads the shadow, NL at a time (group g: neurons g*NL ..
// g*NL + NL-1, one cycle later), while the next step's events already accumulate.
// Pipeline: issue -> list read -> E (event word registered) -> F (ROM address) -> R (weight read)
// -> W (row register) -> Q (lane products registered) -> M (add, at the end of the 6th cycle
// after the issue). E takes the event list's block RAM clock-to-out and the select between the
// paths' lists off the row address add (11.8 ns placed on the SHD-size design without it).
`default_nettype none
module npuc_array #(
    parameter integer N = 4,             // neurons
    parameter integer NL = 2,            // neurons the neuron pass reads per cycle
    parameter integer G = 2,             // groups: ceil(N / NL)
    parameter integer GAW = 1,           // group address width
    parameter integer WS = 8,            // weight field width (signed, shifted)
    parameter integer PW = 2,            // event payload width (signed)
    parameter integer PB = 1,            // payload bits multiplied (non-negative payloads: the low PB bits)
    parameter integer PSIGNED = 0,       // payloads may be negative: all PW bits, the top one negative
    parameter integer BINARY = 1,        // every payload is 1: no multiply
    parameter integer POW2 = 0,          // every nonzero payload is +-2^s (s <= SMAX): one shifted term
    parameter integer SMAX = 0,
    parameter integer AW = 16,           // accumulator width (exact)
    parameter integer IW = 4,            // event index width
    parameter integer EAW = 4,           // event list address / count width
    parameter integer RDEPTH = 4,        // weight rows (every path's source events, path after path)
    parameter integer RAW = 2,
    parameter R_FILE = "rows.hex"
) (
    input  wire                 clk,
    input  wire                 rst,
    input  wire                 walk,       // walk the selected list from entry 0 (not while walking)
    input  wire [RAW-1:0]       base,       // the first weight row of the list of the event in F
    input  wire                 ev_final,   // ev_count is final (else the producer still appends)
    output wire                 issued,     // every entry of the walked list is issued by the end of this cycle
    output wire                 drained,    // no event in flight (not walking)
    output wire [4:0]           inflight,   // events in flight by stage: {issue, list read, E, F, R}
    input  wire                 snap,       // shadow <= accumulators, accumulators <= 0
    input  wire [EAW-1:0]       ev_count,
    output wire                 ev_re,
    output wire [EAW-1:0]       ev_addr,
    output wire [EAW-1:0]       ev_addr_nx,  // the next cycle's read (npuc_evlist RA_NEXT)
    input  wire [PW+IW-1:0]     ev_data,
    input  wire                 nu_re,      // the neuron pass reads group nu_g
    input  wire [GAW-1:0]       nu_g,       // 0, 1, .. G-1 in order in each neuron pass (unused: see gsel)
    output reg  [NL*AW-1:0]     nu_rdata
);
    localparam integer DW = (BINARY != 0) ? WS : (POW2 != 0) ? WS + SMAX + 1 : (PSIGNED != 0) ? WS + PW : WS + PB + 1;
    reg running;

    wire           fv;
    wire signed [PW-1:0] fpay;
    wire [IW-1:0]  fidx;
    wire [0:0]     from_unused;
    wire           fdone;
    wire           front_issued;
    wire [1:0]     front_inflight;           // the front's list read and event word stages
    npuc_evfront #(.IW(IW), .PW(PW), .EAW(EAW), .USE_ROM(0), .DREG(1)) u_front (
        .clk(clk), .rst(rst), .start(walk), .running(running && !walk),
        .ev_count(ev_count), .ev_re(ev_re), .ev_addr(ev_addr), .ev_addr_nx(ev_addr_nx), .ev_data(ev_data),
        .fv(fv), .fpay(fpay), .fidx(fidx), .from(from_unused), .ftake(1'b1), .fdone(fdone),
        .issued(front_issued), .inflight(front_inflight));

    // F: the row address is registered, so the weight ROM's many address pins hang off a register
    reg            av;
    reg  [RAW-1:0] aaddr;
    reg  signed [PW-1:0] apay;
    reg            rv;
    reg  signed [PW-1:0] rpay;
    reg            wv;
    reg  signed [PW-1:0] wpay;
    reg  [N*WS-1:0] wrow_q;
    reg            qv;
    wire [N*WS-1:0] wrow;
    npuc_rom #(.WIDTH(N*WS), .DEPTH(RDEPTH), .AW(RAW), .INIT_FILE(R_FILE)) u_w (
        .clk(clk), .re(av), .raddr(aaddr), .rdata(wrow));
    wire [RAW-1:0] fidx_r;
    generate
        if (IW >= RAW) begin : g_idx_wide
            assign fidx_r = fidx[RAW-1:0];
            if (IW > RAW) begin : g_idx_unused
                wire _unused_idx = &{1'b0, fidx[IW-1:RAW], 1'b0};
            end
        end else begin : g_idx_narrow
            assign fidx_r = {{(RAW-IW){1'b0}}, fidx};
        end
    endgenerate

    // the front always delivers (ftake), so an event issued in cycle c is in F in c+3
    assign drained = !running && (front_inflight == 2'd0) && !av && !rv && !wv && !qv;
    assign inflight = {ev_re, front_inflight, av, rv};
    assign issued = running && !walk && ev_final && front_issued;
    always @(posedge clk) begin
        if (rst) begin
            running <= 1'b0;
            av <= 1'b0;
            rv <= 1'b0;
            wv <= 1'b0;
            qv <= 1'b0;
        end else begin
            if (walk) running <= 1'b1;
            else if (issued) running <= 1'b0;
            av <= fv;
            rv <= av;
            wv <= rv;
            qv <= wv;
        end
        aaddr <= base + fidx_r;
        apay <= fpay;
        rpay <= apay;
        wpay <= rpay;
        if (rv) wrow_q <= wrow;
    end

    // Q: lane products; M: the add into every neuron's accumulator. With POW2 payloads the
    // product is one term: Q holds (w << s) or its ones' complement (negative payloads), and the
    // missing +1 enters the add as a carry below the LSB ({acc, 1} + {q, neg}), so a neuron costs
    // a shift-select and its accumulator's adder.
    wire [31:0] ws_s;                            // s: the payload's shift (POW2)
    wire        ws_neg;                          // the payload is negative (POW2)
    reg         qneg;
    generate
        if (POW2 != 0) begin : g_pow2
            // |p| = 2^s: the index of its one set bit (the payload is never 0: events are nonzero)
            wire signed [PW:0] mag = wpay[PW-1] ? -{wpay[PW-1], wpay} : {wpay[PW-1], wpay};
            reg [31:0] sh;
            integer k;
            always @* begin
                sh = 32'd0;
                for (k = 1; k <= SMAX; k = k + 1)
                    if (mag[k]) sh = k;
            end
            assign ws_s = sh;
            assign ws_neg = wpay[PW-1];
            wire _unused_mag = &{1'b0, mag, 1'b0};
        end else begin : g_nopow2
            assign ws_s = 32'd0;
            assign ws_neg = 1'b0;
        end
    endgenerate
    always @(posedge clk) if (wv) qneg <= ws_neg;
    reg  [N*AW-1:0] acc;                         // neuron i at bits i*AW
    reg  [N*AW-1:0] shadow;                      // the last step's sums, read by the neuron pass
    genvar i;
    generate
        for (i = 0; i < N; i = i + 1) begin : g_n
            wire signed [WS-1:0] w = wrow_q[i*WS +: WS];
            wire signed [DW-1:0] we = {{(DW-WS){w[WS-1]}}, w};
            wire signed [DW-1:0] prod;
            if (BINARY != 0) begin : g_bin
                assign prod = we;
            end else if (POW2 != 0) begin : g_term
                wire signed [DW-1:0] t = we <<< ws_s[4:0];
                assign prod = ws_neg ? ~t : t;
            end else begin : g_mul
                // shift-adds over the payload bits (a MULT18 per neuron would not fit the device)
                localparam integer NB = (PSIGNED != 0) ? PW : PB;
                wire signed [(NB+1)*DW-1:0] ps;
                assign ps[DW-1:0] = {DW{1'b0}};
                genvar b;
                for (b = 0; b < NB; b = b + 1) begin : g_b
                    wire signed [DW-1:0] t = wpay[b] ? (we <<< b) : {DW{1'b0}};
                    if (PSIGNED != 0 && b == NB - 1) begin : g_neg
                        assign ps[(b+1)*DW +: DW] = ps[b*DW +: DW] - t;
                    end else begin : g_pos
                        assign ps[(b+1)*DW +: DW] = ps[b*DW +: DW] + t;
                    end
                end
                assign prod = ps[NB*DW +: DW];
            end
            reg signed [DW-1:0] q;
            always @(posedge clk) if (wv) q <= prod;
            wire signed [AW-1:0] qe = {{(AW-DW){q[DW-1]}}, q};
            wire [AW:0] sum = {acc[i*AW +: AW], 1'b1} + {qe, qneg};
            always @(posedge clk) begin
                if (rst || snap) acc[i*AW +: AW] <= {AW{1'b0}};
                else if (qv) acc[i*AW +: AW] <= sum[AW:1];
                if (snap) shadow[i*AW +: AW] <= acc[i*AW +: AW];
            end
            wire _unused_lsb = &{1'b0, sum[0], 1'b0};
        end
    endgenerate
    wire [G*NL*AW-1:0] accp;                     // padding neurons of the last group read 0
    generate
        if (G * NL > N) begin : g_pad
            assign accp = {{((G*NL-N)*AW){1'b0}}, shadow};
        end else begin : g_full
            assign accp = shadow;
        end
    endgenerate
    generate
        if (BINARY != 0 || (POW2 == 0 && PSIGNED == 0 && PB < PW)) begin : g_pay_unused
            wire _unused_pay = &{1'b0, wpay, ws_s, ws_neg, 1'b0};
        end else begin : g_s_unused
            wire _unused_s = &{1'b0, ws_s, 1'b0};
        end
    endgenerate

    // the neuron side: group nu_g (an AND-OR select over the groups, registered). Each neuron pass
    // reads the groups 0 .. G-1 in order, once (its counter starts at 0 with the phase), so a
    // one-hot register rotated by each read names the group: comparing the layer's counter with
    // every group across the chip was the SHD array's critical path (11.4 ns placed)
    reg  [G-1:0] gsel;
    localparam [G-1:0] G0 = 1;
    generate
        if (G > 1) begin : g_rot
            always @(posedge clk) begin
                if (rst) gsel <= G0;
                else if (nu_re) gsel <= {gsel[G-2:0], gsel[G-1]};
            end
        end else begin : g_one
            always @(posedge clk) gsel <= G0;
        end
    endgenerate
    wire _unused_g = &{1'b0, nu_g, 1'b0};
    wire [(G+1)*NL*AW-1:0] ors;
    assign ors[NL*AW-1:0] = {(NL*AW){1'b0}};
    genvar g;
    generate
        for (g = 0; g < G; g = g + 1) begin : g_sel
            assign ors[(g+1)*NL*AW +: NL*AW] = ors[g*NL*AW +: NL*AW] |
                (gsel[g] ? accp[g*NL*AW +: NL*AW] : {(NL*AW){1'b0}});
        end
    endgenerate
    always @(posedge clk) begin
        if (nu_re) nu_rdata <= ors[G*NL*AW +: NL*AW];
    end
    wire _unused_front = &{1'b0, from_unused, fdone, 1'b0};
endmodule
`default_nettype wire
