"""The model card's plotting script (docs/results/model_card/plot_curves.py) on the committed training logs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]
CARD = ROOT / "docs" / "results" / "model_card"
V6 = f"tiny@8192={CARD / 'dnahnet.train_metrics.jsonl'}"


def _plot(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CARD / "plot_curves.py"), *args], capture_output=True, text=True,
                          cwd=ROOT)


def test_new_windows_keeps_the_step0_point_as_its_own_segment(tmp_path):
    res = _plot("--continues", f"{V6}={CARD / 'v5' / 'curves.json'}", "--new-windows", V6, V6, str(tmp_path / "c"))
    assert res.returncode == 0, res.stderr
    (curve,) = json.loads((tmp_path / "c.json").read_text())
    prior = json.loads((CARD / "v5" / "curves.json").read_text())
    tiny = next(c for c in prior if c["name"] == "tiny")["points"]
    n_prior, n_own = len(tiny), sum('"val"' in line for line in (CARD / "dnahnet.train_metrics.jsonl").open())
    assert curve["continues"] == {"prior_train_flops": tiny[-1][0], "prior_points": n_prior, "new_windows": True}
    assert len(curve["points"]) == n_prior + n_own  # step 0 kept: it is v5 on the new windows
    assert curve["points"][n_prior][0] == curve["continues"]["prior_train_flops"]
    assert (tmp_path / "c.png").stat().st_size > 0


def test_new_windows_for_a_run_that_does_not_continue_is_a_usage_error(tmp_path):
    res = _plot("--new-windows", V6, V6, str(tmp_path / "c"))
    assert res.returncode == 2
    assert "--new-windows" in res.stderr and "not a --continues run" in res.stderr
    assert not (tmp_path / "c.png").exists() and not (tmp_path / "c.json").exists()
