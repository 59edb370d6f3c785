"""Segmentation core: exact chunk coordinates from hand-set routers, tile-size invariance, region mapping,
GFF codon classes on real E. coli genes, and the report's counts."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from dnahnet_cli.genomics.alphabet import A, C, G, PAD
from dnahnet_cli.tasks.engine import LikelihoodEngine
from dnahnet_cli.errors import DnahnetError
from dnahnet_cli.genomics.genome import Genome
from dnahnet_cli.genomics.gff import parse_gff
from dnahnet_cli.model.hnet import LENGTHS_PER_OCTAVE, chunk_indices
from dnahnet_cli.model.lm import DNAHNet, ModelConfig
from dnahnet_cli.tasks.segment import (
    BedGraphWriter, BedWriter, Region, SegmentOptions, fetch_span, parse_region, parse_stages, parse_strands,
    segment_region, tile_windows,
)
from dnahnet_cli.tasks.segment_report import BIT, Report, class_codes

from conftest import shared_data

ROOT = Path(__file__).resolve().parents[1]


def micro_model(window: int = 256) -> DNAHNet:
    """A very small 2-stage dnaHNet (attention-only, so it runs fast on CPU)."""
    cfg = ModelConfig(arch_layout=["T1", ["T1", ["T1"], "T1"], "T1"], d_model=[16, 16, 32],
                      d_intermediate=[32, 32, 64], num_heads=[2, 2, 2], rotary_emb_dim=[4, 4, 4],
                      window_size=[15, 15, -1], d_state=8, headdim=8, ratio_targets=[3.0, 2.0],
                      max_seq_len=window, name="micro")
    return DNAHNet(cfg)


def install_motif_routers(model: DNAHNet) -> DNAHNet:
    """Routers set by hand: stage 1 cuts (p = 0.9, else 0.2) at the G of every 'AG'; stage 2 cuts
    (p = 0.8, else 0.3) at the stage-1 chunks whose G is preceded by 'CA' (i.e. 'CAG')."""
    seen: dict = {}
    model.embeddings.register_forward_pre_hook(lambda mod, args: seen.__setitem__("ids", args[0]))

    def outer(h, mask, state=None):
        ids = seen["ids"]
        prev = torch.nn.functional.pad(ids[:, :-1], (1, 0), value=PAD)
        p = torch.where((prev == A) & (ids == G), 0.9, 0.2).to(h.dtype)
        p[:, 0] = 1.0
        boundary = (p > 0.5) & mask
        seen["idx"] = chunk_indices(boundary, LENGTHS_PER_OCTAVE if state is None else 0)[0]  # as the stage pads them
        return p, boundary

    def inner(h, mask, state=None):
        idx = seen["idx"]
        two_back = seen["ids"].gather(1, (idx - 2).clamp(min=0))
        p = torch.where(two_back == C, 0.8, 0.3).to(h.dtype)
        p[:, 0] = 1.0
        return p, (p > 0.5) & mask

    model.backbone.router.forward = outer
    model.backbone.main.router.forward = inner
    return model


@pytest.fixture(scope="module")
def motif_engine():
    torch.manual_seed(0)
    return LikelihoodEngine(install_motif_routers(micro_model()), {"model": "motif"}, device="cpu")


def run_bed(engine, seqs: dict, strand="+", tile=256, overlap=64, region=None, stages=(1, 2), bedgraph=False, block=8,
            circular=False):
    """Segment every contig (or one region) to a BED string (and bedGraph strings)."""
    genome = Genome.from_dict(seqs)
    if circular:
        genome.set_circular(seqs)
    opts = SegmentOptions(list(stages), parse_strands(strand), tile, overlap, tiles_per_block=block)
    out = io.StringIO()
    bed = BedWriter(out)
    buffers = {(st, s): io.StringIO() for st in opts.strands for s in stages} if bedgraph else {}
    graphs = {k: BedGraphWriter(v) for k, v in buffers.items()}
    regions = [region] if region else [Region(n, 0, len(s)) for n, s in sorted(seqs.items())]
    for reg in regions:
        segment_region(engine, genome, reg, opts, bed, graphs, circular=circular)
    return out.getvalue(), {k: v.getvalue() for k, v in buffers.items()}


#          0         1         2
#          012345678901234567890123456789
SEQ = "TTCAGTTAGCCAGTTAGTTTACTGTTCTA"


def test_exact_bed_plus_strand(motif_engine):
    bed, _ = run_bed(motif_engine, {"chr": SEQ})
    assert bed.splitlines() == [
        "chr\t4\t8\tS1_000001\t900\t+\t1\t0.9\t0.375",
        "chr\t4\t12\tS2_000001\t800\t+\t2\t0.8\t0.55",
        "chr\t8\t12\tS1_000002\t900\t+\t1\t0.9\t0.375",
        "chr\t12\t16\tS1_000003\t900\t+\t1\t0.9\t0.375",
        "chr\t12\t29\tS2_000002\t800\t+\t2\t0.8\t0.55",
        "chr\t16\t29\tS1_000004\t900\t+\t1\t0.9\t0.2538",
    ]


def test_exact_bed_both_strands_and_tiny_tiles(motif_engine):
    """Minus strand: 'AG' on the reverse complement is 'CT' here, cut at the C; chunks run leftwards."""
    expected = [
        "chr\t0\t22\tS1_000001\t900\t-\t1\t0.9\t0.2318",
        "chr\t0\t22\tS2_000001\t800\t-\t2\t0.8\t0.8",
        "chr\t4\t8\tS1_000002\t900\t+\t1\t0.9\t0.375",
        "chr\t4\t12\tS2_000002\t800\t+\t2\t0.8\t0.55",
        "chr\t8\t12\tS1_000003\t900\t+\t1\t0.9\t0.375",
        "chr\t12\t16\tS1_000004\t900\t+\t1\t0.9\t0.375",
        "chr\t12\t29\tS2_000003\t800\t+\t2\t0.8\t0.55",
        "chr\t16\t29\tS1_000005\t900\t+\t1\t0.9\t0.2538",
        "chr\t22\t27\tS1_000006\t900\t-\t1\t0.9\t0.34",
    ]
    for tile, overlap in ((256, 64), (6, 3), (5, 2)):
        bed, _ = run_bed(motif_engine, {"chr": SEQ}, strand="both", tile=tile, overlap=overlap)
        assert bed.splitlines() == expected, (tile, overlap)
    bed, _ = run_bed(motif_engine, {"chr": SEQ}, strand="both", stages=(2,))
    assert bed.splitlines() == [line for line in expected if "\t2\t0.8\t" in line]


def oracle(seq: str, a: int, b: int) -> set[tuple]:
    """Chunks (start, end, strand, stage) straight from the motifs, for chunks fully inside [a, b)."""
    plus1 = [i for i in range(1, len(seq)) if seq[i - 1: i + 1] == "AG"]
    plus2 = [i for i in plus1 if i >= 2 and seq[i - 2] == "C"]
    minus1 = [i for i in range(len(seq) - 1) if seq[i: i + 2] == "CT"]
    minus2 = [i for i in minus1 if i + 2 < len(seq) and seq[i + 2] == "G"]
    out = set()
    for stage, pts in ((1, plus1), (2, plus2)):
        pts = [p for p in pts if a <= p < b] + [b]
        out |= {(s, e, "+", stage) for s, e in zip(pts, pts[1:])}
    for stage, pts in ((1, minus1), (2, minus2)):
        pts = [a - 1] + [p for p in pts if a <= p < b]
        out |= {(s + 1, e + 1, "-", stage) for s, e in zip(pts, pts[1:])}
    return out


def parse(bed: str) -> list[tuple]:
    return [(int(f[1]), int(f[2]), f[5], int(f[6])) for f in (l.split("\t") for l in bed.splitlines())]


def test_tile_size_invariance_and_oracle(motif_engine):
    rng = np.random.default_rng(1)
    seq = "".join(rng.choice(list("ACGT"), 2000))
    bed_a, bg_a = run_bed(motif_engine, {"c1": seq}, strand="both", tile=64, overlap=16, bedgraph=True)
    bed_b, bg_b = run_bed(motif_engine, {"c1": seq}, strand="both", tile=200, overlap=50, bedgraph=True)
    assert bed_a == bed_b and bg_a == bg_b
    rows = parse(bed_a)
    assert set(rows) == oracle(seq, 0, len(seq))
    assert rows == sorted(rows, key=lambda r: (r[0], r[1], r[3], r[2]))  # sorted, minus after plus on ties
    # bedGraph: 4 columns, contiguous over the contig, and p > 0.5 exactly at the stage-1 chunk starts
    lines = [l.split("\t") for l in bg_a[("+", 1)].splitlines()]
    assert all(len(f) == 4 for f in lines)
    assert int(lines[0][1]) == 0 and int(lines[-1][2]) == len(seq)
    assert all(int(x[2]) == int(y[1]) for x, y in zip(lines, lines[1:]))
    high = {p for f in lines if float(f[3]) > 0.5 for p in range(int(f[1]), int(f[2]))}
    assert high == {s for s, _, st, stage in rows if st == "+" and stage == 1}


@pytest.mark.parametrize("length", [60, 240])  # shorter than the kept part of a tile (192 nt), and between it and a tile
def test_a_small_circular_contig_is_read_with_its_wrap_around_context(motif_engine, length):
    """A circular contig that fits in one tile once got no 5' context across the origin (or less than --overlap),
    so it was segmented as if linear: here the 'CAG' across the origin must cut at base 0 on both stages."""
    rng = np.random.default_rng(1)
    body = "".join(rng.choice(list("TC"), length - 3))  # no A: the only AG is the one across the origin
    seq = "G" + body + "CA"
    bed, graphs = run_bed(motif_engine, {"p": seq}, tile=256, overlap=64, bedgraph=True, circular=True)
    first = [line.split("\t")[:4] for line in graphs[("+", 1)].splitlines() if line.split("\t")[1] == "0"]
    assert first == [["p", "0", "1", "0.9"]], graphs[("+", 1)][:200]
    assert {stage for start, _, strand, stage in parse(bed) if start == 0} == {1, 2}  # a chunk starts at 0
    linear, _ = run_bed(motif_engine, {"p": seq}, tile=256, overlap=64)
    assert not any(start == 0 for start, *_ in parse(linear))  # read as linear, base 0 follows BOS: no cut there
    kept = min(length, 192)  # the full --overlap of context, not what one turn of the contig leaves of it
    assert fetch_span(0, kept, "+", 64, length, True) == (-64, kept)
    assert fetch_span(0, kept, "-", 64, length, True) == (0, kept + 64)


def test_region_coordinates_are_genomic(motif_engine):
    rng = np.random.default_rng(2)
    seq = "".join(rng.choice(list("ACGT"), 700))
    region = parse_region("c1:201-600", {"c1": 700})
    assert region == Region("c1", 200, 600)
    bed, _ = run_bed(motif_engine, {"c1": seq}, strand="both", tile=100, overlap=20, region=region)
    rows = parse(bed)
    assert rows and all(200 <= s < e <= 600 for s, e, _, _ in rows)
    assert set(rows) == oracle(seq, 200, 600)


def test_option_parsing_errors():
    lengths = {"chr1": 1000, "odd:name": 50}
    assert parse_region("chr1", lengths) == Region("chr1", 0, 1000)
    assert parse_region("odd:name", lengths) == Region("odd:name", 0, 50)
    assert parse_region("chr1:1-1,000", lengths) == Region("chr1", 0, 1000)
    with pytest.raises(DnahnetError, match="expected CHROM or CHROM:START-END"):
        parse_region("chr1:10..20", lengths)
    with pytest.raises(DnahnetError, match="'chr2' is not in the FASTA"):
        parse_region("chr2:1-10", lengths)
    with pytest.raises(DnahnetError, match=r"--region 'chrZ': contig 'chrZ' is not in the FASTA \(have: chr1, odd:name\)"):
        parse_region("chrZ", lengths)  # once "expected CHROM or CHROM:START-END", though that is what it was
    with pytest.raises(DnahnetError, match="past the end of chr1"):
        parse_region("chr1:900-1001", lengths)
    with pytest.raises(DnahnetError, match="START <= END"):
        parse_region("chr1:20-10", lengths)
    assert parse_stages("all", 2) == [1, 2] and parse_stages("2", 2) == [2]
    with pytest.raises(DnahnetError, match="has 2 stage"):
        parse_stages("3", 2)
    with pytest.raises(DnahnetError, match="no router"):
        parse_stages("all", 0)
    with pytest.raises(DnahnetError, match="--strand"):
        parse_strands("forward")
    with pytest.raises(DnahnetError, match="--overlap"):
        SegmentOptions([1], ["+"], 100, 100).check()
    assert tile_windows(Region("c", 10, 30), 8, 2) == [(10, 16), (16, 22), (22, 28), (28, 30)]


# -- annotation classes -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ecoli():
    genome = Genome.open(ROOT / "examples" / "ecoli_k12.fa.gz", quiet=True)
    ann = parse_gff(shared_data("ecoli_k12", "annot.gff.gz"), genome.lengths)
    genome.set_circular(ann.circular)
    return genome, ann


def _bits(codes: np.ndarray, x: int) -> set[str]:
    return {c for c, b in BIT.items() if codes[x] & b}


def test_codon_classes_from_gff_phase_and_strand(ecoli):
    genome, ann = ecoli
    chrom = "NC_000913.3"
    reg = Region(chrom, 0, 10_000)
    plus, _ = class_codes(ann, genome, reg, "+", 100, True)
    minus, sites = class_codes(ann, genome, reg, "-", 100, True)
    # thrL (b0001): + strand, GFF 190..255, phase 0 -> codon positions 1,2,3 at 0-based 189,190,191
    for x, k in ((189, 1), (190, 2), (191, 3), (192, 1), (254, 3)):
        assert f"cds_codon{k}" in _bits(plus, x) and "cds" in _bits(plus, x)
        assert "cds_antisense" in _bits(minus, x) and "cds" not in _bits(minus, x)
    assert {"start_codon"} <= _bits(plus, 189) and "stop_codon" in _bits(plus, 252)
    assert genome.fetch(chrom, 189, 192) == "ATG" and genome.fetch(chrom, 252, 255) == "TGA"
    assert "upstream" in _bits(plus, 150) and "intergenic" in _bits(plus, 150) and "upstream" not in _bits(minus, 150)
    # yaaA (b0006): - strand, GFF 5683..6459 -> codon position 1 at the highest coordinate, 6458 (0-based)
    for x, k in ((6458, 1), (6457, 2), (6456, 3), (6455, 1), (5682, 3)):
        assert f"cds_codon{k}" in _bits(minus, x)
        assert not any(f"cds_codon{j}" in _bits(plus, x) for j in (1, 2, 3))
    assert "start_codon" in _bits(minus, 6456) and "stop_codon" in _bits(minus, 5682) and "stop_codon" in _bits(minus, 5684)
    assert "upstream" in _bits(minus, 6459) and "upstream" not in _bits(minus, 6455)
    assert 6458 in sites.starts and 189 not in sites.starts  # minus-strand starts only on the minus track
    # every sense codon-1 base of this window starts a real codon: the stop codons sit in frame
    assert (plus & BIT["cds_codon1"] != 0).sum() == (plus & BIT["cds_codon3"] != 0).sum()


def test_a_cds_of_unknown_strand_is_genic_but_neither_sense_nor_antisense(tmp_path):
    """A '.' strand differs from both '+' and '-': its bases were counted as cds_antisense on both strand tracks."""
    fa, gff = tmp_path / "g.fa", tmp_path / "g.gff3"
    fa.write_text(">c1\n" + "ACGT" * 100 + "\n")
    gff.write_text("##gff-version 3\nc1\tt\tgene\t101\t127\t.\t.\t.\tID=g1\n"
                   "c1\tt\tCDS\t101\t127\t.\t.\t0\tID=c1;Parent=g1\n")
    genome = Genome.open(fa, quiet=True)
    ann = parse_gff(gff, genome.lengths)
    for strand in "+-":
        codes, _ = class_codes(ann, genome, Region("c1", 0, 400), strand, 100, False)
        assert not (codes & (BIT["cds"] | BIT["cds_antisense"])).any()
        assert not (codes[100:127] & BIT["intergenic"]).any() and codes[99] & BIT["intergenic"]


def test_frameshifted_gene_codon_positions(ecoli):
    """prfB (b2891, - strand) has a +1 ribosomal frameshift: two CDS parts with a skipped base."""
    genome, ann = ecoli
    reg = Region("NC_000913.3", 3_034_000, 3_038_000)
    minus, _ = class_codes(ann, genome, reg, "-", 100, True)
    a = reg.start0
    expect = {3036281: 1, 3036280: 2, 3036279: 3, 3036209: 1, 3036207: 3, 3036205: 1, 3036204: 2, 3036203: 3}
    for x, k in expect.items():
        assert f"cds_codon{k}" in _bits(minus, x - a), x
    skipped = _bits(minus, 3036206 - a)
    assert not skipped & {"cds", "cds_codon1", "cds_codon2", "cds_codon3", "intergenic"}


def test_report_counts_match_motifs(motif_engine, tmp_path):
    """A synthetic genome with one + gene: boundary counts per codon position equal the 'AG' counts."""
    rng = np.random.default_rng(3)
    body = "".join(rng.choice(list("ACGT"), 297))
    body = re.sub("TAA|TAG|TGA", "GCA", body)
    cds = "ATG" + "".join(body[i: i + 3] for i in range(0, 297, 3) if body[i: i + 3] not in ("TAA", "TAG", "TGA")) + "TAA"
    seq = "".join(rng.choice(list("ACGT"), 150)) + cds + "".join(rng.choice(list("ACGT"), 150))
    gff = tmp_path / "g.gff3"
    s0 = 150
    gff.write_text("##gff-version 3\n"
                   f"c1\tt\tgene\t{s0 + 1}\t{s0 + len(cds)}\t.\t+\t.\tID=g1;locus_tag=T1\n"
                   f"c1\tt\tCDS\t{s0 + 1}\t{s0 + len(cds)}\t.\t+\t0\tID=cds1;Parent=g1\n")
    ann = parse_gff(gff)
    genome = Genome.from_dict({"c1": seq})
    opts = SegmentOptions([1, 2], ["+"], 128, 32, permutations=50, seed=7, upstream=20)
    reg = Region("c1", 0, len(seq))
    rep = Report(opts)
    tracks, streams = segment_region(motif_engine, genome, reg, opts, BedWriter(io.StringIO()), {}, False,
                                     keep_chunks=True)
    rep.add_region(ann, genome, reg, tracks, streams, False)
    rows = {(r["stage"], r["class"]): r for r in rep.rows()}
    ag = [i for i in range(1, len(seq)) if seq[i - 1: i + 1] == "AG"]
    for k in (1, 2, 3):
        want = sum(1 for i in ag if s0 <= i < s0 + len(cds) and (i - s0) % 3 == k - 1)
        assert rows[(1, f"cds_codon{k}")]["n_boundaries"] == want
        assert rows[(1, f"cds_codon{k}")]["n_positions"] == len(cds) // 3
    assert rows[(1, "all")]["n_boundaries"] == len(ag) and rows[(1, "all")]["n_positions"] == len(seq)
    assert rows[(1, "all")]["obs_exp"] == pytest.approx(1.0)  # a circular shift keeps the total
    assert rows[(1, "intergenic")]["n_positions"] == 300 and rows[(1, "start_codon")]["n_positions"] == 3
    assert rows[(1, "upstream")]["n_positions"] == 20 and rows[(1, "stop_codon")]["n_positions"] == 3
    assert rows[(2, "all")]["n_boundaries"] == sum(1 for i in ag if i >= 2 and seq[i - 2] == "C")
    for r in rows.values():
        if r["n_boundaries"]:
            assert 0 < r["p_enriched"] <= 1 and 0 < r["p_depleted"] <= 1
    chunk_rows = rows[(1, "all")]
    assert chunk_rows["n_chunks"] == len(ag) and chunk_rows["chunk_len_q10"] <= chunk_rows["chunk_len_median"]
    rep2 = Report(opts)
    rep2.add_region(ann, genome, reg, tracks, streams, False)
    assert rep2.rows() == rep.rows()  # seeded null


def test_probabilities_next_to_the_threshold_print_which_side_they_are_on():
    """p_start is > 0.5 by construction and a bedGraph is re-thresholded at 0.5: 4 significant digits must not
    print 0.50004 or 0.49996 as "0.5"."""
    from dnahnet_cli.tasks.segment import format_probability

    assert [format_probability(p) for p in (0.5, 0.50004, 0.49996, 0.123456, 1.0)] == \
        ["0.5", "0.50004", "0.49996", "0.1235", "1"]
    p = float(np.float32(0.5000001))
    assert float(format_probability(p)) > 0.5
