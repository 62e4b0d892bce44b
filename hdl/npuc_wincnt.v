// npuc_wincnt: a nested counter (c0 innermost, then c1, then c2) walking a window of points,
// with the address-generator handshake of the event-driven engines: `take` (the owner's
// fv && free) starts a walk at (0, 0, 0); each cycle with `adv` moves to the next point; the
// last point ends the walk and frees the counter (`free`), so the next walk is taken in the
// same cycle and walks run back to back. A window with a zero extent (`empty`, only read when
// EMPTY != 0) ends in one cycle with `valid` low. The synapse and pooling engines advance every
// cycle (adv = 1); the attention units walk their rows and heads with it.
// Level k's last index is the parameter Mk when it is a constant (>= 0; folded at elaboration,
// the owner ties mk to 0), else the input mk, held by the owner during a walk.
// `step1` / `step2`: c1 / c2 advance this cycle (the owner moves its address registers along).
`default_nettype none
module npuc_wincnt #(
    parameter integer B0 = 1,            // counter widths
    parameter integer B1 = 1,
    parameter integer B2 = 1,
    parameter integer M0 = -1,           // constant last indices (-1: the inputs m0, m1, m2)
    parameter integer M1 = -1,
    parameter integer M2 = -1,
    parameter integer EMPTY = 0          // 1: `empty` may be high
) (
    input  wire          clk,
    input  wire          rst,
    input  wire          take,
    input  wire          adv,            // move to the next point this cycle
    input  wire [B0-1:0] m0,
    input  wire [B1-1:0] m1,
    input  wire [B2-1:0] m2,
    input  wire          empty,
    output reg           gv,             // a walk is in progress
    output reg  [B0-1:0] c0,
    output reg  [B1-1:0] c1,
    output reg  [B2-1:0] c2,
    output wire          valid,          // (c0, c1, c2) is a point of the window
    output wire          last,           // at the last point of the walk
    output wire          free,           // a new walk may be taken
    output wire          step1,
    output wire          step2
);
    localparam [31:0] M0U = M0;
    localparam [31:0] M1U = M1;
    localparam [31:0] M2U = M2;
    wire [B0-1:0] e0 = (M0 >= 0) ? M0U[B0-1:0] : m0;
    wire [B1-1:0] e1 = (M1 >= 0) ? M1U[B1-1:0] : m1;
    wire [B2-1:0] e2 = (M2 >= 0) ? M2U[B2-1:0] : m2;
    wire none = (EMPTY != 0) && empty;
    wire last0 = (c0 == e0);
    wire last1 = (c1 == e1);
    wire last2 = (c2 == e2);
    assign last = gv && (none || (last0 && last1 && last2));
    assign valid = gv && !none;
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
