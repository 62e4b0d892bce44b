"""``npuc report``: print what a build contains and what it costs."""

from __future__ import annotations

import argparse
import json

from .builddir import BuildDir
from .ir.dump import dump


def report_cli(args: argparse.Namespace) -> int:
    bd = BuildDir(args.dir)
    path = bd.path / "report.json"
    if args.json:
        if not path.is_file():
            print(json.dumps({"graph": bd.float_graph().name, "nodes": len(bd.float_graph())}, indent=1))
        else:
            print(path.read_text())
        return 0
    if path.is_file():
        from .report_tables import print_report

        print_report(json.loads(path.read_text()))
    else:
        print(dump(bd.float_graph()))
    return 0
