"""Every example script runs (quick mode): train -> checkpoint -> npuc compile -> verify."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("name", ["npuc_nn", "snntorch", "spikingjelly", "norse", "sinabs"])
def test_example_runs(name, tmp_path):
    proc = subprocess.run([sys.executable, str(EXAMPLES / f"{name}_digits.py"), "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    text = proc.stdout + proc.stderr
    assert "mismatches" in text and " 0 mismatches" in text
    assert "differs" not in text
