"""`dnahnet score-variants` / `score-seqs` end to end with a tiny freshly initialised model.

Real data: the E. coli K-12 genome (examples/ecoli_k12.fa.gz, bgzip) with the real ampR isolate VCF,
and the synthetic VCF covering every allele class, contig ends and the origin of the circular chromosome.
Windows are kept short (33 bases) so the whole file runs in seconds on a CPU.
"""

from __future__ import annotations

import gzip
import hashlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pysam
import pytest
import typer
from typer.testing import CliRunner

from dnahnet_cli.genomics.alphabet import reverse_complement
from dnahnet_cli.model.checkpoint import save_checkpoint
from dnahnet_cli.commands import score_variants as sv
from dnahnet_cli.tasks.engine import LikelihoodEngine
from dnahnet_cli.tasks.tiling import tiles
from dnahnet_cli.errors import DnahnetError, DnahnetRuntimeError
from dnahnet_cli.genomics.genome import Genome
from dnahnet_cli.model.lm import DNAHNet
from dnahnet_cli.model.presets import get_preset
from dnahnet_cli.genomics.outputs import read_table
from conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "examples"
GENOME = str(EX / "ecoli_k12.fa.gz")
REAL_VCF = str(EX / "ecoli_k12_ampR_isolate.vcf")
SYNTH_VCF = str(EX / "synthetic_all_classes.vcf")
ECOLI, ECOLI_LEN = "NC_000913.3", 4_641_652
W = 33
FAST = ["--window", str(W), "--batch-size", "64", "--device", "cpu", "--dtype", "float32", "--quiet"]  # fp32: compared with the engine


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny batches: one thread is as fast and does not fight other processes for the 2 cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    import torch

    torch.manual_seed(0)
    return str(save_checkpoint(tmp_path_factory.mktemp("models") / "tiny", DNAHNet(get_preset("tiny")),
                               {"preset": "tiny"}))


@pytest.fixture(scope="module")
def engine(ckpt) -> LikelihoodEngine:
    return LikelihoodEngine.load(ckpt, batch_size=64)


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)

    @app.callback()
    def _root() -> None:
        """test app"""

    sv.register(app)
    return app


def run(app, *args, stdin: bytes | None = None):
    res = CliRunner().invoke(app, [str(a) for a in args], input=stdin)
    if res.exception and not isinstance(res.exception, SystemExit):
        if not isinstance(res.exception, DnahnetError):
            raise res.exception
    return res


def table(text: str) -> pd.DataFrame:
    return read_table(io.StringIO(text))


def test_real_vcf_scores_match_direct_window_likelihoods(app, ckpt, engine):
    res = run(app, "score-variants", GENOME, REAL_VCF, "--model", ckpt, *FAST)
    assert res.exit_code == 0, res.output
    meta = [line for line in res.stdout.splitlines() if line.startswith("##")]
    sha = hashlib.sha256((Path(ckpt) / "model.safetensors").read_bytes()).hexdigest()
    assert any(line.startswith("##dnahnet_model=") and sha in line for line in meta)
    from dnahnet_cli.model.kernels import cpu_kernels

    assert f"##dnahnet_device=cpu; kernels {cpu_kernels()}" in meta  # where it ran and which implementation
    assert "##dnahnet_window=33" in meta
    df = table(res.stdout)
    assert list(df.columns) == sv.VARIANT_COLUMNS
    assert df["pos"].tolist() == [93043, 482698, 852762, 1905761, 3535147, 4390754]
    assert (df["status"] == "OK").all() and (df["variant_class"] == "snv").all()
    assert (df["window_len"] == W).all() and (df["window_start0"] == df["pos"] - 1 - 16).all()
    np.testing.assert_allclose(df["score"], (df["dll_fwd"] + df["dll_rev"]) / 2, atol=1e-6)
    np.testing.assert_allclose(df["score"], df["ll_alt"] - df["ll_ref"], atol=1e-4)
    genome = Genome.open(GENOME)
    seqs = []
    for pos, alt in zip(df["pos"], df["alt"]):
        ref_w = genome.fetch(ECOLI, pos - 1 - 16, pos - 1 + 17)
        alt_w = ref_w[:16] + alt + ref_w[17:]
        seqs += [ref_w, alt_w, reverse_complement(ref_w), reverse_complement(alt_w)]
    ll = engine.loglik(seqs).reshape(-1, 4)
    np.testing.assert_allclose(df["dll_fwd"], ll[:, 1] - ll[:, 0], atol=1e-4)
    np.testing.assert_allclose(df["dll_rev"], ll[:, 3] - ll[:, 2], atol=1e-4)
    assert np.all(np.abs(df["score"]) > 0)


def test_synthetic_vcf_tsv_and_vcf_gz_outputs(app, ckpt, tmp_path):
    gff = SHARED_DATA / "ecoli_k12" / "annot.gff.gz"
    circ = ["--gff", gff] if gff.exists() else ["--circular", ECOLI]
    tsv = run(app, "score-variants", GENOME, SYNTH_VCF, "--model", ckpt, *FAST, *circ, "--no-meta")
    assert tsv.exit_code == 0, tsv.output
    assert tsv.stdout.startswith("#chrom\tpos\tid\t")  # --no-meta: the header is the first line
    df = table(tsv.stdout)
    assert len(df) == 21  # one row per ALT: 17 records, three of them multi-allelic
    by_id = df.groupby("id")
    assert by_id.get_group("multi")["alt_index"].tolist() == [1, 2, 3]
    status = dict(zip(df["id"] + ":" + df["alt_index"].astype(str), df["status"]))
    assert status["sv_del:1"] == "SKIP_SYMBOLIC" and status["bnd:1"] == "SKIP_BREAKEND"
    assert status["star:2"] == "SKIP_STAR" and status["missing:1"] == "SKIP_MISSING"
    assert status["refmm:1"] == "SKIP_REF_MISMATCH" and status["ambig:1"] == "SKIP_AMBIGUOUS"
    assert status["dup:1"] == "SKIP_SYMBOLIC" and status["dup:2"] == "OK"
    ok = df[df["status"] == "OK"]
    assert len(ok) == 14 and ok["score"].notna().all() and df[df["status"] != "OK"]["score"].isna().all()
    origin = df[df["id"] == "snv_origin"].iloc[0]
    assert (origin["window_start0"], origin["window_end"]) == (ECOLI_LEN - 16, ECOLI_LEN + 17)
    assert origin["circular_wrap"] == 1
    end = df[df["id"] == "del_end"].iloc[0]
    assert end["circular_wrap"] == 1 and end["window_placement"] == "centred"

    out = tmp_path / "scored.vcf.gz"
    res = run(app, "score-variants", GENOME, SYNTH_VCF, "--model", ckpt, *FAST, "--all-circular", "-o", out)
    assert res.exit_code == 0 and res.stdout == ""
    vf = pysam.VariantFile(str(out))
    info = vf.header.info["DNAHNET_DLL"]
    assert (info.number, info.type) == ("A", "Float")
    assert "dnahnet_model" in str(vf.header)
    records = list(vf)
    assert [r.id for r in records] == [r.id for r in pysam.VariantFile(SYNTH_VCF)]  # every record kept
    got = {r.id: r.info.get("DNAHNET_DLL") for r in records}
    assert got["sv_del"] is None and got["missing"] is None
    assert got["multi"] == pytest.approx(tuple(by_id.get_group("multi")["score"]), abs=1e-5)
    assert got["star"][1] is None and got["star"][0] == pytest.approx(ok[ok["id"] == "star"]["score"].iloc[0], abs=1e-5)
    assert [r.info["DNAHNET_STATUS"] for r in records if r.id == "dup"] == [("SKIP_SYMBOLIC", "OK")]
    assert records[0].info["NOTE"] == "first_base_window_wraps_or_off_centre"  # input INFO kept
    pysam.tabix_index(str(out), preset="vcf", force=True)  # bgzip, so tabix works
    assert len(list(pysam.VariantFile(str(out)).fetch(ECOLI, 4999, 5000))) == 1


@pytest.mark.parametrize("window", [W, W + 1])
def test_strand_average_equals_scoring_the_reverse_complemented_input(app, ckpt, tmp_path, window):
    """Read on either strand, the REF window is centred the same way when window - len(REF span) is even: SNVs,
    3-nt MNVs and a 3-nt deletion at an odd window, an insertion (a REF span of 0) at an even one. Indels sit
    where no repeat lets them slide, so left-aligning moves them on neither strand. The reverse strand once
    compared windows that did not start at the same base: 1-4 nats off for an indel."""
    seq = Genome.open(GENOME).fetch(ECOLI, 10_000, 12_000)
    rc = reverse_complement(seq)
    fa = tmp_path / "pair.fa"
    fa.write_text(f">fwd\n{seq}\n>rev\n{rc}\n")
    n = len(seq)
    lines = ["##fileformat=VCFv4.2", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    if window % 2:
        shift = str.maketrans("ACGT", "CGTA")
        for i, (pos, k) in enumerate([(300, 1), (1200, 3), (1750, 1)]):
            ref = seq[pos - 1: pos - 1 + k]
            alt = ref.translate(shift)
            lines.append(f"fwd\t{pos}\tv{i}\t{ref}\t{alt}\t.\t.\t.")
            rc_pos = n - (pos + len(ref) - 1) + 1
            lines.append(f"rev\t{rc_pos}\tv{i}\t{reverse_complement(ref)}\t{reverse_complement(alt)}\t.\t.\t.")
        d = next(d for d in range(600, 900) if seq[d - 1] != seq[d + 2] and seq[d + 3] != seq[d])  # delete [d, d+3)
        lines.append(f"fwd\t{d}\tdel3\t{seq[d - 1:d + 3]}\t{seq[d - 1]}\t.\t.\t.")
        lines.append(f"rev\t{n - d - 3}\tdel3\t{rc[n - d - 4:n - d]}\t{rc[n - d - 4]}\t.\t.\t.")
    else:
        for ins, lo in (("GAT", 1400), ("CGTTA", 1600)):
            j = next(j for j in range(lo, lo + 300) if seq[j - 1] != ins[-1] and seq[j] != ins[0])  # before base j
            lines.append(f"fwd\t{j}\tins{len(ins)}\t{seq[j - 1]}\t{seq[j - 1] + ins}\t.\t.\t.")
            anchor = rc[n - j - 1]
            lines.append(f"rev\t{n - j}\tins{len(ins)}\t{anchor}\t{anchor + reverse_complement(ins)}\t.\t.\t.")
    vcf = tmp_path / "pair.vcf"
    vcf.write_text("\n".join(lines) + "\n")
    res = run(app, "score-variants", fa, vcf, "--model", ckpt, *FAST, "--window", window)
    assert res.exit_code == 0, res.output
    df = table(res.stdout)
    assert (df["status"] == "OK").all() and (df["window_placement"] == "centred").all()
    f, r = df[df["chrom"] == "fwd"].set_index("id"), df[df["chrom"] == "rev"].set_index("id")
    np.testing.assert_allclose(f["dll_fwd"], r["dll_rev"], atol=1e-4)
    np.testing.assert_allclose(f["dll_rev"], r["dll_fwd"], atol=1e-4)
    np.testing.assert_allclose(f["score"], r["score"], atol=1e-4)
    assert not np.allclose(f["dll_fwd"], f["dll_rev"], atol=1e-3)  # the strands really differ


def test_every_spelling_of_an_indel_in_a_repeat_gets_the_same_score(app, ckpt, tmp_path):
    """bcftools norm left-aligns; VCFs from other callers may not. The ALT haplotype is the same either way, but
    the window was centred on the spelling, so one 1-bp deletion in AAAAA scored -6.6 or -8.8 nats."""
    piece = Genome.open(GENOME).fetch(ECOLI, 20_000, 21_000)
    seq = piece[:499] + "GAAAAAAAG" + piece[499:700] + "TCACACACAG" + piece[700:]  # A7 and (CA)4, bounded
    fa = tmp_path / "rep.fa"
    fa.write_text(f">c\n{seq}\n")
    a0, c0 = 500, 710  # first base of each repeat, 0-based
    records = [  # (id, 1-based POS, REF, ALT): one deletion of an A, one insertion of a CA, each spelled 3 ways
        ("delA", a0, "GA", "G"), ("delA", a0 + 4, "AAA", "AA"), ("delA", a0 + 7, "AG", "G"),
        ("insCA", c0, "T", "TCA"), ("insCA", c0 + 2, "A", "ACA"), ("insCA", c0 + 8, "A", "ACA"),
    ]
    lines = ["##fileformat=VCFv4.2", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    lines += [f"c\t{pos}\t{vid}\t{ref}\t{alt}\t.\t.\t." for vid, pos, ref, alt in records]
    for vid, pos, ref, alt in records:
        assert seq[pos - 1:pos - 1 + len(ref)] == ref, (vid, pos)
    vcf = tmp_path / "rep.vcf"
    vcf.write_text("\n".join(lines) + "\n")
    res = run(app, "score-variants", fa, vcf, "--model", ckpt, *FAST)
    assert res.exit_code == 0, res.output
    df = table(res.stdout)
    assert (df["status"] == "OK").all() and df["pos"].tolist() == [r[1] for r in records]  # the input echoed
    for vid, group in df.groupby("id"):
        assert group["window_start0"].nunique() == 1, vid  # centred on the left-aligned indel
        for col in ("score", "dll_fwd", "dll_rev"):
            np.testing.assert_allclose(group[col], group[col].iloc[0], atol=1e-5, err_msg=f"{vid} {col}")


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list, str]]:
    real = Path(REAL_VCF).read_text()
    lines = real.splitlines(keepends=True)
    (tmp_path / "unknown.vcf").write_text(real.replace("NC_000913.3\t", "chr7\t"))
    (tmp_path / "malformed.vcf").write_text("".join(lines[:10]) + "NC_000913.3\tabc\t.\tA\tG\t.\tPASS\t.\n")
    (tmp_path / "empty.vcf").write_text("")
    body = real + "".join(f"NC_000913.3\t{p}\t.\tA\tG\t.\t.\t.\n" for p in range(1, 150_000, 3))
    data = gzip.compress(body.encode())
    (tmp_path / "trunc.vcf.gz").write_bytes(data[: len(data) // 2])
    (tmp_path / "prot.fa").write_text(">sp|P69222|IF1_ECOLI\n"  # the real IF1 protein (infA)
                                      "MAKEDNIEMQGTVLETLPNTMFRVELENGHVVTAHISGKMRKNYIRILTGDKVTVELTPYDLSKGRIVFRSRGRA\n")
    (tmp_path / "map.txt").write_text("chr7\n")
    return {
        "strict": ([GENOME, SYNTH_VCF, "--strict"], "synthetic_all_classes.vcf: line 22: REF G at NC_000913.3:11000 "
                                                 "does not match the reference (T)"),
        "unknown_contig": ([GENOME, tmp_path / "unknown.vcf"], "contig(s) not in the reference"),
        "malformed": ([GENOME, tmp_path / "malformed.vcf"], "malformed.vcf: line 11: malformed VCF record "
                                                           "(POS 'abc' is not a positive integer)"),
        "truncated_gzip": ([GENOME, tmp_path / "trunc.vcf.gz"], "trunc.vcf.gz: truncated or corrupt gzip"),
        "empty_vcf": ([GENOME, tmp_path / "empty.vcf"], "empty.vcf: empty VCF file"),
        "protein_fasta": ([tmp_path / "prot.fa", REAL_VCF], "prot.fa: record sp|P69222|IF1_ECOLI: invalid nucleotide"),
        "bad_chrom_map": ([GENOME, tmp_path / "unknown.vcf", "--chrom-map", tmp_path / "map.txt"],
                          "map.txt: line 1: expected two columns"),
    }


@pytest.mark.parametrize("case", ["strict", "unknown_contig", "malformed", "truncated_gzip", "empty_vcf",
                                  "protein_fasta", "bad_chrom_map"])  # --window 0: tests/test_interrupts_and_outputs.py
def test_bad_inputs_fail_with_one_line_and_no_output(app, ckpt, tmp_path, case):
    args, message = _bad_inputs(tmp_path)[case]
    out = tmp_path / "out" / "scores.tsv"
    out.parent.mkdir()
    res = run(app, "score-variants", *args, "--model", ckpt, "-o", out)
    assert isinstance(res.exception, DnahnetError) and res.exception.exit_code == 2
    assert message in str(res.exception) and "\n" not in str(res.exception)
    assert list(out.parent.iterdir()) == []  # no output, no temporary file left behind


def test_unknown_contigs_are_all_listed_and_chrom_map_renames(app, ckpt, tmp_path):
    vcf = tmp_path / "two.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                   "chr\t93043\t.\tC\tG\t.\t.\t.\nplasmid2\t5\t.\tA\tG\t.\t.\t.\n")
    res = run(app, "score-variants", GENOME, vcf, "--model", ckpt, *FAST)
    assert res.exception.exit_code == 2 and "chr, plasmid2" in str(res.exception)
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=chr,length=4641652>\n"
                   "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\nchr\t93043\t.\tc\tG\t.\t.\t.\n")
    cmap = tmp_path / "map.tsv"
    cmap.write_text(f"chr\t{ECOLI}\n")
    res = run(app, "score-variants", GENOME, "-", "--model", ckpt, *FAST, "--chrom-map", cmap,
              "--strand", "forward", stdin=vcf.read_bytes())
    assert res.exit_code == 0, res.output
    row = table(res.stdout).iloc[0]
    assert (row["chrom"], row["pos"], row["ref"], row["status"]) == ("chr", 93043, "c", "OK")
    assert np.isnan(row["dll_rev"]) and row["score"] == row["dll_fwd"]
    vcf.write_text(vcf.read_text().replace("length=4641652", "length=4639675"))
    res = run(app, "score-variants", GENOME, vcf, "--model", ckpt, *FAST, "--chrom-map", cmap)
    assert res.exception.exit_code == 2 and "wrong assembly" in str(res.exception)


def test_failure_while_writing_leaves_no_output_file(app, ckpt, tmp_path, monkeypatch):
    calls = []

    def failing(self, refs, alts):
        calls.append(len(refs))
        raise DnahnetRuntimeError("simulated out of memory")

    monkeypatch.setattr(LikelihoodEngine, "loglik_pairs", failing)
    out = tmp_path / "scores.tsv"
    res = run(app, "score-variants", GENOME, REAL_VCF, "--model", ckpt, *FAST, "-o", out)
    assert res.exit_code == 1 and calls and "simulated" in str(res.exception)
    assert list(tmp_path.iterdir()) == []


def test_score_seqs_tsv_and_per_base_bedgraph(app, ckpt, engine, tmp_path):
    long_seq = Genome.open(GENOME).fetch(ECOLI, 100, 160)  # longer than the window: overlapping windows
    short = "ACGTNNNNACGTTGCAGGCTAACGTTAGCA"
    fa = tmp_path / "s.fa"
    fa.write_text(f">long\n{long_seq}\n>short with N\n{short}\n>allN\nNNNN\n")
    bg = tmp_path / "ll.bedgraph"
    res = run(app, "score-seqs", fa, "--model", ckpt, "--window", "40", "--context", "20", "--per-base", bg,
              "--device", "cpu", "--dtype", "float32", "--quiet")
    assert res.exit_code == 0, res.output
    df = table(res.stdout).set_index("name")
    assert list(df.columns) == sv.SEQ_COLUMNS[1:]
    assert df.loc["long", "length"] == 60 and df.loc["long", "n_scored"] == 60
    assert df.loc["short", "n_scored"] == len(short) - 4
    assert df.loc["allN", "status"] == "SKIP_NO_ACGT" and np.isnan(df.loc["allN", "sum_ll"])
    np.testing.assert_allclose(df["sum_ll"][:2], (df["sum_ll_fwd"][:2] + df["sum_ll_rev"][:2]) / 2, rtol=1e-6)
    np.testing.assert_allclose(df["mean_ll"][:2], df["sum_ll"][:2] / df["n_scored"][:2], rtol=1e-6)
    direct = engine.loglik([short, reverse_complement(short)])
    assert df.loc["short", "sum_ll_fwd"] == pytest.approx(direct[0], abs=1e-4)
    assert df.loc["short", "sum_ll_rev"] == pytest.approx(direct[1], abs=1e-4)
    assert df.loc["long", "sum_ll_fwd"] == pytest.approx(np.nansum(engine.logprobs_long(long_seq, 40, 20)), abs=1e-4)
    track = pd.read_csv(bg, sep="\t", header=None, names=["chrom", "start", "end", "value"])
    assert (track["end"] - track["start"] == 1).all()
    assert track.groupby("chrom").size().to_dict() == {"long": 60, "short": len(short) - 4}
    assert set(track[track["chrom"] == "short"]["start"]).isdisjoint({4, 5, 6, 7})  # the N bases
    sums = track.groupby("chrom")["value"].sum()
    assert sums["long"] == pytest.approx(df.loc["long", "sum_ll"], abs=1e-3)
    assert sums["short"] == pytest.approx(df.loc["short", "sum_ll"], abs=1e-3)


def test_score_seqs_entropy_track(app, ckpt, engine, tmp_path):
    """--entropy: the entropy in bits of the prediction at every base (N bases too), the strands' mean, from the
    same overlapping windows as --per-base; asking for it changes neither the TSV nor the log p track."""
    import torch

    long_seq = Genome.open(GENOME).fetch(ECOLI, 100, 160)
    short = "ACGTNNACGTTGCAGGCTAACG"
    fa = tmp_path / "s.fa"
    fa.write_text(f">long\n{long_seq}\n>short\n{short}\n")
    args = ["score-seqs", fa, "--model", ckpt, "--window", "40", "--context", "20", "--device", "cpu",
            "--dtype", "float32", "--quiet", "--no-meta"]
    plain = run(app, *args, "--per-base", tmp_path / "a.bg")
    both = run(app, *args, "--per-base", tmp_path / "b.bg", "--entropy", tmp_path / "e.bg")
    assert plain.exit_code == 0 and both.exit_code == 0, (plain.output, both.output)
    assert plain.stdout == both.stdout and (tmp_path / "a.bg").read_text() == (tmp_path / "b.bg").read_text()
    track = pd.read_csv(tmp_path / "e.bg", sep="\t", header=None, names=["chrom", "start", "end", "value"])
    assert track.groupby("chrom").size().to_dict() == {"long": 60, "short": len(short)}
    assert track["value"].between(0, 2).all()

    def bits(seq: str) -> np.ndarray:  # from the logits directly: the prediction each base is read against
        from dnahnet_cli.genomics.alphabet import BOS

        ids = torch.from_numpy(np.concatenate([[BOS], engine.encode(seq)]).astype(np.int64))[None]
        logp = torch.log_softmax(engine.forward(ids, torch.ones_like(ids, dtype=torch.bool)).logits[0, :-1].double(), -1)
        return (-(logp.exp() * logp).sum(-1) / np.log(2)).numpy()

    got = track[track["chrom"] == "short"]["value"].to_numpy()
    want = (bits(short) + bits(reverse_complement(short))[::-1]) / 2
    np.testing.assert_allclose(got, want, atol=5.1e-6)  # printed to 6 significant digits: 1e-5 steps near 2

    def tiled(seq: str) -> np.ndarray:  # the long record: each base from the window that keeps it
        return np.concatenate([bits(seq[lo:hi])[keep - lo:] for lo, keep, hi in tiles(len(seq), 40, 20)])

    got = track[track["chrom"] == "long"]["value"].to_numpy()
    want = (tiled(long_seq) + tiled(reverse_complement(long_seq))[::-1]) / 2
    np.testing.assert_allclose(got, want, atol=5.1e-6)


def test_score_seqs_warns_when_nothing_was_scored(app, ckpt, tmp_path):
    """Only empty and all-N records: exit 0 with nothing said, where score-variants warns."""
    fa = tmp_path / "e.fa"
    fa.write_text(">e\n\n>n\nNN\n")
    res = run(app, "score-seqs", fa, "--model", ckpt, "--device", "cpu")
    assert res.exit_code == 0 and "warning: no sequence was scored" in res.stderr
    assert "SKIP_EMPTY 1, SKIP_NO_ACGT 1" in res.stderr


@pytest.mark.parametrize("sort, expect", [("name", ["alpha", "zeta"]), ("none", ["zeta", "alpha"])])
def test_score_seqs_bedgraph_is_sorted_by_name_and_the_tsv_keeps_input_order(app, ckpt, tmp_path, sort, expect):
    fa = tmp_path / "s.fa"
    fa.write_text(">zeta\nACGTACGTTGCA\n>alpha\nTTGACCGTAGCA\n")
    bg = tmp_path / "ll.bedgraph"
    res = run(app, "score-seqs", fa, "--model", ckpt, "--window", "40", "--per-base", bg, "--sort", sort,
              "--device", "cpu", "--dtype", "float32", "--quiet")
    assert res.exit_code == 0, res.output
    assert list(table(res.stdout)["name"]) == ["zeta", "alpha"]
    chroms = [line.split("\t")[0] for line in bg.read_text().splitlines()]
    assert list(dict.fromkeys(chroms)) == expect
    if sort == "name":
        rows = [(c, int(s)) for c, s, *_ in (line.split("\t") for line in bg.read_text().splitlines())]
        assert rows == sorted(rows, key=lambda r: (r[0].encode(), r[1]))  # what `sort -c -k1,1 -k2,2n` checks


def test_default_dtype_is_auto_and_the_header_says_why(app, ckpt):
    """No --dtype: auto; the `##dnahnet_precision` line and `info --device` carry the same choice and reason."""
    import torch

    from dnahnet_cli.cli import app as cli_app
    from dnahnet_cli.model.precision import choose_dtype

    args = [a for a in FAST if a not in ("--dtype", "float32")]
    res = run(app, "score-variants", GENOME, REAL_VCF, "--model", ckpt, *args)
    assert res.exit_code == 0, res.output
    dtype, reason = choose_dtype("auto", torch.device("cpu"))
    assert reason.startswith("auto")
    meta = [line for line in res.stdout.splitlines() if line.startswith("##")]
    assert f"##dnahnet_precision={dtype}; {reason}" in meta
    forced = run(app, "score-variants", GENOME, REAL_VCF, "--model", ckpt, *FAST)
    assert not any(line.startswith("##dnahnet_precision=") and "auto" in line for line in forced.stdout.splitlines())
    info = CliRunner().invoke(cli_app, ["info", "--device"])
    assert info.exit_code == 0, info.output
    assert f"{dtype} ({reason})" in " ".join(info.output.split())  # rich may wrap the row


def test_tiles_cover_every_base_once_with_at_least_the_context():
    """The second window once re-scored the first window's last `context` bases with less context than the
    first had given them (wasted work, and fewer context bases than available)."""

    for window in range(2, 40):
        for context in range(window):
            for length in range(0, 130):
                plan = tiles(length, window, context)
                kept = [i for _, keep, hi in plan for i in range(keep, hi)]
                assert kept == list(range(length)), (window, context, length)
                assert all(hi - lo <= window for lo, _, hi in plan)
                assert all(keep - lo >= min(keep, context) for lo, keep, _ in plan)
                assert all(keep == 0 or keep >= window for _, keep, _ in plan)  # first window's bases kept once


def test_indel_moving_an_n_across_one_window_edge_is_skipped(app, ckpt, tmp_path):
    """N is never scored. A deletion's ALT window reaches 5 bases further right; with N there, the ALT sum
    covered 4 fewer bases than the REF sum and the score rose by ~1 nat per N (0.8 -> 4.9 nats)."""
    clean = "TGATAGCAGCTTCTGAACTGGTTACCTGCCGTGAGTAAATTAAAATTTTATTGACTTAGGTCACTAAATACTTTAACCAA"
    right = clean[:41] + "N" * 8 + clean[49:]  # reached by the forward ALT window only (REF window [7, 39))
    left = clean[:4] + "N" + clean[5:]  # reached by the reverse ALT window only: it starts 5 bases earlier
    vcf = tmp_path / "v.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                   "c\t20\tdel5\tGGTTAC\tG\t.\t.\t.\n"
                   "c\t55\tsnv\tC\tG\t.\t.\t.\n")
    skip = "SKIP_N_IN_WINDOW"
    for seq, expect in ((clean, ("OK", "OK", "OK")), (right, (skip, skip, "OK")), (left, (skip, "OK", skip))):
        fa = tmp_path / "g.fa"
        fa.write_text(f">c\n{seq}\n")
        for idx in fa.parent.glob("g.fa.*"):
            idx.unlink()
        for strand, status in zip(("both", "forward", "reverse"), expect):  # only the windows scored count
            res = run(app, "score-variants", fa, vcf, "--model", ckpt, "--window", 32, "--dtype", "float32", "-q",
                      "--strand", strand)
            assert res.exit_code == 0, res.output
            df = table(res.stdout).set_index("id")
            assert df.loc["del5", "status"] == status, (seq, strand)
            assert df.loc["snv", "status"] == "OK"  # an N inside both windows changes nothing


def test_output_into_a_pipe_is_tsv_and_not_indexed(app, ckpt, tmp_path):
    """`-o >(...)` or a named pipe: written in place (a renamed temporary file once replaced the pipe), TSV by
    default as on stdout, and no tabix index attempted on a stream."""
    import os
    import threading

    fifo = tmp_path / "scores"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    res = run(app, "score-variants", GENOME, REAL_VCF, "--model", ckpt, *FAST, "-o", fifo)
    reader.join(10)
    assert res.exit_code == 0, res.output
    assert got and table(got[0])["status"].eq("OK").all() and fifo.is_fifo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores"]


def test_the_circular_hint_is_given_for_windows_moved_by_a_linear_end_only(app, ckpt, tmp_path):
    """A long insertion gets off-centre ALT windows anywhere; on a contig already circular the hint to declare
    contigs circular was wrong."""
    seq = Genome.open(GENOME).fetch(ECOLI, 30_000, 30_300)
    fa = tmp_path / "g.fa"
    fa.write_text(f">c\n{seq}\n")
    vcf = tmp_path / "v.vcf"
    ins = "GATTACAGA"  # longer than half the 16-nt window
    vcf.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                   f"c\t150\tins9\t{seq[149]}\t{seq[149]}{ins}\t.\t.\t.\n")
    end = f"c\t2\tsnv\t{seq[1]}\t{'A' if seq[1] != 'A' else 'C'}\t.\t.\t.\n"  # 2nd base: the window must move
    for extra, records, hinted in ((["--all-circular"], "", False), ([], "", False), ([], end, True)):
        if records:
            vcf.write_text(vcf.read_text() + records)
        res = run(app, "score-variants", fa, vcf, "--model", ckpt, "--window", 16, "--dtype", "float32", *extra)
        assert res.exit_code == 0, res.output
        assert table(res.stdout).set_index("id").loc["ins9", "window_placement"] == "off_centre"
        assert ("1 ALT alleles near the ends of linear contigs" in res.stderr) == hinted, res.stderr


def test_vcf_gz_output_is_indexed_all_skipped_warns_and_a_gff_as_vcf_names_no_spool(app, ckpt, tmp_path):
    """-o x.vcf.gz got no tabix index while -o x.tsv.gz did; a run that scored nothing exited 0 without a word;
    a gzipped GFF given as the VCF got an error naming dnahnet's temporary spool file."""
    out = tmp_path / "s.vcf.gz"
    res = run(app, "score-variants", GENOME, REAL_VCF, "--model", ckpt, *FAST, "-o", out)
    assert res.exit_code == 0, res.output
    with pysam.VariantFile(str(out)) as vf:
        assert len(list(vf.fetch(ECOLI, 93_000, 93_100))) == 1  # needs the .tbi
    skipped = tmp_path / "skip.vcf"
    skipped.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                       f"{ECOLI}\t100\ta\tA\t<DEL>\t.\t.\t.\n")
    res = run(app, "score-variants", GENOME, skipped, "--model", ckpt, "--window", W, "--dtype", "float32")
    assert res.exit_code == 0 and "warning: no ALT allele was scored" in res.stderr, res.stderr
    gff = tmp_path / "annot.gff.gz"
    gff.write_bytes(gzip.compress((EX / "ecoli_k12_20kb.gff3").read_bytes()))
    res = run(app, "score-variants", GENOME, gff, "--model", ckpt, *FAST)
    message = str(res.exception)
    assert isinstance(res.exception, DnahnetError) and "annot.gff.gz" in message and "dnahnet-vcf-" not in message


def test_all_snvs_of_a_region_score_as_the_same_snvs_given_in_a_vcf(app, ckpt, tmp_path):
    """--all-snvs REGION: three ALTs at every A/C/G/T base, each row what the same SNV in a VCF gets; the first
    bases of the circular chromosome wrap their windows across the origin as a VCF's do; an N is left out."""
    fa = tmp_path / "g.fa"
    seq = Genome.open(GENOME, quiet=True).fetch(ECOLI, 0, 400)
    fa.write_text(f">{ECOLI}\n{seq[:5]}N{seq[6:]}\n")
    vcf = tmp_path / "same.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n" + "".join(
        f"{ECOLI}\t{p}\t.\t{b}\t{','.join(x for x in 'ACGT' if x != b)}\t.\t.\t.\n"
        for p, b in enumerate(seq[:12], 1) if p != 6))
    given = run(app, "score-variants", fa, vcf, "--model", ckpt, *FAST, "--circular", ECOLI, "--no-meta")
    made = run(app, "score-variants", fa, "--all-snvs", f"{ECOLI}:1-12", "--model", ckpt, *FAST, "--circular", ECOLI)
    assert given.exit_code == 0 and made.exit_code == 0, (given.output, made.output)
    a, b = table(given.stdout), table(made.stdout)
    assert len(b) == 33 and (b["status"] == "OK").all() and 6 not in set(b["pos"])
    assert (b["circular_wrap"] == 1).any()  # windows of the first bases reach across the origin
    pd.testing.assert_frame_equal(a, b)
    assert "##dnahnet_all_snvs=NC_000913.3:1-12" in made.stdout and "##dnahnet_vcf=none" in made.stdout
    overlapping = run(app, "score-variants", fa, "--all-snvs", f"{ECOLI}:300-305", "--all-snvs", f"{ECOLI}:305-306",
                      "--model", ckpt, *FAST[:-1], "--circular", ECOLI, "-o", tmp_path / "o.tsv")
    assert "overlap: their shared SNVs are scored, and listed, twice" in overlapping.stderr
    import tempfile

    def no_temp(*args, **kwargs):
        raise FileNotFoundError(2, "No usable temporary directory found")

    original, tempfile.TemporaryDirectory = tempfile.TemporaryDirectory, no_temp
    try:  # a read-only container: one line (DnahnetRuntimeError), not a traceback
        res = run(app, "score-variants", fa, "--all-snvs", f"{ECOLI}:1-3", "--model", ckpt, *FAST)
    finally:
        tempfile.TemporaryDirectory = original
    assert isinstance(res.exception, DnahnetRuntimeError) and "set TMPDIR" in str(res.exception)
    for args, message in ((["--all-snvs", ECOLI, vcf], "not both"), ([], "give a VCF, or --all-snvs"),
                          (["--all-snvs", "chrX:1-5"], "--all-snvs 'chrX:1-5': contig 'chrX' is not in"),
                          (["--all-snvs", f"{ECOLI}:6-6"], "no A, C, G or T base"),
                          (["--all-snvs", ECOLI, "--auto-chr"], "--all-snvs names the FASTA's own"),
                          (["--all-snvs", ECOLI, "--keep-info", "AF"], "--all-snvs records have none")):
        res = run(app, "score-variants", fa, *args, "--model", ckpt, *FAST)
        assert isinstance(res.exception, DnahnetError) and message in str(res.exception), (args, res.exception)
    # two regions: both, in the order given (a second --all-snvs once replaced the first without a word)
    two = run(app, "score-variants", fa, "--all-snvs", f"{ECOLI}:300-301", "--all-snvs", f"{ECOLI}:2-2", "--model",
              ckpt, *FAST, "--circular", ECOLI)
    assert two.exit_code == 0 and table(two.stdout)["pos"].tolist() == [300] * 3 + [301] * 3 + [2] * 3
    assert f"##dnahnet_all_snvs={ECOLI}:300-301;{ECOLI}:2-2" in two.stdout
    odd = tmp_path / "odd.fa"
    odd.write_text(">a,b\nACGTACGT\n")  # a FASTA name htslib cannot read back as a VCF CHROM
    res = run(app, "score-variants", odd, "--all-snvs", "a,b:1-3", "--model", ckpt, *FAST)
    assert isinstance(res.exception, DnahnetError) and "'a,b' cannot be a VCF contig name" in str(res.exception)
