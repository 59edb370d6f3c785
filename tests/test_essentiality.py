"""Stop-cassette construction, gene scoring plumbing (with a fake scorer), labels and evaluation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from dnahnet_cli.genomics.alphabet import reverse_complement
from dnahnet_cli.errors import DnahnetError
from dnahnet_cli.tasks.essentiality import (
    DEFAULT_CASSETTE, EssentialityConfig, build_insertions, evaluate, insertion_offsets, match_labels,
    parse_positions, read_labels, result_record, score_genes, validate_cassette,
)
from dnahnet_cli.genomics.gff import OK, load_genome, parse_gff, stop_codons, translate
from dnahnet_cli.genomics.outputs import read_table
from conftest import MISSING_DATA, SHARED_DATA, break_plotting

HERE = Path(__file__).resolve().parent
DATA = SHARED_DATA
ECOLI_GFF = DATA / "ecoli_k12" / "annot.gff.gz"
KEIO = DATA / "essentiality" / "ecoli_k12" / "keio_essential_names.txt"


class FakeScorer:
    """Deterministic stand-in for the engine: every base costs 1 nat, every TAG 5 more."""

    def __init__(self):
        self.calls = 0

    @staticmethod
    def ll(s: str) -> float:
        return -float(len(s)) - 5.0 * s.count("TAG")

    def loglik_pairs(self, refs, alts):
        self.calls += 1
        return np.array([self.ll(s) for s in refs]), np.array([self.ll(s) for s in alts])


@pytest.fixture(scope="module")
def awkward():
    ann = parse_gff(HERE / "data" / "awkward.gff3")
    genome, _ = load_genome(None, ann)
    return ann, genome


def _gene(ann, tag):
    return next(g for g in ann.genes if g.locus_tag == tag)


def test_default_cassette_stops_in_every_frame():
    stops = stop_codons(11)
    for frame in range(3):
        codons = [DEFAULT_CASSETTE[i : i + 3] for i in range(frame, len(DEFAULT_CASSETTE) - 2, 3)]
        assert any(c in stops for c in codons)
    assert len(DEFAULT_CASSETTE) % 3 == 0
    assert validate_cassette("taa") == "TAA"
    with pytest.raises(DnahnetError, match="no stop codon"):
        validate_cassette("CTAG")
    with pytest.raises(DnahnetError, match="A/C/G/T"):
        validate_cassette("TAGN")
    assert parse_positions("0.1,0.5,30") == (0.1, 0.5, 30.0)
    with pytest.raises(DnahnetError):
        parse_positions("a,b")
    for text in ("nan", "0.5,inf"):  # accepted before: every gene became SKIP_TOO_SHORT, exit 0
        with pytest.raises(DnahnetError, match="values must be > 0"):
            parse_positions(text)
    with pytest.raises(DnahnetError, match="either --positions or --tile"):  # --tile won silently
        EssentialityConfig.for_protocol("cassette", positions=(0.5,), tile=1200)


def test_insertion_offsets_are_inner_codon_starts(awkward):
    ann, _ = awkward
    g = _gene(ann, "AWK_0001")  # 27 nt, codons at 0..24
    assert insertion_offsets(g, EssentialityConfig(positions=(0.1,))) == [3]
    assert insertion_offsets(g, EssentialityConfig(positions=(0.5, 0.99))) == [12, 21]
    assert insertion_offsets(g, EssentialityConfig(tile=6)) == [6, 12, 18]
    assert insertion_offsets(g, EssentialityConfig(positions=(7, 23))) == [6, 21]  # nt offsets, nearest codon
    # an nt offset at or past the stop codon once became the last codon, reported OK; now it is left out
    assert insertion_offsets(g, EssentialityConfig(positions=(5000,))) == []
    assert insertion_offsets(g, EssentialityConfig(positions=(7, 24))) == [6]
    tiny = _gene(ann, "AWK_0007")  # ATG TTT TAA: only codon 3 is inner
    assert insertion_offsets(tiny, EssentialityConfig()) == [3]


@pytest.mark.parametrize("tag", ["AWK_0001", "AWK_0002", "AWK_0005", "AWK_0008"])
def test_mutant_reads_a_stop_in_frame(awkward, tag):
    ann, genome = awkward
    g = _gene(ann, tag)
    seq, circ = genome[g.seqid], g.seqid in ann.circular
    cfg = EssentialityConfig(protocol="cassette", positions=(0.5,), window=64)
    (ins,) = build_insertions(g, seq, circ, cfg)
    assert len(ins.mut) == len(ins.wt) + 12 and len(ins.mut) <= cfg.window
    cds = g.cds_sequence(seq, circ)
    # the wild-type window is the gene-strand view of the genome, and the CDS sits inside it
    if len(g.cds) == 1:
        assert cds in ins.wt
    # mutant = wild type with the cassette before the chosen codon; reading the CDS frame hits a stop there
    k = ins.mut.find(DEFAULT_CASSETTE)
    assert ins.mut[:k] + ins.mut[k + 12 :] == ins.wt
    mut_cds_prefix = cds[: ins.offset] + DEFAULT_CASSETTE
    assert translate(mut_cds_prefix)[ins.offset // 3] == "*"
    if g.strand == "-":
        plus = reverse_complement(ins.wt)
        assert plus == (seq * 3)[ins.window[0] % len(seq) : ins.window[0] % len(seq) + len(plus)]


def test_score_genes_with_fake_scorer(awkward):
    ann, genome = awkward
    scorer = FakeScorer()
    cfg = EssentialityConfig(protocol="cassette", window=80, tile=6)
    res = score_genes(ann, genome, scorer, cfg, pairs_per_call=2)
    by = {r.gene.locus_tag: r for r in res}
    assert by["AWK_0003"].status == "SKIP_PSEUDOGENE" and math.isnan(by["AWK_0003"].essentiality_score)
    assert by["AWK_0006"].status == "SKIP_NONCODING"
    assert scorer.calls >= 2
    a = by["AWK_0001"]
    ins = build_insertions(a.gene, genome["chr1"], True, cfg)
    assert a.status == OK and a.n_insertions == len(ins) == 3
    exp_sum = np.mean([FakeScorer.ll(x.mut) - FakeScorer.ll(x.wt) for x in ins])
    exp_mean = np.mean([FakeScorer.ll(x.mut) / len(x.mut) - FakeScorer.ll(x.wt) / len(x.wt) for x in ins])
    assert a.delta_sum == pytest.approx(exp_sum) and a.delta_mean == pytest.approx(exp_mean)
    assert a.essentiality_score == pytest.approx(-exp_mean) and a.essentiality_score > 0
    row = result_record(a)
    assert (row["seqid"], row["start1"], row["end"], row["strand"], row["cds_len"]) == ("chr1", 21, 54, "+", 27)
    # reverse-complement averaging scores both strands and still reports one value per gene
    rc = score_genes(ann, genome, FakeScorer(), EssentialityConfig(protocol="cassette", window=80, rc_average=True, reduce="sum"))
    b = next(r for r in rc if r.gene.locus_tag == "AWK_0002")
    assert b.essentiality_score == pytest.approx(-b.delta_sum)


def test_genes_whose_code_can_read_the_cassette_through_are_not_knocked_out(tmp_path):
    """Code 31 reads TAA/TAG as Glu inside a CDS, code 27 also TGA as Trp: a premature stop of the default cassette
    need not end translation there, so its genes get SKIP_NO_STOP_IN_FRAME instead of a knock-out score. (Guards the
    change that made `stop_codons` list such codes' terminators: the cassette check must not count them.)"""
    seq = "ATG" + "GCT" * 60 + "TAA"
    gff = tmp_path / "a.gff3"
    lines = "".join(f"c1\tt\tCDS\t1\t{len(seq)}\t.\t+\t0\tID=c{t};locus_tag=L{t};transl_table={t}\n"
                    for t in (11, 27, 31))
    gff.write_text(f"##gff-version 3\n{lines}##FASTA\n>c1\n{seq}\n")
    ann = parse_gff(gff)
    genome, _ = load_genome(None, ann)
    res = score_genes(ann, genome, FakeScorer(), EssentialityConfig(protocol="paper", window=120, tile=60))
    assert [(r.gene.locus_tag, r.status) for r in res] == [
        ("L11", OK), ("L27", "SKIP_NO_STOP_IN_FRAME"), ("L31", "SKIP_NO_STOP_IN_FRAME")]
    with pytest.raises(DnahnetError, match="no stop codon"):
        validate_cassette(DEFAULT_CASSETTE, 27)
    with pytest.raises(DnahnetError, match="no stop codon"):  # TGA ends a code-27 CDS, but is Trp inside one
        validate_cassette("TGATGA", 27)
    res = score_genes(ann, genome, FakeScorer(), EssentialityConfig(protocol="paper", window=120, tile=60,
                                                                     cassette="TGATGATGATGATGA"))
    assert [r.status for r in res] == [OK, "SKIP_NO_STOP_IN_FRAME", "SKIP_NO_STOP_IN_FRAME"]
    # a gene past the end of a linear contig is skipped, the others scored (its GC content was read first: a crash)
    gff.write_text(f"##gff-version 3\n{lines}c1\tt\tCDS\t100\t{len(seq) + 30}\t.\t+\t0\tID=cx;locus_tag=LX\n"
                   f"##FASTA\n>c1\n{seq}\n")
    ann = parse_gff(gff)
    genome, _ = load_genome(None, ann)
    res = score_genes(ann, genome, FakeScorer(), EssentialityConfig(protocol="paper", window=120, tile=60))
    assert [(r.gene.locus_tag, r.status) for r in res][-1] == ("LX", "SKIP_OUT_OF_BOUNDS") and res[0].status == OK


def test_labels_table_and_list(tmp_path, awkward):
    ann, genome = awkward
    res = score_genes(ann, genome, FakeScorer(), EssentialityConfig(protocol="cassette", window=80))
    scored = [r.index for r in res if r.status == OK]
    table = tmp_path / "labels.tsv"
    table.write_text("gene\tessential\nAWK_0001\t1\nbbbB\t0\nmissing\t1\nAWK_0003\t0\n")
    labels, fmt = read_labels(str(table))
    assert fmt == "table" and labels == {"AWK_0001": 1, "bbbB": 0, "missing": 1, "AWK_0003": 0}
    y, info = match_labels(labels, fmt, ann, scored)
    assert sorted(y.values()) == [0, 1] and info["unmatched"] == ["missing"] and info["n_labels_not_scored"] == 1
    plain = tmp_path / "ess.txt"
    plain.write_text("# essential genes\naaaA\nmmmM\n")
    labels, fmt = read_labels(str(plain))
    y, info = match_labels(labels, fmt, ann, scored)
    assert fmt == "list" and len(y) == len(scored) and sum(y.values()) == 2
    metrics = evaluate(res, y)
    assert metrics["essentiality_score"]["n"] == len(scored)
    assert set(metrics["baselines"]) == {"gene_length", "gc_content"}
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\t1\nb\tmaybe\n")
    with pytest.raises(DnahnetError, match=r"bad.tsv: line 2"):
        read_labels(str(bad))


def test_label_files_that_cannot_be_read_as_labels_are_one_line_errors(tmp_path):
    """A name labelled twice kept the last value silently; an .xlsx, a truncated gzip and a header-only table gave
    a traceback, a message without the file name, and NA metrics with exit 0."""
    import gzip
    import zipfile

    cases = {"dup.tsv": ("thrA\t1\nthrB\t0\nthrA\t0\n", r"dup.tsv: line 3: thrA is labelled 0 here but 1 on line 1"),
             "header.tsv": ("gene\tessential\n", r"header.tsv: no labels found"),
             "labels.xlsx": (None, r"labels.xlsx: not a text labels file"),
             "cut.txt.gz": (None, r"cut.txt.gz: truncated or corrupt gzip")}
    for name, (text, message) in cases.items():
        path = tmp_path / name
        if name.endswith(".xlsx"):
            with zipfile.ZipFile(path, "w") as z:
                z.writestr("xl/sheet1.xml", bytes(range(256)) * 8)
        elif name.endswith(".gz"):
            path.write_bytes(gzip.compress(b"thrA\nthrB\n" * 50)[:30])
        else:
            path.write_text(text)
        with pytest.raises(DnahnetError, match=message):
            read_labels(str(path))
    same = tmp_path / "same.tsv"
    same.write_text("thrA\t1\nthrA\tyes\n")  # the same label twice is no conflict
    assert read_labels(str(same)) == ({"thrA": 1}, "table")


def test_two_names_of_one_gene_labelled_differently_are_an_error(tmp_path):
    """A locus tag and a gene name (or two cases of one name) with different labels: the gene silently counted as
    essential (the larger label won)."""
    gff = tmp_path / "g.gff"
    gff.write_text("##gff-version 3\n" + "".join(
        f"c1\tt\tgene\t{s}\t{s + 8}\t.\t+\t.\tID=g{k};Name={name};locus_tag=L{k}\n"
        f"c1\tt\tCDS\t{s}\t{s + 8}\t.\t+\t0\tParent=g{k}\n" for k, (s, name) in enumerate([(1, "thrA"), (20, "thrB")])))
    ann = parse_gff(gff)
    with pytest.raises(DnahnetError, match=r"lab.tsv: L0 \(labelled 0\) and thrA \(labelled 1\) name the same gene"):
        match_labels({"L0": 0, "thrA": 1}, "table", ann, range(2), source="lab.tsv")
    y, _ = match_labels({"L0": 1, "thrA": 1, "L1": 0}, "table", ann, range(2))  # agreeing names are fine
    assert y == {0: 1, 1: 0}


def test_list_label_naming_two_genes_leaves_both_out(tmp_path):
    """An essential-gene list names genes; a name that fits two genes once made both count as non-essential."""
    gff = tmp_path / "dup.gff"
    gff.write_text("##gff-version 3\n" + "".join(
        f"c1\tt\tgene\t{s}\t{s + 8}\t.\t+\t.\tID=g{k};Name={name};locus_tag=L{k}\n"
        f"c1\tt\tCDS\t{s}\t{s + 8}\t.\t+\t0\tParent=g{k}\n"
        for k, (s, name) in enumerate([(1, "dup"), (20, "dup"), (40, "one"), (60, "two")])))
    ann = parse_gff(gff)
    listed = tmp_path / "ess.txt"
    listed.write_text("dup\ntwo\n")
    labels, fmt = read_labels(str(listed))
    y, info = match_labels(labels, fmt, ann, range(4))
    tags = {ann.genes[i].locus_tag: v for i, v in y.items()}
    assert tags == {"L2": 0, "L3": 1} and info["ambiguous"] == ["dup"]


@pytest.mark.skipif(not (ECOLI_GFF.exists() and KEIO.exists()), reason=MISSING_DATA)
def test_keio_list_maps_onto_ecoli_annotation():
    ann = parse_gff(ECOLI_GFF)
    labels, fmt = read_labels(str(KEIO))
    assert fmt == "list" and len(labels) == 300
    candidates = [i for i, g in enumerate(ann.genes) if g.status == OK]
    y, info = match_labels(labels, fmt, ann, candidates)
    assert sum(y.values()) >= 290
    assert info["n_labels_matched"] >= 290 and len(y) == 4288


# ---------------------------------------------------------------------------------------------------------
# CLI, with a tiny freshly initialised model on a few genes (fast)


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


def _app():
    import typer

    from dnahnet_cli.commands import essentiality_cmd

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """test root"""

    essentiality_cmd.register(app)
    return app


def _run(args):
    from typer.testing import CliRunner

    return CliRunner().invoke(_app(), args)


def test_labels_matching_no_gene_fail_before_scoring(tmp_path, tiny_model):
    labels = tmp_path / "other_species.txt"
    labels.write_text("yaaA\nyaaB\n")
    res = _run(["essentiality", "--gff", str(HERE / "data" / "awkward.gff3"), "-m", tiny_model, "--labels",
                str(labels), "--device", "cpu", "-q", "-o", str(tmp_path / "out.tsv")])
    assert isinstance(res.exception, DnahnetError) and "none of its 2 names matches a gene of" in str(res.exception)
    assert not (tmp_path / "out.tsv").exists()


def test_cli_embedded_fasta_with_labels(tmp_path, tiny_model):
    import json

    import pandas as pd

    out, metrics = tmp_path / "ess.tsv", tmp_path / "m.json"
    labels = tmp_path / "labels.tsv"
    labels.write_text("locus_tag\tessential\nAWK_0001\t1\nAWK_0002\t0\nAWK_0005\t1\nAWK_0008\t0\n")
    res = _run(["essentiality", "--gff", str(HERE / "data" / "awkward.gff3"), "-m", tiny_model, "-o", str(out),
                "--protocol", "cassette", "--window", "96", "--labels", str(labels), "--metrics", str(metrics), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert "##dnahnet_cassette=TAGCTAGCTAGC" in text and "##dnahnet_model=" in text
    df = read_table(out)
    assert list(df.columns) == [
        "seqid", "start1", "end", "strand", "gene_id", "locus_tag", "name", "cds_len", "gc_content",
        "n_insertions", "ll_wt", "ll_mut", "delta_mean", "delta_sum", "essentiality_score", "flags", "status",
    ]
    assert len(df) == 8
    ok = df[df.status == "OK"]
    assert set(ok.locus_tag) == {"AWK_0001", "AWK_0002", "AWK_0005", "AWK_0007", "AWK_0008"}
    assert np.allclose(ok.delta_sum, ok.ll_mut - ok.ll_wt, atol=1e-3)
    assert np.allclose(ok.essentiality_score, -ok.delta_mean)
    assert df[df.status != "OK"].essentiality_score.isna().all()
    m = json.loads(metrics.read_text())
    assert m["essentiality_score"]["n"] == 4 and m["essentiality_score"]["n_positive"] == 2
    assert 0.0 <= m["essentiality_score"]["auroc"] <= 1.0
    assert set(m["baselines"]) == {"gene_length", "gc_content"}
    assert "AUROC" in res.output  # summary on stderr (mixed into the runner's output)
    assert "##dnahnet_window=96" in text
    # -q means nothing on stderr, even without --metrics (the summary was printed then), as for eval dms
    res = _run(["essentiality", "--gff", str(HERE / "data" / "awkward.gff3"), "-m", tiny_model, "-o", str(out),
                "--protocol", "cassette", "--window", "96", "--labels", str(labels), "--device", "cpu", "-q"])
    assert res.exit_code == 0 and res.output == "", res.output


def test_cli_circular_option_joins_origin_crossing_genes_like_is_circular(tmp_path, tiny_model):
    """--circular NAME must reach the GFF parser: it decides how the parts of a gene across the origin are joined
    (it used to be applied after parsing, so such a gene was an error, or, with a gene line ending at the origin,
    its parts were joined in the wrong order and the knock-out landed in the wrong place)."""
    import pandas as pd

    text = (HERE / "data" / "awkward.gff3").read_text()
    assert ";Is_circular=true" in text
    bodies = []
    for name, gff_text, extra in (("flag", text, []),
                                  ("option", text.replace(";Is_circular=true", ""), ["--circular", "chr1"]),
                                  ("gene-line", text.replace(";Is_circular=true", "").replace(
                                      "gene\t136\t165", "gene\t136\t150"), ["--circular", "chr1"])):
        (tmp_path / f"{name}.gff3").write_text(gff_text)
        out = tmp_path / f"{name}.tsv"
        res = _run(["essentiality", "--gff", str(tmp_path / f"{name}.gff3"), "-m", tiny_model, "-o", str(out),
                    "--window", "96", "--device", "cpu", "--no-meta", *extra])
        assert res.exit_code == 0, res.output
        bodies.append(read_table(out).drop(columns=["end"] if name == "gene-line" else []))
    assert (bodies[0].set_index("locus_tag").loc["AWK_0005", "status"]) == "OK"
    pd.testing.assert_frame_equal(bodies[0], bodies[1])
    pd.testing.assert_frame_equal(bodies[0].drop(columns=["end"]), bodies[2])


def test_cli_default_is_paper_protocol(tmp_path, tiny_model):
    """No --protocol: the paper's replacement, stated in the header, scored as LL(wild type) - LL(knock-out)."""
    out = tmp_path / "paper.tsv"
    ex = HERE.parent / "examples"
    res = _run(["essentiality", str(ex / "ecoli_k12_20kb.fa"), "--gff", str(ex / "ecoli_k12_20kb.gff3"), "-m", tiny_model,
                "-o", str(out), "--max-genes", "4", "--window", "128", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    for line in ("##dnahnet_protocol=paper", "##dnahnet_cassette=TAATAATAATAGTGA", "##dnahnet_anchor=first",
                 "##dnahnet_window=128", "##dnahnet_precision="):
        assert line in text, line
    mutation = next(x for x in text.splitlines() if x.startswith("##dnahnet_mutation="))
    assert "replace" in mutation.lower()
    df = read_table(out)
    ok = df[df.status == "OK"]
    assert len(ok) == 4 and (ok.n_insertions == 1).all()
    assert np.allclose(ok.essentiality_score, ok.ll_wt - ok.ll_mut, atol=1e-3)  # larger = more damage


def test_cli_evo2_records_no_window(tmp_path, tiny_model):
    """evo2 scores the CDS plus its flanks whole, so --window must not appear to have shaped the result."""
    out = tmp_path / "evo2.tsv"
    res = _run(["essentiality", "--gff", str(HERE / "data" / "awkward.gff3"), "-m", tiny_model, "-o", str(out),
                "--protocol", "evo2", "--flank", "20", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert "##dnahnet_window=NA" in text and "##dnahnet_flank=20" in text
    # a --window was once accepted and ignored (scores identical for any value); like --anchor, it is refused
    res = _run(["essentiality", "--gff", str(HERE / "data" / "awkward.gff3"), "-m", tiny_model, "-o", str(out),
                "--protocol", "evo2", "--window", "96", "--device", "cpu"])
    assert isinstance(res.exception, DnahnetError) and "--window belongs to --protocol paper" in str(res.exception)
    assert "evo2 sequences reach" not in res.output  # the tiny test model's window holds these small genes
    res = _run(["essentiality", "--gff", str(HERE / "data" / "awkward.gff3"), "-m", tiny_model, "-o", str(out),
                "--protocol", "evo2", "--flank", "4096", "--device", "cpu", "--max-genes", "1"])
    assert res.exit_code == 0, res.output
    assert "evo2 sequences reach" in res.output and "training length" in res.output


def test_cli_errors(tmp_path, tiny_model):
    gff = tmp_path / "a.gff"
    gff.write_text("chrZ\tt\tgene\t1\t9\t.\t+\t.\tID=g1;locus_tag=T1\nchrZ\tt\tCDS\t1\t9\t.\t+\t0\tParent=g1\n")
    fa = tmp_path / "g.fa"
    fa.write_text(">chr1\nATGAAATAA\n")
    res = _run(["essentiality", str(fa), "--gff", str(gff), "-m", tiny_model])
    assert isinstance(res.exception, DnahnetError) and "seqid 'chrZ'" in str(res.exception)
    res = _run(["essentiality", "--gff", str(HERE / "data" / "awkward.gff3"), "-m", tiny_model, "--genes", "nope"])
    assert isinstance(res.exception, DnahnetError) and "no gene named 'nope'" in str(res.exception)
    for empty in ("", " ", ", "):  # "" once scored every gene (hours on a genome), " " none, both with exit 0
        res = _run(["essentiality", "--gff", str(HERE / "data" / "awkward.gff3"), "-m", tiny_model, "--genes", empty])
        assert isinstance(res.exception, DnahnetError) and "no gene names given" in str(res.exception), empty
    res = _run(["essentiality", "--gff", str(HERE / "data" / "awkward.gff3"), "-m", tiny_model, "--cassette", "GGG"])
    assert isinstance(res.exception, DnahnetError) and "no stop codon" in str(res.exception)


@pytest.mark.skipif(not (ECOLI_GFF.exists() and KEIO.exists()), reason=MISSING_DATA)
def test_cli_ecoli_few_genes(tmp_path, tiny_model):
    import pandas as pd

    out = tmp_path / "ess.tsv"
    res = _run(["essentiality", str(DATA / "ecoli_k12" / "genome.fa.gz"), "--gff", str(ECOLI_GFF), "-m", tiny_model,
                "--genes", "b0001,ftsL,b0884", "--window", "128", "-o", str(out), "--labels", str(KEIO),
                "--device", "cpu", "--no-meta"])
    assert res.exit_code == 0, res.output
    df = read_table(out)
    assert list(df.locus_tag) == ["b0001", "b0083", "b0884"] and (df.status == "OK").all()
    assert (df.n_insertions == 1).all() and df.essentiality_score.notna().all()
    assert "2 essential" in res.output  # ftsL and infA are on the Keio list


EXAMPLES = HERE.parent / "examples"


@pytest.fixture(scope="module")
def example_genes():
    ann = parse_gff(EXAMPLES / "ecoli_k12_20kb.gff3")
    genome, _ = load_genome(str(EXAMPLES / "ecoli_k12_20kb.fa"), ann)
    genes = [g for g in ann.genes if g.status == OK and len(g.cds) == 1 and 60 <= g.cds_len <= 900]
    assert {g.strand for g in genes} == {"+", "-"}
    return genes, genome


@pytest.mark.parametrize("anchor, offset", [("first", 12), ("after", 15)])
def test_paper_protocol_replaces_15_nt_after_the_start_codon(example_genes, anchor, offset):
    from dnahnet_cli.tasks.essentiality import PAPER_STOP

    genes, genome = example_genes
    cfg = EssentialityConfig.for_protocol("paper", window=1024, anchor=anchor)
    assert (cfg.cassette, cfg.reduce) == (PAPER_STOP, "sum")
    for g in genes:
        seq = genome[g.seqid]
        (ko,) = build_insertions(g, seq, False, cfg)
        cds = g.cds_sequence(seq, False)
        c = ko.wt.find(cds)
        assert c >= 0 and len(ko.mut) == len(ko.wt) <= 1024
        # exactly CDS offsets offset .. offset+14 replaced, by the stop sequence, in frame
        assert ko.mut[: c + offset] == ko.wt[: c + offset] and ko.mut[c + offset + 15:] == ko.wt[c + offset + 15:]
        assert ko.mut[c + offset: c + offset + 15] == PAPER_STOP
        protein = translate(ko.mut[c: c + len(cds)])
        assert protein[offset // 3] == "*" and "*" not in protein[: offset // 3]
        # the window is centred on the gene (up to the contig ends)
        left, right = c, len(ko.wt) - c - len(cds)
        assert abs(left - right) <= 1 or len(ko.wt) < 1024


def test_evo2_protocol_inserts_the_stop_every_12_nt(example_genes):
    from dnahnet_cli.tasks.essentiality import PAPER_STOP

    genes, genome = example_genes
    cfg = EssentialityConfig.for_protocol("evo2")
    assert cfg.flank == 4096 and cfg.reduce == "mean"
    for g in genes[:6]:
        seq = genome[g.seqid]
        (ins,) = build_insertions(g, seq, False, cfg)
        cds = g.cds_sequence(seq, False)
        c = ins.wt.find(cds)
        cuts = list(range(12, len(cds) - 3, 12))
        pieces = [cds[a:b] for a, b in zip([0] + cuts, cuts + [len(cds)])]
        assert ins.mut == ins.wt[:c] + PAPER_STOP.join(pieces) + ins.wt[c + len(cds):]
        assert len(ins.mut) == len(ins.wt) + 15 * len(cuts)
        assert c == min(4096, g.cds[0].start0 if g.strand == "+" else len(seq) - g.cds[0].end)


@pytest.mark.parametrize("protocol", ["paper", "evo2"])
@pytest.mark.parametrize("phase", [1, 2])
def test_knockouts_count_from_the_start_codon_when_the_first_cds_part_has_a_phase(example_genes, protocol, phase):
    """A CDS annotated `phase` bases before its start codon (GFF phase = phase) is the same gene: the paper
    replacement and the evo2 insertions must land on the same genome bases as without the extra bases."""
    import dataclasses

    genes, genome = example_genes
    cfg = EssentialityConfig.for_protocol(protocol, window=1024, flank=200)
    for g in genes[:6]:
        seq = genome[g.seqid]
        first = g.cds[0]
        if (g.strand == "+" and first.start0 < phase) or (g.strand == "-" and first.end + phase > len(seq)):
            continue
        grown = (dataclasses.replace(first, start0=first.start0 - phase, phase=phase) if g.strand == "+"
                 else dataclasses.replace(first, end=first.end + phase, phase=phase))
        shifted = dataclasses.replace(g, cds=[grown, *g.cds[1:]])
        assert shifted.first_codon == phase and shifted.protein(seq) == g.protein(seq)
        (ko,), (ko2,) = build_insertions(g, seq, False, cfg), build_insertions(shifted, seq, False, cfg)
        cds = g.coding_frame_sequence(seq)
        c, c2 = ko.wt.find(cds), ko2.wt.find(cds)
        assert ko2.mut[c2 - 20: c2 + len(cds) + 20] == ko.mut[c - 20: c + len(cds) + 20]
        assert translate(ko2.mut[c2: c2 + 30])[:4] == translate(cds[:12]) and "*" in translate(ko2.mut[c2: c2 + 30])


@pytest.mark.parametrize("protocol", ["paper", "cassette"])
def test_flanks_too_long_for_the_window_shrink_evenly_around_the_gene(example_genes, protocol):
    """--flank 4096 at a 1,024-nt window once kept the whole 5' flank and cut the gene's 3' end (stop codon
    included) while the header said "centred on the gene"."""
    genes, genome = example_genes
    cfg = EssentialityConfig.for_protocol(protocol, window=1024, flank=4096)
    size = cfg.window - (len(cfg.cassette) if protocol == "cassette" else 0)  # the mutant fills the window
    checked = 0
    for g in genes:
        lo, hi = g.cds[0].start0, g.cds[0].end
        if lo < size or hi + size > len(genome[g.seqid]):
            continue  # near a linear contig's end the window is clamped, by design
        for ko in build_insertions(g, genome[g.seqid], False, cfg):
            left, right = lo - ko.window[0], ko.window[1] - hi
            assert ko.window[1] - ko.window[0] == size and 0 <= right - left <= 1, (g.label, ko.window)
            checked += 1
    assert checked >= 5


def test_protocol_options_are_checked():
    with pytest.raises(DnahnetError, match="--protocol"):
        EssentialityConfig.for_protocol("evo3")
    with pytest.raises(DnahnetError, match="--positions and --tile"):
        EssentialityConfig.for_protocol("paper", tile=6)
    with pytest.raises(DnahnetError, match="--anchor"):
        EssentialityConfig.for_protocol("paper", anchor="middle")
    assert EssentialityConfig.for_protocol("cassette").cassette == DEFAULT_CASSETTE
    # the provenance line says what --flank does to the window (it once said "window N nt centred" regardless)
    import dataclasses

    flanked = dataclasses.replace(EssentialityConfig.for_protocol("paper", flank=100), window=8192)
    assert flanked.describe().endswith("the CDS plus 100 nt each side (at most 8192 nt, centred on the gene)")


def test_cli_bed_track_and_plots(tmp_path, tiny_model):
    """--bed: BED6+2 of the scored genes, sorted, score = rank x 1000; --plot: a PNG with or without labels."""
    out, bed, png, png2 = (tmp_path / n for n in ("ess.tsv", "ess.bed", "roc.png", "dist.png"))
    labels = tmp_path / "labels.tsv"
    labels.write_text("AWK_0001\t1\nAWK_0002\t0\nAWK_0005\t1\nAWK_0008\t0\n")
    base = ["essentiality", "--gff", str(HERE / "data" / "awkward.gff3"), "-m", tiny_model, "--protocol", "cassette",
            "--window", "96", "--device", "cpu", "-q", "-o", str(out)]
    res = _run(base + ["--bed", str(bed), "--plot", str(png), "--labels", str(labels)])
    assert res.exit_code == 0, res.output
    df = read_table(out)
    ok = df[df.status == "OK"]
    rows = [line.split("\t") for line in bed.read_text().splitlines() if not line.startswith("#")]
    assert all(len(r) == 8 for r in rows)
    names = {r[3] for r in rows}
    assert names == set(ok.locus_tag)
    keys = [(r[0].encode(), int(r[1])) for r in rows]
    assert keys == sorted(keys) and all(0 <= int(r[1]) < int(r[2]) for r in rows)
    by_name = {r[3]: r for r in rows}
    best = ok.loc[ok.essentiality_score.idxmax(), "locus_tag"]
    assert by_name[best][4] == "1000" and all(0 <= int(r[4]) <= 1000 for r in rows)
    for _, g in ok.iterrows():
        assert float(by_name[g.locus_tag][6]) == pytest.approx(g.essentiality_score, rel=1e-6)
        assert by_name[g.locus_tag][5] == g.strand
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = _run(base + ["--plot", str(png2)])
    assert res.exit_code == 0 and png2.read_bytes()[:4] == b"\x89PNG"
    pdf, svg = tmp_path / "dist.pdf", tmp_path / "dist.svg"  # once a PNG inside a file named .pdf
    assert _run(base + ["--plot", str(pdf)]).exit_code == 0 and pdf.read_bytes()[:5] == b"%PDF-"
    assert _run(base + ["--plot", str(svg)]).exit_code == 0 and b"<svg" in svg.read_bytes()[:2000]
    res = _run(base + ["--plot", "-"])
    assert isinstance(res.exception, DnahnetError) and "--plot needs a file name" in str(res.exception)


def test_cli_bed_track_line_is_plain_bed6_for_browsers(tmp_path, tiny_model):
    """A browser reads BED columns 7-8 as thickStart/thickEnd (integers), so --track-line writes a UCSC track line
    and BED6: the first six columns of the default BED6+2, with no comment lines."""
    base = ["essentiality", "--gff", str(HERE / "data" / "awkward.gff3"), "-m", tiny_model, "--protocol", "cassette",
            "--window", "96", "--device", "cpu", "-q", "-o", str(tmp_path / "ess.tsv")]
    plain, browser = tmp_path / "plain.bed", tmp_path / "browser.bed"
    assert _run(base + ["--bed", str(plain)]).exit_code == 0
    assert _run(base + ["--bed", str(browser), "--track-line"]).exit_code == 0
    lines = browser.read_text().splitlines()
    assert lines[0].startswith('track name="dnahnet_essentiality"') and "useScore=1" in lines[0]
    rows = [line.split("\t") for line in plain.read_text().splitlines() if not line.startswith("#")]
    assert len(rows) > 0 and [line.split("\t") for line in lines[1:]] == [r[:6] for r in rows]
    res = _run(base + ["--track-line"])
    assert isinstance(res.exception, DnahnetError) and "--track-line needs --bed" in str(res.exception)


def test_failing_plot_leaves_no_outputs(tmp_path, tiny_model, monkeypatch):
    """The TSV and --bed were once renamed into place before the plot was drawn and --metrics written, so a plot
    that failed left a run that looked finished but had no metrics."""
    from dnahnet_cli.commands import essentiality_cmd

    break_plotting(monkeypatch, essentiality_cmd, "plot_essentiality_curves")
    labels = tmp_path / "labels.tsv"
    labels.write_text("AWK_0001\t1\nAWK_0002\t0\nAWK_0005\t1\nAWK_0008\t0\n")
    out = tmp_path / "out"
    out.mkdir()
    res = _run(["essentiality", "--gff", str(HERE / "data" / "awkward.gff3"), "-m", tiny_model, "--protocol",
                "cassette", "--window", "96", "--device", "cpu", "-q", "-o", str(out / "ess.tsv"), "--bed",
                str(out / "ess.bed"), "--plot", str(out / "roc.png"), "--labels", str(labels), "--metrics",
                str(out / "m.json")])
    assert isinstance(res.exception, DnahnetError) and "plot failed" in str(res.exception)
    assert not list(out.iterdir())


def test_bed_rows_split_a_gene_across_the_origin():
    from dnahnet_cli.genomics.gff import Gene, Segment
    from dnahnet_cli.tasks.essentiality import GeneResult, bed_rows

    wrap = Gene("g1", "c", "+", 90, 110, locus_tag="W1", cds=(Segment(90, 110, 0),))
    inner = Gene("g2", "c", "-", 10, 40, locus_tag="I1", cds=(Segment(10, 40, 0),))
    res = [GeneResult(0, wrap, 0.5, essentiality_score=2.0), GeneResult(1, inner, 0.5, essentiality_score=-1.0)]
    rows = bed_rows(res, {"c": 100})
    assert [(r["name"], r["start"], r["end"], r["score"]) for r in rows] == [
        ("W1", 0, 10, 1000), ("I1", 10, 40, 500), ("W1", 90, 100, 1000)]


def test_a_gff_with_another_assemblys_coordinates_is_warned_about(tmp_path, tiny_model):
    """Same seqid, same length, coordinates from another assembly: every gene was scored at bases that are not
    genes, without a word (a wrong seqid or length is an error already)."""
    ex = HERE.parent / "examples"
    lines = []
    for line in (ex / "ecoli_k12_20kb.gff3").read_text().splitlines():
        f = line.split("\t")
        if len(f) == 9 and int(f[4]) + 700 <= 20_000:
            f[3], f[4] = str(int(f[3]) + 700), str(int(f[4]) + 700)
            line = "\t".join(f)
        elif len(f) == 9:
            continue
        lines.append(line)
    shifted = tmp_path / "shifted.gff3"
    shifted.write_text("\n".join(lines) + "\n")
    common = [str(ex / "ecoli_k12_20kb.fa"), "-m", tiny_model, "--window", "64", "--max-genes", "1", "--device", "cpu"]
    warned = "do not begin with a start codon"
    res = _run(["essentiality", *common, "--gff", str(shifted), "-o", str(tmp_path / "a.tsv")])
    assert res.exit_code == 0 and warned in res.stderr and "another assembly" in res.stderr, res.stderr
    res = _run(["essentiality", *common, "--gff", str(ex / "ecoli_k12_20kb.gff3"), "-o", str(tmp_path / "b.tsv")])
    assert res.exit_code == 0 and warned not in res.stderr, res.stderr
