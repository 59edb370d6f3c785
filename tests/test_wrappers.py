"""The Snakemake wrappers (wrappers/dnahnet/*, snakemake-wrappers layout) run their own test Snakefiles."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pysam
import pytest
import torch

from dnahnet_cli.model.checkpoint import save_checkpoint
from dnahnet_cli.model.lm import DNAHNet
from dnahnet_cli.model.presets import get_preset

WRAPPERS = Path(__file__).resolve().parents[1] / "wrappers" / "dnahnet"
OUTPUTS = {"score-variants": ["scores.vcf.gz"], "essentiality": ["essentiality.tsv", "essentiality track.bed"],
           "segment": ["chunks.bed", "segment report.tsv"]}  # spaces: optional paths are quoted too


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    # a space in the model's path: the wrappers must quote --model like every other path
    return save_checkpoint(tmp_path_factory.mktemp("m") / "tiny model", DNAHNet(get_preset("tiny")), {"preset": "tiny"})


@pytest.mark.parametrize("name", list(OUTPUTS))
def test_wrapper_layout_and_test_snakefile(name, model, tmp_path):
    folder = WRAPPERS / name
    for part in ("wrapper.py", "environment.yaml", "meta.yaml", "test/Snakefile"):
        assert (folder / part).is_file(), part
    yaml = pytest.importorskip("yaml")  # comes with snakemake
    meta = yaml.safe_load((folder / "meta.yaml").read_text())
    assert {"name", "description", "input", "output", "params"} <= set(meta)
    snakemake = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
    if not Path(snakemake).exists():
        pytest.skip("snakemake is not installed (pip install -e '.[test]')")
    res = subprocess.run([snakemake, "-s", str(folder / "test" / "Snakefile"), "--cores", "1", "-d", str(tmp_path),
                          "--config", f"model={model}", "-q"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    for out in OUTPUTS[name]:
        assert (tmp_path / out).stat().st_size > 0, out
    log = next((tmp_path / "logs").glob("*.log")).read_text()
    assert "Traceback" not in log
    if name == "score-variants":
        with pysam.VariantFile(str(tmp_path / "scores.vcf.gz")) as vf:
            assert "DNAHNET_DLL" in vf.header.info and len(list(vf)) == 14
    if name == "essentiality":
        rows = [l for l in (tmp_path / "essentiality.tsv").read_text().splitlines() if not l.startswith("##")]
        assert len(rows) - 1 == 21


CLUSTER = WRAPPERS.parents[1] / "examples" / "cluster"


def test_cluster_profile_and_workflow(tmp_path):
    """The SLURM example: the profile is a valid Snakemake profile (a dry run resolves every rule through it,
    with the local executor standing in for SLURM, which this machine lacks)."""
    yaml = pytest.importorskip("yaml")
    profile = yaml.safe_load((CLUSTER / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm" and {"slurm_partition", "runtime", "mem_mb"} <= set(profile["default-resources"])
    snakemake = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
    if not Path(snakemake).exists():
        pytest.skip("snakemake is not installed (pip install -e '.[test]')")
    res = subprocess.run([snakemake, "-s", str(CLUSTER / "Snakefile"), "--profile", str(CLUSTER / "profiles" / "slurm"),
                          "--executor", "local", "--cores", "2", "-d", str(tmp_path), "-n"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    text = res.stdout + res.stderr
    for rule in ("score_variants", "essentiality", "segment"):
        assert rule in text
