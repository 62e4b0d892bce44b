// npuc_wincnt: the address-generator handshake of the event-driven engines: a nested counter
// (c0 innermost, then c1, then c2) that walks the N0 x N1 x N2 window of one event, one point
// per cycle. `take` (the owner's fv && free) loads a new event and restarts the counters; the
// last point frees the generator (`free`), so the next event is taken in the same cycle and
// the walk runs back to back. A window with a zero extent is skipped in one cycle (`valid`
// stays low). The extents are held by the owner for the event being walked.
// `step1` / `step2`: c1 / c2 advance this cycle (the owner moves its address registers along).
`default_nettype none
module npuc_wincnt #(
    parameter integer B0 = 1,
    parameter integer B1 = 1,
    parameter integer B2 = 1
) (
    input  wire          clk,
    input  wire          rst,
    input  wire          take,
    input  wire [B0-1:0] n0,
    input  wire [B1-1:0] n1,
    input  wire [B2-1:0] n2,
    output reg           gv,             // an event is being walked
    output reg  [B0-1:0] c0,
    output reg  [B1-1:0] c1,
    output reg  [B2-1:0] c2,
    output wire          valid,          // (c0, c1, c2) is a point of the window
    output wire          last,           // last cycle of this event
    output wire          free,           // a new event may be taken
    output wire          step1,
    output wire          step2
);
    wire empty = (n0 == {B0{1'b0}}) || (n1 == {B1{1'b0}}) || (n2 == {B2{1'b0}});
    wire last0 = (c0 == n0 - 1'b1);
    wire last1 = (c1 == n1 - 1'b1);
    wire last2 = (c2 == n2 - 1'b1);
    assign last = gv && (empty || (last0 && last1 && last2));
    assign valid = gv && !empty;
    assign free = !gv || last;
    wire adv = gv && !last && last0;
    assign step1 = adv && !last1;
    assign step2 = adv && last1;
    always @(posedge clk) begin
        if (rst) begin
            gv <= 1'b0;
            c0 <= {B0{1'b0}};
            c1 <= {B1{1'b0}};
            c2 <= {B2{1'b0}};
        end else if (take) begin
            gv <= 1'b1;
            c0 <= {B0{1'b0}};
            c1 <= {B1{1'b0}};
            c2 <= {B2{1'b0}};
        end else if (last) begin
            gv <= 1'b0;
        end else if (gv) begin
            if (!last0) begin
                c0 <= c0 + 1'b1;
            end else begin
                c0 <= {B0{1'b0}};
                if (!last1) begin
                    c1 <= c1 + 1'b1;
                end else begin
                    c1 <= {B1{1'b0}};
                    c2 <= c2 + 1'b1;
                end
            end
        end
    end
endmodule
`default_nettype wire
