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
