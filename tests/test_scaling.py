"""The scaling study's plumbing, in miniature (2 budgets x 2 sizes x 2 architectures, a few steps each): runs,
budgets honoured, fits, JSON and plot; a second call reuses every finished run. The real sweep is a benchmark."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mini_scaling_study(tmp_path):
    cmd = [sys.executable, str(ROOT / "bench" / "scaling.py"), "--mini", "--out", str(tmp_path)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    data = json.loads((tmp_path / "scaling.json").read_text())
    assert len(data["runs"]) == 8 and (tmp_path / "scaling.png").stat().st_size > 10_000
    for run in data["runs"]:
        # tokens match the budget (rounded up to whole steps of 2 x 63 predicted nucleotides)
        assert run["budget"] <= run["tokens"] * run["flops_per_nt"] < run["budget"] + 2 * 63 * run["flops_per_nt"] * 2
        assert 1.5 < run["val_bpn"] < 2.5
    sizes = {(r["arch"], r["scale"]): r["params"] for r in data["runs"]}
    assert sizes[("dnahnet", 0.5)] < sizes[("dnahnet", 1.0)] and sizes[("tpp", 0.5)] < sizes[("tpp", 1.0)]
    for arch in ("dnahnet", "tpp"):
        fit = data["fits"][arch]
        assert [f["budget"] for f in fit["frontier"]] == [2e9, 6e9]
        assert isinstance(fit["power_law"]["k"], float) and fit["power_law"]["k_stderr"] is None  # 2 budgets
    t = time.monotonic()
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 0 and time.monotonic() - t < 20  # nothing retrained
    assert json.loads((tmp_path / "scaling.json").read_text())["runs"] == data["runs"]
    # --reuse: a new study in another folder reads the recorded runs back instead of training them
    other = tmp_path / "extended"
    reused = subprocess.run([*cmd[:-1], str(other), "--reuse", str(tmp_path / "scaling.json")],
                            capture_output=True, text=True)
    assert reused.returncode == 0, reused.stderr
    runs = json.loads((other / "scaling.json").read_text())["runs"]
    assert not (other / "runs").exists() and [r["val_bpn"] for r in runs] == [r["val_bpn"] for r in data["runs"]]
    assert all(r["reused_from"] == str(tmp_path / "scaling.json") for r in runs)
    tables = subprocess.run([sys.executable, str(ROOT / "bench" / "scaling.py"), "--report",
                             str(tmp_path / "scaling.json")], capture_output=True, text=True)
    assert tables.returncode == 0, tables.stderr
    rows = [line for line in tables.stdout.splitlines() if line.startswith("| dnaHNet (3,2) |")]
    assert len(rows) == 4 + 1  # four runs, one frontier row
    assert f"{data['fits']['dnahnet']['frontier'][0]['loss']:.4f}" in rows[-1]
    bad = subprocess.run([*cmd[:-1], str(other), "--reuse", str(tmp_path / "scaling.json"), "--dtype", "float32"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "other settings (dtype)" in bad.stderr


def test_fits_recover_a_known_frontier_and_exponent():
    import math

    sys.path.insert(0, str(ROOT / "bench"))
    import scaling

    # isoFLOP parabola in log10 N with its minimum at N = 1e6 and loss 1.9
    points = [{"params": n, "val_bpn": 1.9 + 0.05 * (math.log10(n) - 6) ** 2} for n in (2.5e5, 5e5, 1e6, 2e6, 4e6)]
    loss, log_n = scaling.fit_frontier(points)
    assert abs(loss - 1.9) < 1e-9 and abs(log_n - 6) < 1e-9
    budgets = [1e12, 3e12, 1e13, 3e13]
    law = scaling.fit_power_law(budgets, [2.5 * c ** -0.05 for c in budgets])
    assert abs(law["k"] - 0.05) < 1e-9 and abs(law["a"] - 2.5) < 1e-6 and law["k_stderr"] < 1e-6


def test_reuse_needs_the_same_steps_parameters_and_precision():
    sys.path.insert(0, str(ROOT / "bench"))
    import scaling

    run = {"name": "tpp-x1-C1e+12", "steps": 13, "params": 887520}
    prior = {**run, "val_bpn": 1.98, "first_val_bpn": 2.0, "reused_from": "old.json", "precision": "float32"}
    assert scaling.reuse_run(run, prior, "float32")["val_bpn"] == 1.98
    assert scaling.reuse_run(run, prior, "bfloat16") is None  # trained at another precision: train again
    mixed = scaling.reuse_run(run, prior, "bfloat16", any_precision=True)  # unless asked to take it as it is
    assert mixed["val_bpn"] == 1.98 and mixed["precision"] == "float32"  # and it keeps its own precision
    assert scaling.reuse_run(run, {**prior, "steps": 14}, "bfloat16", any_precision=True) is None
    assert scaling.reuse_run(run, {**prior, "steps": 14}, "float32") is None
    assert scaling.reuse_run(run, None, "float32") is None
    legacy = {k: v for k, v in prior.items() if k != "precision"}
    assert scaling.reuse_run(run, legacy, "bfloat16")["precision"] == "not recorded"


def test_seeds_are_averaged_and_their_spread_reported():
    sys.path.insert(0, str(ROOT / "bench"))
    import scaling

    runs = scaling.plan(["tpp"], [1e12], [0.5], 1024, 8, seeds=(0, 1))
    assert [r["name"] for r in runs] == ["tpp-x0.5-C1e+12", "tpp-x0.5-C1e+12-s1"] and runs[1]["seed"] == 1
    done = [{**runs[0], "val_bpn": 1.96}, {**runs[1], "val_bpn": 1.97}]
    (point,) = scaling.mean_over_seeds(done)
    assert abs(point["val_bpn"] - 1.965) < 1e-12 and point["seeds"] == 2
    spread = scaling.seed_spread(done)
    assert spread["points"] == 1 and abs(spread["max_range"] - 0.01) < 1e-12
    assert scaling.seed_spread(done[:1]) is None
