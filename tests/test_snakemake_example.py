"""The examples/Snakefile workflow runs end to end with snakemake on CPU and produces well-formed outputs."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pysam
import pytest
import torch

from dnahnet_cli.model.checkpoint import save_checkpoint
from dnahnet_cli.model.default_model import DEFAULT_MODEL_DIR
from dnahnet_cli.model.lm import DNAHNet
from dnahnet_cli.model.presets import get_preset

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_snakemake_workflow(tmp_path):
    snakemake = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
    if not Path(snakemake).exists():
        pytest.skip("snakemake is not installed (pip install -e '.[test]')")
    args = []
    if not (DEFAULT_MODEL_DIR / "config.json").is_file():  # before a default model ships, use a fresh one
        torch.manual_seed(0)
        save_checkpoint(tmp_path / "model", DNAHNet(get_preset("tiny")), {"preset": "tiny"})
        args = ["--config", f"model={tmp_path / 'model'}"]
    work = tmp_path / "results"
    # from a copy under a folder with a space: the rules once passed such paths to the shell unquoted
    examples = tmp_path / "my checkout" / "examples"
    shutil.copytree(EXAMPLES, examples, ignore=shutil.ignore_patterns("cluster", "*.fa.gz*"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    res = subprocess.run([snakemake, "-s", str(examples / "Snakefile"), "--cores", "1", "-d", str(work), *args],
                         capture_output=True, text=True, timeout=1200, env=env)
    logs = "".join(p.read_text() for p in sorted((work / "logs").glob("*.log"))) if (work / "logs").exists() else ""
    assert res.returncode == 0, res.stderr[-2000:] + logs[-2000:]
    rows = [l.split("\t") for l in (work / "scores.tsv").read_text().splitlines() if not l.startswith("##")]
    header, body = rows[0], rows[1:]
    assert header[:5] == ["#chrom", "pos", "id", "ref", "alt"] and len(body) == 14
    assert all(r[header.index("status")] == "OK" for r in body)
    with pysam.VariantFile(str(work / "scores.vcf.gz")) as vcf:
        assert "DNAHNET_DLL" in vcf.header.info and len(list(vcf)) == 14
    genes = [l.split("\t") for l in (work / "essentiality.tsv").read_text().splitlines() if not l.startswith("##")]
    assert "essentiality_score" in genes[0] and len(genes) > 15
    bed = [l.split("\t") for l in (work / "chunks.bed").read_text().splitlines()]
    assert bed and all(int(r[1]) < int(r[2]) <= 20000 for r in bed)
    assert "cds_codon1" in (work / "segment_report.tsv").read_text()
    assert (work / "segment_report.json").is_file()  # declared, so snakemake tracks (and cleans) it too
