"""The OpenMP wait policy the `dnahnet` command applies before torch loads (dnahnet_cli/model/openmp.py)."""

from __future__ import annotations

import os
import subprocess
import sys


def _info_device(**env_overrides: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(env_overrides)
    res = subprocess.run([sys.executable, "-m", "dnahnet_cli", "info", "--device"], env=env, capture_output=True,
                         text=True, check=True)
    return next(line for line in res.stdout.splitlines() if line.startswith("openmp_wait"))


def test_the_command_shortens_the_spin_before_torch_loads():
    assert "idle workers sleep after 10000 spins (GOMP_SPINCOUNT)" in _info_device()


def test_a_users_setting_is_left_alone():
    assert "as set in the environment" in _info_device(GOMP_SPINCOUNT="300000")
    assert "as set in the environment" in _info_device(OMP_WAIT_POLICY="ACTIVE")


def test_importing_the_package_changes_nothing():
    code = ("import os; from dnahnet_cli.model.precision import describe_compute; "
            "print(describe_compute()['openmp_wait']); print(os.environ.get('GOMP_SPINCOUNT'))")
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    reported, value = res.stdout.splitlines()
    assert reported.startswith("OpenMP default") and value == "None"


def _threads_row(env: dict, preexec=None) -> int:
    res = subprocess.run([sys.executable, "-m", "dnahnet_cli", "info", "--device"], env=env, capture_output=True,
                         text=True, check=True, preexec_fn=preexec)
    return int(next(line for line in res.stdout.splitlines() if line.startswith("threads")).split()[1])


def test_threads_default_to_the_cores_this_process_may_use():
    """No --threads and no OMP_NUM_THREADS: torch gets the cores of the process's CPU affinity (a cgroup or
    `taskset` limit), not the machine's count; --threads and DNAHNET_THREADS win."""
    if not hasattr(os, "sched_setaffinity"):
        import pytest

        pytest.skip("no CPU affinity API on this platform")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "DNAHNET_THREADS")}
    assert _threads_row(env) == len(os.sched_getaffinity(0))
    one_core = min(os.sched_getaffinity(0))
    assert _threads_row(env, preexec=lambda: os.sched_setaffinity(0, {one_core})) == 1
    assert _threads_row({**env, "DNAHNET_THREADS": "1"}) == 1  # (torch caps a request above the core count)
