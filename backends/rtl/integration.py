"""Files that put an emitted design into other tools' projects (written, not run here):

* ``filelist.f``: every Verilog source in dependency order, the AXI4-Stream wrapper last,
  paths relative to the list (``verilator -F``, ``xrun -F``; ``iverilog -c`` from ``rtl/``);
* ``vivado.tcl``: sourced in an open Vivado project, adds the sources and the memory images
  and sets ``NPUC_MEM_DIR`` to this folder's ``mem/`` (absolute, resolved when sourced);
* ``quartus.tcl``: the same as Quartus global assignments (``source`` it from the project's
  Tcl or ``quartus_sh -t``).

The memory path is resolved from the script's own location when the script runs, so the
generated text holds no absolute path and stays byte-identical for the same design.
"""

from __future__ import annotations


def _tcl_list(items: list[str]) -> str:
    return "{\n" + "".join(f"    {i}\n" for i in items) + "}"


def _vivado(top: str, sources: list[str], mems: list[str]) -> str:
    return f"""# Add the npuc design {top} to the open Vivado project: `source <this folder>/vivado.tcl`.
# Top level: {top} (valid/ready) or {top}_axis (AXI4-Stream); see README.
set npuc_dir [file dirname [file normalize [info script]]]
set npuc_sources {_tcl_list(sources)}
set npuc_mems {_tcl_list(mems)}
foreach f $npuc_sources {{ add_files -norecurse [file join $npuc_dir $f] }}
foreach f $npuc_mems {{
    add_files -norecurse [file join $npuc_dir $f]
    set_property file_type {{Memory File}} [get_files [file join $npuc_dir $f]]
}}
# $readmemh reads {{`NPUC_MEM_DIR, "/<name>.hex"}}: point it at this folder's mem/ for synthesis and simulation
set npuc_defs [get_property verilog_define [current_fileset]]
lappend npuc_defs "NPUC_MEM_DIR=\\"$npuc_dir/mem\\""
set_property verilog_define $npuc_defs [current_fileset]
set_property verilog_define $npuc_defs [get_filesets sim_1]
"""


def _quartus(top: str, sources: list[str], mems: list[str]) -> str:
    return f"""# Add the npuc design {top} to the open Quartus project: `source <this folder>/quartus.tcl`
# from the project's Tcl (or quartus_sh -t after project_open). Top level: {top} or {top}_axis.
set npuc_dir [file dirname [file normalize [info script]]]
set npuc_sources {_tcl_list(sources)}
set npuc_mems {_tcl_list(mems)}
foreach f $npuc_sources {{ set_global_assignment -name VERILOG_FILE [file join $npuc_dir $f] }}
foreach f $npuc_mems {{ set_global_assignment -name SOURCE_FILE [file join $npuc_dir $f] }}
# $readmemh reads {{`NPUC_MEM_DIR, "/<name>.hex"}}: point it at this folder's mem/
set_global_assignment -name VERILOG_MACRO "NPUC_MEM_DIR=\\"$npuc_dir/mem\\""
"""


def files(top: str, sources: list[str], mems: list[str]) -> dict[str, str]:
    """``{name: text}`` of the integration files for ``sources`` (dependency order) and ``mems``."""
    return {
        "filelist.f": "".join(f"{s}\n" for s in sources),
        "vivado.tcl": _vivado(top, sources, mems),
        "quartus.tcl": _quartus(top, sources, mems),
    }
