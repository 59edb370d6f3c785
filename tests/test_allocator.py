"""Host-memory policy (model/allocator.py): on glibc, freed tensor memory is reused instead of being unmapped and
faulted in again; DNAHNET_MALLOC=system leaves malloc alone. Each case is its own process (malloc settings are
per process)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# allocate and drop a 64 MiB tensor 10 times after 10 warm-up rounds; report the page faults of those 10 (the
# heap needs a few rounds to hold a free block big enough for an aligned 64 MiB request: 6 here, then none)
PROBE = """
import json, resource, torch
from dnahnet_cli.model.allocator import keep_freed_memory
policy = keep_freed_memory()
for _ in range(10):
    torch.ones(16 << 20)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.ones(16 << 20)
print(json.dumps({"policy": policy, "again": keep_freed_memory() == policy,
                  "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _probe(mode: str) -> dict:
    env = {**os.environ, "DNAHNET_MALLOC": mode, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="the policy only exists for glibc malloc (a no-op elsewhere)")
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    keep, system = _probe("keep"), _probe("system")
    assert keep["policy"].startswith("glibc malloc keeps freed memory") and keep["again"]
    assert system["policy"] == "system malloc (DNAHNET_MALLOC=system)"
    pages = 10 * (64 << 20) // 4096  # what 10 fresh 64 MiB mappings fault in with 4 KiB pages
    assert system["faults"] > pages // 2  # glibc maps and unmaps every such block (the cost being removed)
    assert keep["faults"] < pages // 50, keep  # reused: nearly no new pages


def test_info_device_reports_the_policy(tmp_path):
    from typer.testing import CliRunner

    from dnahnet_cli.cli import app

    res = CliRunner().invoke(app, ["info", "--device"])
    assert res.exit_code == 0, res.output
    assert "host_memory" in res.output and "malloc" in res.output


def test_bad_dnahnet_malloc_is_a_one_line_usage_error(tmp_path):
    out = tmp_path / "scores.tsv"
    fasta = Path(__file__).resolve().parents[1] / "examples" / "ecoli_k12_20kb.fa"
    env = {**os.environ, "DNAHNET_MALLOC": "kepe"}
    res = subprocess.run([sys.executable, "-m", "dnahnet_cli", "score-seqs", str(fasta), "-o", str(out)], env=env,
                         capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.strip() == "dnahnet: error: DNAHNET_MALLOC='kepe': choose keep or system (or leave it unset)"
    assert "Traceback" not in res.stderr and not out.exists()


def test_reporting_the_policy_does_not_apply_it():
    code = ("from dnahnet_cli.model import allocator; from dnahnet_cli.model.precision import describe_compute; "
            "print(describe_compute()['host_memory']); print(allocator._applied)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    reported, applied = res.stdout.splitlines()
    assert reported.startswith("system malloc") and applied == "None"
