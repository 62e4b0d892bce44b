"""Every example script runs (quick mode): train -> checkpoint -> npuc compile -> verify."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


# Each example verifies in a child process (the guard cannot see it): Lava and RTL, sinabs RTL only.
@pytest.mark.slow
@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.lava, pytest.mark.rtl])
                                  for n in ("npuc_nn", "snntorch", "spikingjelly", "norse")]
                         + [pytest.param("sinabs", marks=pytest.mark.rtl)])
def test_example_runs(name, tmp_path):
    proc = subprocess.run([sys.executable, str(EXAMPLES / f"{name}_digits.py"), "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    text = proc.stdout + proc.stderr
    assert "mismatches" in text and " 0 mismatches" in text
    assert "differs" not in text
