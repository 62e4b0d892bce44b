"""Reset the hidden state that SNN library modules keep between forward calls.

The compiled graph always starts from the libraries' reset state, so the model
is reset before tracing (and again afterwards, so tracing leaves no state
behind). snntorch neurons keep ``mem``/``syn``/``spk`` buffers, SpikingJelly
memory modules keep ``v``, sinabs layers keep ``v_mem``/``i_syn`` (set back to
the uninitialised ``[0]`` shape, so a new batch size re-creates them with zeros
instead of resampling old rows). norse cells keep no state.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def reset_library_state(model: nn.Module) -> None:
    """Put every stateful library module of ``model`` back into its initial state."""
    for m in model.modules():
        mod = type(m).__module__
        if mod.startswith("snntorch.") and hasattr(m, "reset_mem"):
            m.reset_mem()
        elif mod.startswith("spikingjelly.") and hasattr(m, "reset") and hasattr(m, "_memories"):
            m.reset()
        elif mod.startswith("sinabs.") and hasattr(m, "reset_states") and hasattr(m, "is_state_initialised"):
            for name, buf in list(m.named_buffers(recurse=False)):
                m.register_buffer(name, torch.zeros(0, device=buf.device))
