// npuc_evlist: the event list of one population: the (payload, index) pairs of its nonzero outputs
// in one time step, appended in neuron order by the producer and walked by the synapse engines of
// its consumers. With BANKS = 2 the list is double-buffered by step parity, so consumers on a
// delayed (recurrent) edge read the previous step's list while the producer writes the new one.
// At `step_start` the bank of the new step is emptied; on the first step of a sample both are
// (CLR_BOTH = 1). A pipelined top (CLR_BOTH = 0) empties only the new step's bank: another stage may
// still read the other one, and a delayed reader sees no events on a sample's first step instead.
// RA_NEXT = 1: `rd_addr` is the entry to read in the next cycle and `rd_bank` that read's bank (the
// readers hold it from the cycle before their first read on); the bank offset is added and the sum
// registered here, so the block RAM's address comes from a flip-flop, not from the readers' issue
// logic across the chip. `rd_re` stays the read of this cycle.
`default_nettype none
module npuc_evlist #(
    parameter integer DW = 8,        // entry width: {payload, index}
    parameter integer N = 16,        // entries per bank (population size)
    parameter integer IAW = 4,       // index/address width within a bank, >= clog2(N + 1)
    parameter integer BANKS = 1,
    parameter integer MAW = 4,       // memory address width, >= clog2(BANKS * N) and >= IAW
    parameter integer CLR_BOTH = 1,
    parameter integer RA_NEXT = 0
) (
    input  wire           clk,
    input  wire           rst,
    input  wire           step_start,
    input  wire           first,
    input  wire           parity,     // bank written in this step (valid at step_start and after)
    input  wire           wr_en,
    input  wire [DW-1:0]  wr_data,
    input  wire           rd_re,
    input  wire           rd_bank,
    input  wire [IAW-1:0] rd_addr,
    output wire [DW-1:0]  rd_data,
    output wire [IAW-1:0] rd_count,   // entries in bank rd_bank
    output wire [IAW-1:0] cur_count   // entries written in this step (status)
);
    reg  [IAW-1:0] count0;
    reg  [IAW-1:0] count1;
    wire           wbank = (BANKS == 2) ? parity : 1'b0;
    wire [IAW-1:0] wcount = wbank ? count1 : count0;
    wire           rbank = (BANKS == 2) ? rd_bank : 1'b0;
    assign rd_count = rbank ? count1 : count0;
    assign cur_count = wcount;
    localparam [31:0] N32 = N;
    wire [MAW-1:0] OFFSET = N32[MAW-1:0];
    wire [MAW-1:0] waddr = (wbank ? OFFSET : {MAW{1'b0}}) + {{(MAW-IAW){1'b0}}, wcount};
    wire [MAW-1:0] raddr = (rbank ? OFFSET : {MAW{1'b0}}) + {{(MAW-IAW){1'b0}}, rd_addr};
    reg  [MAW-1:0] raddr_q;
    always @(posedge clk) raddr_q <= raddr;
    wire [MAW-1:0] ra = (RA_NEXT != 0) ? raddr_q : raddr;
    always @(posedge clk) begin
        if (rst) begin
            count0 <= {IAW{1'b0}};
            count1 <= {IAW{1'b0}};
        end else if (step_start) begin
            if ((first && CLR_BOTH != 0) || !wbank) count0 <= {IAW{1'b0}};
            if ((first && CLR_BOTH != 0) || wbank) count1 <= {IAW{1'b0}};
        end else if (wr_en) begin
            if (wbank) count1 <= count1 + 1'b1;
            else count0 <= count0 + 1'b1;
        end
    end
    npuc_ram #(.WIDTH(DW), .DEPTH(BANKS * N), .AW(MAW)) u_mem (
        .clk(clk), .we(wr_en), .waddr(waddr), .wdata(wr_data),
        .re(rd_re), .raddr(ra), .rdata(rd_data));
endmodule
`default_nettype wire
