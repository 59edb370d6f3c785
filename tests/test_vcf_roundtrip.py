"""VCF output keeps every byte of the input apart from the INFO tags dnahnet adds (issue 18): samples, FORMAT,
undeclared INFO keys (declared in the output header, as htslib does), flags and values htslib cannot parse."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pysam
import pytest
import typer
from typer.testing import CliRunner

from dnahnet_cli.commands import score_variants as sv
from dnahnet_cli.genomics.outputs import read_table
from dnahnet_cli.model.checkpoint import save_checkpoint
from dnahnet_cli.model.lm import DNAHNet
from dnahnet_cli.model.presets import get_preset

GENOME = str(Path(__file__).resolve().parents[1] / "examples" / "ecoli_k12.fa.gz")
HEADER = [
    "##fileformat=VCFv4.2",
    "##contig=<ID=NC_000913.3,length=4641652>",
    '##INFO=<ID=DP,Number=1,Type=Integer,Description="Depth">',
    '##INFO=<ID=DB,Number=0,Type=Flag,Description="dbSNP">',
    '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
    '##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Allelic depths">',
    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\tS2",
]
RECORDS = [  # undeclared keys (FOO with values, BAR a flag), a declared flag, odd values, samples, multi-allelic
    "NC_000913.3\t1001\trs1\tA\tG\t50\tPASS\tFOO=1,2;BAR;DP=7\tGT:AD\t0/1:3,4\t1/1:0,9",
    "NC_000913.3\t2002\t.\tC\tT,A\t.\tq10\tDP=abc;=;;X\tGT\t1/2\t0/0",
    "NC_000913.3\t3003\tv3\tG\t<DEL>\t12.5\t.\t.\tGT:AD\t./.:.\t0|1:5,5",
    "NC_000913.3\t4004\tv4\tT\tTA\t99\tPASS\tDB;DP=3\tGT\t0/1\t0/1",
]
OWN = re.compile(r"^(DNAHNET_DLL|DNAHNET_STATUS)=")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    import torch

    torch.manual_seed(0)
    return str(save_checkpoint(tmp_path_factory.mktemp("m") / "tiny", DNAHNet(get_preset("tiny")), {"preset": "tiny"}))


def score(tmp_path: Path, ckpt: str, out: str, text: str | bytes | None = None, extra: tuple = (),
          vcf: Path | None = None, stdin: bytes | None = None) -> tuple[Path, str]:
    """Score `vcf`, or a file holding `text` (the module's records by default), into tmp_path / out; with
    `stdin`, the VCF is '-' and those bytes are piped in."""
    app = typer.Typer(pretty_exceptions_enable=False)
    app.callback()(lambda: None)
    sv.register(app)
    if stdin is not None:
        vcf = Path("-")
    elif vcf is None:
        vcf = tmp_path / f"in-{out}.vcf"
        data = text or "\n".join(HEADER + RECORDS) + "\n"
        vcf.write_bytes(data if isinstance(data, bytes) else data.encode())
    res = CliRunner().invoke(app, ["score-variants", GENOME, str(vcf), "--model", ckpt, "--window", "33",
                                   "--device", "cpu", "--dtype", "float32", "-o", str(tmp_path / out), *extra], input=stdin)
    assert res.exit_code == 0, res.output
    return tmp_path / out, res.output


def strip_own(line: str) -> str:
    cols = line.split("\t")
    kept = [f for f in cols[7].split(";") if not OWN.match(f)]
    cols[7] = ";".join(kept) or "."
    return "\t".join(cols)


def test_vcf_output_keeps_every_input_byte_but_the_dnahnet_tags(tmp_path, ckpt):
    out, log = score(tmp_path, ckpt, "out.vcf")
    lines = out.read_text().splitlines()
    body = [l for l in lines if not l.startswith("#")]
    assert [strip_own(l) for l in body] == RECORDS
    assert all("DNAHNET_STATUS=" in l for l in body)
    header = [l for l in lines if l.startswith("#")]
    assert all(h in header for h in HEADER) and header[-1] == HEADER[-1]
    assert '##INFO=<ID=FOO,Number=.,Type=String,Description="Not declared in the input header; declared by dnahnet">' in header
    assert any(h.startswith("##INFO=<ID=BAR,Number=0,Type=Flag") for h in header)
    assert any(h.startswith("##INFO=<ID=X,Number=0,Type=Flag") for h in header)
    assert '##FILTER=<ID=q10,Description="Not declared in the input header; declared by dnahnet">' in header
    assert "not declared in the input header" in log and "FOO" in log
    with pysam.VariantFile(str(out)) as vf:  # htslib reads it back with samples and the new keys
        recs = list(vf)
        assert recs[0].info["FOO"] == ("1", "2")
        assert recs[0].info["BAR"] is True and recs[3].info["DB"] is True
        assert recs[0].samples["S1"]["AD"] == (3, 4)
        assert len(recs[1].info["DNAHNET_STATUS"]) == 2


def test_undeclared_reserved_keys_are_declared_as_htslib_would_so_the_header_holds_their_values(tmp_path, ckpt):
    """AF, SVLEN, DP... were declared with the spec's Number/Type: one AF on a two-ALT record then broke Number=A,
    and DP=abc under Type=Integer read back as missing. END alone keeps its Integer type (htslib needs it)."""
    text = ("##fileformat=VCFv4.2\n##contig=<ID=NC_000913.3,length=4641652>\n"
            "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
            "NC_000913.3\t2002\tm\tC\tT,A\t.\t.\tAF=0.5;SVLEN=abc;DP=x\n")
    out, _ = score(tmp_path, ckpt, "reserved.vcf", text=text)
    with pysam.VariantFile(str(out)) as vf:
        assert {k: (vf.header.info[k].number, vf.header.info[k].type) for k in ("AF", "SVLEN", "DP")} == dict.fromkeys(
            ("AF", "SVLEN", "DP"), (".", "String"))
        (rec,) = list(vf)
        assert (rec.info["AF"], rec.info["SVLEN"], rec.info["DP"]) == (("0.5",), ("abc",), ("x",))


def test_an_undeclared_key_bare_in_one_record_and_valued_in_another_keeps_its_values(tmp_path, ckpt):
    """The first occurrence decided the type: a bare XF, then XF=3, was declared a Flag, and the 3 was lost
    (read back as True; gone for good in BCF output)."""
    text = ("##fileformat=VCFv4.2\n##contig=<ID=NC_000913.3,length=4641652>\n"
            "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
            "NC_000913.3\t1001\ta\tA\tG\t.\t.\tXF\nNC_000913.3\t2002\tb\tC\tT\t.\t.\tXF=3\n")
    for name in ("xf.vcf", "xf.bcf"):
        out, _ = score(tmp_path, ckpt, name, text=text)
        with pysam.VariantFile(str(out)) as vf:
            assert (vf.header.info["XF"].number, vf.header.info["XF"].type) == (".", "String")
            assert [r.info.get("XF") for r in vf][1] == ("3",)


def test_empty_lines_among_the_header_lines_are_skipped_as_htslib_skips_them(tmp_path, ckpt):
    """htslib reads a VCF with an empty line among its '##' lines; dnahnet ended its header there and paired each
    record with the line before it: a traceback after scoring (VCF output), or an error naming the wrong line."""
    lines = HEADER[:2] + ["", "\r"] + HEADER[2:] + RECORDS
    out, _ = score(tmp_path, ckpt, "blank.vcf", text="\n".join(lines) + "\n")
    written = out.read_text().splitlines()
    assert [strip_own(l) for l in written if not l.startswith("#")] == RECORDS
    assert all(h in written for h in HEADER) and "" not in written
    tsv, _ = score(tmp_path, ckpt, "blank.tsv", text="\n".join(lines) + "\n")
    assert list(read_table(tsv)["id"].fillna(".")) == ["rs1", ".", ".", "v3", "v4"]


def test_records_on_a_contig_the_fasta_lacks_are_kept_as_skipped(tmp_path, ckpt):
    """A VCF with plasmid calls scored against the chromosome alone stopped the whole run; those records are now
    kept with SKIP_NO_CONTIG and a warning (conventions: keep the record), and --strict still stops."""
    plasmid = "pX\t100\tp1\tA\tG,T\t.\tPASS\t.\tGT\t0/1\t1/2"
    text = "\n".join(HEADER + RECORDS[:1] + [plasmid] + RECORDS[1:]) + "\n"
    out, log = score(tmp_path, ckpt, "plasmid.vcf", text=text)
    body = [l for l in out.read_text().splitlines() if not l.startswith("#")]
    assert [strip_own(l) for l in body] == RECORDS[:1] + [plasmid] + RECORDS[1:]
    assert "DNAHNET_STATUS=SKIP_NO_CONTIG,SKIP_NO_CONTIG" in body[1] and "DNAHNET_DLL" not in body[1]
    assert "records on pX get SKIP_NO_CONTIG" in log
    tsv, _ = score(tmp_path, ckpt, "plasmid.tsv", text=text)
    assert list(read_table(tsv).query("chrom == 'pX'")["status"]) == ["SKIP_NO_CONTIG"] * 2
    app = typer.Typer(pretty_exceptions_enable=False)
    app.callback()(lambda: None)
    sv.register(app)
    res = CliRunner().invoke(app, ["score-variants", GENOME, str(tmp_path / "in-plasmid.vcf.vcf"), "--model", ckpt,
                                   "--strict", "-o", str(tmp_path / "strict.vcf")])
    assert "contig(s) not in the reference" in str(res.exception)  # a DnahnetError: exit 2 from the CLI
    assert not (tmp_path / "strict.vcf").exists()


def test_rescoring_replaces_the_tags_and_bcf_reads_back(tmp_path, ckpt):
    out, _ = score(tmp_path, ckpt, "out.vcf")
    first = out.read_text()
    again, _ = score(tmp_path, ckpt, "again.vcf", text=first)
    lines = again.read_text().splitlines()
    body = [l for l in lines if not l.startswith("#")]
    assert [strip_own(l) for l in body] == RECORDS
    assert all(l.count("DNAHNET_STATUS=") == 1 for l in body)
    assert sum(l.startswith("##INFO=<ID=DNAHNET_DLL,") for l in lines) == 1
    assert sum(l.startswith("##INFO=<ID=FOO,") for l in lines) == 1
    bcf, _ = score(tmp_path, ckpt, "out.bcf")
    with pysam.VariantFile(str(bcf)) as vf:
        assert [r.id for r in vf] == ["rs1", None, "v3", "v4"]


def test_bcf_input_scores_every_record(tmp_path, ckpt):
    """A BCF input (as `bcftools view -Ob` writes) has no text lines to copy: its records are rendered by htslib.
    Pairing them with the file's decompressed binary lost all but a few records without an error."""
    bcf, _ = score(tmp_path, ckpt, "first.bcf")
    out, _ = score(tmp_path, ckpt, "from-bcf.vcf", vcf=bcf)
    with pysam.VariantFile(str(bcf)) as vf:
        rendered = [str(r).rstrip("\n") for r in vf]
    body = [l for l in out.read_text().splitlines() if not l.startswith("#")]
    assert len(body) == len(RECORDS) == len(rendered)
    assert [strip_own(l) for l in body] == [strip_own(l) for l in rendered]
    assert all(l.count("DNAHNET_STATUS=") == 1 for l in body)
    tsv, _ = score(tmp_path, ckpt, "from-bcf.tsv", vcf=bcf)
    assert len(read_table(tsv)) == 5  # one row per ALT: 1 + 2 + 1 + 1


def test_uncompressed_bcf_and_bcf_on_stdin_score_every_record(tmp_path, ckpt):
    """`bcftools view -Ou` writes an uncompressed BCF, and a BCF piped to stdin is spooled decompressed: both are
    BCF all the same (they were read as text: an error, or before that a silently shorter output)."""
    import gzip

    bcf, _ = score(tmp_path, ckpt, "first.bcf")
    raw = tmp_path / "raw.bcf"
    raw.write_bytes(gzip.decompress(bcf.read_bytes()))
    out, _ = score(tmp_path, ckpt, "from-raw.vcf", vcf=raw)
    assert sum(not l.startswith("#") for l in out.read_text().splitlines()) == len(RECORDS)
    out, _ = score(tmp_path, ckpt, "from-stdin.tsv", stdin=bcf.read_bytes())
    assert len(read_table(out)) == 5


@pytest.mark.parametrize("name", ["undeclared.bcf", "undeclared.vcf", "undeclared.vcf.gz"])
def test_outputs_declare_the_contigs_and_format_keys_a_vcf_may_leave_out(tmp_path, ckpt, name):
    """BCF cannot hold an undeclared contig or FORMAT key; a VCF can, but htslib then reads FORMAT values as
    strings (AD as ('5', '5')), so VCF output once declared only INFO and FILTER: now all four, as BCF does."""
    text = ("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\n"
            "NC_000913.3\t1782\ta\tG\tA\t.\tPASS\t.\tGT:DP:XY\t0/1:5:z\n")
    out, log = score(tmp_path, ckpt, name, text=text)
    assert "FORMAT DP" in log and "contig NC_000913.3" in log
    with pysam.VariantFile(str(out)) as vf:
        assert list(vf.header.contigs) == ["NC_000913.3"]
        assert vf.header.formats["DP"].type == "Integer" and vf.header.formats["XY"].type == "String"
        (rec,) = list(vf)
    assert rec.samples["S1"]["DP"] == 5 and rec.samples["S1"]["XY"] == ("z",) and rec.info["DNAHNET_STATUS"] == ("OK",)


def test_bcf_output_keeps_an_undeclared_end_and_keep_info_reads_it(tmp_path, ckpt):
    """An undeclared INFO/END was declared as a String: BCF output then died in htslib (symbolic ALT) or dropped
    END (a gVCF-style block became 1 bp); --keep-info END always gave NA (htslib moves END out of INFO), and Float
    lists came out as float32 noise (0.10000000149011612)."""
    text = ("##fileformat=VCFv4.3\n##contig=<ID=NC_000913.3,length=4641652>\n"
            '##INFO=<ID=XF,Number=.,Type=Float,Description="x">\n'
            "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
            "NC_000913.3\t3003\tsv\tG\t<DEL>\t.\t.\tEND=3050;XF=0.1,0.3\n"
            "NC_000913.3\t4004\tblock\tT\t.\t.\t.\tEND=4050;MIN_DP=3\n"
            "NC_000913.3\t5005\tlast\tA\t<DEL>\t.\t.\tMIN_DP=3;END=5040\n")  # END last in a sites-only line
    out, _ = score(tmp_path, ckpt, "end.bcf", text=text)
    with pysam.VariantFile(str(out)) as vf:
        assert vf.header.info["END"].type == "Integer"
        assert [(r.id, r.stop) for r in vf] == [("sv", 3050), ("block", 4050), ("last", 5040)]
    declared = text.replace("##INFO=", '##INFO=<ID=END,Number=1,Type=Integer,Description="End">\n##INFO=', 1)
    out, _ = score(tmp_path, ckpt, "end.tsv", text=declared, extra=("--keep-info", "END,XF"))
    df = read_table(out).set_index("id")
    assert df.loc["sv", "info_END"] == 3050 and df.loc["block", "info_END"] == 4050 and df.loc["last", "info_END"] == 5040
    assert df.loc["sv", "info_XF"] == "0.1,0.3"


def test_rescoring_drops_stale_tags_and_keeps_foreign_bytes(tmp_path, ckpt):
    """Re-scoring an earlier run's output (here one with --calibrate tags and its own provenance) must not leave the
    old percentile next to the new score or two ##dnahnet_window lines; a Latin-1 byte and a '\\r' inside a field
    are input bytes like any other; an upper-case .VCF.GZ is bgzipped; DNAHNET_DLL's description names the
    strand scored."""
    header = HEADER[:-1] + ["##dnahnet_window=64", '##INFO=<ID=DNAHNET_PCT,Number=A,Type=Float,Description="old">',
                            '##INFO=<ID=DNAHNET_DLL,Number=A,Type=Float,Description="old">', HEADER[-1]]
    records = ["NC_000913.3\t1001\trs1\tA\tG\t50\tPASS\tDP=7;DNAHNET_PCT=94;DNAHNET_DLL=0.9;NOTE=caf\xe9\tGT:AD\t0/1:3,4\t1/1:0,9",
               "NC_000913.3\t2002\t.\tC\tT\t.\tPASS\tNOTE=a\rb\tGT\t0/1\t0/0"]
    raw = ("\n".join(header + records) + "\n").encode("latin-1")
    out, log = score(tmp_path, ckpt, "AGAIN.VCF.GZ", text=raw, extra=("--strand", "forward"))
    assert "window 33 nt (trained at " in log  # the window used, not the training length alone
    data = out.read_bytes()
    assert data[:2] == b"\x1f\x8b"
    text = pysam.BGZFile(str(out)).read()
    lines = text.split(b"\n")[:-1]
    assert sum(l.startswith(b"##dnahnet_window=") for l in lines) == 1 and b"##dnahnet_window=33" in lines
    assert b"DNAHNET_PCT" not in text and b'Description="old"' not in text
    dll = [l for l in lines if l.startswith(b"##INFO=<ID=DNAHNET_DLL,")]
    assert len(dll) == 1 and b"forward strand only" in dll[0] and b"both strands" not in dll[0]
    body = [l for l in lines if not l.startswith(b"#")]
    assert body[0].startswith(b"NC_000913.3\t1001\trs1\tA\tG\t50\tPASS\tDP=7;NOTE=caf\xe9;DNAHNET_")
    assert body[1].startswith(b"NC_000913.3\t2002\t.\tC\tT\t.\tPASS\tNOTE=a\rb;DNAHNET_")
    assert all(l.endswith(b"\tGT:AD\t0/1:3,4\t1/1:0,9") for l in body[:1])


@pytest.mark.skipif(shutil.which("bcftools") is None, reason="bcftools is not installed")
def test_bcftools_annotate_removes_exactly_the_added_tags(tmp_path, ckpt):
    out, _ = score(tmp_path, ckpt, "out.vcf")
    res = subprocess.run(["bcftools", "annotate", "-x", "INFO/DNAHNET_DLL,INFO/DNAHNET_STATUS", str(out)],
                         capture_output=True, text=True, check=True)
    body = [l for l in res.stdout.splitlines() if not l.startswith("#")]
    assert [l.split("\t")[:7] + l.split("\t")[8:] for l in body] == [r.split("\t")[:7] + r.split("\t")[8:] for r in RECORDS]


def test_tsv_gz_is_bgzf_with_a_tabix_index_and_a_hash_header(tmp_path, ckpt):
    out, log = score(tmp_path, ckpt, "scores.tsv.gz", extra=("--na", "."))
    assert Path(f"{out}.tbi").is_file() and "tabix index" in log
    with pysam.TabixFile(str(out)) as tbx:
        header = tbx.header[-1]
        rows = [r.split("\t") for r in tbx.fetch("NC_000913.3", 1500, 2500)]
    assert header.startswith("#chrom\tpos\tid\tref\talt")
    assert [(r[1], r[4]) for r in rows] == [("2002", "T"), ("2002", "A")]
    cols = header.lstrip("#").split("\t")
    symbolic = [r for r in (l.split("\t") for l in pysam.BGZFile(str(out)).read().decode().splitlines())
                if len(r) > 2 and r[1] == "3003"][0]
    assert symbolic[cols.index("score")] == "."  # --na: the missing-value token


def test_tsv_gz_index_spans_the_ref_allele_of_deletions(tmp_path, ckpt):
    """A 20-nt deletion at 5000 covers 5000-5020: a query inside it finds the row (the index once covered POS only,
    so `tabix x.tsv.gz chrom:5010-5012` missed it), and `ref_end` says where REF ends, as `tabix -p vcf` reads it."""
    deletion = "NC_000913.3\t5000\tdel20\tTTGATGATGAATCATCAGTAA\tT\t.\t.\t.\tGT\t0/1\t0/1"
    out, _ = score(tmp_path, ckpt, "scores.tsv.gz", text="\n".join(HEADER + RECORDS + [deletion]) + "\n")
    with pysam.TabixFile(str(out)) as tbx:
        cols = tbx.header[-1].lstrip("#").split("\t")
        rows = [r.split("\t") for r in tbx.fetch("NC_000913.3", 5009, 5012)]  # 0-based half-open: 5010-5012
        assert list(tbx.fetch("NC_000913.3", 5020, 5030)) == []  # past REF's last base
    assert [(r[cols.index("id")], r[cols.index("ref_end")]) for r in rows] == [("del20", "5020")]
    assert read_table(out).set_index("id").loc["rs1", "ref_end"] == 1001  # an SNV ends where it starts


def test_tsv_gz_index_spans_a_symbolic_deletion_to_its_end(tmp_path, ckpt):
    """A <DEL> with END=3050 spans 3003-3050 as `tabix -p vcf` reads it; the TSV's index covered its REF base only."""
    sv_line = "NC_000913.3\t3003\tsv\tG\t<DEL>\t.\t.\tSVTYPE=DEL;END=3050\tGT\t0/1\t0/1"
    # END declared as htslib wants it, or not declared (htslib then leaves rec.stop at POS; tabix reads the text)
    for i, declared in enumerate(['##INFO=<ID=END,Number=1,Type=Integer,Description="End">', None]):
        header = HEADER[:2] + [declared] * (declared is not None) + HEADER[2:]
        out, _ = score(tmp_path, ckpt, f"sv{i}.tsv.gz", text="\n".join(header + [sv_line]) + "\n")
        with pysam.TabixFile(str(out)) as tbx:
            assert len(list(tbx.fetch("NC_000913.3", 3040, 3045))) == 1
            assert list(tbx.fetch("NC_000913.3", 3050, 3060)) == []
        assert read_table(out).loc[0, "ref_end"] == 3050


@pytest.mark.parametrize("name", ["scores.tsv.bgz", "out.vcf.bgz"])
def test_bgz_names_are_bgzipped_like_gz(tmp_path, ckpt, name):
    """'.bgz' is bgzip's other suffix: the docs accept it for -o, so it must be compressed (BGZF magic, readable by
    pysam), not plain text under a compressed name; both get a tabix index (a VCF's once did not)."""
    out, _ = score(tmp_path, ckpt, name)
    assert Path(out).read_bytes()[:2] == b"\x1f\x8b"
    text = pysam.BGZFile(str(out)).read().decode()
    assert "DNAHNET_DLL" in text if name.endswith("vcf.bgz") else text.splitlines()[-1].startswith("NC_000913.3\t4004")
    assert Path(f"{out}.tbi").is_file()


def test_unsorted_vcf_gives_a_tsv_gz_without_index_and_says_so(tmp_path, ckpt, capfd):
    text = "\n".join(HEADER + [RECORDS[3], RECORDS[0]]) + "\n"
    out, log = score(tmp_path, ckpt, "scores.tsv.gz", text=text)
    assert not Path(f"{out}.tbi").exists() and "not position-sorted" in log
    assert "[E::" not in capfd.readouterr().err  # htslib's own complaint once stood beside the note (and under -q)
    from dnahnet_cli.genomics.outputs import read_table

    assert list(read_table(out)["pos"]) == [4004, 1001]


@pytest.mark.skipif(shutil.which("tabix") is None, reason="tabix (htslib) is not installed")
def test_tabix_command_line_queries_the_tsv_gz(tmp_path, ckpt):
    """The index dnahnet writes works with the real `tabix` client, and so does re-indexing with `-s1 -b2 -e19`
    (`ref_end`, column 19; the header starts with #, so no -S is needed)."""
    out, _ = score(tmp_path, ckpt, "scores.tsv.gz")
    got = subprocess.run(["tabix", str(out), "NC_000913.3:1500-2500"], capture_output=True, text=True, check=True)
    assert [l.split("\t")[1] for l in got.stdout.splitlines()] == ["2002", "2002"]
    Path(f"{out}.tbi").unlink()
    subprocess.run(["tabix", "-s1", "-b2", "-e19", str(out)], check=True)
    again = subprocess.run(["tabix", str(out), "NC_000913.3:1500-2500"], capture_output=True, text=True, check=True)
    assert again.stdout == got.stdout


@pytest.mark.skipif(shutil.which("bedtools") is None, reason="bedtools is not installed")
def test_bedtools_accepts_the_bed_and_bedgraph_outputs(tmp_path, ckpt):
    """segment BED and bedGraph, essentiality --bed: bedtools reads them, they are already in its sort order,
    and intervals are 0-based half-open inside the contig (bedtools complement against the genome file)."""
    from dnahnet_cli.commands import essentiality_cmd, segment_cmd

    ex = Path(__file__).resolve().parents[1] / "examples"
    app = typer.Typer(pretty_exceptions_enable=False)
    app.callback()(lambda: None)
    segment_cmd.register(app)
    essentiality_cmd.register(app)
    fa, gff = str(ex / "ecoli_k12_20kb.fa"), str(ex / "ecoli_k12_20kb.gff3")
    res = CliRunner().invoke(app, ["segment", fa, "--model", ckpt, "--region", "NC_000913.3:1-3000", "--device", "cpu",
                                   "-q", "-o", str(tmp_path / "chunks.bed"), "--bedgraph", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["essentiality", fa, "--gff", gff, "--model", ckpt, "--window", "256", "-q",
                                   "--device", "cpu", "-o", str(tmp_path / "e.tsv"), "--bed", str(tmp_path / "e.bed")])
    assert res.exit_code == 0, res.output
    genome = tmp_path / "g.txt"
    genome.write_text("NC_000913.3\t20000\n")
    tracks = [tmp_path / "chunks.bed", tmp_path / "e.bed", *sorted(tmp_path.glob("p*.bedgraph"))]
    assert len(tracks) >= 3
    for track in tracks:
        body = [l for l in track.read_text().splitlines() if not l.startswith(("#", "track"))]
        assert body, track
        srt = subprocess.run(["bedtools", "sort", "-i", str(track)], capture_output=True, text=True, check=True)
        key = lambda lines: [(l.split("\t")[0], int(l.split("\t")[1])) for l in lines]  # noqa: E731
        assert key(srt.stdout.splitlines()) == key(body), track  # already in bedtools' (chrom, start) order
        subprocess.run(["bedtools", "complement", "-i", str(track), "-g", str(genome)], capture_output=True,
                       text=True, check=True)


def test_bytes_that_are_not_utf8_in_kept_info_and_fixed_columns(tmp_path, ckpt):
    """--keep-info of a Latin-1 INFO value was a pysam traceback, and so was any such byte in a .tsv.gz (its text
    stream was strict UTF-8); a Latin-1 byte in ID was a traceback wherever pysam first decoded it: now one line."""
    header = HEADER[:2] + ['##INFO=<ID=GENE,Number=1,Type=String,Description="Gene">',
                           '##INFO=<ID=AF,Number=A,Type=Float,Description="Allele frequency">', HEADER[-1]]
    records = ["NC_000913.3\t1001\trs1\tA\tG,T\t50\tPASS\tGENE=caf\xe9;AF=0.5\tGT:AD\t0/1:3,4\t1/1:0,9"]
    raw = ("\n".join(header + records) + "\n").encode("latin-1")
    out, _ = score(tmp_path, ckpt, "kept.tsv.gz", text=raw, extra=("--keep-info", "GENE,AF"))
    rows = [line.split(b"\t") for line in pysam.BGZFile(str(out)).read().split(b"\n") if line and not line.startswith(b"#")]
    columns = [c for c in sv.VARIANT_COLUMNS] + ["info_GENE", "info_AF"]
    got = [dict(zip(columns, row)) for row in rows]
    assert [r["info_GENE"] for r in got] == [b"caf\xe9", b"caf\xe9"]
    assert [r["info_AF"] for r in got] == [b"0.5", b"NA"]  # AF gives one value for two ALTs: the second has none

    bad = tmp_path / "id.vcf"
    bad.write_bytes(("\n".join(HEADER + ["NC_000913.3\t1001\tgen\xe9_1\tA\tG\t.\tPASS\t.\tGT\t0/1\t0/1"]) + "\n")
                    .encode("latin-1"))
    app = typer.Typer(pretty_exceptions_enable=False)
    app.callback()(lambda: None)
    sv.register(app)
    res = CliRunner().invoke(app, ["score-variants", GENOME, str(bad), "--model", ckpt, "--window", "33",
                                   "-o", str(tmp_path / "id.tsv")])
    assert res.exception.exit_code == 2  # a DnahnetError: one line from the CLI, exit 2
    assert "id.vcf: line 8: CHROM, ID, REF or ALT is not UTF-8 text" in str(res.exception)
    assert not (tmp_path / "id.tsv").exists()


def test_stale_indexes_and_empty_columns(tmp_path, ckpt):
    """An old .csi beside a rewritten .vcf.gz (bcftools index makes CSI) was loaded by htslib before the fresh .tbi
    and broke region queries; an empty INFO column gained a leading ';' and an empty FILTER a ##FILTER=<ID=,...>."""
    stale = tmp_path / "out.vcf.gz.csi"
    stale.write_bytes(b"an index of an earlier file")
    records = ["NC_000913.3\t1001\trs1\tA\tG\t50\t\t\tGT\t0/1\t0/1"]
    out, _ = score(tmp_path, ckpt, "out.vcf.gz", text="\n".join(HEADER + records) + "\n")
    assert not stale.exists() and (tmp_path / "out.vcf.gz.tbi").exists()
    with pysam.VariantFile(str(out)) as vf:
        assert len(list(vf.fetch("NC_000913.3", 0, 2000))) == 1
    text = pysam.BGZFile(str(out)).read().decode()
    assert "##FILTER=<ID=," not in text
    body = [line for line in text.splitlines() if not line.startswith("#")]
    assert body[0].split("\t")[7].startswith("DNAHNET_")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak memory from Linux's /proc")
def test_bcf_output_streams_its_records(tmp_path):
    """BCF output held every record in memory (peak 104 MB for 200,000 one-sample records, 20 MB for 1,000); it
    now streams them (20 MB for both), so a many-million-record VCF needs no more memory than a small one."""
    import sys

    script = tmp_path / "peak.py"
    script.write_text(
        "import sys\nfrom dnahnet_cli.genomics.outputs import open_bcf_output\n"
        "with open_bcf_output(sys.argv[2]) as fh:\n"
        "    fh.write('##fileformat=VCFv4.2\\n##contig=<ID=c1,length=100000000>\\n'\n"
        "             '##FORMAT=<ID=GT,Number=1,Type=String,Description=\"g\">\\n'\n"
        "             '#CHROM\\tPOS\\tID\\tREF\\tALT\\tQUAL\\tFILTER\\tINFO\\tFORMAT\\tS1\\n')\n"
        "    for i in range(int(sys.argv[1])):\n"
        "        fh.write(f'c1\\t{i + 1}\\t.\\tA\\tG\\t.\\tPASS\\t.\\tGT\\t0/1\\n')\n"
        "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))\n")
    peak = {}
    for n in (1_000, 200_000):
        out = tmp_path / f"{n}.bcf"
        res = subprocess.run([sys.executable, str(script), str(n), str(out)], capture_output=True, text=True,
                             check=True, cwd=Path(__file__).resolve().parents[1])
        peak[n] = int(res.stdout) / 1024  # VmHWM, MB (ru_maxrss would count the pytest process forked from)
        with pysam.VariantFile(str(out)) as vf:
            assert sum(1 for _ in vf) == n
    assert peak[200_000] - peak[1_000] < 25, peak  # held in memory: +83 MB


def test_an_undeclared_end_is_read_from_a_line_that_is_not_utf8(tmp_path, ckpt):
    """ref_end of a <DEL> whose END the header does not declare is read from the INFO text, as tabix reads it; a
    Latin-1 byte elsewhere in the line made pysam's rendering of the record fail, and END was lost (REF's end)."""
    text = ("##fileformat=VCFv4.2\n##contig=<ID=NC_000913.3,length=4641652>\n"
            "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
            "NC_000913.3\t3003\tsv\tG\t<DEL>\t.\t.\tEND=3050;NOTE=caf\xe9\n").encode("latin-1")
    out, _ = score(tmp_path, ckpt, "end.tsv", text=text)
    assert read_table(out)["ref_end"].tolist() == [3050]
