    // the neuron unit's side of an accumulator bank (npuc_acc_bank; npuc_syn, npuc_attn): it reads
    // L lanes of accumulated input per word and clears what it has read (inlined by the emitter)
    input  wire              nu_re,
    input  wire [AAW-1:0]    nu_raddr,
    output wire [L*AW-1:0]   nu_rdata,
    input  wire              nu_clr,
    input  wire [AAW-1:0]    nu_caddr,
    input  wire [L-1:0]      nu_clane
