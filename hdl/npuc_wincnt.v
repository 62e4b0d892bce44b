// npuc_wincnt: a nested counter (c0 innermost, then c1, then c2) walking an N0 x N1 x N2 window,
// with the address-generator handshake of the event-driven engines: `take` (the owner's
// fv && free) starts a walk at (0, 0, 0); each cycle with `adv` moves to the next point; the
// last point ends the walk and frees the counter (`free`), so the next walk is taken in the
// same cycle and walks run back to back. A window with a zero extent ends in one cycle (`valid`
// stays low). The extents are held by the owner during a walk. The synapse and pooling engines
// advance every cycle (adv = 1); the attention units walk their rows and heads with it.
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
    input  wire          adv,            // move to the next point this cycle
    input  wire [B0-1:0] n0,
    input  wire [B1-1:0] n1,
    input  wire [B2-1:0] n2,
    output reg           gv,             // an event is being walked
    output reg  [B0-1:0] c0,
    output reg  [B1-1:0] c1,
    output reg  [B2-1:0] c2,
    output wire          valid,          // (c0, c1, c2) is a point of the window
    output wire          last,           // at the last point of the walk
    output wire          free,           // a new walk may be taken
    output wire          step1,
    output wire          step2
);
    wire empty = (n0 == {B0{1'b0}}) || (n1 == {B1{1'b0}}) || (n2 == {B2{1'b0}});
    wire last0 = (c0 == n0 - 1'b1);
    wire last1 = (c1 == n1 - 1'b1);
    wire last2 = (c2 == n2 - 1'b1);
    assign last = gv && (empty || (last0 && last1 && last2));
    assign valid = gv && !empty;
    wire fin = last && adv;
    assign free = !gv || fin;
    wire wrap0 = gv && adv && !last && last0;
    assign step1 = wrap0 && !last1;
    assign step2 = wrap0 && last1;
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
        end else if (fin) begin
            gv <= 1'b0;
        end else if (gv && adv) begin
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
