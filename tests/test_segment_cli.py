"""`dnahnet segment` end to end: a real E. coli K-12 region with its GFF, bad inputs, atomic outputs, `| head`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pysam
import pyranges as pr
import pytest
import typer
from typer.testing import CliRunner

from dnahnet_cli.model.checkpoint import save_checkpoint
from dnahnet_cli.commands.segment_cmd import register
from dnahnet_cli.errors import DnahnetError

from conftest import shared_data, break_plotting
from test_segment import micro_model
from dnahnet_cli.genomics.outputs import read_table

ROOT = Path(__file__).resolve().parents[1]
GENOME = str(ROOT / "examples" / "ecoli_k12.fa.gz")
CHROM = "NC_000913.3"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    return str(save_checkpoint(tmp_path_factory.mktemp("models") / "micro", micro_model(), {"preset": "micro"}))


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)

    @app.callback()
    def _root() -> None:
        """test app"""

    register(app)
    return app


def invoke(app, *args):
    return CliRunner().invoke(app, ["segment", *map(str, args)])


def fail(app, match: str, *args) -> None:
    res = invoke(app, *args)
    assert isinstance(res.exception, DnahnetError), (res.output, res.exception)
    assert match in str(res.exception) and "\n" not in str(res.exception)


def test_ecoli_region_bed_report_plot(app, ckpt, tmp_path):
    gff = shared_data("ecoli_k12", "annot.gff.gz")
    bed, rep, png, bg = tmp_path / "c.bed", tmp_path / "seg.tsv", tmp_path / "seg.png", tmp_path / "p"
    res = invoke(app, GENOME, "--model", ckpt, "--gff", gff, "--region", f"{CHROM}:101-3100", "--strand", "both",
                 "--tile", 512, "--overlap", 128, "--report", rep, "--plot", png, "--bedgraph", bg,
                 "--permutations", 20, "-o", bed, "--device", "cpu", "--quiet")
    assert res.exit_code == 0, (res.output, res.exception)
    # BED6+3, 0-based half-open inside the region, sorted (tabix accepts it), scores from p_start
    df = pd.read_csv(bed, sep="\t", header=None, names=["chrom", "start", "end", "name", "score", "strand",
                                                         "stage", "p_start", "mean_p"])
    assert len(df) > 100 and (df.chrom == CHROM).all()
    assert (df.start >= 100).all() and (df.end <= 3100).all() and (df.start < df.end).all()
    assert df.name.is_unique and set(df.stage) == {1, 2} and set(df.strand) == {"+", "-"}
    assert (abs(df.score - 1000 * df.p_start) <= 0.6).all()  # p_start is printed with 4 digits
    assert (df.p_start > 0.5).all() and df.mean_p.between(0, 1).all()
    for (strand, stage), g in df.groupby(["strand", "stage"]):  # one strand's chunks of one stage never overlap
        assert (g.start.values[1:] >= g.end.values[:-1]).all()
    ranges = pr.read_bed(str(bed))
    assert len(ranges) == len(df) and set(ranges.Strand) == {"+", "-"}
    pysam.tabix_index(str(bed), preset="bed", force=True, keep_original=True)
    with pysam.TabixFile(str(bed) + ".gz") as tbx:
        assert len(list(tbx.fetch(CHROM, 1000, 1100))) > 0
    # bedGraph per stage and strand, covering the region base by base
    for name in ("stage1.plus", "stage1.minus", "stage2.plus", "stage2.minus"):
        g = pd.read_csv(f"{bg}.{name}.bedgraph", sep="\t", header=None)
        assert g.shape[1] == 4 and g[1].iloc[0] == 100 and g[2].iloc[-1] == 3100
        assert (g[1].values[1:] == g[2].values[:-1]).all()
    # report: every stage x strand (+, -, pooled) x class; thrL/thrA/thrB are all on the + strand
    rows = read_table(rep)
    assert len(rows) == 2 * 3 * 11 and open(rep).readline().startswith("##dnahnet_version=")
    r = rows.set_index(["stage", "strand", "class"])
    cds = r.loc[(1, "+", "cds"), "n_positions"]
    assert cds == 66 + 2463 + 300  # thrL, thrA and thrB up to base 3100
    assert sum(r.loc[(1, "+", f"cds_codon{k}"), "n_positions"] for k in (1, 2, 3)) == cds
    assert r.loc[(1, "-", "cds"), "n_positions"] == 0 and r.loc[(1, "-", "cds_antisense"), "n_positions"] == cds
    assert r.loc[(1, "+", "start_codon"), "n_positions"] == 9 and r.loc[(1, "+", "stop_codon"), "n_positions"] == 6
    assert r.loc[(2, "both", "all"), "n_positions"] == 6000
    assert r.loc[(1, "both", "all"), "n_boundaries"] == (df.stage == 1).sum()  # one chunk per boundary
    assert r.loc[(2, "+", "all"), "n_boundaries"] == ((df.stage == 2) & (df.strand == "+")).sum()
    payload = json.loads(Path(rep.with_suffix(".json")).read_text())
    assert payload["params"]["permutations"] == 20 and len(payload["rows"]) == len(rows)
    assert len(payload["start_profile"]["distance"]) == 201 and "stage1:both" in payload["start_profile"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_inputs_are_one_line_errors(app, ckpt, tmp_path):
    fa = tmp_path / "g.fa"
    fa.write_text(">c1\n" + "ACGT" * 100 + "\n")
    base = [fa, "--model", ckpt, "--device", "cpu", "-q"]
    fail(app, "expected CHROM or CHROM:START-END", *base, "--region", "c1:1..20")
    fail(app, "expected CHROM or CHROM:START-END", *base, "--region", "c1:1-,")  # once int(''): a traceback
    fail(app, "'c2' is not in the FASTA", *base, "--region", "c2:1-20")
    fail(app, "past the end of c1 (length 400)", *base, "--region", "c1:300-401")
    fail(app, "this model has 2 stage(s)", *base, "--stage", "3")
    fail(app, "--report and --plot need --gff", *base, "--report", tmp_path / "r.tsv")
    fail(app, "--overlap must be in [0, --tile)", *base, "--tile", 100, "--overlap", 100)
    gff = tmp_path / "a.gff3"
    gff.write_text("##gff-version 3\nchrX\tt\tgene\t1\t30\t.\t+\t.\tID=g1\nchrX\tt\tCDS\t1\t30\t.\t+\t0\tID=c1;Parent=g1\n")
    fail(app, "seqid 'chrX' of gene g1 is not in", *base, "--gff", gff)
    # a gene past the end of a linear contig was clipped silently, then refused the whole run (Bakta puts tmRNAs
    # past the ends of draft contigs); now it is kept as SKIP_OUT_OF_BOUNDS, with a warning naming it
    for gene_end in (420, 390):  # the gene line, or only its CDS line, runs over
        gff.write_text(f"##gff-version 3\nc1\tt\tgene\t301\t{gene_end}\t.\t+\t.\tID=g1\n"
                       "c1\tt\tCDS\t301\t420\t.\t+\t0\tID=c1;Parent=g1\n")
        res = invoke(app, fa, "--model", ckpt, "--device", "cpu", "--gff", gff, "-o", tmp_path / "past.bed")
        assert res.exit_code == 0, res.output
        assert "1 gene(s) run past the end of a linear sequence" in res.output and "g1 (line 2, ends at 420" in res.output
    fail(app, "model directory not found", fa, "--model", tmp_path / "nope")
    # a bedGraph named like another output once overwrote it (or was overwritten) silently
    fail(app, "the same file as --output", *base, "--bedgraph", tmp_path / "bg", "-o", tmp_path / "bg.stage1.bedgraph")
    assert not list(tmp_path.glob("*.tsv")) and not list(tmp_path.glob(".*tmp"))


def test_failure_mid_run_leaves_no_partial_output(app, ckpt, tmp_path):
    """A bad base past the part checked at open time fails during segmentation: no BED, no temp file."""
    fa = tmp_path / "bad.fa"
    seq = "ACGT" * 3250 + "ACGE" + "ACGT" * 10
    fa.write_text(">c1\n" + "\n".join(seq[i: i + 60] for i in range(0, len(seq), 60)) + "\n")
    out = tmp_path / "out.bed"
    fail(app, "invalid nucleotide 'E'", fa, "--model", ckpt, "--device", "cpu", "-q", "-o", out,
         "--bedgraph", tmp_path / "bg", "--tile", 1024)
    assert not out.exists() and not list(tmp_path.glob("bg*")) and not list(tmp_path.glob(".*"))


def test_failing_plot_leaves_no_report_and_no_bed(app, ckpt, tmp_path, monkeypatch):
    """The report, its JSON twin and the BED were once renamed into place before the plot was drawn, so a
    plot that failed left a finished-looking run behind."""
    from dnahnet_cli.commands import segment_cmd

    break_plotting(monkeypatch, segment_cmd, "plot_report")
    gff = shared_data("ecoli_k12", "annot.gff.gz")
    out, rep, png = tmp_path / "c.bed", tmp_path / "seg.tsv", tmp_path / "seg.png"
    fail(app, "plot failed", GENOME, "--model", ckpt, "--gff", gff, "--region", f"{CHROM}:101-1100", "--tile", 512,
         "--permutations", 2, "--report", rep, "--plot", png, "-o", out, "--device", "cpu", "-q")
    assert not list(tmp_path.iterdir())


def test_output_failing_at_close_leaves_none_of_the_others(app, ckpt, tmp_path, monkeypatch):
    """Outputs were renamed into place one by one as the stack unwound: when the last to close (the BED, opened
    first) failed there, e.g. a full disk flushing late, the report and its JSON were already in place."""
    from dnahnet_cli.genomics import outputs

    real = outputs.BGZFile

    class FullDisk:  # wraps (never subclasses) pysam's writer: a raising close inside pysam corrupted memory
        def __init__(self, path, mode):
            self.inner = real(path, mode)

        def write(self, data):
            return self.inner.write(data)

        def flush(self):
            self.inner.flush()

        def writable(self):
            return True

        def readable(self):
            return False

        def seekable(self):
            return False

        @property
        def closed(self):
            return self.inner.closed

        def close(self):
            if not self.inner.closed:
                self.inner.close()
                raise OSError(28, "No space left on device")

    monkeypatch.setattr(outputs, "BGZFile", FullDisk)
    out, rep = tmp_path / "c.bed.gz", tmp_path / "seg.tsv"
    res = invoke(app, ROOT / "examples" / "ecoli_k12_20kb.fa", "--model", ckpt, "--gff",
                 ROOT / "examples" / "ecoli_k12_20kb.gff3", "--region", "NC_000913.3:1-1500", "--tile", 512,
                 "--permutations", 2, "--report", rep, "-o", out, "--device", "cpu", "-q")
    assert isinstance(res.exception, OSError) and "No space left" in str(res.exception)
    assert not list(tmp_path.iterdir())


def _cli(*args: str, pipe: str = "") -> subprocess.CompletedProcess:
    """The real entry point (cli.main: exit codes, BrokenPipe) with segment registered on its app."""
    code = ("import sys; from dnahnet_cli import cli; from dnahnet_cli.commands import segment_cmd; "
            "segment_cmd.register(cli.app); cli.main()")
    cmd = " ".join([sys.executable, "-c", f"'{code}'", "segment", *args]) + pipe
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, cwd=ROOT)


def test_cli_exit_code_and_head_safe(ckpt):
    res = _cli(GENOME, "--model", ckpt, "--region", f"'{CHROM}:1-abc'")
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().splitlines() == [f"dnahnet: error: --region '{CHROM}:1-abc': expected CHROM or "
                                               "CHROM:START-END (1-based, inclusive)"]
    res = _cli(GENOME, "--model", ckpt, "--region", f"{CHROM}:1-3000", "--device", "cpu", "--batch-size", "2",
               "--tile", "256", "--strand", "both", pipe=" | head -n 3; exit ${PIPESTATUS[0]}")
    assert res.returncode in (0, 141), res.stderr  # 141 as for SIGPIPE (click's own answer would be 1); 0 if it finished first
    assert "Traceback" not in res.stderr and len(res.stdout.splitlines()) == 3
    assert all(len(line.split("\t")) == 9 for line in res.stdout.splitlines())
    # more BED than a pipe holds (~1 MB, in one block): the reader leaves before the end, so this must be 141; one
    # large write that the reader stopped reading midway once lost its rest without an error, and exit was 0
    res = _cli(GENOME, "--model", ckpt, "--region", f"{CHROM}:1-20000", "--device", "cpu", "--tile", "20000",
               "--strand", "both", "-q", pipe=" | head -n 3; exit ${PIPESTATUS[0]}")
    assert res.returncode == 141 and "Traceback" not in res.stderr, (res.returncode, res.stderr)


def test_merge_equal_joins_rows_with_the_same_printed_value(app, ckpt, tmp_path):
    plain, merged = tmp_path / "plain", tmp_path / "merged"
    for prefix, extra in ((plain, []), (merged, ["--merge-equal"])):
        res = invoke(app, GENOME, "--model", ckpt, "--region", f"{CHROM}:101-1100", "--stage", "1",
                     "--bedgraph", prefix, "-o", tmp_path / "c.bed", *extra)
        assert res.exit_code == 0, res.output

    def rows(prefix):
        return [(int(s), int(e), v) for _, s, e, v in
                (line.split("\t") for line in Path(f"{prefix}.stage1.bedgraph").read_text().splitlines())]

    a, b = rows(plain), rows(merged)
    assert len(b) <= len(a) and b[0][0] == a[0][0] and b[-1][1] == a[-1][1]
    assert all(x[1] == y[0] for x, y in zip(b, b[1:]))  # contiguous
    assert all(x[2] != y[2] for x, y in zip(b, b[1:]))  # no two neighbours print the same
    expand = lambda rs: [v for s, e, v in rs for _ in range(e - s)]  # noqa: E731
    assert expand(a) == expand(b)  # the same printed track, base by base


def test_gff_from_stdin_gives_the_same_report_as_the_file(app, ckpt, tmp_path):
    """`--gff -` reads the annotation from stdin (README: every command accepts - for stdin)."""
    gff = ROOT / "examples" / "ecoli_k12_20kb.gff3"
    fasta = ROOT / "examples" / "ecoli_k12_20kb.fa"
    reports = []
    for source, stdin in ((gff, None), ("-", gff.read_text())):
        rep = tmp_path / f"report{len(reports)}.tsv"
        res = CliRunner().invoke(app, ["segment", str(fasta), "--model", ckpt, "--gff", str(source), "--region",
                                       f"{CHROM}:1-4000", "--report", str(rep), "--permutations", "5",
                                       "--no-meta", "-o", str(tmp_path / "c.bed"), "--device", "cpu", "--quiet"],
                                 input=stdin)
        assert res.exit_code == 0, (res.output, res.exception)
        reports.append(rep.read_text())
    assert reports[0] == reports[1] and len(reports[0].splitlines()) > 1


def test_gz_outputs_are_bgzipped_and_clashing_names_are_refused(app, ckpt, tmp_path):
    """`-o x.bed.gz` and `--report x.tsv.gz` are BGZF (tabix and zcat read them), the report's JSON twin is
    x.json; a --report or --plot on the JSON twin's path (or on each other's) would overwrite it silently."""
    gff = str(ROOT / "examples" / "ecoli_k12_20kb.gff3")
    fa = str(ROOT / "examples" / "ecoli_k12_20kb.fa")
    bed, rep = tmp_path / "chunks.bed.gz", tmp_path / "rep.tsv.gz"
    res = invoke(app, fa, "--model", ckpt, "--gff", gff, "--region", f"{CHROM}:1-1000", "--tile", 256,
                 "--permutations", 5, "--report", rep, "-o", bed, "--device", "cpu", "--quiet")
    assert res.exit_code == 0, (res.output, res.exception)
    assert bed.read_bytes()[:2] == rep.read_bytes()[:2] == b"\x1f\x8b"
    rows = pysam.BGZFile(str(bed)).read().decode().splitlines()
    assert rows and all(r.startswith(f"{CHROM}\t") for r in rows)
    assert read_table(rep).shape[0] > 0 and json.loads((tmp_path / "rep.json").read_text())["rows"]
    base = [fa, "--model", ckpt, "--gff", gff, "--region", f"{CHROM}:1-1000", "--device", "cpu", "-q"]
    fail(app, "the same file as --report", *base, "--report", tmp_path / "seg.json")
    fail(app, "the same file as the report's JSON twin", *base, "--report", tmp_path / "r.tsv", "--plot", tmp_path / "r.json")
    fail(app, "the same file as --output", *base, "-o", tmp_path / "x.tsv", "--report", tmp_path / "x.tsv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chunks.bed.gz", "rep.json", "rep.tsv.gz"]


def test_track_line_output_is_plain_bed6_for_browsers(app, ckpt, tmp_path):
    """With --track-line the BED is for a genome browser, which reads columns 7-8 as thickStart/thickEnd
    (integers): our stage and p_start there would be rejected, so the rows are BED6."""
    bed = tmp_path / "c.bed"
    res = invoke(app, str(ROOT / "examples" / "ecoli_k12_20kb.fa"), "--model", ckpt, "--region", f"{CHROM}:1-1000",
                 "--tile", 256, "--track-line", "-o", bed, "--device", "cpu", "-q")
    assert res.exit_code == 0, (res.output, res.exception)
    first, *rows = bed.read_text().splitlines()
    assert first.startswith('track name="dnahnet_chunks"') and "useScore=1" in first
    fields = [r.split("\t") for r in rows]
    assert fields and all(len(f) == 6 and f[3][:3] in ("S1_", "S2_") and 0 <= int(f[4]) <= 1000 for f in fields)


def test_track_line_starts_each_bedgraph_with_a_bedgraph_track_line(app, ckpt, tmp_path):
    """UCSC draws a bedGraph custom track only after `track type=bedGraph`; --track-line gave one to the BED only."""
    base = [str(ROOT / "examples" / "ecoli_k12_20kb.fa"), "--model", ckpt, "--region", f"{CHROM}:1-1000",
            "--tile", 256, "--strand", "both", "--device", "cpu", "-q"]
    res = invoke(app, *base, "--bedgraph", tmp_path / "t", "-o", tmp_path / "t.bed", "--track-line")
    assert res.exit_code == 0, (res.output, res.exception)
    res = invoke(app, *base, "--bedgraph", tmp_path / "plain", "-o", tmp_path / "plain.bed")
    assert res.exit_code == 0, (res.output, res.exception)
    for stage in (1, 2):
        for strand in ("plus", "minus"):
            first, *rows = (tmp_path / f"t.stage{stage}.{strand}.bedgraph").read_text().splitlines()
            assert first.startswith(f'track type=bedGraph name="dnahnet_stage{stage}_{strand}"')
            assert "viewLimits=0:1" in first and f"stage-{stage} boundary probability, {strand} strand" in first
            assert rows == (tmp_path / f"plain.stage{stage}.{strand}.bedgraph").read_text().splitlines()


def test_plot_without_matplotlib_fails_before_segmenting(app, ckpt, tmp_path, monkeypatch):
    """segment ran the whole genome and then died with ModuleNotFoundError (essentiality and eval check first)."""
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what a missing optional dependency looks like
    fail(app, "--plot needs matplotlib", ROOT / "examples" / "ecoli_k12_20kb.fa", "--model", ckpt, "--gff",
         ROOT / "examples" / "ecoli_k12_20kb.gff3", "--plot", tmp_path / "seg.png", "-q")
    assert not list(tmp_path.iterdir())


def test_the_plot_title_names_the_region_it_shows(app, ckpt, tmp_path, monkeypatch):
    """A --region figure called its dotted line 'genome-wide' and did not say which part of the genome it showed."""
    pytest.importorskip("matplotlib")
    import matplotlib

    monkeypatch.setitem(matplotlib.rcParams, "svg.fonttype", "none")  # titles as text, not glyph paths
    base = [ROOT / "examples" / "ecoli_k12_20kb.fa", "--model", ckpt, "--gff", ROOT / "examples" / "ecoli_k12_20kb.gff3",
            "--tile", 512, "--permutations", 2, "--device", "cpu", "-q"]
    titles = {}
    for name, extra in (("region", ["--region", f"{CHROM}:1-3000"]), ("whole", [])):
        svg = tmp_path / f"{name}.svg"
        res = invoke(app, *base, *extra, "--plot", svg, "-o", tmp_path / f"{name}.bed")
        assert res.exit_code == 0, (res.output, res.exception)
        titles[name] = svg.read_text()
    assert f"(strand: +; {CHROM}:1-3000)" in titles["region"] and "dotted: region-wide" in titles["region"]
    assert "(strand: +)" in titles["whole"] and "dotted: genome-wide" in titles["whole"]


def test_a_gff_with_its_own_fasta_section_is_the_genome(app, ckpt, tmp_path):
    """Prokka and Bakta write one GFF3 with a ##FASTA section; `segment --gff x.gff3` with no GENOME reads it
    (as `essentiality` does), giving the BED and report of the same FASTA given separately."""
    gff = ROOT / "examples" / "ecoli_k12_20kb.gff3"
    fasta = ROOT / "examples" / "ecoli_k12_20kb.fa"
    combined = tmp_path / "combined.gff3"
    combined.write_text(gff.read_text() + "##FASTA\n" + fasta.read_text())
    outputs = []
    for args in ([str(fasta), "--gff", str(gff)], ["--gff", str(combined)]):
        out = tmp_path / f"run{len(outputs)}"
        res = CliRunner().invoke(app, ["segment", *args, "--model", ckpt, "--region", f"{CHROM}:1-3000",
                                       "--report", f"{out}.tsv", "--permutations", "5", "--no-meta",
                                       "-o", f"{out}.bed", "--device", "cpu", "--quiet"])
        assert res.exit_code == 0, (res.output, res.exception)
        outputs.append((Path(f"{out}.bed").read_text(), Path(f"{out}.tsv").read_text()))
    assert outputs[0] == outputs[1] and outputs[0][0].count("\n") > 10
    fail(app, "no genome given and the GFF has no ##FASTA section", "--gff", gff, "--model", ckpt, "-q")
    fail(app, "give a GENOME FASTA, or a --gff GFF3", "--model", ckpt, "-q")


def test_a_model_without_routers_is_named_in_the_error(app, tmp_path):
    from dnahnet_cli.model.lm import DNAHNet, ModelConfig

    tpp = ModelConfig(arch_layout=["T1"], d_model=[16], d_intermediate=[32], num_heads=[2], rotary_emb_dim=[4],
                      window_size=[-1], d_state=8, headdim=8, ratio_targets=[], max_seq_len=64, name="tpp-micro")
    model_dir = save_checkpoint(tmp_path / "tpp", DNAHNet(tpp), {"preset": "tpp-micro"})
    fa = tmp_path / "g.fa"
    fa.write_text(">c1\n" + "ACGT" * 50 + "\n")
    fail(app, f"{model_dir}: no router", fa, "--model", model_dir, "--device", "cpu", "-q")
