"""GFF3 parsing: the awkward cases of a hand-made file, the real E. coli K-12 annotation, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from dnahnet_cli.errors import DnahnetError
from dnahnet_cli.genomics.gff import (
    OK, context_window, fetch, load_genome, oriented_index, parse_gff, translate,
)
from conftest import MISSING_DATA, SHARED_DATA

HERE = Path(__file__).resolve().parent
AWKWARD = HERE / "data" / "awkward.gff3"
DATA = SHARED_DATA
ECOLI_GFF = DATA / "ecoli_k12" / "annot.gff.gz"
ECOLI_FA = DATA / "ecoli_k12" / "genome.fa.gz"


@pytest.fixture(scope="module")
def awkward():
    ann = parse_gff(AWKWARD)
    genome, _ = load_genome(None, ann)
    return ann, genome


def _gene(ann, tag):
    return next(g for g in ann.genes if g.locus_tag == tag)


def test_embedded_fasta_and_circularity(awkward):
    ann, genome = awkward
    assert set(genome) == {"chr1", "ctg2"}
    assert (len(genome["chr1"]), len(genome["ctg2"])) == (150, 70)
    assert ann.circular == {"chr1"}
    assert ann.lengths == {"chr1": 150, "ctg2": 70}
    from_file, source = load_genome(str(HERE / "data" / "awkward.fa"), ann)  # a FASTA file wins over ##FASTA
    assert from_file == genome and source.endswith("awkward.fa")


def test_statuses(awkward):
    ann, _ = awkward
    status = {g.locus_tag: g.status for g in ann.genes}
    assert status == {
        "AWK_0001": OK, "AWK_0002": OK, "AWK_0003": "SKIP_PSEUDOGENE", "AWK_0004": "SKIP_PARTIAL",
        "AWK_0005": OK, "AWK_0006": "SKIP_NONCODING", "AWK_0007": OK, "AWK_0008": OK,
    }


def test_multipart_cds_with_phase(awkward):
    ann, genome = awkward
    g = _gene(ann, "AWK_0001")
    assert [(s.start0, s.end, s.phase) for s in g.cds] == [(20, 33, 0), (40, 54, 2)]
    assert g.cds_len == 27
    assert g.cds_sequence(genome["chr1"], True) == "ATGAAACTGGTTTTAGAAACCGGTTAA"
    assert g.protein(genome["chr1"], True) == "MKLVLETG"
    assert g.codon_starts() == [0, 3, 6, 9, 12, 15, 18, 21, 24]
    assert [g.cds_to_genome(i) for i in (12, 13, 14)] == [32, 40, 41]  # codon split across the parts
    assert g.codon_positions(12) == [32, 40, 41]
    assert g.ends_with_stop(genome["chr1"], True) and g.codon_positions(24) == [51, 52, 53]
    assert g.synonyms == ("syn1", "alsoA") and g.name == "aaaA"


def test_minus_strand(awkward):
    ann, genome = awkward
    g = _gene(ann, "AWK_0002")
    assert g.strand == "-"
    assert g.cds_sequence(genome["chr1"]) == "ATGGCTGATCGTAAACCGTTCTGA"
    assert g.protein(genome["chr1"]) == "MADRKPF"
    assert g.cds_to_genome(0) == 83  # first base in transcription order = highest coordinate


def test_minus_strand_gene_mrna_cds_with_phase(awkward):
    ann, genome = awkward
    g = _gene(ann, "AWK_0008")
    assert [(s.start0, s.end, s.phase) for s in g.cds] == [(45, 56, 0), (30, 40, 1)]  # transcription order
    assert g.cds_sequence(genome["ctg2"]) == "ATGTCTGAAGGTCGTCCTTAA"
    assert g.protein(genome["ctg2"]) == "MSEGRP"
    assert g.codon_starts() == [0, 3, 6, 9, 12, 15, 18]


def test_origin_crossing(awkward):
    ann, genome = awkward
    g = _gene(ann, "AWK_0005")
    assert [(s.start0, s.end) for s in g.cds] == [(135, 150), (150, 165)]  # unwrapped past the origin
    assert (g.start0, g.end) == (135, 165)
    assert g.protein(genome["chr1"], circular=True) == "MRLKEHQWF"
    assert fetch(genome["chr1"], 145, 155, circular=True) == genome["chr1"][145:] + genome["chr1"][:5]
    with pytest.raises(ValueError):
        fetch(genome["chr1"], 145, 155, circular=False)


def test_orphan_cds_and_names(awkward):
    ann, _ = awkward
    g = _gene(ann, "AWK_0007")
    assert g.name == "orfZ" and g.gene_id == "ctg2_7" and g.protein is not None
    assert ann.find_gene("alsoA").locus_tag == "AWK_0001"  # synonym
    assert ann.find_gene("BBBB").locus_tag == "AWK_0002"  # case-insensitive fallback
    with pytest.raises(DnahnetError, match="no gene named 'nope'"):
        ann.find_gene("nope")


def test_context_window_clamps_and_wraps(awkward):
    ann, genome = awkward
    orx = _gene(ann, "AWK_0005")
    w = context_window(orx, 150, True, size=50)
    assert w == (125, 175) and len(fetch(genome["chr1"], *w, circular=True)) == 50
    m = _gene(ann, "AWK_0008")  # linear contig: window clamps at the ends
    assert context_window(m, 70, False, size=200) == (0, 70)
    a = _gene(ann, "AWK_0001")  # too long for the window: cropped around the focus, inside the region
    assert context_window(a, 150, True, size=10, flank=0, focus=(40, 43)) == (36, 46)
    assert oriented_index(83, (60, 84), "-") == 0 and oriented_index(60, (60, 84), "+") == 0


def test_translate_codes():
    assert translate("GTGTGATAA", 11) == "M**"
    assert translate("ATGTGATAA", 4) == "MW*"


def test_bad_input(tmp_path):
    bad = tmp_path / "bad.gff"
    bad.write_text("##gff-version 3\nchr1 test gene 1 10 . + . ID=x\n")
    with pytest.raises(DnahnetError, match=r"bad.gff: line 2: expected 9 tab-separated"):
        parse_gff(bad)
    bad.write_text("chr1\tt\tgene\t20\t10\t.\t+\t.\tID=x\n")
    with pytest.raises(DnahnetError, match=r"line 1: invalid coordinates"):
        parse_gff(bad)
    bad.write_text('chr1\tt\tCDS\t1\t10\t.\t+\t0\tgene_id "x"; transcript_id "y";\n')
    with pytest.raises(DnahnetError, match="GTF"):
        parse_gff(bad)
    gff = tmp_path / "other.gff"
    gff.write_text("chrX\tt\tgene\t1\t9\t.\t+\t.\tID=g1;locus_tag=T1\nchrX\tt\tCDS\t1\t9\t.\t+\t0\tParent=g1\n")
    fa = tmp_path / "g.fa"
    fa.write_text(">chr1\nATGAAATAA\n")
    with pytest.raises(DnahnetError, match=r"line 1: seqid 'chrX' of gene T1 is not in .*g.fa"):
        load_genome(str(fa), parse_gff(gff))
    with pytest.raises(DnahnetError, match="no ##FASTA"):
        load_genome(None, parse_gff(gff))
    # the same gene ID on two contigs would hand one gene the other's CDS: an error, not a silent link
    gff.write_text("c1\tt\tgene\t1\t9\t.\t+\t.\tID=g1\nc1\tt\tCDS\t1\t9\t.\t+\t0\tID=c1;Parent=g1\n"
                   "c2\tt\tgene\t1\t12\t.\t+\t.\tID=g1\nc2\tt\tCDS\t1\t12\t.\t+\t0\tID=c2;Parent=g1\n")
    with pytest.raises(DnahnetError, match=r"other.gff: line 3: ID 'g1' is already used on line 1 \(gene on c1\)"):
        parse_gff(gff)
    gff.write_text("c1\tt\tCDS\t1\t9\t.\t+\t0\tID=x\nc2\tt\tCDS\t1\t9\t.\t+\t0\tID=x\n")  # a CDS ID on two contigs
    with pytest.raises(DnahnetError, match="line 2: ID 'x'"):
        parse_gff(gff)


@pytest.mark.skipif(not ECOLI_GFF.exists(), reason=MISSING_DATA)
def test_ecoli_annotation():
    ann = parse_gff(ECOLI_GFF)
    genome, _ = load_genome(str(ECOLI_FA), ann)
    seq = genome["NC_000913.3"]
    ok = [g for g in ann.genes if g.status == OK]
    assert len(ok) == 4288 and ann.circular == {"NC_000913.3"}
    assert sum(g.status == "SKIP_PSEUDOGENE" for g in ann.genes) == 145
    # every scorable CDS is whole codons, translates without internal stops (bar selenoproteins) and starts with M
    for g in ok:
        prot = g.protein(seq, True)
        assert len(g.coding_frame_sequence(seq, True)) % 3 == 0
        assert prot.startswith("M")
        assert "*" not in prot or "selenocysteine" in g.flags, g.label
    prfb = ann.find_gene("prfB")
    assert prfb.flags == ("ribosomal_slippage",) and len(prfb.cds) == 2
    dnax = ann.find_gene("dnaX")  # isoforms: the CDS without an exception is kept
    assert dnax.cds_id == "cds-NP_415003.1"
    infa = ann.find_gene("infA")
    assert (infa.strand, infa.start0 + 1, infa.end) == ("-", 926225, 926443)


def test_prodigal_style_partial_flags(tmp_path):
    gff = tmp_path / "prodigal.gff"
    gff.write_text(
        "c1\tProdigal\tCDS\t1\t9\t.\t+\t0\tID=1_1;partial=00;start_type=ATG\n"
        "c1\tProdigal\tCDS\t11\t19\t.\t-\t0\tID=1_2;partial=10;start_type=Edge\n"
    )
    ann = parse_gff(gff)
    assert [(g.gene_id, g.status) for g in ann.genes] == [("1_1", OK), ("1_2", "SKIP_PARTIAL")]


def _circular_contig(tmp_path) -> tuple[Path, str]:
    """A 1,000-nt contig whose only gene starts at 950 and crosses the origin: ATG, 31 codons, TAA."""
    import random

    rng = random.Random(7)
    seq = [rng.choice("ACGT") for _ in range(1000)]
    orf = "ATG" + "".join(rng.choice(["GCT", "AAA", "CTG", "GGC"]) for _ in range(31)) + "TAA"  # 99 nt
    for i, base in enumerate(orf):
        seq[(949 + i) % 1000] = base
    fa = tmp_path / "circ.fa"
    fa.write_text(">c1\n" + "".join(seq) + "\n")
    return fa, orf


# one gene across the origin of the 1,000-nt contig above: its region line, its gene line on each side, its CDS
CIRCULAR_REGION = "c1\tt\tregion\t1\t1000\t.\t+\t.\tID=c1;Is_circular=true\n"
GENE_BEFORE_ORIGIN = "c1\tt\tgene\t950\t1000\t.\t+\t.\tID=g1;locus_tag=L1\n"
GENE_AFTER_ORIGIN = "c1\tt\tgene\t1\t48\t.\t+\t.\tID=g1;locus_tag=L1\n"
CDS_ACROSS_ORIGIN = "c1\tt\tCDS\t950\t1000\t.\t+\t0\tID=cds1;Parent=g1\nc1\tt\tCDS\t1\t48\t.\t+\t0\tID=cds1;Parent=g1\n"


def test_gene_written_as_two_lines_across_the_origin_is_one_gene(tmp_path):
    """GFF3 lets a discontinuous feature take one line per part under one ID: the gene once became two genes,
    the second without its CDS (an empty SKIP_NONCODING row in essentiality)."""
    from dnahnet_cli.genomics.gff import load_annotated_genome

    fa, orf = _circular_contig(tmp_path)
    gff = tmp_path / "two_lines.gff"
    gff.write_text("##gff-version 3\n" + CIRCULAR_REGION + GENE_BEFORE_ORIGIN + GENE_AFTER_ORIGIN + CDS_ACROSS_ORIGIN)
    ann, genome, _ = load_annotated_genome(str(fa), str(gff))
    assert [(g.locus_tag, g.start0, g.end) for g in ann.genes] == [("L1", 949, 1048)]
    g = ann.genes[0]
    assert [(s.start0, s.end) for s in g.cds] == [(949, 1000), (1000, 1048)]
    assert g.cds_sequence(genome["c1"], True) == orf


def test_circular_option_joins_origin_crossing_cds_without_a_region_line(tmp_path):
    """With --circular and no region/##sequence-region line the GFF states no contig length; the parts were then
    joined in file order (TAA... before ATG) and the knock-out landed at the wrong end. The FASTA gives it."""
    from dnahnet_cli.genomics.gff import load_annotated_genome

    fa, orf = _circular_contig(tmp_path)
    gff = tmp_path / "no_region.gff"
    gff.write_text("##gff-version 3\nc1\tt\tgene\t950\t1048\t.\t+\t.\tID=g1;locus_tag=L1\n"
                   "c1\tt\tCDS\t950\t1000\t.\t+\t0\tID=cds1;Parent=g1\nc1\tt\tCDS\t1\t48\t.\t+\t0\tID=cds1;Parent=g1\n")
    ann, genome, _ = load_annotated_genome(str(fa), str(gff), circular=["c1"])
    g = ann.genes[0]
    assert [(s.start0, s.end) for s in g.cds] == [(949, 1000), (1000, 1048)]
    assert g.cds_sequence(genome["c1"], True) == orf


def test_duplicate_record_in_embedded_fasta_is_an_error(tmp_path):
    gff = tmp_path / "dup.gff"
    gff.write_text("##gff-version 3\nc1\tt\tgene\t1\t9\t.\t+\t.\tID=g1\nc1\tt\tCDS\t1\t9\t.\t+\t0\tParent=g1\n"
                   "##FASTA\n>c1\nACGTACGT\n>c1\nATGAAATAA\n")
    with pytest.raises(DnahnetError, match=r"dup.gff: line 7: record c1: duplicate sequence name"):
        parse_gff(gff)


def test_one_stdin_input_at_most():
    from dnahnet_cli.genomics.fileio import check_one_stdin

    check_one_stdin({"GENOME": "g.fa", "--gff": "-", "--labels": None})
    with pytest.raises(DnahnetError, match=r"GENOME and --gff cannot all be - \(stdin can be read only once\)"):
        check_one_stdin({"GENOME": "-", "--gff": "-", "--labels": None})


def test_tab_in_an_attribute_cannot_split_a_tsv_row():
    """GFF3 percent-encodes a tab inside a value (Name=thr%09L); unescaped, it once split the output row."""
    from dnahnet_cli.genomics.outputs import format_value

    assert format_value("thr\tL") == "thr%09L" and format_value("a\nb\r") == "a%0Ab%0D"
    assert format_value("thrL") == "thrL"


def test_genes_sharing_an_id_are_joined_only_across_the_origin(tmp_path):
    """Two tRNA genes given one ID by mistake (other strands, other locus tags) were once joined into one gene
    spanning both; only the two sides of one gene across a circular origin are joined."""
    gff = tmp_path / "dup_id.gff"
    gff.write_text("##gff-version 3\n##sequence-region chr 1 1000\n"
                   "chr\tt\tgene\t101\t175\t.\t+\t.\tID=trna;locus_tag=T1;gene_biotype=tRNA\n"
                   "chr\tt\tgene\t801\t875\t.\t-\t.\tID=trna;locus_tag=T2;gene_biotype=tRNA\n"
                   "chr\tt\tgene\t1\t30\t.\t+\t.\tID=p;locus_tag=P1\nchr\tt\tgene\t970\t1000\t.\t+\t.\tID=p;locus_tag=P1\n")
    ann = parse_gff(gff)  # linear: nothing joined
    assert sorted((g.locus_tag, g.start0, g.end, g.strand) for g in ann.genes) == [
        ("P1", 0, 30, "+"), ("P1", 969, 1000, "+"), ("T1", 100, 175, "+"), ("T2", 800, 875, "-")]
    ann = parse_gff(gff, circular=["chr"])  # circular: P1's two sides become one gene across the origin
    assert sorted((g.locus_tag, g.start0, g.end, g.strand) for g in ann.genes) == [
        ("P1", 969, 1030, "+"), ("T1", 100, 175, "+"), ("T2", 800, 875, "-")]


def test_cds_of_genes_sharing_an_id_stay_with_their_own_gene(tmp_path):
    """Two protein-coding genes given one ID by mistake, each with its CDS (Parent=g): both CDS once went to the
    first gene, spliced into one made-up CDS, and the second gene became non-coding (or, on opposite strands,
    parsing failed)."""
    for strand2 in ("+", "-"):
        gff = tmp_path / f"shared{strand2}.gff"
        gff.write_text("##gff-version 3\n##sequence-region chr 1 1000\n"
                       "chr\tt\tgene\t101\t400\t.\t+\t.\tID=g;locus_tag=A1\nchr\tt\tCDS\t101\t400\t.\t+\t0\tParent=g\n"
                       f"chr\tt\tgene\t601\t900\t.\t{strand2}\t.\tID=g;locus_tag=A2\n"
                       f"chr\tt\tCDS\t601\t900\t.\t{strand2}\t0\tParent=g\n")
        genes = {g.locus_tag: g for g in parse_gff(gff).genes}
        assert [(s.start0, s.end) for s in genes["A1"].cds] == [(100, 400)]
        assert [(s.start0, s.end) for s in genes["A2"].cds] == [(600, 900)] and genes["A2"].strand == strand2


def test_trans_spliced_gene_and_overhanging_cds(tmp_path):
    """NCBI writes a trans-spliced gene (chloroplast rps12) as two gene lines sharing ID and locus tag, its one CDS
    with parts under both: one gene with the whole CDS. Two distinct genes sharing an ID keep their own CDS even
    when a CDS overhangs its gene line by a base; an origin-crossing gene may name only one of its lines."""
    gff = tmp_path / "rps12.gff"
    gff.write_text(
        "##gff-version 3\n##sequence-region c 1 154478\n"
        "c\tR\tgene\t69611\t69724\t.\t-\t.\tID=gene-r;Name=rps12;locus_tag=Cp047;part=1/2\n"
        "c\tR\tCDS\t69611\t69724\t.\t-\t0\tID=cds-r;Parent=gene-r\n"
        "c\tR\tgene\t97999\t98793\t.\t-\t.\tID=gene-r;Name=rps12;locus_tag=Cp047;part=2/2\n"
        "c\tR\tCDS\t98768\t98793\t.\t-\t0\tID=cds-r;Parent=gene-r\nc\tR\tCDS\t97999\t98230\t.\t-\t1\tID=cds-r;Parent=gene-r\n")
    (gene,) = parse_gff(gff).genes
    assert (gene.locus_tag, gene.start0, gene.end) == ("Cp047", 69610, 98793)
    assert [(s.start0, s.end) for s in gene.cds] == [(98767, 98793), (97998, 98230), (69610, 69724)]
    gff.write_text("##gff-version 3\n##sequence-region chr 1 1000\n"
                   "chr\tt\tgene\t101\t400\t.\t+\t.\tID=g;locus_tag=A1\nchr\tt\tCDS\t101\t400\t.\t+\t0\tParent=g\n"
                   "chr\tt\tgene\t601\t900\t.\t-\t.\tID=g;locus_tag=A2\nchr\tt\tCDS\t601\t901\t.\t-\t0\tParent=g\n")
    genes = {g.locus_tag: g for g in parse_gff(gff).genes}
    assert [(s.start0, s.end) for s in genes["A2"].cds] == [(600, 901)] and len(genes["A1"].cds) == 1
    gff.write_text("##gff-version 3\nc1\tt\tregion\t1\t1000\t.\t+\t.\tID=c1;Is_circular=true\n"
                   "c1\tt\tgene\t950\t1000\t.\t+\t.\tID=g1;Name=orf;locus_tag=L1\nc1\tt\tgene\t1\t48\t.\t+\t.\tID=g1\n"
                   "c1\tt\tCDS\t950\t1000\t.\t+\t0\tID=cds1;Parent=g1\nc1\tt\tCDS\t1\t48\t.\t+\t0\tID=cds1;Parent=g1\n")
    (gene,) = parse_gff(gff).genes
    assert (gene.start0, gene.end) == (949, 1048) and [(s.start0, s.end) for s in gene.cds] == [(949, 1000), (1000, 1048)]


def test_a_cds_on_both_strands_and_a_gene_past_a_linear_end_are_kept_as_skipped(tmp_path):
    """Organelle trans-splicing (plastid rps12) puts one CDS's parts on both strands, and Bakta puts tmRNAs past the
    ends of draft contigs: either stopped the whole parse (essentiality, segment --gff) with an error. Each is now
    one gene with a SKIP_* status, and the other genes are scored."""
    from dnahnet_cli.genomics.gff import load_annotated_genome, parse_gff

    gff = tmp_path / "cp.gff3"
    gff.write_text("##gff-version 3\ncp\tx\tregion\t1\t300\t.\t+\t.\tID=cp;Is_circular=true\n"
                   "cp\tx\tgene\t10\t150\t.\t-\t.\tID=gene-rps12;locus_tag=RPS12\n"
                   "cp\tx\tCDS\t10\t50\t.\t-\t0\tID=cds-rps12;Parent=gene-rps12;exception=trans-splicing\n"
                   "cp\tx\tCDS\t100\t150\t.\t+\t1\tID=cds-rps12;Parent=gene-rps12;exception=trans-splicing\n"
                   "cp\tx\tgene\t200\t290\t.\t+\t.\tID=gene-ok;locus_tag=OK1\n"
                   "cp\tx\tCDS\t200\t290\t.\t+\t0\tID=cds-ok;Parent=gene-ok\n")
    genes = {g.label: g for g in parse_gff(gff).genes}
    assert genes["RPS12"].status == "SKIP_MIXED_STRANDS" and genes["RPS12"].biotype == "protein_coding"
    assert genes["OK1"].status == "OK"
    (tmp_path / "bk.fa").write_text(">contig_1\n" + "ACGT" * 100 + "\n")
    gff.write_text("##gff-version 3\ncontig_1\tP\tgene\t101\t127\t.\t+\t.\tID=L1_gene;locus_tag=L1\n"
                   "contig_1\tP\tCDS\t101\t127\t.\t+\t0\tID=L1;Parent=L1_gene\n"
                   "contig_1\tA\ttmRNA\t350\t420\t.\t+\t.\tID=L2;locus_tag=L2;gene=ssrA\n")
    ann, _, _ = load_annotated_genome(str(tmp_path / "bk.fa"), gff)
    assert [(g.label, g.status) for g in ann.genes] == [("L1", "OK"), ("L2", "SKIP_OUT_OF_BOUNDS")]
    assert ann.past_end == ["L2 (line 4, ends at 420 on contig_1, 400 nt)"]


def test_sequence_lengths_come_only_from_lines_that_span_the_sequence(tmp_path):
    """An AGP-style GFF lists a scaffold's component contigs; the first, starting at base 1, was taken for the
    scaffold's length (then "wrong assembly?" against the FASTA). A ##sequence-region length that disagreed with the
    embedded ##FASTA was overwritten unseen."""
    from dnahnet_cli.genomics.gff import parse_gff

    gff = tmp_path / "a.gff3"
    gff.write_text("##gff-version 3\nscaf1\tx\tcontig\t1\t20\t.\t+\t.\tID=ctg1\n"
                   "scaf1\tx\tcontig\t1\t61\t.\t+\t.\tID=scaf1;Is_circular=true\n"
                   "scaf1\tx\tgene\t1\t9\t.\t+\t.\tID=g1\nscaf1\tx\tCDS\t1\t9\t.\t+\t0\tID=cds1;Parent=g1\n")
    ann = parse_gff(gff)
    assert ann.lengths == {"scaf1": 61} and ann.circular == {"scaf1"}
    gff.write_text("##gff-version 3\n##sequence-region c1 1 9999\nc1\tx\tgene\t1\t9\t.\t+\t.\tID=g1\n"
                   "c1\tx\tCDS\t1\t9\t.\t+\t0\tID=cds1;Parent=g1\n##FASTA\n>c1\nATGAAATAAACGT\n")
    with pytest.raises(DnahnetError, match=r"a.gff3: line 2: seqid c1 has length 9999 there but 13 in the ##FASTA section"):
        parse_gff(gff)
    gff.write_text("##gff-version 3\n##sequence-region c1 1 9999\nc1\tx\tgene\t1\t9\t.\t+\t.\tID=g1\n"
                   "c1\tx\tCDS\t1\t9\t.\t+\t0\tID=cds1;Parent=g1\n")
    with pytest.raises(DnahnetError, match=r"a.gff3: line 2: seqid c1 has length 9999 in the GFF but 13 in g.fa"):
        parse_gff(gff).check_genome({"c1": 13}, "g.fa")  # against a separate FASTA: the line was not named


def test_every_ncbi_genetic_code_and_a_bad_one_named_at_its_line(tmp_path):
    """Codes other than 1, 4 and 11 (e.g. 25, SR1 bacteria: TGA = Gly) were refused late, without file or line, after
    segment had run the whole genome; the gene's own code now decides its stops and start codons."""
    from dnahnet_cli.genomics.gff import codon_table, parse_gff, start_codons, stop_codons, translate

    assert stop_codons(25) == {"TAA", "TAG"} and codon_table(25)["TGA"] == "G" and stop_codons(11) == {"TAA", "TAG", "TGA"}
    assert codon_table(4)["TGA"] == "W" and "TTA" in start_codons(4) and "GTG" not in start_codons(1)
    assert translate("GTGAAATGA", 11) == "MK*" and translate("GTGAAATGA", 1) == "VK*"
    gff = tmp_path / "a.gff3"
    line = "c1\tt\tCDS\t1\t30\t.\t+\t0\tID=c1;transl_table={}\n"
    gff.write_text("##gff-version 3\n" + line.format(25))
    assert parse_gff(gff).genes[0].transl_table == 25
    gff.write_text("##gff-version 3\n" + line.format(99))
    with pytest.raises(DnahnetError, match=r"a.gff3: line 2: invalid transl_table '99' \(an NCBI genetic code"):
        parse_gff(gff)
    gff.write_text("##gff-version 3\nc1\tt\tgene\t1\t30\t.\t+\t.\tID=g1\n"
                   "c1\tt\tCDS\t1\t30\t.\t+\t0\tParent=g1;transl_table=99\n")
    with pytest.raises(DnahnetError, match=r"line 3: invalid transl_table '99'"):  # named the gene's line 2
        parse_gff(gff)


def test_codes_whose_terminators_are_also_sense_codons(tmp_path):
    """Codes 27, 28 and 31 read TAA/TAG (and TGA) as amino acids inside a CDS and as stops at its end. Their stops
    were taken from the sense table, so code 27 had none: its final TGA became a Trp at the end of the protein (a DMS
    assay of the real protein failed to match) and the stop codon went unmarked in segment's report."""
    from dnahnet_cli.genomics.gff import load_genome, parse_gff, stop_codons, translate, unambiguous_stop_codons

    assert stop_codons(27) == {"TGA"} and stop_codons(31) == {"TAA", "TAG"} and stop_codons(28) == {"TAA", "TAG", "TGA"}
    assert unambiguous_stop_codons(27) == unambiguous_stop_codons(28) == unambiguous_stop_codons(31) == set()
    assert unambiguous_stop_codons(11) == stop_codons(11) and unambiguous_stop_codons(4) == {"TAA", "TAG"}
    assert translate("ATGTAATGA", 27) == "MQW"  # inside a CDS: sense
    cds = "ATGTAAAAATGA"  # M Q K, then the terminator
    gff = tmp_path / "a.gff3"
    gff.write_text(f"##gff-version 3\nc1\tt\tCDS\t1\t12\t.\t+\t0\tID=c1;transl_table=27\n##FASTA\n>c1\n{cds}\n")
    ann = parse_gff(gff)
    genome, _ = load_genome(None, ann)
    (gene,) = ann.genes
    assert gene.ends_with_stop(genome["c1"]) and gene.protein(genome["c1"]) == "MQK"


def test_genes_that_do_not_fit_a_circular_sequence_are_refused(tmp_path):
    """A GFF without sequence lengths (Prodigal style) for the wrong assembly: on a circular contig, fetch wrapped
    genes lying past its end (or longer than it) onto other bases, scored them, and --bed got rows past the end."""
    from dnahnet_cli.genomics.gff import parse_gff

    gff = tmp_path / "far.gff"
    for start, end, needle in ((11951, 12250, None), (50001, 50300, "at 50001..50300 does not fit the 12000-nt"),
                               (100, 12200, "at 100..12200 does not fit")):
        gff.write_text(f"##gff-version 3\nc1\tt\tgene\t{start}\t{end}\t.\t+\t.\tID=g1\n"
                       f"c1\tt\tCDS\t{start}\t{end}\t.\t+\t0\tParent=g1\n")
        ann = parse_gff(gff, circular={"c1"})
        if needle is None:  # across the origin, written as one line past the end: fine
            ann.check_genome({"c1": 12000}, "g.fa")
            continue
        with pytest.raises(DnahnetError, match=f"far.gff: line 2: gene g1 {needle}"):
            ann.check_genome({"c1": 12000}, "g.fa")


def test_origin_crossing_gene_on_a_contig_not_marked_circular_is_refused(tmp_path):
    """Two gene lines (or CDS parts) at both ends of a contig read as linear were joined into one gene spanning the
    whole contig with its CDS spliced end to start: a garbage protein with status OK, and no intergenic bases."""
    from dnahnet_cli.genomics.gff import load_annotated_genome

    fa, orf = _circular_contig(tmp_path)
    gff = tmp_path / "lin.gff"
    gff.write_text("##gff-version 3\n##sequence-region c1 1 1000\n" + GENE_BEFORE_ORIGIN + GENE_AFTER_ORIGIN
                   + CDS_ACROSS_ORIGIN)
    with pytest.raises(DnahnetError, match=r"line 3: gene g1 has parts at both ends of c1.*Is_circular=true"):
        load_annotated_genome(str(fa), str(gff))
    ann, genome, _ = load_annotated_genome(str(fa), str(gff), circular=["c1"])  # as the message says
    assert ann.genes[0].cds_sequence(genome["c1"], True) == orf


def test_a_gene_line_after_the_origin_only_spans_its_unwrapped_cds(tmp_path):
    """A circular gene whose gene line covers only the part after the origin kept start 0: a gene of 21,799 nt on a
    20-kb contig, and no intergenic bases in the segment report."""
    from dnahnet_cli.genomics.gff import load_annotated_genome

    fa, orf = _circular_contig(tmp_path)
    gff = tmp_path / "after.gff"
    gff.write_text("##gff-version 3\n" + CIRCULAR_REGION + GENE_AFTER_ORIGIN + CDS_ACROSS_ORIGIN)
    ann, genome, _ = load_annotated_genome(str(fa), str(gff))
    g = ann.genes[0]
    assert (g.start0, g.end) == (949, 1048) and g.cds_sequence(genome["c1"], True) == orf


def test_prokka_rna_features_ensembl_circular_flag_and_gene_id(tmp_path):
    """Prokka/Bakta write tRNA/rRNA without a gene parent (they vanished: counted as intergenic, absent from the
    essentiality table); Ensembl flags circularity on its `chromosome` line and gives locus tags as gene_id."""
    from dnahnet_cli.genomics.genome import circular_from_gff

    gff = tmp_path / "mixed.gff3"
    gff.write_text("##gff-version 3\n"
                   "Chromosome\tENA\tchromosome\t1\t20000\t.\t.\t.\tID=chromosome:Chromosome;Is_circular=true\n"
                   "Chromosome\tena\tgene\t190\t255\t.\t+\t.\tID=gene:b0001;Name=thrL;biotype=protein_coding;"
                   "gene_id=b0001\n"
                   "Chromosome\tena\tmRNA\t190\t255\t.\t+\t.\tID=transcript:t1;Parent=gene:b0001\n"
                   "Chromosome\tena\tCDS\t190\t255\t.\t+\t0\tID=CDS:p1;Parent=transcript:t1\n"
                   "Chromosome\tAragorn:001002\ttRNA\t16952\t17010\t.\t+\t.\tID=PROKKA_00019;locus_tag=PROKKA_00019\n")
    ann = parse_gff(gff)
    assert ann.circular == {"Chromosome"} and circular_from_gff(gff) == {"Chromosome"}
    assert ann.lookup("b0001") == [0]
    trna = ann.genes[ann.lookup("PROKKA_00019")[0]]
    assert (trna.start0, trna.end, trna.biotype, trna.status) == (16951, 17010, "tRNA", "SKIP_NONCODING")


def test_gtf_is_named_even_when_a_value_holds_an_equals_sign(tmp_path):
    gtf = tmp_path / "a.gtf"
    gtf.write_text('c1\tt\tCDS\t190\t252\t.\t+\t0\tgene_id "b0001"; transcript_id "NP_1"; note "k=v";\n')
    with pytest.raises(DnahnetError, match="look like GTF"):
        parse_gff(gtf)
