"""bench/gpu_run.sh, the one-call GPU session script, checked on a CPU: its dry run, and its refusals."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_run.sh"
STEPS = ("env", "kernels", "check", "pytest_gpu", "bench")


def run_script(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT.relative_to(ROOT)), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def sentinel_env(tmp_path: Path) -> tuple[dict, Path]:
    """An environment whose nvidia-smi and python leave a mark when they run, so a dry run that touched a GPU
    probe or an interpreter would show it."""
    bin_dir, marks = tmp_path / "bin", tmp_path / "marks"
    bin_dir.mkdir()
    marks.mkdir()
    for name in ("nvidia-smi", "python-sentinel"):
        tool = bin_dir / name
        tool.write_text(f"#!/bin/sh\ntouch '{marks}/{name}'\nexit 1\n")
        tool.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHON=str(bin_dir / "python-sentinel"), CUDA_VISIBLE_DEVICES="")
    return env, marks


def summary_statuses(path: Path) -> dict[str, str]:
    rows = [line.split() for line in path.read_text().splitlines() if line and not line.startswith("#")]
    assert rows[0][:4] == ["step", "status", "exit", "seconds"]
    return {row[0]: row[1] for row in rows[1:]}


def test_dry_run_records_every_step_without_a_gpu(tmp_path):
    assert os.access(SCRIPT, os.X_OK), "bench/gpu_run.sh must be executable"
    env, marks = sentinel_env(tmp_path)
    out = tmp_path / "out"
    proc = run_script(str(out), "--dry-run", env=env)
    assert proc.returncode == 0, proc.stderr
    assert list(marks.iterdir()) == [], "a dry run must not run nvidia-smi or python"

    statuses = summary_statuses(out / "summary.txt")
    for step in STEPS:
        assert statuses.get(step) == "dry-run", (step, statuses)

    commands = [line for line in (out / "commands.txt").read_text().splitlines() if not line.startswith("#")]
    assert any("dnahnet check" in c for c in commands)
    assert any("pytest" in c and "-m gpu" in c and "tests/" in c for c in commands)
    bench = [c for c in commands if "bench/run.py" in c]
    assert len(bench) == 1 and "--device cuda" in bench[0]
    assert f"--out {out}/bench_gpu.json" in bench[0]
    for c in commands:  # every recorded command is also printed
        assert f"+ {c}" in proc.stdout
    # nothing was executed, so no step logs
    assert sorted(p.name for p in out.iterdir()) == ["commands.txt", "summary.txt"]


def test_dry_run_with_wheels_records_the_optional_installs(tmp_path):
    env, marks = sentinel_env(tmp_path)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    proc = run_script(str(tmp_path / "out"), "--dry-run", "--wheels", str(wheels), env=env)
    assert proc.returncode == 0, proc.stderr
    assert list(marks.iterdir()) == []
    commands = (tmp_path / "out" / "commands.txt").read_text()
    for pkg in ("mamba-ssm", "causal-conv1d", "flash-attn"):
        assert f"pip install --disable-pip-version-check --no-index --only-binary=:all: --find-links {wheels} {pkg}" \
            in commands


def test_missing_out_dir_is_a_usage_error():
    proc = run_script()
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "usage" in lines[0], proc.stderr
    assert proc.stdout == ""


def test_refuses_without_a_gpu(tmp_path):
    if shutil.which("nvidia-smi"):
        pytest.skip("nvidia-smi is present: this machine may have a GPU")
    out = tmp_path / "out"
    proc = run_script(str(out))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no GPU" in lines[0] and "--dry-run" in lines[0], proc.stderr
    assert not out.exists()
