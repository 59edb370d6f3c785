"""Genome access: bgzip/plain gzip/plain FASTA, case, circular wrap-around, clear errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import pysam
import pytest

from dnahnet_cli.errors import DnahnetError
from dnahnet_cli.genomics.genome import Genome, circular_from_gff, is_bgzf
from conftest import MISSING_DATA, SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
DATA = SHARED_DATA
EXAMPLE_FA = ROOT / "examples" / "ecoli_k12.fa.gz"
ECOLI = "NC_000913.3"
ECOLI_LEN = 4_641_652


def needs(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{MISSING_DATA}: {path.name}")
    return path


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_bgzip_example_matches_real_vcf_ref_bases():
    genome = Genome.open(needs(EXAMPLE_FA))
    assert is_bgzf(EXAMPLE_FA)
    assert genome.names == [ECOLI] and genome.lengths == {ECOLI: ECOLI_LEN}
    vcf = pysam.VariantFile(str(ROOT / "examples" / "ecoli_k12_ampR_isolate.vcf"))
    refs = [(r.pos, r.ref) for r in vcf]
    assert len(refs) == 6
    for pos, ref in refs:
        assert genome.fetch(ECOLI, pos - 1, pos - 1 + len(ref)) == ref
    assert genome.fetch(ECOLI, 0, 12) == "AGCTTTTCATTC"  # the first bases of NC_000913.3


def test_plain_gzip_loads_in_memory_with_a_note(capsys):
    shared = needs(DATA / "ecoli_k12" / "genome.fa.gz")
    assert not is_bgzf(shared)
    genome = Genome.open(shared)
    assert "plain gzip" in capsys.readouterr().err
    indexed = Genome.open(needs(EXAMPLE_FA))
    for start in (0, 93_000, ECOLI_LEN - 50):
        assert genome.fetch(ECOLI, start, start + 50) == indexed.fetch(ECOLI, start, start + 50)


def test_plain_fasta_is_indexed_and_upper_cased(tmp_path):
    fa = write(tmp_path / "g.fa", ">a desc\nacgtNN\nAC\n>b\nggggc\n")
    genome = Genome.open(fa)
    assert (tmp_path / "g.fa.fai").exists()
    assert genome.names == ["a", "b"] and genome.lengths == {"a": 8, "b": 5}
    assert genome.fetch("a", 0, 8) == "ACGTNNAC"
    assert genome.fetch("b", 3, 5) == "GC"


def test_index_older_than_the_fasta_is_rebuilt(tmp_path, capsys):
    """A .fai left from an earlier file of the same name once served the old offsets: truncated records and
    bases read from the wrong record, exit 0."""
    import os

    fa = write(tmp_path / "g.fa", ">c1\n" + "A" * 60 + "\n>c2\n" + "C" * 60 + "\n")
    Genome.open(fa).close()
    fai = tmp_path / "g.fa.fai"
    old = fa.stat().st_mtime - 60
    write(fa, ">c1\n" + "G" * 60 + "\n" + "T" * 60 + "\n>c2\n" + "C" * 60 + "\n")
    os.utime(fai, (old, old))
    genome = Genome.open(fa)
    assert genome.lengths == {"c1": 120, "c2": 60} and genome.fetch("c2", 0, 5) == "CCCCC"
    assert "g.fa.fai older than g.fa: rebuilt" in capsys.readouterr().err
    genome.close()


def test_header_without_a_name_is_an_error_on_the_indexed_path(tmp_path):
    """htslib indexes a bare '>' line as a record named ''; it once gave BED rows with an empty chrom."""
    fa = write(tmp_path / "noname.fa", ">\nACGTACGT\n")
    with pytest.raises(DnahnetError, match=r"noname.fa: record 1: FASTA header without a name"):
        Genome.open(fa)


def test_empty_records_are_left_out_whichever_way_the_file_is_read(tmp_path, monkeypatch):
    """htslib's index drops a record without sequence; stdin and plain gzip (read into memory) once kept it as
    a contig of length 0, so the same FASTA gave different contig lists (and segment regions)."""
    import io
    import sys

    text = ">empty\n>c1\nACGTACGTAC\n>last_empty\n"
    indexed = Genome.open(write(tmp_path / "e.fa", text), quiet=True)
    with gzip.open(tmp_path / "e.fa.gz", "wt") as fh:
        fh.write(text)
    plain_gzip = Genome.open(tmp_path / "e.fa.gz", quiet=True)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    stdin = Genome.open("-")
    for genome in (indexed, plain_gzip, stdin):
        assert genome.names == ["c1"] and genome.lengths == {"c1": 10}
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b">a\n>b\n")))
    with pytest.raises(DnahnetError, match="-: empty FASTA"):
        Genome.open("-")


def test_empty_records_are_named_when_left_out_and_when_asked_for(tmp_path, capsys, monkeypatch):
    """A record without sequence is left out, but not silently: one note when the FASTA is opened (whichever way
    it is read), and a lookup or a VCF contig that names it says that it is empty, not that it is missing."""
    import io
    import sys

    from dnahnet_cli.genomics.variants import check_contigs

    text = ">empty\n>c1\nACGTACGTAC\n>last_empty\n"
    with gzip.open(tmp_path / "e.fa.gz", "wt") as fh:
        fh.write(text)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    for source in (write(tmp_path / "e.fa", text), tmp_path / "e.fa.gz", "-"):
        genome = Genome.open(source)
        assert genome.empty == ["empty", "last_empty"] and genome.names == ["c1"]
        assert "2 record(s) without sequence left out: empty, last_empty" in capsys.readouterr().err
        with pytest.raises(DnahnetError, match="record 'empty' has no sequence"):
            genome.fetch("empty", 0, 1)
        with pytest.raises(DnahnetError, match=r": empty \(a FASTA record without sequence\); FASTA has: c1"):
            check_contigs("v.vcf", ["empty"], {}, genome, {})
    Genome.open(tmp_path / "e.fa", quiet=True)
    assert capsys.readouterr().err == ""
    assert Genome.open(write(tmp_path / "full.fa", ">c1\nACGT\n")).empty == []


def test_circular_wrap_and_linear_bounds(tmp_path):
    genome = Genome.open(write(tmp_path / "g.fa", ">c\nAACCGGTTAC\n>l\nACGT\n"))
    with pytest.raises(DnahnetError, match=r"outside the linear contig of length 10"):
        genome.fetch("c", -2, 3)
    genome.set_circular(["c"])
    assert genome.fetch("c", -2, 3) == "ACAAC"
    assert genome.fetch("c", 8, 13) == "ACAAC"
    assert genome.fetch("c", 10, 12) == "AA"  # entirely past the end: one full turn later
    with pytest.raises(DnahnetError, match="longer than the circular contig"):
        genome.fetch("c", 0, 11)
    with pytest.raises(DnahnetError, match="not in the FASTA: plasmid9"):
        genome.set_circular(["plasmid9"])
    with pytest.raises(DnahnetError, match="no sequence named 'chrX'"):
        genome.fetch("chrX", 0, 1)


@pytest.mark.parametrize(
    "content, message",
    [
        (">p1 some protein\nMKVLAAGIVGLLLAAQ\n",
         r"record p1: invalid nucleotide 'L' at position 4 \(is this a protein FASTA\?\)"),
        ("", "empty FASTA"),
        ("\n\n", "empty FASTA"),
        ("hello world\nACGT\n", "line 1: not a FASTA file"),
    ],
)
def test_bad_fasta_gives_one_line_error(tmp_path, content, message):
    fa = write(tmp_path / "bad.fa", content)
    with pytest.raises(DnahnetError, match=message) as info:
        Genome.open(fa)
    assert str(fa) in str(info.value) and "\n" not in str(info.value)


def test_protein_gzip_and_truncated_gzip(tmp_path):
    prot = tmp_path / "prot.fa.gz"
    prot.write_bytes(gzip.compress(b">sp|P1\nMEEPQSDPSV\n"))
    with pytest.raises(DnahnetError, match="protein FASTA"):
        Genome.open(prot)
    data = gzip.compress((">x\n" + "ACGT" * 20000 + "\n").encode())
    trunc = tmp_path / "trunc.fa.gz"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(DnahnetError, match="trunc.fa.gz: cannot read FASTA"):
        Genome.open(trunc, quiet=True)
    with pytest.raises(DnahnetError, match="not found"):
        Genome.open(tmp_path / "missing.fa")


def test_circular_from_gff(tmp_path):
    assert circular_from_gff(needs(DATA / "ecoli_k12" / "annot.gff.gz")) == {ECOLI}
    gff = write(tmp_path / "a.gff", "##gff-version 3\n"
                "chr1\tx\tregion\t1\t100\t.\t+\t.\tID=r1;Is_circular=true\n"
                "chr2\tx\tregion\t1\t50\t.\t+\t.\tID=r2\n"
                "chr3\tx\tgene\t1\t50\t.\t+\t.\tID=g;Is_circular=true\n"  # a gene's own flag, not the sequence's
                "chr4\tx\tchromosome\t1\t80\t.\t.\t.\tID=chromosome:chr4;Is_circular=true\n")  # Ensembl
    assert circular_from_gff(gff) == {"chr1", "chr4"}
    assert circular_from_gff(gff, rename={"chr1": "NC_1"}) == {"NC_1", "chr4"}


def test_a_fresh_index_appears_whole_or_not_at_all(tmp_path):
    """htslib wrote the .fai in place: jobs started together on a fresh reference read it half-written and got
    'empty FASTA', a missing contig, or, silently, a genome with most records missing. A reader polling the
    index while it is built must only ever see it complete."""
    import threading

    n = 300_000
    fa = tmp_path / "many.fa"
    fa.write_text("".join(f">rec{i}\nACGTACGTAC\n" for i in range(n)))
    fai, seen, done = Path(f"{fa}.fai"), [], threading.Event()

    def poll() -> None:
        while not done.is_set():
            try:
                seen.append(fai.read_bytes().count(b"\n"))
            except FileNotFoundError:
                pass

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        genome = Genome.open(fa, quiet=True)
    finally:
        done.set()
        reader.join()
    assert len(genome.names) == n and set(seen) <= {n}, sorted(set(seen))[:5]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many.fa", "many.fa.fai"]  # no temporary left
    gz = tmp_path / "many.fa.gz"  # bgzip: the .gzi too
    pysam.tabix_compress(str(fa), str(gz))
    assert len(Genome.open(gz, quiet=True).names) == n and Path(f"{gz}.gzi").is_file()


@pytest.mark.parametrize("bgzip", [False, True])
def test_a_duplicate_record_name_is_refused_whoever_built_the_index(tmp_path, bgzip):
    """The duplicate check ran only when this job built the .fai, after putting it in place: a parallel job (or a
    .fai from `samtools faidx`) found the index and silently lost the second record of that name."""
    text = ">chrA\n" + "A" * 50 + "\n>chrB\n" + "C" * 30 + "\n>chrA x\n" + "G" * 40 + "\n"
    fa = write(tmp_path / "dup.fa", text)
    if bgzip:
        pysam.tabix_compress(str(fa), str(tmp_path / "dup.fa.gz"))
        fa = tmp_path / "dup.fa.gz"
    with pytest.raises(DnahnetError, match="record chrA: duplicate sequence name"):
        Genome.open(fa, quiet=True)
    assert not Path(f"{fa}.fai").exists()  # never put in place for another job to trust
    pysam.faidx(str(fa))  # as `samtools faidx` leaves it (with a warning)
    assert Path(f"{fa}.fai").exists()
    with pytest.raises(DnahnetError, match="record chrA: duplicate sequence name"):
        Genome.open(fa, quiet=True)
    empty = write(tmp_path / "empty.fa", ">a\nACGT\n>nothing\n>b\nGGCC\n")  # htslib leaves empty records out
    for _ in range(2):  # building the index, then finding it: more headers than records is not a duplicate
        assert Genome.open(empty, quiet=True).lengths == {"a": 4, "b": 4}


def test_a_stale_index_another_job_removes_first_is_rebuilt_not_a_fallback(tmp_path, capsys, monkeypatch):
    """Jobs started together on a reference with an out-of-date .fai: one removed it, the others' unlink then
    failed and they read the whole genome into memory (with a note), which can break a cluster job's memory."""
    import os

    fa = write(tmp_path / "g.fa", ">c1\n" + "A" * 60 + "\n")
    Genome.open(fa, quiet=True).close()
    fai = Path(f"{fa}.fai")
    old = fa.stat().st_mtime - 60
    os.utime(fai, (old, old))
    real_unlink = Path.unlink

    def raced(self, missing_ok=False):  # the other job got there first
        if self == fai and self.exists():
            real_unlink(self)
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", raced)
    genome = Genome.open(fa)
    err = capsys.readouterr().err
    assert "into memory" not in err and fai.exists() and genome.fetch("c1", 0, 3) == "AAA", err
