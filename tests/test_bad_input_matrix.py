"""Bad-input matrix (issue 16): every command, every class of bad input, one table. Each case must exit 2 with a
single stderr line that names the culprit (file, option or record), no traceback, and no file left at `-o` or
beside it. Cases run in-process through `dnahnet_cli.cli.main` (the console script's code path), so the whole
matrix costs seconds."""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest
import torch

from dnahnet_cli.cli import main
from dnahnet_cli.model.checkpoint import save_checkpoint
from dnahnet_cli.model.lm import DNAHNet
from dnahnet_cli.model.presets import get_preset

EX = Path(__file__).resolve().parents[1] / "examples"
HDR = "##fileformat=VCFv4.2\n##contig=<ID=NC_000913.3,length=20000>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
GFF_HDR = "##gff-version 3\n"


@pytest.fixture(scope="module")
def d(tmp_path_factory) -> Path:
    """Every bad (and a few good) input files the cases refer to as {d}/NAME."""
    d = tmp_path_factory.mktemp("bad")
    shutil.copy(EX / "ecoli_k12_20kb.fa", d / "g.fa")
    shutil.copy(EX / "ecoli_k12_20kb.gff3", d / "a.gff3")
    (d / "a.gff3.gz").write_bytes(gzip.compress((EX / "ecoli_k12_20kb.gff3").read_bytes()))  # plain gzip
    (d / "dms_as_labels.csv").write_text("mutant,DMS_score\nM1H,0.1475\n")  # a DMS table given as --labels
    shutil.copy(EX / "ecoli_k12_20kb.vcf", d / "v.vcf")
    torch.manual_seed(0)
    save_checkpoint(d / "m", DNAHNet(get_preset("tiny")), {"preset": "tiny"})
    files = {
        "empty.fa": "", "junk.fa": "hello world\n", "dup.fa": ">a\nACGTACGTAC\n>a\nACGTTTTTTT\n",
        "badbase.fa": ">a\nACG!TACGT\n", "noname.fa": ">\nACGT\n",
        "empty.vcf": "", "nohdr.vcf": "NC_000913.3\t5\t.\tA\tG\t.\t.\t.\n", "pos0.vcf": HDR + "NC_000913.3\t0\t.\tA\tG\t.\t.\t.\n",
        "posbig.vcf": HDR + "NC_000913.3\t999999\t.\tA\tG\t.\t.\t.\n", "badpos.vcf": HDR + "NC_000913.3\tabc\t.\tA\tG\t.\t.\t.\n",
        "fewcols.vcf": HDR + "NC_000913.3\t5\t.\tA\n", "unkcontig.vcf": HDR.replace("NC_000913.3,length=20000", "chrZ") + "chrZ\t5\t.\tA\tG\t.\t.\t.\n",
        "refmm.vcf": HDR + "NC_000913.3\t1\t.\tT\tG\t.\t.\t.\n",
        "lenmm.vcf": HDR.replace("length=20000", "length=5") + "NC_000913.3\t1\t.\tA\tG\t.\t.\t.\n",
        "badref.vcf": HDR + "NC_000913.3\t5\t.\tQ\tG\t.\t.\t.\n",
        "empty.gff3": "", "badcols.gff3": GFF_HDR + "a\tb\tc\n",
        "startgtend.gff3": GFF_HDR + "NC_000913.3\tx\tgene\t500\t100\t.\t+\t.\tID=g1\n",
        "badstrand.gff3": GFF_HDR + "NC_000913.3\tx\tgene\t100\t500\t.\t*\t.\tID=g1\n",
        "nogenes.gff3": GFF_HDR + "NC_000913.3\tx\tregion\t1\t20000\t.\t+\t.\tID=r\n",
        "wrongseq.gff3": GFF_HDR + "chrZ\tx\tgene\t100\t500\t.\t+\t.\tID=g1\nchrZ\tx\tCDS\t100\t500\t.\t+\t0\tParent=g1\n",
        "badcoord.gff3": GFF_HDR + "NC_000913.3\tx\tgene\tone\t500\t.\t+\t.\tID=g1\n",
        "empty.txt": "", "map_bad.tsv": "onlyonecolumn\n", "bad.toml": "steps = = 3\n", "unknown.toml": "stepz = 3\n",
        "dms_nocols.csv": "a,b\n1,2\n", "dms_badmut.csv": "mutant,score\nXYZ,1.0\n",
        "dms_ok.csv": "mutant,score\nM1A,1.0\nR2A,0.5\n",
        "dms_span.csv": "mutant,score\nM1A,1.0\nM1A:T9A,0.5\n", "dms_wtmm.csv": "mutant,score\nA2G,1.0\n",
        "dms_past.csv": "mutant,score\nM1A,1.0\nM9999A,0.5\n", "dms_badscore.csv": "mutant,score\nM1A,high\n",
    }
    for name, text in files.items():
        (d / name).write_text(text)
    (d / "binary.vcf").write_bytes(bytes(range(256)) * 4)
    good_gz = gzip.compress((EX / "ecoli_k12_20kb.gff3").read_bytes())
    (d / "trunc.gff3.gz").write_bytes(good_gz[: len(good_gz) // 2])
    fa_gz = gzip.compress((EX / "ecoli_k12_20kb.fa").read_bytes())
    (d / "trunc.fa.gz").write_bytes(fa_gz[: len(fa_gz) // 2])
    vcf_gz = gzip.compress(((d / "v.vcf").read_text() * 50).encode())
    (d / "trunc.vcf.gz").write_bytes(vcf_gz[: len(vcf_gz) // 2])
    import pysam  # a real BCF, then cut in half: a broken binary input must fail like a broken text one

    with pysam.VariantFile(str(d / "v.vcf")) as src, pysam.VariantFile(str(d / "whole.bcf"), "wb", header=src.header) as out:
        for rec in src:
            out.write(rec)
    bcf = (d / "whole.bcf").read_bytes()
    (d / "trunc.bcf").write_bytes(bcf[: len(bcf) // 2])
    (d / "emptydir").mkdir()
    (d / "badcfg").mkdir()
    (d / "badcfg" / "config.json").write_text("{")
    shutil.copytree(d / "m", d / "truncw")
    w = d / "truncw" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    (d / "existing.txt").write_text("x")
    (d / "out").mkdir()
    (d / "both.toml").write_text(f'preset = "tiny"\ninit = "{d / "m"}"\n')
    b = bytearray(fa_gz)  # damaged inside the deflate stream: zlib.error, not the OSError of a bad CRC
    b[30:94] = bytes((i * 97 + 13) % 256 for i in range(64))
    (d / "corrupt.fa.gz").write_bytes(bytes(b))
    return d


SV = ["score-variants", "{d}/g.fa"]
SS = ["score-seqs"]
ES = ["essentiality", "{d}/g.fa"]
SG = ["segment", "{d}/g.fa"]
DMS = ["eval", "dms", "--genome", "{d}/g.fa", "--gff", "{d}/a.gff3", "--gene", "thrA", "--dms", "{d}/dms_badmut.csv"]
DMS_OK = [*DMS[:8], "--dms", "{d}/dms_ok.csv"]
TR = ["train", "--data", "{d}/g.fa", "--val", "{d}/g.fa", "--preset", "tiny", "--out", "{d}/out/run"]
M = ["--model", "{d}/m"]
O = ["-o", "{d}/out/x.tsv"]

CASES: list[tuple[str, list[str], list[str]]] = [
    # -- score-variants: inputs
    ("sv-missing-fasta", ["score-variants", "{d}/nope.fa", "{d}/v.vcf", *M, *O], ["nope.fa"]),
    ("sv-empty-fasta", ["score-variants", "{d}/empty.fa", "{d}/v.vcf", *M, *O], ["empty.fa"]),
    ("sv-junk-fasta", ["score-variants", "{d}/junk.fa", "{d}/v.vcf", *M, *O], ["junk.fa"]),
    ("sv-dup-fasta", ["score-variants", "{d}/dup.fa", "{d}/v.vcf", *M, *O], ["duplicate"]),
    ("sv-trunc-fasta", ["score-variants", "{d}/trunc.fa.gz", "{d}/v.vcf", *M, *O], ["trunc.fa.gz"]),
    ("sv-fasta-is-dir", ["score-variants", "{d}/emptydir", "{d}/v.vcf", *M, *O], ["emptydir"]),
    ("sv-missing-vcf", [*SV, "{d}/nope.vcf", *M, *O], ["nope.vcf"]),
    ("sv-trunc-bcf", [*SV, "{d}/trunc.bcf", *M, *O], ["trunc.bcf"]),
    ("sv-empty-vcf", [*SV, "{d}/empty.vcf", *M, *O], ["empty.vcf"]),
    ("sv-nohdr-vcf", [*SV, "{d}/nohdr.vcf", *M, *O], ["nohdr.vcf"]),
    ("sv-binary-vcf", [*SV, "{d}/binary.vcf", *M, *O], ["binary.vcf"]),
    ("sv-pos0", [*SV, "{d}/pos0.vcf", "--strict", *M, *O], ["pos0.vcf", "POS 0"]),
    ("sv-posbig-strict", [*SV, "{d}/posbig.vcf", "--strict", *M, *O], ["posbig.vcf", "999999"]),
    ("sv-badpos", [*SV, "{d}/badpos.vcf", *M, *O], ["badpos.vcf", "line 4"]),
    ("sv-fewcols", [*SV, "{d}/fewcols.vcf", *M, *O], ["fewcols.vcf", "line 4"]),
    ("sv-unknown-contig", [*SV, "{d}/unkcontig.vcf", *M, *O], ["chrZ", "--auto-chr", "--chrom-map"]),
    ("sv-gff-as-vcf", [*SV, "{d}/a.gff3.gz", *M, *O], ["a.gff3.gz"]),  # spooled: the message named the spool
    ("sv-contig-length", [*SV, "{d}/lenmm.vcf", *M, *O], ["lenmm.vcf", "length"]),
    ("sv-ref-mismatch-strict", [*SV, "{d}/refmm.vcf", "--strict", *M, *O], ["refmm.vcf", "REF"]),
    ("sv-trunc-vcf", [*SV, "{d}/trunc.vcf.gz", *M, *O], ["trunc.vcf.gz"]),
    ("sv-vcf-is-dir", [*SV, "{d}/emptydir", *M, *O], ["emptydir"]),
    ("sv-missing-chrom-map", [*SV, "{d}/v.vcf", "--chrom-map", "{d}/nope.tsv", *M, *O], ["nope.tsv"]),
    ("sv-bad-chrom-map", [*SV, "{d}/v.vcf", "--chrom-map", "{d}/map_bad.tsv", *M, *O], ["map_bad.tsv"]),
    ("sv-missing-gff", [*SV, "{d}/v.vcf", "--gff", "{d}/nope.gff3", *M, *O], ["nope.gff3"]),
    ("sv-trunc-gff", [*SV, "{d}/v.vcf", "--gff", "{d}/trunc.gff3.gz", *M, *O], ["trunc.gff3.gz"]),
    ("sv-stdin-twice", [*SV, "-", "--gff", "-", *M, *O], ["stdin"]),
    # -- score-variants: options and outputs
    ("sv-window-1", [*SV, "{d}/v.vcf", "--window", "1", *M, *O], ["--window"]),
    ("sv-window-text", [*SV, "{d}/v.vcf", "--window", "ten", *M, *O], ["--window"]),
    ("sv-strand", [*SV, "{d}/v.vcf", "--strand", "up", *M, *O], ["--strand"]),
    ("sv-format", [*SV, "{d}/v.vcf", "--format", "xml", *M, *O], ["--format"]),
    ("sv-suffix", [*SV, "{d}/v.vcf", *M, "-o", "{d}/out/x.foo"], ["x.foo"]),
    ("sv-out-missing-dir", [*SV, "{d}/v.vcf", *M, "-o", "{d}/out/no/x.tsv"], ["does not exist"]),
    ("sv-out-is-dir", [*SV, "{d}/v.vcf", *M, "-o", "{d}/out"], ["is a directory"]),
    ("sv-keep-info-undeclared", [*SV, "{d}/v.vcf", "--keep-info", "NOPE", *M, *O], ["NOPE"]),
    ("sv-keep-info-vcf", [*SV, "{d}/v.vcf", "--keep-info", "all", *M, "-o", "{d}/out/x.vcf"], ["--keep-info"]),
    ("sv-batch-0", [*SV, "{d}/v.vcf", "--batch-size", "0", *M, *O], ["--batch-size"]),
    ("sv-max-tokens-1", [*SV, "{d}/v.vcf", "--max-tokens", "1", *M, *O], ["--max-tokens"]),
    ("sv-device", [*SV, "{d}/v.vcf", "--device", "tpu9", *M, *O], ["--device"]),
    ("sv-device-cuda", [*SV, "{d}/v.vcf", "--device", "cuda", *M, *O], ["cuda"]),
    ("sv-device-meta", [*SV, "{d}/v.vcf", "--device", "meta", *M, *O], ["invalid --device 'meta'"]),  # once a traceback
    ("sv-device-xpu", [*SV, "{d}/v.vcf", "--device", "xpu", *M, *O], ["invalid --device 'xpu'"]),
    ("sv-dtype", [*SV, "{d}/v.vcf", "--dtype", "fp8", *M, *O], ["--dtype"]),
    ("sv-unknown-option", [*SV, "{d}/v.vcf", "--frobnicate", *M, *O], ["--frobnicate"]),
    ("sv-missing-arg", ["score-variants", "{d}/g.fa"], ["give a VCF, or --all-snvs REGION"]),
    # -- models (through score-variants, info, check)
    ("sv-model-missing", [*SV, "{d}/v.vcf", "--model", "{d}/nomodel", *O], ["nomodel"]),
    ("sv-model-emptydir", [*SV, "{d}/v.vcf", "--model", "{d}/emptydir", *O], ["emptydir"]),
    ("sv-model-badcfg", [*SV, "{d}/v.vcf", "--model", "{d}/badcfg", *O], ["badcfg"]),
    ("sv-model-truncw", [*SV, "{d}/v.vcf", "--model", "{d}/truncw", *O], ["truncw"]),
    ("sv-model-is-file", [*SV, "{d}/v.vcf", "--model", "{d}/existing.txt", *O], ["existing.txt", "directory"]),
    ("sv-model-empty", [*SV, "{d}/v.vcf", "--model", "", *O], ["model directory given is empty"]),  # unset $MODEL: was "."
    ("info-missing", ["info", "{d}/nomodel"], ["nomodel"]),
    ("info-empty", ["info", ""], ["model directory given is empty"]),  # a path argument: typer made it "."
    # an unset $RUN trained into the current folder (one short step, should that come back)
    ("train-out-empty", [*TR[:-1], "", "--steps", "1", "--seq-len", "64"], ["--out is empty"]),
    ("train-cache-dir-empty", [*TR, "--cache-dir", "", "--steps", "1", "--seq-len", "64"], ["--cache-dir is empty"]),
    ("train-seed-huge", [*TR, "--seed", "99999999999999999999"], ["--seed must be between"]),  # was a traceback
    ("init-seed-huge", ["init", "--preset", "tiny", "-o", "{d}/out/i", "--seed", "99999999999999999999"], ["--seed"]),
    ("train-preset-and-init-in-config", ["train", "-c", "{d}/both.toml", "--data", "{d}/g.fa", "--out", "{d}/out/run",
                                         "--steps", "1", "--seq-len", "64"],
     ["either preset or init"]),  # the preset was silently ignored
    ("train-corrupt-gz", ["train", "--data", "{d}/corrupt.fa.gz", "--preset", "tiny", "--out", "{d}/out/run"],
     ["corrupt.fa.gz", "cannot read FASTA"]),  # zlib.error was a traceback
    ("ss-corrupt-gz", [*SS, "{d}/corrupt.fa.gz", *M, *O], ["corrupt.fa.gz"]),
    ("sv-corrupt-gz", ["score-variants", "{d}/corrupt.fa.gz", "{d}/v.vcf", *M, *O], ["corrupt.fa.gz"]),
    ("train-init-empty", ["train", "--data", "{d}/g.fa", "--init", "", "--out", "{d}/out/run"], ["--init is empty"]),
    ("info-emptydir", ["info", "{d}/emptydir"], ["emptydir"]),
    ("info-badcfg", ["info", "{d}/badcfg"], ["badcfg"]),
    ("info-truncw", ["info", "{d}/truncw"], ["truncw"]),
    ("check-model-missing", ["check", "--model", "{d}/nomodel"], ["nomodel"]),
    ("check-dtype", ["check", *M, "--dtype", "fp8"], ["--dtype"]),
    ("check-device", ["check", *M, "--device", "tpu9"], ["--device"]),
    # -- init / presets
    ("init-preset", ["init", "--preset", "giant", "-o", "{d}/out/i"], ["giant"]),
    ("init-exists", ["init", "--preset", "tiny", "-o", "{d}/existing.txt"], ["existing.txt"]),
    ("init-missing-preset", ["init", "-o", "{d}/out/i"], ["--preset"]),
    ("init-force-on-a-file", ["init", "--preset", "tiny", "-o", "{d}/existing.txt", "--force"], ["is a file"]),
    ("init-under-a-file", ["init", "--preset", "tiny", "-o", "{d}/existing.txt/deeper/m"], ["not a writable directory"]),
    ("dms-metrics-on-stdout-too", ["eval", "dms", "--genome", "{d}/g.fa", "--gff", "{d}/a.gff3", "--gene", "x",
                                   "--dms", "{d}/d.csv", "--metrics", "-"], ["--metrics -", "same stream"]),
    # -- score-seqs
    ("ss-missing", [*SS, "{d}/nope.fa", *M, *O], ["nope.fa"]),
    ("ss-per-base-is-output", [*SS, "{d}/g.fa", *M, *O, "--per-base", "{d}/out/x.tsv"], ["--per-base", "same file"]),
    ("ss-empty", [*SS, "{d}/empty.fa", *M, *O], ["empty.fa"]),
    ("ss-junk", [*SS, "{d}/junk.fa", *M, *O], ["junk.fa"]),
    ("ss-dup", [*SS, "{d}/dup.fa", *M, *O], ["duplicate"]),
    ("ss-entropy-is-output", [*SS, "{d}/g.fa", *M, *O, "--entropy", "{d}/out/x.tsv"], ["--entropy", "same file"]),
    # -- embed
    ("embed-missing", ["embed", "{d}/nope.fa", *M, *O], ["nope.fa"]),
    ("embed-junk", ["embed", "{d}/junk.fa", *M, *O], ["junk.fa"]),
    ("embed-dup", ["embed", "{d}/dup.fa", *M, *O], ["duplicate"]),
    ("embed-strand", ["embed", "{d}/g.fa", *M, *O, "--strand", "plus"], ["--strand must be one of"]),
    ("sv-all-snvs-bad-region", [*SV, "--all-snvs", "NC_000913.3:5-1", *M, *O], ["--all-snvs", "START <= END"]),
    ("ss-badbase", [*SS, "{d}/badbase.fa", *M, *O], ["badbase.fa"]),
    ("ss-noname", [*SS, "{d}/noname.fa", *M, *O], ["noname.fa"]),
    ("ss-trunc", [*SS, "{d}/trunc.fa.gz", *M, *O], ["trunc.fa.gz"]),
    ("ss-window-1", [*SS, "{d}/g.fa", "--window", "1", *M, *O], ["--window"]),
    ("ss-context-neg", [*SS, "{d}/g.fa", "--context", "-1", *M, *O], ["--context"]),
    ("ss-context-ge-window", [*SS, "{d}/g.fa", "--window", "64", "--context", "64", *M, *O], ["--context"]),
    ("ss-per-base-missing-dir", [*SS, "{d}/g.fa", "--per-base", "{d}/out/no/x.bg", *M, *O], ["--per-base"]),
    ("ss-per-base-is-dir", [*SS, "{d}/g.fa", "--per-base", "{d}/out", *M, *O], ["is a directory"]),
    ("ss-sort", [*SS, "{d}/g.fa", "--sort", "size", *M, *O], ["--sort"]),
    ("ss-strand", [*SS, "{d}/g.fa", "--strand", "up", *M, *O], ["--strand"]),
    ("ss-out-missing-dir", [*SS, "{d}/g.fa", *M, "-o", "{d}/out/no/x.tsv"], ["does not exist"]),
    # -- essentiality
    ("es-missing-genome", ["essentiality", "{d}/nope.fa", "--gff", "{d}/a.gff3", *M, *O], ["nope.fa"]),
    ("es-junk-genome", ["essentiality", "{d}/junk.fa", "--gff", "{d}/a.gff3", *M, *O], ["junk.fa"]),
    ("es-missing-gff", [*ES, "--gff", "{d}/nope.gff3", *M, *O], ["nope.gff3"]),
    ("es-two-stdouts", [*ES, "--gff", "{d}/a.gff3", *M, "-o", "-", "--bed", "-"], ["--bed -", "same stream"]),
    ("es-bed-is-output", [*ES, "--gff", "{d}/a.gff3", *M, *O, "--bed", "{d}/out/x.tsv"], ["--bed", "same file"]),
    ("es-fasta-as-gff", [*ES, "--gff", "{d}/g.fa", *M, *O], ["g.fa"]),
    ("es-empty-gff", [*ES, "--gff", "{d}/empty.gff3", *M, *O], ["empty.gff3"]),
    ("es-trunc-gff", [*ES, "--gff", "{d}/trunc.gff3.gz", *M, *O], ["trunc.gff3.gz"]),
    ("es-badcols-gff", [*ES, "--gff", "{d}/badcols.gff3", *M, *O], ["badcols.gff3"]),
    ("es-startgtend-gff", [*ES, "--gff", "{d}/startgtend.gff3", *M, *O], ["startgtend.gff3"]),
    ("es-badstrand-gff", [*ES, "--gff", "{d}/badstrand.gff3", *M, *O], ["badstrand.gff3"]),
    ("es-badcoord-gff", [*ES, "--gff", "{d}/badcoord.gff3", *M, *O], ["badcoord.gff3"]),
    ("es-nogenes-gff", [*ES, "--gff", "{d}/nogenes.gff3", *M, *O], ["nogenes.gff3"]),
    ("es-wrongseq-gff", [*ES, "--gff", "{d}/wrongseq.gff3", *M, *O], ["chrZ"]),
    ("es-protocol", [*ES, "--gff", "{d}/a.gff3", "--protocol", "crispr", *M, *O], ["--protocol"]),
    ("es-labels-not-labels", [*ES, "--gff", "{d}/a.gff3", *M, *O, "--labels", "{d}/dms_as_labels.csv"],
     ["line 2", "'M1H,0.1475'"]),  # the line as written: it was shown as 'M1H 0.1475'
    ("es-plot-jpg", [*ES, "--gff", "{d}/a.gff3", *M, *O, "--plot", "{d}/out/p.jpg"], ["unknown image type .jpg"]),
    ("es-anchor", [*ES, "--gff", "{d}/a.gff3", "--anchor", "middle", *M, *O], ["--anchor"]),
    ("es-positions-paper", [*ES, "--gff", "{d}/a.gff3", "--positions", "0.5", *M, *O], ["--positions"]),
    ("es-positions-text", [*ES, "--gff", "{d}/a.gff3", "--protocol", "cassette", "--positions", "abc", *M, *O], ["--positions"]),
    ("es-cassette-nostop", [*ES, "--gff", "{d}/a.gff3", "--protocol", "cassette", "--cassette", "GGGCCC", *M, *O], ["GGGCCC"]),
    ("es-cassette-badbase", [*ES, "--gff", "{d}/a.gff3", "--protocol", "cassette", "--cassette", "TAGXX", *M, *O], ["TAGXX"]),
    ("es-tile-0", [*ES, "--gff", "{d}/a.gff3", "--protocol", "cassette", "--tile", "0", *M, *O], ["--tile"]),
    ("es-flank-neg", [*ES, "--gff", "{d}/a.gff3", "--flank", "-5", *M, *O], ["--flank"]),
    ("es-window-5", [*ES, "--gff", "{d}/a.gff3", "--window", "5", *M, *O], ["--window"]),
    ("es-window-0", [*ES, "--gff", "{d}/a.gff3", "--window", "0", *M, *O], ["--window 0"]),  # not "the model's"
    ("es-anchor-evo2", [*ES, "--gff", "{d}/a.gff3", "--protocol", "evo2", "--anchor", "after", *M, *O], ["--anchor", "evo2"]),
    ("es-reduce", [*ES, "--gff", "{d}/a.gff3", "--reduce", "median", *M, *O], ["--reduce"]),
    ("es-genes-unknown", [*ES, "--gff", "{d}/a.gff3", "--genes", "nosuchgene", *M, *O], ["nosuchgene"]),
    ("es-max-genes-0", [*ES, "--gff", "{d}/a.gff3", "--max-genes", "0", *M, *O], ["--max-genes"]),
    ("es-labels-missing", [*ES, "--gff", "{d}/a.gff3", "--labels", "{d}/nope.txt", *M, *O], ["nope.txt"]),
    ("es-labels-empty", [*ES, "--gff", "{d}/a.gff3", "--labels", "{d}/empty.txt", *M, *O], ["empty.txt"]),
    ("es-metrics-missing-dir", [*ES, "--gff", "{d}/a.gff3", "--metrics", "{d}/out/no/m.json", *M, *O], ["--metrics"]),
    ("es-out-is-dir", [*ES, "--gff", "{d}/a.gff3", *M, "-o", "{d}/out"], ["is a directory"]),
    ("es-dtype", [*ES, "--gff", "{d}/a.gff3", "--dtype", "fp8", *M, *O], ["--dtype"]),
    # -- segment
    ("sg-missing-genome", ["segment", "{d}/nope.fa", *M, *O], ["nope.fa"]),
    ("sg-region-contig", [*SG, "--region", "chrZ", *M, *O], ["chrZ"]),
    ("sg-region-reversed", [*SG, "--region", "NC_000913.3:500-100", *M, *O], ["--region"]),
    ("sg-region-zero", [*SG, "--region", "NC_000913.3:0-100", *M, *O], ["--region"]),
    ("sg-region-beyond", [*SG, "--region", "NC_000913.3:100-999999", *M, *O], ["999999"]),
    ("sg-region-garbage", [*SG, "--region", "NC_000913.3:a-b", *M, *O], ["--region"]),
    ("sg-stage-9", [*SG, "--stage", "9", *M, *O], ["--stage"]),
    ("sg-stage-text", [*SG, "--stage", "outer", *M, *O], ["--stage"]),
    ("sg-strand", [*SG, "--strand", "up", *M, *O], ["--strand"]),
    ("sg-tile-8", [*SG, "--tile", "8", *M, *O], ["--tile"]),
    ("sg-overlap-ge-tile", [*SG, "--tile", "64", "--overlap", "64", *M, *O], ["--overlap"]),
    ("sg-report-no-gff", [*SG, "--report", "{d}/out/r.tsv", *M, *O], ["--gff"]),
    ("sg-plot-no-gff", [*SG, "--plot", "{d}/out/p.png", *M, *O], ["--gff"]),
    ("sg-bedgraph-missing-dir", [*SG, "--bedgraph", "{d}/out/no/bg", *M, *O], ["--bedgraph"]),
    ("sg-permutations-neg", [*SG, "--permutations", "-1", *M, *O], ["--permutations"]),
    ("sg-upstream-neg", [*SG, "--upstream", "-5", *M, *O], ["--upstream"]),
    ("sg-gff-fasta", [*SG, "--gff", "{d}/g.fa", "--report", "{d}/out/r.tsv", *M, *O], ["g.fa"]),
    ("sg-out-is-dir", [*SG, *M, "-o", "{d}/out"], ["is a directory"]),
    ("sg-seed-neg", [*SG, "--seed", "-1", *M, *O], ["--seed"]),  # a numpy traceback
    ("sg-bedgraph-dir", [*SG, "--bedgraph", "{d}/out/", *M, *O], ["give a prefix", "not a directory"]),  # hidden files
    # an output naming an input (or its index) replaced it once renamed into place, exit 0
    ("sg-out-is-genome", [*SG, *M, "-o", "{d}/g.fa"], ["the same file as the input GENOME"]),
    ("sg-report-is-gff", [*SG, "--gff", "{d}/a.gff3", "--report", "{d}/a.gff3", *M, *O], ["input --gff"]),
    ("sv-out-is-vcf", [*SV, "{d}/v.vcf", *M, "-o", "{d}/v.vcf"], ["the same file as the input VCF"]),
    ("ss-out-is-index", [*SS, "{d}/g.fa", *M, "-o", "{d}/g.fa.fai"], ["the input SEQS {d}/g.fa.fai"]),
    ("es-out-is-gff", [*ES, "--gff", "{d}/a.gff3", *M, "-o", "{d}/a.gff3"], ["input --gff"]),
    ("dms-out-is-table", [*DMS_OK, *M, "-o", "{d}/dms_ok.csv"], ["input --dms"]),
    # -- eval dms
    ("dms-gene-unknown", [*DMS[:6], "--gene", "nosuchgene", "--dms", "{d}/dms_badmut.csv", *M, *O], ["nosuchgene"]),
    ("dms-csv-missing", [*DMS[:8], "--dms", "{d}/nope.csv", *M, *O], ["nope.csv"]),
    ("dms-csv-nocols", [*DMS[:8], "--dms", "{d}/dms_nocols.csv", *M, *O], ["dms_nocols.csv"]),
    ("dms-csv-badmut", [*DMS, *M, *O], ["XYZ"]),
    ("dms-genome-missing", ["eval", "dms", "--genome", "{d}/nope.fa", *DMS[4:], *M, *O], ["nope.fa"]),
    ("dms-codons", [*DMS_OK, "--codons", "worst", *M, *O], ["--codons"]),
    ("dms-window-1", [*DMS_OK, "--window", "1", *M, *O], ["--window"]),
    ("dms-limit-neg", [*DMS_OK, "--limit", "-1", *M, *O], ["--limit"]),
    # a double mutant whose codons (1 and 9: 27 nt) do not fit a 16-nt window: caught before the model runs
    ("dms-span-window", [*DMS[:8], "--dms", "{d}/dms_span.csv", "--window", "16", *M, *O], ["dms_span.csv", "line 3", "--window"]),
    ("dms-wt-mismatch", [*DMS[:8], "--dms", "{d}/dms_wtmm.csv", *M, *O], ["dms_wtmm.csv", "line 2", "A2G"]),
    ("dms-past-end", [*DMS[:8], "--dms", "{d}/dms_past.csv", *M, *O], ["dms_past.csv", "line 3", "9999"]),
    ("dms-score-nan", [*DMS[:8], "--dms", "{d}/dms_badscore.csv", *M, *O], ["dms_badscore.csv", "line 2", "high"]),
    # -- train
    ("tr-data-missing", ["train", "--data", "{d}/nope.fa", "--val", "{d}/g.fa", "--preset", "tiny", "--out", "{d}/out/run"], ["nope.fa"]),
    ("tr-data-empty", ["train", "--data", "{d}/empty.fa", "--val", "{d}/g.fa", "--preset", "tiny", "--out", "{d}/out/run"], ["empty.fa"]),
    ("tr-data-junk", ["train", "--data", "{d}/junk.fa", "--val", "{d}/g.fa", "--preset", "tiny", "--out", "{d}/out/run"], ["junk.fa"]),
    ("tr-val-missing", ["train", "--data", "{d}/g.fa", "--val", "{d}/nope.fa", "--preset", "tiny", "--out", "{d}/out/run"], ["nope.fa"]),
    ("tr-preset", ["train", "--data", "{d}/g.fa", "--preset", "giant", "--out", "{d}/out/run"], ["giant"]),
    ("tr-init-missing", ["train", "--data", "{d}/g.fa", "--init", "{d}/nomodel", "--out", "{d}/out/run"], ["nomodel"]),
    ("tr-seq-len-1", [*TR, "--seq-len", "1"], ["--seq-len"]),
    ("tr-steps-0", [*TR, "--steps", "0"], ["steps"]),
    ("tr-lr-neg", [*TR, "--lr", "-1"], ["lr"]),
    ("tr-batch-0", [*TR, "--batch-size", "0"], ["--batch-size"]),
    ("tr-grad-accum-0", [*TR, "--grad-accum", "0"], ["grad_accum"]),
    ("tr-ratio-targets-text", [*TR, "--ratio-targets", "three"], ["ratio"]),
    ("tr-ratio-targets-below-1", [*TR, "--ratio-targets", "0.5,2"], ["ratio"]),
    ("tr-config-missing", [*TR, "--config", "{d}/nope.toml"], ["nope.toml"]),
    ("tr-config-bad", [*TR, "--config", "{d}/bad.toml"], ["bad.toml"]),
    ("tr-config-unknown-key", [*TR, "--config", "{d}/unknown.toml"], ["stepz"]),
    ("tr-device", [*TR, "--device", "tpu9"], ["tpu9"]),
    ("tr-dtype", [*TR, "--dtype", "fp8"], ["fp8"]),
    ("tr-out-is-file", ["train", "--data", "{d}/g.fa", "--preset", "tiny", "--out", "{d}/existing.txt"], ["existing.txt"]),
    # -- global options
    ("global-threads-0", ["--threads", "0", "presets"], ["--threads"]),
    ("es-plot-stdout", [*ES, "--gff", "{d}/a.gff3", "--plot", "-", *M, *O], ["--plot needs a file name"]),  # not "the same stream as -o -"
    ("es-two-stdin", ["essentiality", "-", "--gff", "-", *M, *O], ["GENOME and --gff cannot all be -"]),  # once a traceback
    ("sg-two-stdin", ["segment", "-", "--gff", "-", *M, *O], ["GENOME and --gff cannot all be -"]),
    ("dms-region-start-0", [*DMS_OK, "--region-start", "0", *M, *O], ["--region-start"]),  # once "protein too short"
    ("dms-two-stdin", [*DMS[:2], "--gff", "-", "--gene", "thrA", "--dms", "-", *M, *O], ["--gff and --dms cannot all be -"]),
    ("es-bed-missing-dir", [*ES, "--gff", "{d}/a.gff3", "--bed", "{d}/out/no/x.bed", *M, *O], ["--bed", "does not exist"]),
    ("es-plot-is-dir", [*ES, "--gff", "{d}/a.gff3", "--plot", "{d}/out", *M, *O], ["--plot", "is a directory"]),
    ("dms-plot-missing-dir", [*DMS_OK, "--plot", "{d}/out/no/p.png", *M, *O], ["--plot", "does not exist"]),
    ("sv-calibrate-1", [*SV, "{d}/v.vcf", "--calibrate", "1", *M, *O], ["--calibrate"]),
    ("sv-calibrate-text", [*SV, "{d}/v.vcf", "--calibrate", "many", *M, *O], ["--calibrate"]),
    ("sv-calibrate-seed-negative", [*SV, "{d}/v.vcf", "--calibrate", "10", "--calibrate-seed", "-1", *M, *O],
     ["--calibrate-seed"]),  # once a traceback from numpy after the model had loaded
    ("sv-calibrate-past-genome", [*SV, "{d}/v.vcf", "--calibrate", "1000000000", *M, *O], ["--calibrate 1,000,000,000", "bases"]),
    ("sv-calibrate-cache-is-file", [*SV, "{d}/v.vcf", "--calibrate", "10", "--calibrate-cache", "{d}/existing.txt", *M, *O],
     ["--calibrate-cache", "existing.txt"]),
    ("sv-auto-chr-no-fit", [*SV, "{d}/unkcontig.vcf", "--auto-chr", *M, *O], ["unkcontig.vcf", "chrZ"]),
    ("global-kernels", ["--kernels", "turbo", "presets"], ["--kernels"]),
    ("unknown-command", ["frobnicate"], ["frobnicate"]),
]


def listing(d: Path) -> tuple[list[str], list[str]]:
    """Files in the input folder and in out/, without FASTA indexes (built beside a reference, as samtools does)."""
    keep = lambda names: sorted(n for n in names if not n.endswith((".fai", ".gzi")))  # noqa: E731
    return keep(os.listdir(d)), keep(os.listdir(d / "out"))


def run_main(argv: list[str], capsys) -> tuple[int, str]:
    old, handlers = sys.argv, {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    sys.argv = ["dnahnet", *argv]  # click takes the program name from here
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = old
        for sig, handler in handlers.items():  # main leaves the defaults for interpreter exit: pytest keeps its own
            signal.signal(sig, handler)
    return code, capsys.readouterr().err


def test_the_matrix_is_large_and_covers_every_command():
    assert len(CASES) >= 120 and len({c[0] for c in CASES}) == len(CASES)
    commands = {c[1][0] if c[1][0] != "eval" else "eval dms" for c in CASES}
    assert {"score-variants", "score-seqs", "essentiality", "segment", "eval dms", "train", "info", "init",
            "check"} <= commands


@pytest.mark.parametrize("name, argv, needles", CASES, ids=[c[0] for c in CASES])
def test_bad_input(name, argv, needles, d, capsys):
    before = listing(d)
    code, err = run_main([a.format(d=d) for a in argv], capsys)
    assert code == 2, f"exit {code}: {err}"
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle.format(d=d) in err, err
    assert listing(d) == before  # nothing written at -o or beside
