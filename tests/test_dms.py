"""DMS mapping: protein substitutions onto the genomic CDS, codon choice, windows, errors, scoring plumbing."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from dnahnet_cli.genomics.alphabet import reverse_complement
from dnahnet_cli.tasks.dms import (
    DmsRecord, build_windows, choose_codon, codon_usage, logmeanexp, parse_mutant, plan_mutant, prepare_target,
    read_dms, read_protein, score_plans, synonymous_codons,
)
from dnahnet_cli.errors import DnahnetError
from dnahnet_cli.genomics.gff import OK, load_genome, parse_gff, translate
from dnahnet_cli.genomics.outputs import read_table
from conftest import MISSING_DATA, SHARED_DATA, break_plotting

HERE = Path(__file__).resolve().parent
DATA = SHARED_DATA
ECOLI_GFF = DATA / "ecoli_k12" / "annot.gff.gz"
ECOLI_FA = DATA / "ecoli_k12" / "genome.fa.gz"
IF1 = DATA / "dms" / "IF1_ECOLI_Kelsic_2016"
needs_ecoli = pytest.mark.skipif(not (ECOLI_GFF.exists() and IF1.exists()), reason=MISSING_DATA)


@pytest.fixture(scope="module")
def awkward():
    ann = parse_gff(HERE / "data" / "awkward.gff3")
    genome, _ = load_genome(None, ann)
    return ann, genome, codon_usage(ann, genome)


@pytest.fixture(scope="module")
def ecoli():
    ann = parse_gff(ECOLI_GFF)
    genome, _ = load_genome(str(ECOLI_FA), ann)
    return ann, genome, codon_usage(ann, genome)


def _rec(mutant, score=0.0):
    return DmsRecord(mutant, parse_mutant(mutant, "test"), score, 1)


def _mutant_cds(target, changes):
    cds = list(target.cds)
    for off, base in changes.items():
        cds[off] = base
    return "".join(cds)


def test_parse_mutant():
    assert [(s.wt, s.pos, s.mt) for s in parse_mutant("A2G:L5P", "f")] == [("A", 2, "G"), ("L", 5, "P")]
    assert parse_mutant("K10*", "f")[0].mt == "*"
    for bad in ("A2", "2G", "AG2", "A0G", "B2G", "A2G;L5P", "A2G:A2P"):
        with pytest.raises(DnahnetError, match="dms.csv: line 7"):
            parse_mutant(bad, "dms.csv: line 7")


def test_codon_choice_rule():
    usage = {"CTG": 100, "CTT": 5, "TTA": 50}
    assert choose_codon("GTG", "L", 11, usage) == "CTG"  # CTG and TTG are one change away; CTG more used
    assert choose_codon("TTT", "L", 11, usage) == "TTA"  # TTA, TTG, CTT one change; TTA most used
    assert choose_codon("TTT", "L", 11, {}) == "CTT"  # no usage: alphabetical
    assert choose_codon("ATG", "M", 11, usage) == "ATG"  # synonymous: no change
    assert synonymous_codons("*", 11) == ["TAA", "TAG", "TGA"] and synonymous_codons("W", 4) == ["TGA", "TGG"]


def test_alternative_start_codon_mutants_change_the_codon(tmp_path):
    """M1V on a GTG start once kept GTG (it encodes V inside genes): a "mutant" equal to the wild type, delta 0."""
    gff = tmp_path / "gtg.gff"
    gff.write_text("##gff-version 3\nc1\tt\tgene\t11\t25\t.\t+\t.\tID=g1;locus_tag=G1\n"
                   "c1\tt\tCDS\t11\t25\t.\t+\t0\tParent=g1\n##FASTA\n>c1\nACGTACGTACGTGAAATTTCCCTAAACGTACGT\n")
    ann = parse_gff(gff)
    genome, _ = load_genome(None, ann)
    target = prepare_target(ann, genome, "G1")
    assert target.protein == "MKFP"  # GTG read as M at the start
    for mutant, codon in (("M1V", "GTA"), ("M1L", "CTG")):
        plan = plan_mutant(target, _rec(mutant), "best", codon_usage(ann, genome))
        assert plan.codon_changes == f"M1:GTG>{codon}" and plan.n_nt_changes == 1
        every = plan_mutant(target, _rec(mutant), "all", {})
        assert all(v for v in every.variants)  # no codon combination leaves the sequence as it was
    # ... while the synonymous M1M keeps the GTG start (it was changed to ATG: a real change scored as synonymous)
    plan = plan_mutant(target, _rec("M1M"), "best", codon_usage(ann, genome))
    assert plan.codon_changes == "M1:GTG>GTG" and plan.n_nt_changes == 0 and plan.variants == [{}]
    assert plan_mutant(target, _rec("M1M"), "all", {}).variants == [{0: "A"}, {}]  # ATG, then the wild type GTG


def test_minus_strand_multi_mutant_windows(awkward):
    ann, genome, usage = awkward
    target = prepare_target(ann, genome, "bbbB")  # MADRKPF, minus strand
    plan = plan_mutant(target, _rec("A2G:K5P"), "best", usage)
    assert plan.status == OK and len(plan.variants) == 1
    mut_cds = _mutant_cds(target, plan.variants[0])
    assert translate(mut_cds) == "MGDRPPF*"
    wt, (mut,) = build_windows(target, plan, window=40)
    assert len(wt) == len(mut) == 40 and sum(a != b for a, b in zip(wt, mut)) == plan.n_nt_changes
    assert mut_cds in mut and target.cds in wt  # both read on the gene strand
    # genomic changes are reported on the + strand, 1-based
    for change in plan.genomic_changes.split(","):
        pos, ref = int(change[:-3]), change[-3]
        assert genome["chr1"][pos - 1] == ref
    allp = plan_mutant(target, _rec("A2G:K5P"), "all", usage)
    assert len(allp.variants) == 4 * 4  # four G codons x four P codons
    assert all(translate(_mutant_cds(target, v)) == "MGDRPPF*" for v in allp.variants)


def test_origin_crossing_and_phase(awkward):
    ann, genome, usage = awkward
    target = prepare_target(ann, genome, "oriX")  # MRLKEHQWF across the origin of circular chr1
    plan = plan_mutant(target, _rec("H6Y"), "best", usage)
    assert translate(_mutant_cds(target, plan.variants[0])) == "MRLKEYQWF*"
    wt, (mut,) = build_windows(target, plan, window=100)
    assert len(wt) == 100
    multi = prepare_target(ann, genome, "aaaA")  # two CDS parts, codon 5 split across them
    plan = plan_mutant(multi, _rec("L5P"), "best", usage)
    assert translate(_mutant_cds(multi, plan.variants[0])) == "MKLVPETG*"


def test_genes_past_a_linear_end_and_nonsense_under_codes_without_a_sure_stop_are_one_line_errors(tmp_path):
    """A gene past the end of a linear contig is kept (SKIP_OUT_OF_BOUNDS) instead of stopping the parse: DMS must
    refuse it, whatever its other status, rather than fetch past the end (a ValueError traceback). Under codes
    27/28/31 no codon reads as '*' inside a CDS: a nonsense mutant was min() of nothing (a traceback)."""
    gff = tmp_path / "a.gff3"
    cds = "ATGGCTAAAGCTTGA"  # M A K A, stop
    gff.write_text("##gff-version 3\nc1\tt\tgene\t1\t15\t.\t+\t.\tID=g27;locus_tag=L27\n"
                   "c1\tt\tCDS\t1\t15\t.\t+\t0\tID=c27;Parent=g27;transl_table=27\n"
                   "c1\tt\tgene\t21\t45\t.\t+\t.\tID=gp;locus_tag=LP;partial=true\n"
                   "c1\tt\tCDS\t21\t45\t.\t+\t0\tID=cp;Parent=gp\n"
                   f"##FASTA\n>c1\n{cds}GGGGGGGGGGGGGGG\n")
    ann = parse_gff(gff)
    genome, _ = load_genome(None, ann)
    with pytest.raises(DnahnetError, match=r"a.gff3: line 4: gene 'LP' \(LP\) has no CDS that can be scored "
                                           r"\(SKIP_OUT_OF_BOUNDS\)"):
        prepare_target(ann, genome, "LP")
    target = prepare_target(ann, genome, "L27")
    assert target.protein == "MAKA"
    with pytest.raises(DnahnetError, match=r"dms.csv: line 2: mutant K3\*: no codon reads as '\*' inside a CDS "
                                           r"under genetic code 27"):
        plan_mutant(target, _rec("K3*"), "best", {}, "dms.csv: line 2")


def test_region_and_protein_errors(awkward):
    ann, genome, usage = awkward
    target = prepare_target(ann, genome, "bbbB", protein="DRKP")  # a region of MADRKPF
    assert target.region_start == 3
    plan = plan_mutant(target, _rec("R2A"), "best", usage)  # assayed residue 2 = gene residue 4
    assert translate(_mutant_cds(target, plan.variants[0])) == "MADAKPF*"
    with pytest.raises(DnahnetError, match=r"does not match the translated CDS of AWK_0002.*residue 2"):
        prepare_target(ann, genome, "bbbB", protein="MVDRKPF", region_start=1, protein_path="p.fa")
    with pytest.raises(DnahnetError, match="does not match"):
        prepare_target(ann, genome, "bbbB", protein="WWWW")
    with pytest.raises(DnahnetError, match="no gene named 'zzzZ'"):
        prepare_target(ann, genome, "zzzZ")
    with pytest.raises(DnahnetError, match="has no CDS"):
        prepare_target(ann, genome, "tRNA-Ala")
    with pytest.raises(DnahnetError, match=r"dms.csv: line 3: mutant Q2A: residue 2 is 'A'"):
        plan_mutant(prepare_target(ann, genome, "bbbB"), _rec("Q2A"), "best", usage, "dms.csv: line 3")
    with pytest.raises(DnahnetError, match="beyond the assayed protein"):
        plan_mutant(prepare_target(ann, genome, "bbbB"), _rec("A20G"), "best", usage, "x")
    # an empty assayed protein matched at every offset ('occurs 8 times') or passed the check and blamed the table
    with pytest.raises(DnahnetError, match=r"--region-start 100: the protein of AWK_0002 has 7 residues"):
        prepare_target(ann, genome, "bbbB", region_start=100)
    with pytest.raises(DnahnetError, match=r"p.fa: the assayed protein is empty"):
        prepare_target(ann, genome, "bbbB", protein="", protein_path="p.fa")


def test_read_dms_table(tmp_path):
    t = tmp_path / "d.tsv"
    t.write_text("mutant\tDMS_score\tother\nA2G\t0.5\tx\nA2G:L5P\t\ty\n")
    recs, col = read_dms(str(t))
    assert [r.mutant for r in recs] == ["A2G", "A2G:L5P"] and recs[0].score == 0.5 and math.isnan(recs[1].score)
    assert col == "DMS_score"
    t.write_text("variant,fitness\nA2G,1\n")
    with pytest.raises(DnahnetError, match="no mutant column 'mutant'"):
        read_dms(str(t))
    assert read_dms(str(t), mutant_col="variant", score_col="fitness")[0][0].score == 1.0
    t.write_text("mutant,score\nA2G,1\nfoo,2\n")
    with pytest.raises(DnahnetError, match=r"d.tsv: line 3: malformed mutant 'foo'"):
        read_dms(str(t))
    t.write_text("mutant,fitness\nA2G,1\n")  # the message once said "no score column None"
    with pytest.raises(DnahnetError, match=r"no score column DMS_score or score \(columns: mutant, fitness\); name yours with --score-col"):
        read_dms(str(t))
    t.write_bytes(b"\xef\xbb\xbfmutant,score\r\nA2G,0.1\r\n")  # Excel's CSV: a byte-order mark and CRLF
    assert [(r.mutant, r.score) for r in read_dms(str(t))[0]] == [("A2G", 0.1)]
    # a mutant listed twice (in any order of its substitutions) was scored twice and counted twice in rho; a
    # duplicated column name was read from its first copy without a word
    t.write_text("mutant,score\nA2G:L5P,1\nK3R,2\nL5P:A2G,3\n")
    with pytest.raises(DnahnetError, match=r"d.tsv: line 4: mutant 'L5P:A2G' is already on line 2"):
        read_dms(str(t))
    t.write_text("mutant,score,score\nA2G,1,2\n")
    with pytest.raises(DnahnetError, match=r"d.tsv: line 1: 2 columns are named 'score'"):
        read_dms(str(t))
    t.write_bytes(b"mutant,score,note\nA2G,0.1,\xb5M\n")  # Latin-1, once a traceback
    with pytest.raises(DnahnetError, match=r"d.tsv: not UTF-8 text"):
        read_dms(str(t))
    t.write_text("\n\nmutant,score\nA2G,1\nfoo,2\n")  # blank lines before the header: was "empty DMS table"
    with pytest.raises(DnahnetError, match=r"d.tsv: line 5: malformed mutant 'foo'"):
        read_dms(str(t))
    t.write_text("mutant,score\nA2G,1\nK5P," + "x" * 200_000 + "\n")  # csv's field limit: a traceback
    with pytest.raises(DnahnetError, match=r"d.tsv: line 3: not a CSV/TSV row \(field larger than field limit"):
        read_dms(str(t))
    import gzip

    gz = tmp_path / "d.csv.gz"
    data = bytearray(gzip.compress(("mutant,score\n" + "A2G,1\n" * 2000).encode()))
    data[20:60] = bytes((i * 97 + 13) % 256 for i in range(40))  # a corrupt deflate stream: zlib.error
    gz.write_bytes(bytes(data))
    with pytest.raises(DnahnetError, match=r"d.csv.gz: truncated or corrupt gzip"):
        read_dms(str(gz))


class FakeScorer:
    @staticmethod
    def ll(s):
        return -float(s.count("A")) - 0.5 * s.count("G")

    def loglik_pairs(self, refs, alts):
        return np.array([self.ll(s) for s in refs]), np.array([self.ll(s) for s in alts])


def test_score_plans_log_mean_exp(awkward):
    ann, genome, usage = awkward
    target = prepare_target(ann, genome, "bbbB")
    plans = [plan_mutant(target, _rec(m), c, usage) for m, c in (("A2G", "all"), ("K5K", "best"), ("F7W", "best"))]
    score_plans(target, plans, FakeScorer(), window=40, pairs_per_call=2)
    wt, muts = build_windows(target, plans[0], 40)
    expected = logmeanexp(np.array([FakeScorer.ll(m) for m in muts])) - FakeScorer.ll(wt)
    assert plans[0].delta == pytest.approx(expected)
    assert plans[1].delta == 0.0 and plans[1].n_nt_changes == 0
    assert all(p.status == OK for p in plans)
    assert logmeanexp(np.array([0.0, 0.0])) == pytest.approx(0.0)


@needs_ecoli
def test_all_if1_substitutions_map_onto_the_genome(ecoli):
    ann, genome, usage = ecoli
    target = prepare_target(ann, genome, "infA", read_protein(str(IF1 / "protein.fasta")))
    assert target.region_start == 1 and target.gene.strand == "-"
    records, _ = read_dms(str(IF1 / "dms.csv"))
    assert len(records) == 1367
    seq = genome["NC_000913.3"]
    for rec in records:
        plan = plan_mutant(target, rec, "best", usage)
        assert plan.status == OK and len(plan.variants) == 1
        (s,) = rec.subs
        mut_protein = translate(_mutant_cds(target, plan.variants[0]), initiator=False)
        expected = target.protein[: s.pos - 1] + s.mt + target.protein[s.pos :]
        assert mut_protein.rstrip("*") == expected or (s.mt == "*" and mut_protein.startswith(expected[: s.pos]))
        assert 1 <= plan.n_nt_changes <= 3
        for change in plan.genomic_changes.split(","):  # + strand REF bases check against the genome
            pos, ref = int(change[:-3]), change[-3]
            assert seq[pos - 1] == ref and 926225 <= pos <= 926443
    wt, (mut,) = build_windows(target, plan_mutant(target, records[0], "best", usage), window=1024)
    assert len(wt) == 1024 and target.cds in wt
    assert reverse_complement(target.cds) == seq[926224:926443]


# ---------------------------------------------------------------------------------------------------------
# CLI (`dnahnet eval dms`), with a tiny freshly initialised model on a subset of mutants


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from dnahnet_cli.model.checkpoint import save_checkpoint
    from dnahnet_cli.model.lm import DNAHNet
    from dnahnet_cli.model.presets import get_preset

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny")
    save_checkpoint(out, DNAHNet(get_preset("tiny")), {"preset": "tiny"})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: one thread is faster, and far faster on a busy CI box
    yield str(out)
    torch.set_num_threads(threads)


def _run(args):
    import typer
    from typer.testing import CliRunner

    from dnahnet_cli.commands import eval_cmd

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """test root"""

    eval_cmd.register(app)
    return CliRunner().invoke(app, args)


def test_cli_dms_on_embedded_fasta(tmp_path, tiny_model):
    import json

    import pandas as pd

    dms = tmp_path / "dms.csv"
    dms.write_text("mutant,DMS_score\nA2G,0.1\nK5P,-1.0\nA2G:K5P,-2\nF7W,0.5\nD3D,1.0\n")
    out, metrics = tmp_path / "out.tsv", tmp_path / "m.json"
    res = _run(["eval", "dms", "--gff", str(HERE / "data" / "awkward.gff3"), "--gene", "AWK_0002", "--dms", str(dms),
                "-m", tiny_model, "--window", "64", "--codons", "all", "-o", str(out), "--metrics", str(metrics),
                "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "##dnahnet_codons=all" in out.read_text()
    df = read_table(out)
    assert list(df.columns) == [
        "mutant", "n_subs", "codon_changes", "genomic_changes", "n_nt_changes", "n_codon_variants", "dms_score",
        "ll_wt", "ll_mut", "delta", "status",
    ]
    assert list(df.n_codon_variants) == [4, 4, 16, 1, 2] and (df.status == "OK").all()
    assert np.allclose(df.delta, df.ll_mut - df.ll_wt, atol=1e-5)  # ll_* print 12 digits (7 rounded to 0.01)
    m = json.loads(metrics.read_text())
    assert m["n_scored"] == 5 and m["n_skipped"] == 0 and -1 <= m["spearman_rho"] <= 1
    assert "Spearman rho" in res.output
    # trivial baselines on the same mutants: BLOSUM62 (A>G 0, K>P -1, both -1, F>W 1, D>D 6) and -n_subs
    from scipy.stats import spearmanr

    fitness = [0.1, -1.0, -2.0, 0.5, 1.0]
    base = m["baselines_spearman_rho"]
    assert base["blosum62"] == pytest.approx(spearmanr([0, -1, -1, 1, 6], fitness).statistic)
    assert base["neg_n_substitutions"] == pytest.approx(spearmanr([-1, -1, -2, -1, -1], fitness).statistic)
    assert "baseline blosum62" in res.output


def test_cli_dms_errors(tmp_path, tiny_model):
    gff = str(HERE / "data" / "awkward.gff3")
    dms = tmp_path / "dms.csv"
    dms.write_text("mutant,score\nA2G,0.1\nA2-G,1\n")
    res = _run(["eval", "dms", "--gff", gff, "--gene", "bbbB", "--dms", str(dms), "-m", tiny_model])
    assert isinstance(res.exception, DnahnetError) and "line 3: malformed mutant 'A2-G'" in str(res.exception)
    dms.write_text("mutant,score\nA2G,0.1\n")
    res = _run(["eval", "dms", "--gff", gff, "--gene", "nosuch", "--dms", str(dms), "-m", tiny_model])
    assert isinstance(res.exception, DnahnetError) and "no gene named 'nosuch'" in str(res.exception)
    prot = tmp_path / "p.fa"
    prot.write_text(">p\nMADRKPW\n")
    res = _run(["eval", "dms", "--gff", gff, "--gene", "bbbB", "--dms", str(dms), "-m", tiny_model, "--protein", str(prot)])
    assert isinstance(res.exception, DnahnetError) and "does not match the translated CDS" in str(res.exception)
    res = _run(["eval", "dms", "--gff", gff, "--gene", "bbbB", "--dms", str(dms), "-m", tiny_model, "--codons", "some"])
    assert isinstance(res.exception, DnahnetError) and "--codons" in str(res.exception)


@needs_ecoli
def test_cli_dms_if1_subset(tmp_path, tiny_model):
    import pandas as pd

    out = tmp_path / "if1.tsv"
    res = _run(["eval", "dms", "--genome", str(ECOLI_FA), "--gff", str(ECOLI_GFF), "--gene", "infA",
                "--dms", str(IF1 / "dms.csv"), "--protein", str(IF1 / "protein.fasta"), "-m", tiny_model,
                "--limit", "6", "--window", "256", "-o", str(out), "--device", "cpu", "--no-meta"])
    assert res.exit_code == 0, res.output
    df = read_table(out)
    assert list(df.mutant[:3]) == ["M1H", "M1G", "M1I"] and len(df) == 6 and (df.status == "OK").all()
    assert df.delta.notna().all() and (df.n_nt_changes >= 1).all()


def test_cli_dms_plot(tmp_path, tiny_model):
    dms = tmp_path / "dms.csv"
    dms.write_text("mutant,DMS_score\nA2G,0.1\nK5P,-1.0\nF7W,0.5\nD3E,1.0\n")
    png = tmp_path / "dms.png"
    res = _run(["eval", "dms", "--gff", str(HERE / "data" / "awkward.gff3"), "--gene", "AWK_0002", "--dms", str(dms),
                "-m", tiny_model, "--window", "64", "-o", str(tmp_path / "o.tsv"), "--plot", str(png), "--device", "cpu",
                "-q"])
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_cli_dms_failing_plot_leaves_no_outputs(tmp_path, tiny_model, monkeypatch):
    """The TSV was once renamed into place before the plot was drawn and --metrics written."""
    from dnahnet_cli.commands import eval_cmd

    break_plotting(monkeypatch, eval_cmd, "plot_dms_scatter")
    dms = tmp_path / "dms.csv"
    dms.write_text("mutant,DMS_score\nA2G,0.1\nK5P,-1.0\nF7W,0.5\nD3E,1.0\n")
    out = tmp_path / "out"
    out.mkdir()
    res = _run(["eval", "dms", "--gff", str(HERE / "data" / "awkward.gff3"), "--gene", "AWK_0002", "--dms", str(dms),
                "-m", tiny_model, "--window", "64", "-o", str(out / "o.tsv"), "--plot", str(out / "p.png"),
                "--metrics", str(out / "m.json"), "--device", "cpu", "-q"])
    assert isinstance(res.exception, DnahnetError) and "plot failed" in str(res.exception)
    assert not list(out.iterdir())


def test_cli_dms_header_records_the_flanks_used(tmp_path, tiny_model):
    """A --flank that does not fit the window was replaced by an even split, silently, while the header still
    recorded the requested flank."""
    dms = tmp_path / "dms.csv"
    dms.write_text("mutant,DMS_score\nA2G,0.1\nK5P,-1.0\n")
    common = ["eval", "dms", "--gff", str(HERE / "data" / "awkward.gff3"), "--gene", "AWK_0002", "--dms", str(dms),
              "-m", tiny_model, "--window", "64", "--device", "cpu"]
    flanks = {}
    for flank in ("5", "100", None):  # the CDS is 24 nt: 40 bases of flank fit a 64-nt window
        out = tmp_path / f"f{flank}.tsv"
        res = _run([*common, "-o", str(out), *(["--flank", flank] if flank else [])])
        assert res.exit_code == 0, res.output
        flanks[flank] = next(ln for ln in out.read_text().splitlines() if ln.startswith("##dnahnet_flank="))
        assert ("does not fit the 64-nt window" in res.output) == (flank == "100"), res.output
    assert flanks == {"5": "##dnahnet_flank=5; used 5 and 5", "100": "##dnahnet_flank=100; used 20 and 20",
                      None: "##dnahnet_flank=auto; used 20 and 20"}


def test_cli_dms_flank_clipped_by_a_contig_end_is_not_called_a_window_misfit(tmp_path, tiny_model):
    """CDS 26 nt + 2 x 16 fits a 64-nt window; the 70-nt linear contig clips one flank to 14, which the note once
    blamed on the window."""
    dms = tmp_path / "dms.csv"
    dms.write_text("mutant,DMS_score\nS2G,0.1\n")
    out = tmp_path / "o.tsv"
    res = _run(["eval", "dms", "--gff", str(HERE / "data" / "awkward.gff3"), "--gene", "AWK_0008", "--dms", str(dms),
                "-m", tiny_model, "--window", "64", "--flank", "16", "--device", "cpu", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "does not fit" not in res.output
    assert "##dnahnet_flank=16; used 16 and 14" in out.read_text()


def test_log_likelihood_columns_keep_the_digits_a_delta_needs():
    """An 8,192-nt window's log-likelihood is ~-1e4 nats: 7 significant digits printed it to 0.01 nats, so
    ll_mut - ll_wt recomputed from the file was off by up to 0.01 (the size of many DMS effects)."""
    import io

    from dnahnet_cli.genomics.outputs import TsvWriter

    fh = io.StringIO()
    TsvWriter(fh, ["ll_wt", "ll_mut", "delta", "sum_ll_fwd"]).write(
        {"ll_wt": -10679.594321, "ll_mut": -10681.334976, "delta": -1.740655123, "sum_ll_fwd": -10679.594321})
    ll_wt, ll_mut, delta, sum_ll = (float(x) for x in fh.getvalue().splitlines()[-1].split("\t"))
    assert ll_mut - ll_wt == pytest.approx(-1.740655, abs=1e-6) and sum_ll == pytest.approx(-10679.594321, abs=1e-7)
    assert fh.getvalue().splitlines()[-1].split("\t")[2] == "-1.740655"  # other floats: 7 digits as before
