// npuc_lif: pipelined integer LIF update of one neuron, bit-exact with
// npuc.sim.int_kernels.LIFInt (equations in npuc.ir.values.QLIF). Every value is carried in W
// bits, which the emitter sizes so that no intermediate result can overflow; the profile's
// wraps and saturations are applied explicitly by npuc_ovf:
//   a'  = OVF_act(a)
//   u   = OVF_u(WRAP_arith(R(u_prev * MU / 2^DB) + (a' << ACT_SHIFT)))
//   v'  = RESET_VALUE if (delayed value reset and s_prev != 0) else v_prev
//   u   = 0 if CHARGE and s_prev != 0         (delayed_charge value reset of the alpha neuron)
//   h   = WRAP_arith(R(v' * MV / 2^DB) + (CHARGE ? u_prev : u) + bias)
//   h  -= amount(s_prev)                      (delayed / delayed_charge subtract)
//   h   = RESET_VALUE if s_prev != 0          (delayed_charge value reset)
//   h   = OVF_v(h);  s = fire(h)
//   v   = h - amount(s) | (s != 0 ? RESET_VALUE : h) | h   (same-step subtract / value / otherwise)
//   v   = max(v, vmin)                        (HAS_VMIN)
// first = 1 replaces the previous state by the initial one (u = 0, v = V_INIT, s = 0).
// Pipeline (LATENCY = 4 registers, a new neuron every cycle, no state shared between neurons):
// inputs | decay multiplies | u, v' + bias | h | spike, reset, floor -> outputs (the input
// register, the initial state selected in front of it, takes the memories' clock-to-out off the
// multiplier path). Inputs (first included) belong to the neuron entering; outputs to the one
// entered LATENCY cycles earlier.
// The sums are exact in W bits whatever their order, so (v' + bias) + u equals v' + u + bias.
// Encodings: RESET 0 subtract 1 value 2 none; TIMING 0 same 1 delayed 2 delayed_charge;
// CHARGE 0 current 1 previous (LIF.charge); COMPARE 0 gt 1 ge; SPIKE 0 binary 1 ternary 2 multilevel (s = min((h * DIV_M) >> DIV_K, LMAX),
// an exact division by VTH over the membrane range) 3 bernoulli (s = h - VTH >= dmin,
// dmin from the emitter's threshold table indexed by the neuron's LFSR value).
// Per-neuron decays (a learned per-neuron beta / alpha: QLIF arrays du, dv): VEC_MU / VEC_MV = 1
// take the multiplier of the neuron entering from the input mu / mv (MW-bit signed, read from the
// layer's decay ROM alongside its state) instead of the parameter MU / MV, and multiply with
// npuc_vdecay (same rounding R) at the operands' widths XU / XV (the emitter's bounds of u_prev
// and of v' with V_INIT and RESET_VALUE, so the multipliers stay narrow: a W-bit product would
// double their logic). With one decay per population mu / mv are tied to zero and unused.
`default_nettype none
module npuc_lif #(
    parameter integer W = 40,
    parameter integer DECAY_BITS = 12,
    parameter integer ROUND = 1,
    parameter integer ACT_BITS = 16,
    parameter integer ACT_MODE = 0,
    parameter integer ACT_SHIFT = 0,
    parameter integer ARITH_BITS = 32,
    parameter integer ARITH_MODE = 0,
    parameter integer U_BITS = 16,
    parameter integer U_MODE = 3,
    parameter integer V_BITS = 16,
    parameter integer V_MODE = 3,
    parameter integer RESET = 0,
    parameter integer TIMING = 0,
    parameter integer CHARGE = 0,
    parameter integer COMPARE = 0,
    parameter integer SPIKE = 0,
    parameter integer HAS_LMAX = 0,
    parameter integer DIV_K = 0,
    parameter integer HAS_VMIN = 0,
    parameter signed [W-1:0] VTH = 1,
    parameter signed [W-1:0] VTH_LO = -1,
    parameter signed [W-1:0] RESET_VALUE = 0,
    parameter signed [W-1:0] V_INIT = 0,
    parameter signed [W-1:0] DIV_M = 1,
    parameter signed [W-1:0] LMAX = 0,
    parameter signed [W-1:0] MU = 0,
    parameter signed [W-1:0] MV = 0,
    parameter integer MW = 2,
    parameter integer VEC_MU = 0,
    parameter integer VEC_MV = 0,
    parameter integer XU = W,
    parameter integer XV = W
) (
    input  wire                clk,
    input  wire                first,
    input  wire signed [W-1:0] a,
    input  wire signed [W-1:0] u_prev,
    input  wire signed [W-1:0] v_prev,
    input  wire signed [W-1:0] s_prev,
    input  wire signed [W-1:0] bias,
    input  wire signed [W-1:0] vmin,
    input  wire signed [W-1:0] dmin,
    input  wire signed [MW-1:0] mu,
    input  wire signed [MW-1:0] mv,
    output wire signed [W-1:0] u,
    output wire signed [W-1:0] v,
    output wire signed [W-1:0] s
);
    localparam signed [W-1:0] ZERO = {W{1'b0}};
    localparam signed [W-1:0] ONE = {{(W-1){1'b0}}, 1'b1};
    localparam signed [W-1:0] MONE = {W{1'b1}};

    // stage 0: input register; the previous state is replaced by the initial one (first step of a
    // sample) before it: a registered `first` is one flip-flop for all time-shared lanes once Yosys
    // merges the copies, and its fan-out to every lane's decay multiplier input crossed the chip
    reg signed [W-1:0] r0_a, r0_u, r0_v, r0_s, r0_bias, r0_vmin, r0_dmin;
    reg signed [MW-1:0] r0_mu, r0_mv;
    always @(posedge clk) begin
        r0_a <= a;
        r0_u <= first ? ZERO : u_prev;
        r0_v <= first ? V_INIT : v_prev;
        r0_s <= first ? ZERO : s_prev;
        r0_bias <= bias;
        r0_vmin <= vmin;
        r0_dmin <= dmin;
        r0_mu <= mu;
        r0_mv <= mv;
    end

    // previous state (initial state on the first step of a sample)
    wire signed [W-1:0] up = r0_u;
    wire signed [W-1:0] vq = r0_v;
    wire signed [W-1:0] sp = r0_s;
    wire sp_nz = (sp != ZERO);

    // stage 1: decay multiplies, input current, previous spike's subtract amount
    wire signed [W-1:0] a1;
    npuc_ovf #(.W(W), .BITS(ACT_BITS), .MODE(ACT_MODE)) u_act (.x(r0_a), .y(a1));
    wire signed [W-1:0] udec;
    generate
        if (VEC_MU != 0) begin : g_vmu
            npuc_vdecay #(.XW(XU), .MW(MW), .W(W), .SHIFT(DECAY_BITS), .ROUND(ROUND)) u_udec (.x(up[XU-1:0]), .mult(r0_mu), .y(udec));
        end else begin : g_cmu
            npuc_decay #(.W(W), .MULT(MU), .SHIFT(DECAY_BITS), .ROUND(ROUND)) u_udec (.x(up), .y(udec));
            wire _unused_ok = &{1'b0, r0_mu, 1'b0};
            localparam integer _unused_xu = XU;  // sizes the per-neuron multiplier only
        end
    endgenerate
    wire delayed_value = (TIMING == 1) && (RESET == 1);
    wire signed [W-1:0] vp = (delayed_value && sp_nz) ? RESET_VALUE : vq;
    wire signed [W-1:0] vdec;
    generate
        if (VEC_MV != 0) begin : g_vmv
            npuc_vdecay #(.XW(XV), .MW(MW), .W(W), .SHIFT(DECAY_BITS), .ROUND(ROUND)) u_vdec (.x(vp[XV-1:0]), .mult(r0_mv), .y(vdec));
            if (XV < W) begin : g_vnarrow
                wire _unused_ok = &{1'b0, vp[W-1:XV], 1'b0};
            end
        end else begin : g_cmv
            npuc_decay #(.W(W), .MULT(MV), .SHIFT(DECAY_BITS), .ROUND(ROUND)) u_vdec (.x(vp), .y(vdec));
            wire _unused_ok = &{1'b0, r0_mv, 1'b0};
            localparam integer _unused_xv = XV;
        end
    endgenerate
    wire signed [W-1:0] amt_prev;
    reg signed [W-1:0] r1_udec, r1_ash, r1_vdec, r1_bias, r1_amtp, r1_vmin, r1_dmin, r1_up;
    reg r1_spnz;
    always @(posedge clk) begin
        r1_up <= up;
        r1_udec <= udec;
        r1_ash <= a1 <<< ACT_SHIFT;
        r1_vdec <= vdec;
        r1_bias <= r0_bias;
        r1_amtp <= amt_prev;
        r1_spnz <= sp_nz;
        r1_vmin <= r0_vmin;
        r1_dmin <= r0_dmin;
    end

    // stage 2: current state u; decayed membrane plus bias
    wire signed [W-1:0] u0 = r1_udec + r1_ash;
    wire signed [W-1:0] u1;
    wire signed [W-1:0] u2;
    npuc_ovf #(.W(W), .BITS(ARITH_BITS), .MODE(ARITH_MODE)) u_uwrap (.x(u0), .y(u1));
    npuc_ovf #(.W(W), .BITS(U_BITS), .MODE(U_MODE)) u_uovf (.x(u1), .y(u2));
    wire clear_u = (CHARGE == 1) && (TIMING == 2) && (RESET == 1) && r1_spnz;
    reg signed [W-1:0] r2_u, r2_vb, r2_amtp, r2_vmin, r2_dmin, r2_up;
    reg r2_spnz;
    always @(posedge clk) begin
        r2_u <= clear_u ? ZERO : u2;
        r2_up <= r1_up;
        r2_vb <= r1_vdec + r1_bias;
        r2_amtp <= r1_amtp;
        r2_spnz <= r1_spnz;
        r2_vmin <= r1_vmin;
        r2_dmin <= r1_dmin;
    end

    // stage 3: membrane charge h
    wire signed [W-1:0] h0 = r2_vb + ((CHARGE == 1) ? r2_up : r2_u);
    wire signed [W-1:0] h1;
    npuc_ovf #(.W(W), .BITS(ARITH_BITS), .MODE(ARITH_MODE)) u_hwrap (.x(h0), .y(h1));
    wire signed [W-1:0] h2 = ((TIMING != 0) && (RESET == 0)) ? h1 - r2_amtp : h1;
    wire signed [W-1:0] h3 = ((TIMING == 2) && (RESET == 1) && r2_spnz) ? RESET_VALUE : h2;
    wire signed [W-1:0] h4;
    npuc_ovf #(.W(W), .BITS(V_BITS), .MODE(V_MODE)) u_vovf (.x(h3), .y(h4));
    reg signed [W-1:0] h, r3_u, r3_vmin, r3_dmin;
    always @(posedge clk) begin
        h <= h4;
        r3_u <= r2_u;
        r3_vmin <= r2_vmin;
        r3_dmin <= r2_dmin;
    end
    assign u = r3_u;
    wire signed [W-1:0] amt_now;

    // stage 4 (combinational, into the write-back): spike
    generate
        if (SPIKE == 1) begin : g_ternary
            wire hi = (COMPARE == 1) ? (h >= VTH) : (h > VTH);
            wire lo = (COMPARE == 1) ? (h <= VTH_LO) : (h < VTH_LO);
            assign s = hi ? ONE : (lo ? MONE : ZERO);
            assign amt_prev = (sp > ZERO) ? VTH : ((sp < ZERO) ? VTH_LO : ZERO);
            assign amt_now = (s > ZERO) ? VTH : ((s < ZERO) ? VTH_LO : ZERO);
        end else if (SPIKE == 2) begin : g_multilevel
            wire signed [W-1:0] prod = h * DIV_M;
            wire signed [W-1:0] q = prod >>> DIV_K;
            wire signed [W-1:0] qc = ((HAS_LMAX != 0) && (q > LMAX)) ? LMAX : q;
            assign s = (h < ZERO) ? ZERO : qc;
            assign amt_prev = sp * VTH;
            assign amt_now = s * VTH;
        end else if (SPIKE == 3) begin : g_bernoulli
            wire signed [W-1:0] d = h - VTH;
            assign s = (d >= r3_dmin) ? ONE : ZERO;
            assign amt_prev = sp_nz ? VTH : ZERO;
            assign amt_now = (s != ZERO) ? VTH : ZERO;
        end else begin : g_binary
            wire fire = (COMPARE == 1) ? (h >= VTH) : (h > VTH);
            assign s = fire ? ONE : ZERO;
            assign amt_prev = sp_nz ? VTH : ZERO;
            assign amt_now = fire ? VTH : ZERO;
        end
    endgenerate

    // reset and floor
    wire signed [W-1:0] v0 = ((TIMING == 0) && (RESET == 0)) ? h - amt_now :
                             ((TIMING == 0) && (RESET == 1) && (s != ZERO)) ? RESET_VALUE : h;
    generate
        if (HAS_VMIN != 0) begin : g_vmin
            assign v = (v0 < r3_vmin) ? r3_vmin : v0;
        end else begin : g_no_vmin
            assign v = v0;
            wire _unused_ok = &{1'b0, r3_vmin, 1'b0};
        end
        if (SPIKE != 3) begin : g_no_dmin
            wire _unused_ok = &{1'b0, r3_dmin, 1'b0};
        end
    endgenerate
endmodule
`default_nettype wire
