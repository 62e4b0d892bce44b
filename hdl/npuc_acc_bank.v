// npuc_acc_bank: L lane accumulator RAMs of DEPTH words, updated by read-modify-write.
//
// While `run` is high the owning engine issues a read (rd_re, rd_addr) and, one cycle later, the
// update of that word: upd with the address upd_addr and the lane deltas (delta, combinational
// from the read data rdata); the RAM writes rdata + delta. A write and a read of the same word
// in one cycle is forwarded (1-deep bypass), so back-to-back updates of one word are exact.
// While `run` is low the neuron side owns the bank: it reads a word (nu_re, nu_raddr; the data
// is rdata) and clears the lanes it consumed (nu_clr, nu_caddr, nu_clane).
// After reset, and after each `clear` pulse, the bank zeroes all DEPTH words, one per cycle
// (`clearing` is high meanwhile; the owner must not run then). Sums wrap at AW bits (the emitter
// sizes AW so they never do).
`default_nettype none
module npuc_acc_bank #(
    parameter integer L = 1,             // lanes
    parameter integer AW = 16,           // word width
    parameter integer DEPTH = 4,         // words per lane
    parameter integer AAW = 2            // address width
) (
    input  wire              clk,
    input  wire              rst,
    input  wire              clear,
    output wire              clearing,
    input  wire              run,
    input  wire              rd_re,
    input  wire [AAW-1:0]    rd_addr,
    input  wire              upd,
    input  wire [AAW-1:0]    upd_addr,
    input  wire [L*AW-1:0]   delta,
    output wire [L*AW-1:0]   rdata,
    input  wire              nu_re,
    input  wire [AAW-1:0]    nu_raddr,
    input  wire              nu_clr,
    input  wire [AAW-1:0]    nu_caddr,
    input  wire [L-1:0]      nu_clane
);
    wire [AAW-1:0] caddr;
    npuc_sweep #(.AW(AAW), .DEPTH(DEPTH)) u_clear (
        .clk(clk), .rst(rst), .restart(clear), .busy(clearing), .addr(caddr));
    reg fwd_v;
    reg [AAW-1:0] fwd_addr;
    wire hit = fwd_v && (fwd_addr == upd_addr);

    genvar l;
    generate
        for (l = 0; l < L; l = l + 1) begin : g_lane
            wire [AW-1:0] rd;
            reg  [AW-1:0] fwd;
            wire [AW-1:0] sum = (hit ? fwd : rd) + delta[l*AW +: AW];
            always @(posedge clk) begin
                if (rst) fwd <= {AW{1'b0}};
                else if (upd) fwd <= sum;
            end
            npuc_ram #(.WIDTH(AW), .DEPTH(DEPTH), .AW(AAW)) u_acc (
                .clk(clk),
                .we(run ? upd : (clearing || (nu_clr && nu_clane[l]))),
                .waddr(run ? upd_addr : (clearing ? caddr : nu_caddr)),
                .wdata(run ? sum : {AW{1'b0}}),
                .re(run ? rd_re : nu_re),
                .raddr(run ? rd_addr : nu_raddr),
                .rdata(rd));
            assign rdata[l*AW +: AW] = rd;
        end
    endgenerate

    always @(posedge clk) begin
        if (rst) begin
            fwd_v <= 1'b0;
            fwd_addr <= {AAW{1'b0}};
        end else begin
            fwd_v <= upd;
            fwd_addr <= upd_addr;
        end
    end
endmodule
`default_nettype wire
