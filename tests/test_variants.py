"""VCF reading, allele classification, REF checks, chrom maps and length-matched windows."""

from __future__ import annotations

import gzip
import io
import random
import sys
import tempfile
from pathlib import Path

import pysam
import pytest

from dnahnet_cli.errors import DnahnetError
from dnahnet_cli.genomics.genome import Genome
from dnahnet_cli.genomics.variants import (
    OK, SKIP_AMBIGUOUS, SKIP_BREAKEND, SKIP_INVALID_ALLELE, SKIP_MISSING, SKIP_NO_CHANGE, SKIP_REF_MISMATCH,
    SKIP_STAR, SKIP_SYMBOLIC, SKIP_TOO_LONG, VcfInput, check_contigs, classify, expand_record, load_chrom_map,
    left_align, make_windows, trim,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
ECOLI = "NC_000913.3"
ECOLI_LEN = 4_641_652


@pytest.fixture(scope="module")
def ecoli() -> Genome:
    return Genome.open(EXAMPLES / "ecoli_k12.fa.gz")


@pytest.mark.parametrize(
    "ref, alt, cls, status",
    [
        ("A", "G", "snv", OK), ("TG", "CA", "mnv", OK), ("ACG", "ATG", "snv", OK), ("C", "CAGT", "ins", OK),
        ("AGTG", "A", "del", OK), ("TGA", "CCTTG", "complex", OK), ("A", "<DEL>", "symbolic", SKIP_SYMBOLIC),
        ("A", "<*>", "symbolic", SKIP_SYMBOLIC), ("C", "C]chr1:100]", "breakend", SKIP_BREAKEND),
        ("G", "[chr2:5[G", "breakend", SKIP_BREAKEND), ("G", ".G", "breakend", SKIP_BREAKEND),
        ("N", ".[13:123457[", "breakend", SKIP_BREAKEND), ("N", "]13:123456].", "breakend", SKIP_BREAKEND),  # telomeres
        ("A", "A.C", "invalid", SKIP_INVALID_ALLELE),
        ("T", "*", "star", SKIP_STAR), ("A", None, "missing", SKIP_MISSING), ("A", ".", "missing", SKIP_MISSING),
        ("a", "A", "no_change", SKIP_NO_CHANGE), ("T", "N", "snv", SKIP_AMBIGUOUS), ("NA", "NC", "snv", OK),
        ("A", "R", "snv", SKIP_AMBIGUOUS), ("A", "X", "invalid", SKIP_INVALID_ALLELE),
    ],
)
def test_classify(ref, alt, cls, status):
    assert classify(ref, alt) == (cls, status)


def test_trim_removes_suffix_then_prefix():
    assert trim("CA", "C") == (1, "A", "")
    assert trim("C", "CAGT") == (1, "", "AGT")
    assert trim("AA", "A") == (0, "A", "")  # homopolymer: suffix first, so the leftmost A is deleted
    assert trim("GAT", "GCT") == (1, "A", "C")


def test_chrom_map(tmp_path):
    good = tmp_path / "map.txt"
    good.write_text("# comment\nchr1 NC_000913.3\nU00096.3\tNC_000913.3\n\n")
    assert load_chrom_map(good) == {"chr1": ECOLI, "U00096.3": ECOLI}
    bad = tmp_path / "bad.txt"
    bad.write_text("chr1 NC_000913.3\nchr2\n")
    with pytest.raises(DnahnetError, match=r"bad.txt: line 2: expected two columns"):
        load_chrom_map(bad)
    # read like every other text input: gzip and a byte-order mark (the BOM once glued itself to the first name,
    # so that mapping silently never applied); a binary file is one line, not a UnicodeDecodeError traceback
    (tmp_path / "map.txt.gz").write_bytes(gzip.compress(b"chr1 NC_000913.3\n"))
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbfchr1 NC_000913.3\n")
    for name in ("map.txt.gz", "bom.txt"):
        assert load_chrom_map(tmp_path / name) == {"chr1": ECOLI}
    (tmp_path / "latin1.txt").write_bytes(b"A\tchr\xe9A\n")
    with pytest.raises(DnahnetError, match=r"latin1.txt: not a text chromosome map"):
        load_chrom_map(tmp_path / "latin1.txt")


# -- windows ----------------------------------------------------------------------------------------
def _genome(seed: int = 1, length: int = 300, circular: bool = False) -> Genome:
    rng = random.Random(seed)
    g = Genome.from_dict({"c": "".join(rng.choice("ACGT") for _ in range(length))})
    if circular:
        g.set_circular(["c"])
    return g


def test_snv_window_is_centred_and_differs_only_at_the_variant():
    g = _genome()
    seq = g.fetch("c", 0, 300)
    alt = "A" if seq[150] != "A" else "C"
    w = make_windows(g, "c", 150, 151, alt, 21)
    assert (w.start0, w.end, w.placement, w.circular_wrap, w.n) == (140, 161, "centred", False, 21)
    assert w.ref == seq[140:161]
    assert w.alt == seq[140:150] + alt + seq[151:161]


def test_indel_windows_have_equal_length_with_extra_or_fewer_bases_on_the_right():
    g = _genome()
    seq = g.fetch("c", 0, 300)
    dele = make_windows(g, "c", 100, 104, "", 20)  # delete 4 bases
    assert len(dele.ref) == len(dele.alt) == 20
    assert dele.ref == seq[dele.start0:dele.start0 + 20]
    assert dele.alt == seq[dele.start0:100] + seq[104:104 + 20 - (100 - dele.start0)]
    ins = make_windows(g, "c", 100, 100, "GGG", 20)
    assert len(ins.alt) == 20 and ins.alt.startswith(seq[ins.start0:100] + "GGG")
    assert ins.alt == (seq[:100] + "GGG" + seq[100:])[ins.start0:ins.start0 + 20]


@pytest.mark.parametrize("circular", [False, True])
def test_windows_match_the_alt_haplotype_everywhere(circular):
    """Brute force: the ALT window is a slice of the ALT haplotype holding the change, REF a genome slice."""
    rng = random.Random(7)
    g = _genome(3, 120, circular)
    seq = g.fetch("c", 0, 120)
    for _ in range(400):
        start = rng.randrange(0, 120)
        end = min(120, start + rng.choice([0, 1, 1, 2, 5]))
        alt_len = rng.choice([0, 1, 1, 3]) if end > start else rng.choice([1, 4])
        alt = "".join(rng.choice("ACGT") for _ in range(alt_len))
        window = rng.choice([9, 10, 31, 200])
        w = make_windows(g, "c", start, end, alt, window)
        hap = seq[:start] + alt + seq[end:]
        if w is None:
            assert min(window, 120, len(hap)) < max(end - start, len(alt))
            continue
        assert len(w.ref) == len(w.alt) == len(w.alt_rev) == w.n == min(window, 120, len(hap))
        ref_src = seq * 2 if circular else seq
        assert w.ref == ref_src[w.start0:w.start0 + w.n]
        delta, core = len(alt) - (end - start), max(end - start, len(alt))
        ws = w.start0 if w.start0 <= start else w.start0 - 120  # unwrapped: ws <= start
        assert ws + w.n >= end
        hap3, h0 = hap * 3, len(hap)  # haplotype slices at any start within a turn of the origin
        starts = {}
        for name, got in (("alt", w.alt), ("alt_rev", w.alt_rev)):  # each ALT window holds the new bases
            starts[name] = [h for h in range(-len(hap), len(hap)) if hap3[h0 + h:h0 + h + w.n] == got
                            and h <= start and h + w.n >= start + len(alt) and (circular or 0 <= h <= len(hap) - w.n)]
            assert starts[name], (name, start, end, alt, window)
        fits = w.n >= core + max(delta, 0)  # both ALT windows can hold the new bases and share an end with REF
        if not circular:  # ... and stay inside the contig
            fits = fits and max(0, start + core - w.n, -delta) <= min(start - max(delta, 0), 120 - w.n + min(delta, 0))
        if fits:  # forward: both windows start at the same base,
            assert ws in starts["alt"] and ws + delta in starts["alt_rev"]  # reverse: both end at the same base
        if circular:
            assert ws in starts["alt"]
            rs = ws + delta if fits else min(starts["alt_rev"], key=lambda h: abs(h - ws - delta))
            fs = ws
            assert w.circular_wrap == (ws < 0 or ws + w.n > 120 or min(fs, rs) < 0 or max(fs, rs) + w.n - delta > 120)
        else:
            assert w.placement in ("centred", "off_centre", "whole_contig") and 0 <= w.start0 and w.end <= 120
            if w.placement == "centred":
                assert ws == start - (w.n - (end - start)) // 2  # centred on the replaced reference bases


def test_left_align_moves_indels_to_the_start_of_their_repeat_and_leaves_other_alleles():
    g = Genome.from_dict({"c": "GTCAAAAGCACACAG"})  # A4 at [3, 7), (CA)3 at [8, 14)... preceded by G
    assert left_align(g, "c", 6, 7, "") == (3, 4, "")  # the last A deleted -> the first
    assert left_align(g, "c", 4, 6, "") == (3, 5, "")  # AA
    assert left_align(g, "c", 7, 7, "A") == (3, 3, "A")  # A inserted after the run -> before it
    assert left_align(g, "c", 14, 14, "CA") == (8, 8, "CA")  # (CA) after the repeat -> before its first C
    assert left_align(g, "c", 13, 13, "AC") == (8, 8, "CA")  # the same insertion spelled AC
    assert left_align(g, "c", 11, 13, "") == (8, 10, "")  # a CA deleted
    assert left_align(g, "c", 1, 2, "") == (1, 2, "")  # no repeat: unchanged
    assert left_align(g, "c", 3, 4, "G") == (3, 4, "G")  # an SNV, an MNV, a delins are never moved
    assert left_align(g, "c", 3, 5, "GG") == (3, 5, "GG") and left_align(g, "c", 3, 5, "G") == (3, 5, "G")
    long = Genome.from_dict({"c": "C" + "T" * 150})  # a run longer than one block of the scan
    assert left_align(long, "c", 151, 151, "T") == (1, 1, "T") and left_align(long, "c", 150, 151, "") == (1, 2, "")
    edge = Genome.from_dict({"c": "AAAC"})
    assert left_align(edge, "c", 2, 3, "") == (0, 1, "")  # stops at the first base


@pytest.mark.parametrize("circular", [False, True])
def test_windows_on_the_reverse_complemented_genome_are_the_mirror_image(circular):
    """Scoring the reverse-complemented genome and VCF must give the same strand-averaged score: its REF window is
    the reverse complement of this one, its forward ALT window that of this reverse one and vice versa, wherever
    window - len(REF span) is even and left-aligning moves the allele on neither strand. The fallback for
    alleles no single REF window can pair on both strands once preferred the forward pair, which broke this."""
    from dnahnet_cli.genomics.alphabet import reverse_complement as rc

    rng = random.Random(11)
    checked = 0
    for trial in range(3000):
        length = rng.randrange(20, 90)
        seq = "".join(rng.choice("ACGT") for _ in range(length))
        g, g_rc = Genome.from_dict({"c": seq}), Genome.from_dict({"c": rc(seq)})
        if circular:
            g.set_circular(["c"]), g_rc.set_circular(["c"])
        start = rng.randrange(0, length + 1)
        end = min(length, start + rng.choice([0, 0, 1, 1, 2, 3, 7]))
        k = rng.choice([0, 1, 2, 5, 11]) if end > start else rng.choice([1, 3, 9])
        alt = "".join(rng.choice("ACGT") for _ in range(k))
        window = rng.randrange(1, length + 12)
        n = min(window, length, length - (end - start) + len(alt))
        if (n - (end - start)) % 2 or trim(seq[start:end], alt) != (0, seq[start:end], alt):  # parity; trimmed
            continue
        if left_align(g, "c", start, end, alt) != (start, end, alt):
            continue
        s_rc, e_rc = length - end, length - start
        if left_align(g_rc, "c", s_rc, e_rc, rc(alt)) != (s_rc, e_rc, rc(alt)):
            continue
        w, w_rc = make_windows(g, "c", start, end, alt, window), make_windows(g_rc, "c", s_rc, e_rc, rc(alt), window)
        assert (w is None) == (w_rc is None)
        if w is None:
            continue
        assert (w_rc.ref, w_rc.alt, w_rc.alt_rev) == (rc(w.ref), rc(w.alt_rev), rc(w.alt)), (seq, start, alt, window)
        assert w_rc.placement == w.placement and w_rc.circular_wrap == w.circular_wrap
        checked += 1
    assert checked > 500


def test_an_insertion_after_the_last_base_of_a_circular_contig_is_not_a_wrap_unless_a_window_crosses():
    g = Genome.from_dict({"c": "ACGTTGCAAGCTTCGATCGA"})
    g.set_circular(["c"])
    w = make_windows(g, "c", 20, 20, "G", 1)  # a 1-nt window holding only the inserted base: [20, 21) is [0, 1)
    assert (w.start0, w.end, w.ref, w.alt, w.circular_wrap) == (0, 1, "A", "G", False)
    w = make_windows(g, "c", 20, 20, "GGGG", 8)  # centred on the origin: it does cross
    assert w.circular_wrap and w.start0 == 16


def test_contig_ends_linear_off_centre_and_circular_wrap():
    g = _genome(5, 100)
    seq = g.fetch("c", 0, 100)
    first = make_windows(g, "c", 0, 1, "A" if seq[0] != "A" else "C", 11)
    assert (first.start0, first.end, first.placement, first.circular_wrap) == (0, 11, "off_centre", False)
    last_del = make_windows(g, "c", 97, 100, "", 11)  # delete the last 3 bases of a linear contig
    assert (last_del.start0, last_del.end, last_del.placement) == (89, 100, "off_centre")
    assert last_del.alt == seq[86:97]  # the ALT window had to start 3 bases earlier to stay inside
    near_del = make_windows(g, "c", 93, 96, "", 11)  # 3 bases deleted 4 from the end: a common start fits
    assert (near_del.start0, near_del.end, near_del.placement) == (86, 97, "off_centre")
    assert near_del.ref == seq[86:97] and near_del.alt == seq[86:93] + seq[96:100]
    g.set_circular(["c"])
    wrap = make_windows(g, "c", 0, 1, "T" if seq[0] != "T" else "G", 11)
    assert (wrap.start0, wrap.end, wrap.placement, wrap.circular_wrap) == (95, 106, "centred", True)
    assert wrap.ref == seq[95:] + seq[:6]
    assert wrap.alt == seq[95:] + wrap.alt[5] + seq[1:6]
    whole = make_windows(g, "c", 50, 51, "A", 500)
    assert whole.placement == "whole_contig" and whole.n == 100
    assert make_windows(g, "c", 10, 40, "", 20) is None


# -- VCF input ------------------------------------------------------------------------------------
def _statuses(vcf: Path, genome: Genome, window: int = 64) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    with VcfInput(str(vcf)) as vin:
        for line, rec in vin.records():
            for a in expand_record(rec, line, genome, {}, window, str(vcf)):
                out.setdefault(a.id, []).append((a.variant_class, a.status))
    return out


def test_real_vcf_lines_and_contigs(ecoli):
    with VcfInput(str(EXAMPLES / "ecoli_k12_ampR_isolate.vcf")) as vin:
        assert vin.contig_lengths() == {ECOLI: ECOLI_LEN}
        recs = list(vin.records())
    assert [line for line, _ in recs] == list(range(9, 15))
    assert [r.pos for _, r in recs] == [93043, 482698, 852762, 1905761, 3535147, 4390754]
    assert _statuses(EXAMPLES / "ecoli_k12_ampR_isolate.vcf", ecoli) == {".": [("snv", OK)] * 6}


def test_synthetic_vcf_every_class(ecoli):
    got = _statuses(EXAMPLES / "synthetic_all_classes.vcf", ecoli)
    assert got == {
        "snv_origin": [("snv", OK)], "ins_origin": [("ins", OK)], "mnv": [("mnv", OK)], "ins": [("ins", OK)],
        "del": [("del", OK)], "complex": [("complex", OK)],
        "multi": [("snv", OK), ("ins", OK), ("snv", OK)], "sv_del": [("symbolic", SKIP_SYMBOLIC)],
        "bnd": [("breakend", SKIP_BREAKEND)], "star": [("snv", OK), ("star", SKIP_STAR)],
        "missing": [("missing", SKIP_MISSING)], "lower": [("snv", OK)], "refmm": [("snv", SKIP_REF_MISMATCH)],
        "ambig": [("snv", SKIP_AMBIGUOUS)], "dup": [("symbolic", SKIP_SYMBOLIC), ("snv", OK)],
        "del_end": [("del", OK)], "snv_end": [("snv", OK)],
    }
    with pytest.raises(DnahnetError, match=r"synthetic_all_classes.vcf: line 22: REF G at NC_000913.3:11000 "
                                           r"does not match the reference \(T\)"):
        with VcfInput(str(EXAMPLES / "synthetic_all_classes.vcf")) as vin:
            for line, rec in vin.records():
                expand_record(rec, line, ecoli, {}, 64, "synthetic_all_classes.vcf", strict=True)


def test_synthetic_windows_at_the_origin(ecoli):
    ecoli_c = Genome.open(EXAMPLES / "ecoli_k12.fa.gz")
    ecoli_c.set_circular([ECOLI])
    with VcfInput(str(EXAMPLES / "synthetic_all_classes.vcf")) as vin:
        recs = {r.id: (line, r) for line, r in vin.records()}
    lin = expand_record(recs["snv_origin"][1], 1, ecoli, {}, 65)[0].windows
    circ = expand_record(recs["snv_origin"][1], 1, ecoli_c, {}, 65)[0].windows
    assert (lin.start0, lin.end, lin.placement, lin.circular_wrap) == (0, 65, "off_centre", False)
    assert (circ.start0, circ.end, circ.circular_wrap) == (ECOLI_LEN - 32, ECOLI_LEN + 33, True)
    assert circ.ref == ecoli.fetch(ECOLI, ECOLI_LEN - 32, ECOLI_LEN) + ecoli.fetch(ECOLI, 0, 33)
    assert circ.alt[32] == "G" and circ.ref[32] == "A"
    end = expand_record(recs["del_end"][1], 1, ecoli, {}, 65)[0]
    assert (end.start0, end.end0) == (ECOLI_LEN - 3, ECOLI_LEN)
    assert (end.windows.end, end.windows.placement) == (ECOLI_LEN, "off_centre")
    end_c = expand_record(recs["del_end"][1], 1, ecoli_c, {}, 65)[0].windows
    assert end_c.circular_wrap and (end_c.start0, end_c.end) == (ECOLI_LEN - 34, ECOLI_LEN + 31)
    assert end_c.ref == ecoli.fetch(ECOLI, ECOLI_LEN - 34, ECOLI_LEN) + ecoli.fetch(ECOLI, 0, 31)
    assert end_c.alt == ecoli.fetch(ECOLI, ECOLI_LEN - 34, ECOLI_LEN - 3) + ecoli.fetch(ECOLI, 0, 34)
    too_long = expand_record(recs["del"][1], 1, ecoli, {}, 2)[0]
    assert too_long.status == SKIP_TOO_LONG


def test_stdin_plain_gzip_and_bgzip_vcf(tmp_path, monkeypatch):
    text = (EXAMPLES / "ecoli_k12_ampR_isolate.vcf").read_bytes()
    plain_gz = tmp_path / "a.vcf.gz"
    plain_gz.write_bytes(gzip.compress(text))
    bgz = tmp_path / "b.vcf.gz"
    pysam.tabix_compress(str(EXAMPLES / "ecoli_k12_ampR_isolate.vcf"), str(bgz))
    for path in (plain_gz, bgz):
        with VcfInput(str(path)) as vin:
            assert [r.pos for _, r in vin.records()][-1] == 4390754
    for payload in (text, gzip.compress(text)):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(payload))))
        vin = VcfInput("-")
        assert len(list(vin.records())) == 6
        tmp = vin._tmp
        vin.close()
        assert not Path(tmp).exists()


def test_the_temporary_copy_is_removed_when_the_vcf_cannot_be_opened(tmp_path, monkeypatch):
    """stdin and plain gzip are copied to a temporary file; when the copy then failed to open as a VCF, the
    VcfInput was never entered as a context, and the copy stayed in $TMPDIR (a multi-GB one per failed job)."""
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    bad = b"##fileformat=VCFv4.2\nnot a header\n"
    (tmp_path / "bad.vcf.gz").write_bytes(gzip.compress(bad))
    with pytest.raises(DnahnetError, match="bad.vcf.gz"):
        VcfInput(str(tmp_path / "bad.vcf.gz"))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(bad))))
    with pytest.raises(DnahnetError):
        VcfInput("-")
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_byte_order_mark_before_the_header_is_dropped(tmp_path, monkeypatch):
    """A VCF saved by a Windows editor starts with a UTF-8 BOM: htslib saw no '##fileformat' line and the file was
    called "not a VCF file" (FASTA, GFF and label files were already read past it)."""
    text = b"\xef\xbb\xbf" + (EXAMPLES / "ecoli_k12_ampR_isolate.vcf").read_bytes()
    (tmp_path / "bom.vcf").write_bytes(text)
    (tmp_path / "bom.vcf.gz").write_bytes(gzip.compress(text))
    for path in (tmp_path / "bom.vcf", tmp_path / "bom.vcf.gz"):
        with VcfInput(str(path)) as vin:
            assert len(list(vin.records())) == 6 and vin.header_text()[0].startswith("##fileformat")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(text))))
    with VcfInput("-") as vin:
        assert len(list(vin.records())) == 6


@pytest.mark.parametrize(
    "kind, message",
    [
        ("empty", "empty VCF file"),
        ("no_header", "not a VCF file"),
        ("bad_pos", r"line 10: malformed VCF record \(POS 'x' is not a positive integer\)"),
        ("few_cols", r"line 10: malformed VCF record \(3 tab-separated columns"),
        ("trunc_bgzip", "truncated"),
        ("trunc_gzip", "truncated or corrupt gzip"),
    ],
)
def test_bad_vcf_inputs(tmp_path, kind, message):
    src = (EXAMPLES / "ecoli_k12_ampR_isolate.vcf").read_text()
    lines = src.splitlines(keepends=True)
    path = tmp_path / "bad.vcf"
    if kind == "empty":
        path.write_text("")
    elif kind == "no_header":
        path.write_text("".join(lines[8:]))
    elif kind == "bad_pos":
        path.write_text("".join(lines[:9]) + lines[9].replace("482698", "x") + "".join(lines[10:]))
    elif kind == "few_cols":
        path.write_text("".join(lines[:9]) + "NC_000913.3\t5\tA\n")
    else:
        big = src + "".join(f"{ECOLI}\t{p}\t.\tA\tG\t.\tPASS\t.\n" for p in range(10, 200000, 3))
        plain = tmp_path / "big.vcf"
        plain.write_text(big)
        if kind == "trunc_bgzip":
            pysam.tabix_compress(str(plain), str(tmp_path / "big.vcf.gz"))
            data = (tmp_path / "big.vcf.gz").read_bytes()
        else:
            data = gzip.compress(big.encode())
        path = tmp_path / "bad.vcf.gz"
        path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DnahnetError, match=message) as info:
        with VcfInput(str(path)) as vin:
            list(vin.records())
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_check_contigs(ecoli):
    assert check_contigs("v.vcf", [ECOLI], {ECOLI: ECOLI_LEN}, ecoli, {}) == []
    # some contigs missing: their records are skipped (SKIP_NO_CONTIG), unless --strict; all missing: an error
    assert check_contigs("v.vcf", ["chr1", ECOLI, "plasmidX"], {}, ecoli, {}) == ["chr1", "plasmidX"]
    with pytest.raises(DnahnetError, match=r"v.vcf: contig\(s\) not in the reference .*: chr1, plasmidX; .*chrom-map"):
        check_contigs("v.vcf", ["chr1", ECOLI, "plasmidX"], {}, ecoli, {}, strict=True)
    with pytest.raises(DnahnetError, match=r"not in the reference .*: chr1, plasmidX;"):
        check_contigs("v.vcf", ["chr1", "plasmidX"], {}, ecoli, {})
    check_contigs("v.vcf", ["chr1"], {"chr1": ECOLI_LEN}, ecoli, {"chr1": ECOLI})
    with pytest.raises(DnahnetError, match=r"##contig U00096.3 has length 4641650 .*wrong assembly"):
        check_contigs("v.vcf", ["U00096.3"], {"U00096.3": 4641650}, ecoli, {"U00096.3": ECOLI})
