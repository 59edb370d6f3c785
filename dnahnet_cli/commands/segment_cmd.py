"""`dnahnet segment`: the chunks dnaHNet's routers cut a genome into (BED on stdout), per-base boundary
probabilities (bedGraph), and with --gff a report of how the boundaries line up with the annotation.

The machinery lives in dnahnet_cli/tasks/segment.py; docs/segment.md defines every output column.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from dnahnet_cli.model.default_model import MODEL_HELP
from dnahnet_cli.commands.reporting import RegionProgress, write_json_to
from dnahnet_cli.commands.common import DEVICE, DTYPE, QUIET, announce, split_names, warn_if_annotation_mismatch
from dnahnet_cli.errors import DnahnetError
from dnahnet_cli.genomics.fileio import atomic_output, atomic_path, check_one_stdin, check_outputs, output_group
from dnahnet_cli.tasks.segment import (
    BedGraphWriter, BedWriter, Region, SegmentOptions, bedgraph_paths, bedgraph_track_line, parse_region, parse_stages,
    parse_strands, segment_region,
)
from dnahnet_cli.tasks.segment_report import CLASSES, REPORT_COLUMNS, Report, headline, plot_report
from dnahnet_cli.tasks.plots import image_format, require_matplotlib


def _output_dir_ok(path: str, what: str) -> None:
    parent = Path(path).parent
    if not parent.is_dir():
        raise DnahnetError(f"{what} {path}: directory {parent} does not exist")


def report_json_path(report: str) -> str:
    """The report's JSON twin: the report name with its extension (after any .gz/.bgz) replaced by .json."""
    from dnahnet_cli.genomics.outputs import is_bgzip_name  # pysam: loaded only when a command runs

    base = Path(report[: -len(Path(report).suffix)] if is_bgzip_name(report) else report)
    return str(base.with_suffix(".json")) if base.suffix else f"{base}.json"


def run_segment(
    genome_path: Optional[str], model: str, gff: Optional[str] = None, stage: str = "all", region: Optional[str] = None,
    strand: str = "+", tile: Optional[int] = None, overlap: Optional[int] = None, bedgraph: Optional[str] = None,
    report: Optional[str] = None, plot: Optional[str] = None, output: str = "-", track_line: bool = False,
    permutations: int = 200, seed: int = 0, upstream: int = 100, circular: tuple[str, ...] = (),
    no_meta: bool = False, device: str = "auto", dtype: str = "auto", batch_size: int = 16,
    max_tokens: int = 65536, quiet: bool = False, engine=None, merge_equal: bool = False,
) -> Optional[list[dict]]:
    """The whole command (`engine` may be given directly, e.g. by tests); returns the report rows."""
    from dnahnet_cli.genomics.genome import Genome
    from dnahnet_cli.genomics.gff import load_annotated_genome, parse_gff
    from dnahnet_cli.genomics.outputs import TsvWriter, open_output, provenance

    strands = parse_strands(strand)
    if (report or plot) and not gff:
        raise DnahnetError("--report and --plot need --gff (the annotation to compare with)")
    if report == "-" or plot == "-":
        raise DnahnetError("--report/--plot need a file name (stdout carries the BED)")
    if plot:
        require_matplotlib()  # now, not after the whole genome has been segmented
    check_one_stdin({"GENOME": genome_path, "--gff": gff})
    outputs = {"--output": output, "--report": report,
               "the report's JSON twin": report_json_path(report) if report else None, "--plot": plot}
    inputs = {"GENOME": genome_path, "--gff": gff}
    check_outputs(outputs, inputs)
    if plot:
        image_format(plot)  # a bad extension: refused before any work
    if bedgraph:  # a prefix: one file per strand and stage
        if bedgraph.endswith(("/", os.sep)) or Path(bedgraph).is_dir():  # DIR/ gave hidden DIR/.stage1.bedgraph
            raise DnahnetError(f"--bedgraph {bedgraph}: give a prefix for the file names, not a directory "
                               f"(e.g. {os.path.join(bedgraph, 'sample')} writes "
                               f"{os.path.join(bedgraph, 'sample')}.stage1.bedgraph)")
        _output_dir_ok(bedgraph, "--bedgraph")
    annotation = None
    if genome_path is None:  # the genome is the GFF's own ##FASTA section (Prokka, Bakta), as in `essentiality`
        if not gff:
            raise DnahnetError("give a GENOME FASTA, or a --gff GFF3 that embeds its sequences (##FASTA)")
        annotation, sequences, source = load_annotated_genome(None, gff, split_names(circular))
        genome = Genome.from_dict(sequences, path=source)
    else:
        genome = Genome.open(genome_path, quiet=quiet)
    regions = ([parse_region(region, genome.lengths)] if region else
               [Region(name, 0, genome.lengths[name]) for name in sorted(genome.names)])
    genome.set_circular(split_names(circular))  # checks the names
    if gff:
        if annotation is None:
            annotation = parse_gff(gff, genome.lengths, circular=genome.circular)
        if not annotation.genes:
            raise DnahnetError(f"{gff}: no genes (gene/CDS features) in this GFF3; is it an annotation file?")
        annotation.check_genome(genome.lengths, genome.path)
        genome.set_circular(annotation.circular & set(genome.names))
        warn_if_annotation_mismatch(annotation, lambda name: genome.fetch(name, 0, genome.lengths[name]), gff,
                                    genome.path, quiet)

    if engine is None:
        from dnahnet_cli.tasks.engine import LikelihoodEngine

        engine = LikelihoodEngine.load(model, device=device, dtype=dtype, batch_size=batch_size, max_tokens=max_tokens)
    stages = parse_stages(stage, engine.model.config.n_stages, engine.provenance.get("model", "this model"))
    if bedgraph:  # its file names depend on the model's stages: checked against the other outputs now
        check_outputs({**outputs,
                       **{f"--bedgraph (stage {s}, {st})": path
                          for (st, s), path in bedgraph_paths(bedgraph, stages, strands).items()}}, inputs)
    tile = tile or int(engine.window)
    opts = SegmentOptions(stages, strands, tile, tile // 4 if overlap is None else overlap, track_line,
                          permutations, seed, upstream, quiet, tiles_per_block=max(1, batch_size))
    opts.check()
    announce(engine, quiet, tile, "tile")
    progress = RegionProgress("segment", quiet=quiet)
    rep = Report(opts) if annotation is not None else None
    with output_group() as stack:
        bed = BedWriter(stack.enter_context(open_output(output)), track_line)
        graphs = {key: BedGraphWriter(stack.enter_context(atomic_output(path, "w")), merge_equal,
                                      bedgraph_track_line(key[1], key[0]) if track_line else None)
                  for key, path in (bedgraph_paths(bedgraph, stages, strands) if bedgraph else {}).items()}
        for reg in regions:
            is_circ = genome.is_circular(reg.chrom)
            tracks, streams = segment_region(engine, genome, reg, opts, bed, graphs, is_circ, progress,
                                             keep_chunks=rep is not None)
            if rep is not None:
                rep.add_region(annotation, genome, reg, tracks, streams, is_circ)
        if rep is None:
            return None
        rows = rep.rows()
        params = {"stages": ",".join(map(str, stages)), "strand": strand, "tile": opts.tile,
                  "overlap": opts.overlap, "permutations": permutations, "seed": seed, "upstream": upstream,
                  "regions": ",".join(f"{r.chrom}:{r.start0 + 1}-{r.end}" for r in regions),
                  "circular": ",".join(sorted(genome.circular)) or "none"}
        meta = [] if no_meta else provenance(
            {"dnahnet_genome": genome.path, "dnahnet_gff": gff,
             **{f"dnahnet_{k}": v for k, v in params.items()}}, engine.provenance)
        pooled = "both" if len(strands) == 2 else strands[0]
        profile = rep.start_profile()
        # Every output is a temporary file until the stack closes without an error: a failing plot must not
        # leave a report (or a BED) behind that looks like a finished run.
        if plot:
            plot_report(str(stack.enter_context(atomic_path(plot))), rows, profile, pooled, image_format(plot),
                        params["regions"] if region else "")
        if report:
            writer = TsvWriter(stack.enter_context(open_output(report)), REPORT_COLUMNS, meta)
            for row in rows:
                writer.write(row)
            payload = {"params": params, "model": engine.provenance, "genome": genome.path, "gff": gff,
                       "classes": dict(CLASSES), "rows": rows, "start_profile": profile}
            write_json_to(stack.enter_context(atomic_output(report_json_path(report), "w")), payload, indent=1)
    if not quiet:
        for line in headline(rows, pooled):
            sys.stderr.write(f"dnahnet: segment: {line}\n")
    return rows


def register(app: typer.Typer) -> None:
    @app.command("segment")
    def segment_cmd(
        genome: Optional[str] = typer.Argument(None, help="Genome FASTA (plain, gzip or bgzip+.fai/.gzi); omit if the --gff GFF3 embeds ##FASTA."),
        model: Optional[str] = typer.Option(None, "--model", "-m", help=MODEL_HELP),
        gff: Optional[str] = typer.Option(None, "--gff", "-g", help="GFF3 annotation for --report/--plot (gzip ok; - = stdin)."),
        stage: str = typer.Option("all", "--stage", help="Stage(s) to output: 1 (outer), 2, ... or all."),
        region: Optional[str] = typer.Option(None, "--region", "-r", help="CHROM or CHROM:START-END (1-based, inclusive). Default: every contig."),
        strand: str = typer.Option("+", "--strand", help="+, - (reverse complement, mapped back) or both."),
        tile: Optional[int] = typer.Option(None, "--tile", min=16, help="Bases per model call (>= 16). Default: the model's training length."),
        overlap: Optional[int] = typer.Option(None, "--overlap", min=0, help="5' context bases trimmed from each tile (0 <= overlap < tile). Default: tile/4."),
        bedgraph: Optional[str] = typer.Option(None, "--bedgraph", help="Write per-base boundary probabilities to PREFIX.stageN[.plus|.minus].bedgraph."),
        merge_equal: bool = typer.Option(False, "--merge-equal", help="--bedgraph: join neighbouring rows whose printed values are equal (smaller browser tracks)."),
        report: Optional[str] = typer.Option(None, "--report", help="Boundary rates by annotation class (TSV; a .json twin is written too); needs --gff."),
        plot: Optional[str] = typer.Option(None, "--plot", help="Figure (PNG; PDF or SVG by the name's extension): boundary rate by codon position and around CDS starts; needs --gff."),
        output: str = typer.Option("-", "--output", "-o", help="Chunk BED; - = stdout."),
        track_line: bool = typer.Option(False, "--track-line", help="Start the BED (and each --bedgraph file) with a UCSC track line and write plain BED6 (for genome browsers; a file with a track line cannot be tabix-indexed)."),
        permutations: int = typer.Option(200, "--permutations", help="Circular shifts for the null of the report."),
        seed: int = typer.Option(0, "--seed", help="Seed of the permutation null."),
        upstream: int = typer.Option(100, "--upstream", help="Bases 5' of CDS starts in the 'upstream' class (and the profile half-width)."),
        circular: list[str] = typer.Option([], "--circular", help="Circular contig(s) besides GFF Is_circular=true (tiles wrap the origin)."),
        no_meta: bool = typer.Option(False, "--no-meta", help="Leave the ## provenance lines out of the report."),
        device: str = DEVICE,
        dtype: str = DTYPE,
        batch_size: int = typer.Option(16, "--batch-size", help="Tiles per forward pass."),
        max_tokens: int = typer.Option(65536, "--max-tokens", help="Tokens per forward pass (caps memory)."),
        quiet: bool = QUIET,
    ) -> None:
        """Segment a genome into the chunks dnaHNet's routers choose (BED6+3 on stdout, 0-based half-open).

        Columns: chrom start end name score strand stage p_start mean_p; score = round(1000 * p_start).
        Stage-2 chunks are given in nucleotide coordinates.

        Example: dnahnet segment genome.fa --model models/small --gff annot.gff --report seg.tsv --plot seg.png > chunks.bed
        """
        run_segment(genome, model, gff, stage, region, strand, tile, overlap, bedgraph, report, plot, output,
                    track_line, permutations, seed, upstream, tuple(circular), no_meta, device, dtype, batch_size,
                    max_tokens, quiet, merge_equal=merge_equal)
