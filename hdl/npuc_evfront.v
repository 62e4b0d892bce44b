// npuc_evfront: the front end shared by the event-driven units (synapse engines, pooling):
// walks entries 0 .. ev_count-1 of a source event list and delivers them as a valid/take stream
// of (payload, index), optionally decoded by a ROM indexed by the event index. One event per
// cycle when the consumer takes one per cycle; the event list and ROM outputs hold while stalled.
`default_nettype none
module npuc_evfront #(
    parameter integer IW = 4,            // event index width
    parameter integer PW = 2,            // payload width (signed)
    parameter integer EAW = 4,           // event list address / count width
    parameter integer USE_ROM = 0,
    parameter integer DREG = 0,          // register the event word (without a ROM): one cycle more
    parameter integer RW = 1,            // decode ROM word width
    parameter ROM_FILE = "",
    parameter integer ROM_DEPTH = 1,
    parameter integer ROM_AW = 1
) (
    input  wire                 clk,
    input  wire                 rst,
    input  wire                 start,      // restart at entry 0
    input  wire                 running,
    input  wire [EAW-1:0]       ev_count,
    output wire                 ev_re,
    output wire [EAW-1:0]       ev_addr,
    output wire [EAW-1:0]       ev_addr_nx, // the entry the next cycle's read will be (npuc_evlist RA_NEXT)
    input  wire [PW+IW-1:0]     ev_data,
    output wire                 fv,
    output wire signed [PW-1:0] fpay,
    output wire [IW-1:0]        fidx,
    output wire [RW-1:0]        from,
    input  wire                 ftake,
    output wire                 fdone,      // every entry was delivered and taken
    output wire                 issued,     // every entry is issued by the end of this cycle
    output wire [1:0]           inflight    // entries in the list read and event word stages
);
    reg  [EAW-1:0] e;
    reg            v1;
    wire           s1_free;
    wire           issue = running && (e < ev_count) && s1_free;
    assign ev_re = issue;
    assign ev_addr = issue ? e : {EAW{1'b0}};
    // zero unless walking: the readers of one list are OR-ed and walk one at a time
    wire [EAW-1:0] e_nx = start ? {EAW{1'b0}} : issue ? e + 1'b1 : e;
    assign ev_addr_nx = (start || running) ? e_nx : {EAW{1'b0}};
    wire [IW-1:0] idx1 = ev_data[IW-1:0];
    wire signed [PW-1:0] pay1 = ev_data[PW+IW-1:IW];
    wire v2_busy;
    assign fdone = (e == ev_count) && !v1 && !v2_busy;
    // (`issue` here would put the count compare twice in series: the last entry is issued in this
    // cycle when one is left and the first stage is free)
    assign issued = (e == ev_count) || ((e + 1'b1 == ev_count) && running && s1_free);
    assign inflight = {v1, v2_busy};
    always @(posedge clk) begin
        if (rst) begin
            e <= {EAW{1'b0}};
            v1 <= 1'b0;
        end else begin
            e <= e_nx;
            if (issue) v1 <= 1'b1;
            else if (s1_free) v1 <= 1'b0;
        end
    end
    generate
        if (USE_ROM != 0 || DREG != 0) begin : g_rom
            reg v2;
            reg signed [PW-1:0] pay2;
            reg [IW-1:0] idx2;
            wire s2_free = !v2 || ftake;
            wire s1_take = v1 && s2_free;
            assign s1_free = !v1 || s1_take;
            assign v2_busy = v2;
            assign fv = v2;
            assign fpay = pay2;
            assign fidx = idx2;
            if (USE_ROM != 0) begin : g_dec
                npuc_rom #(.WIDTH(RW), .DEPTH(ROM_DEPTH), .AW(ROM_AW), .INIT_FILE(ROM_FILE)) u_dec (
                    .clk(clk), .re(s1_take), .raddr(idx1[ROM_AW-1:0]), .rdata(from));
                if (IW > ROM_AW) begin : g_idx_unused
                    wire _unused_ok = &{1'b0, idx1[IW-1:ROM_AW], 1'b0};
                end
            end else begin : g_nodec
                assign from = {RW{1'b0}};
            end
            always @(posedge clk) begin
                if (rst) begin
                    v2 <= 1'b0;
                    pay2 <= {PW{1'b0}};
                    idx2 <= {IW{1'b0}};
                end else if (s1_take) begin
                    v2 <= 1'b1;
                    pay2 <= pay1;
                    idx2 <= idx1;
                end else if (ftake) begin
                    v2 <= 1'b0;
                end
            end
        end else begin : g_direct
            assign s1_free = !v1 || ftake;
            assign v2_busy = 1'b0;
            assign fv = v1;
            assign fpay = pay1;
            assign fidx = idx1;
            assign from = {RW{1'b0}};
        end
    endgenerate
endmodule
`default_nettype wire
