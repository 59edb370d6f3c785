"""bench/memory.py, the CPU peak-memory probe the benchmark suite runs in a subprocess per model: its command line
(it had no --help: a user's `--help` was parsed as a JSON spec) and one real measurement."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "memory.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_help_describes_the_arguments():
    res = _run("--help")
    assert res.returncode == 0, res.stderr
    assert "spec" in res.stdout and "lengths" in res.stdout and "--fasta" in res.stdout
    assert "VmHWM" in res.stdout  # the method, from the module docstring


def _can_reset_peak_rss() -> bool:
    try:  # Linux; some sandboxes lack the file or refuse the write
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _can_reset_peak_rss(), reason="needs a writable /proc/self/clear_refs (Linux)")
def test_one_forward_per_length_reports_its_peak():
    spec = {"name": "tiny-tpp", "preset": "tiny-tpp", "router": None, "role": "tpp"}
    res = _run(json.dumps(spec), "256", "512")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(out) == {"256", "512"}
    assert all(v["peak_rss_mib"] > 50 and v["forward_mib"] >= 0 for v in out.values())  # torch alone is > 50 MiB
