"""`dnahnet essentiality`: per-gene premature-stop (knock-out) scores, and AUROC/AUPRC against labels.

The protocol and its defaults are documented in dnahnet_cli/tasks/essentiality.py. Output: one TSV row per
annotated gene (seqid start1 end strand gene_id locus_tag name cds_len gc_content n_insertions ll_wt ll_mut
delta_mean delta_sum essentiality_score flags status); `start1`/`end` are 1-based inclusive as in the GFF
(`end` may exceed the sequence length for a gene crossing the origin of a circular replicon).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
from pathlib import Path
from typing import IO, Optional

import numpy as np
import typer

from dnahnet_cli.model.default_model import MODEL_HELP
from dnahnet_cli.commands.common import (BATCH_SIZE, DEVICE, DTYPE, MAX_TOKENS, QUIET, announce, load_engine,
                                         split_names, warn_if_annotation_mismatch)
from dnahnet_cli.errors import DnahnetError
from dnahnet_cli.tasks.essentiality import (
    BED_COLUMNS, COLUMNS, DEFAULT_CASSETTE, EVO2_EVERY, EssentialityConfig, bed_rows, evaluate, match_labels, parse_positions,
    read_labels, result_record, score_genes, validate_cassette,
)
from dnahnet_cli.genomics.fileio import atomic_output, atomic_path, check_one_stdin, check_outputs, output_group
from dnahnet_cli.genomics.gff import OK, Annotation, load_annotated_genome
from dnahnet_cli.genomics.outputs import TsvWriter, format_value, open_output, provenance
from dnahnet_cli.tasks.plots import image_format, plot_essentiality_curves, plot_score_distribution, require_matplotlib
from dnahnet_cli.commands.reporting import Progress, write_json_to


def _select(annotation: Annotation, genes: Optional[str], max_genes: Optional[int]) -> list[int]:
    """Gene indices to score: --genes names (each must exist), else all; --max-genes keeps the first N."""
    if genes is not None:  # "" too: an empty list from a pipeline must not mean "every gene" (hours of work)
        names = [n.strip() for n in genes.split(",") if n.strip()]
        if not names:
            raise DnahnetError(f"--genes {genes!r}: no gene names given (omit --genes to score every gene)")
        index = {id(g): i for i, g in enumerate(annotation.genes)}
        indices = list(dict.fromkeys(index[id(annotation.find_gene(n))] for n in names))
    else:
        indices = list(range(len(annotation.genes)))
    if max_genes is not None:
        if max_genes < 1:
            raise DnahnetError(f"--max-genes must be >= 1, not {max_genes}")
        indices = indices[:max_genes]
    return indices


def _fmt(m: dict) -> str:
    f = lambda v: "NA" if v is None or not math.isfinite(v) else f"{v:.3f}"  # noqa: E731
    return f"AUROC {f(m['auroc'])}  AUPRC {f(m['auprc'])}"


def run_essentiality(
    genome_path: Optional[str], gff: str, model: str, output: str, labels: Optional[str], metrics_out: Optional[str],
    cfg: EssentialityConfig, genes: Optional[str], max_genes: Optional[int], circular: list[str], no_meta: bool,
    device: str, dtype: str, batch_size: int, max_tokens: int, quiet: bool, window: Optional[int],
    bed: Optional[str] = None, plot: Optional[str] = None, track_line: bool = False,
) -> dict:
    """The whole command; returns the metrics dict ({} without labels)."""
    if cfg.reduce not in ("mean", "sum"):
        raise DnahnetError(f"--reduce must be mean or sum, not {cfg.reduce!r}")
    if cfg.tile is not None and cfg.tile < 3:
        raise DnahnetError(f"--tile must be >= 3 nucleotides, not {cfg.tile}")
    if metrics_out and not labels:
        raise DnahnetError("--metrics needs --labels")
    if plot == "-":
        raise DnahnetError("--plot needs a file name (a PNG)")
    if window is not None and cfg.protocol == "evo2":  # it would be ignored: evo2 scores the CDS and --flank whole
        raise DnahnetError("--window belongs to --protocol paper and cassette; evo2 scores the CDS plus --flank whole")
    if track_line and not bed:
        raise DnahnetError("--track-line needs --bed (it shapes the BED for genome browsers)")
    check_outputs({"--output": output, "--metrics": metrics_out, "--bed": bed, "--plot": plot},
                  inputs={"GENOME": genome_path, "--gff": gff, "--labels": labels})
    if plot:
        require_matplotlib()
        image_format(plot)  # a bad extension: refused before any work
    check_one_stdin({"GENOME": genome_path, "--gff": gff, "--labels": labels})
    circular_names = split_names(circular)
    annotation, genome, genome_source = load_annotated_genome(genome_path, gff, circular_names)
    for name in circular_names:
        if name not in genome:
            raise DnahnetError(f"--circular {name}: not a sequence of {genome_source}")
    warn_if_annotation_mismatch(annotation, genome.__getitem__, gff or genome_source, genome_source, quiet)
    indices = _select(annotation, genes, max_genes)
    label_map, label_fmt = read_labels(labels) if labels else ({}, "")
    if label_map and not any(annotation.lookup(name) for name in label_map):  # before the model runs for nothing
        raise DnahnetError(f"{labels}: none of its {len(label_map)} names matches a gene of {gff} (by locus_tag, "
                           f"Name, ID or gene_synonym), e.g. {next(iter(label_map))!r}")
    if label_map:  # two names of one gene labelled differently: an error now, not after the scoring
        match_labels(label_map, label_fmt, annotation, range(len(annotation.genes)), source=labels)

    def check_window(size: int) -> None:
        if size < len(cfg.cassette) + 9:
            raise DnahnetError(f"--window {size} is too small for a {len(cfg.cassette)}-nt cassette")

    if window is not None:  # an explicit window is checked before the model loads; the model's own once it is known
        check_window(window)
    engine = load_engine(model, device, dtype, batch_size, max_tokens)
    size = window if window is not None else int(engine.window)
    if window is None:
        check_window(size)
    cfg = dataclasses.replace(cfg, window=size)
    announce(engine, quiet, *((None, "training length") if cfg.protocol == "evo2" else (size,)))
    if cfg.protocol == "evo2" and not quiet:  # the protocol scores whole genes: say when that exceeds training
        longest = max((annotation.genes[i].cds_len for i in indices), default=0)
        mutant = longest + 2 * (cfg.flank or 0) + len(cfg.cassette) * (longest // EVO2_EVERY)
        if mutant > int(engine.window):
            sys.stderr.write(f"dnahnet: note: evo2 sequences reach {mutant:,} nt (longest CDS plus flanks and stops), "
                             f"longer than the model's {int(engine.window):,}-nt training length; scored whole\n")
    results = score_genes(annotation, genome, engine, cfg, indices, Progress("essentiality genes", quiet=quiet))

    params = {
        "protocol": cfg.protocol, "mutation": cfg.describe(), "cassette": cfg.cassette, "positions": ",".join(f"{p:g}" for p in cfg.positions) if cfg.protocol == "cassette" and not cfg.tile else "NA",
        "tile": cfg.tile or "NA" if cfg.protocol == "cassette" else "NA", "flank": "auto" if cfg.flank is None else cfg.flank,
        "window": "NA" if cfg.protocol == "evo2" else cfg.window,  # evo2 scores the CDS + flanks whole
        "reduce": cfg.reduce, "rc_average": cfg.rc_average,
        **({"anchor": cfg.anchor} if cfg.protocol == "paper" else {}),
    }
    meta = [] if no_meta else provenance(
        {"dnahnet_genome": genome_source, "dnahnet_gff": gff,
         "dnahnet_circular": ",".join(sorted(annotation.circular)) or "none",
         **{f"dnahnet_{k}": v for k, v in params.items()},
         "dnahnet_score": f"essentiality_score = -delta_{cfg.reduce}; higher = more essential; ll_* and delta_sum in "
                          "nats (natural log), delta_mean in nats per nucleotide (they can differ in sign when the "
                          "mutant is longer)"},
        engine.provenance)
    with output_group() as outputs:  # every file stays a temporary file until all of them are written
        return _write_outputs(outputs, results, annotation, genome, engine, cfg, params, meta, output, bed, plot,
                              labels, label_map, label_fmt, metrics_out, quiet, track_line)


def _write_outputs(outputs: contextlib.ExitStack, results: list, annotation, genome, engine, cfg: EssentialityConfig,
                   params: dict, meta: list, output: str, bed: Optional[str], plot: Optional[str],
                   labels: Optional[str], label_map: dict, label_fmt: str, metrics_out: Optional[str],
                   quiet: bool, track_line: bool = False) -> dict:
    """The TSV, --bed, --plot and --metrics, entered into `outputs` so that they appear together or not at all."""
    writer = TsvWriter(outputs.enter_context(open_output(output)), COLUMNS, meta)
    for res in results:
        writer.write(result_record(res))
    if bed:
        write_bed(outputs.enter_context(open_output(bed)), results, genome, meta, track_line)
    n_ok = sum(r.status == OK for r in results)
    if not quiet:
        sys.stderr.write(f"dnahnet: essentiality: scored {n_ok} of {len(results)} genes\n")
    if not labels:
        if plot:
            plot_score_distribution(str(outputs.enter_context(atomic_path(plot))),
                                    [r.essentiality_score for r in results if r.status == OK],
                                    f"dnahnet essentiality ({cfg.protocol} protocol)",
                                    "essentiality_score (higher = more essential)", image_format(plot))
        return {}
    candidates = [r.index for r in results if r.status == OK and math.isfinite(r.essentiality_score)]
    gene_labels, info = match_labels(label_map, label_fmt, annotation, candidates, source=labels)
    metrics = evaluate(results, gene_labels)
    payload = {"task": "essentiality", "labels": labels, **info, **metrics, "params": params,
               "model": engine.provenance}
    if not quiet:  # -q: nothing on stderr, as for eval dms (--metrics keeps the numbers)
        m = metrics["essentiality_score"]
        sys.stderr.write(
            f"dnahnet: essentiality vs {labels}: {info['n_labels_matched']}/{info['n_labels']} labels matched; "
            f"{m['n']} genes ({m['n_positive']} essential)\n"
            f"  essentiality_score  {_fmt(m)}\n"
            f"  gene length         {_fmt(metrics['baselines']['gene_length'])}\n"
            f"  GC content          {_fmt(metrics['baselines']['gc_content'])}\n"
        )
    if plot:
        rows = [r for r in results if r.index in gene_labels and math.isfinite(r.essentiality_score)]
        plot_essentiality_curves(
            str(outputs.enter_context(atomic_path(plot))), np.array([gene_labels[r.index] for r in rows]),
            {"dnahnet essentiality_score": np.array([r.essentiality_score for r in rows]),
             "gene length": np.array([r.gene.cds_len for r in rows], dtype=np.float64),
             "GC content": np.array([r.gc_content for r in rows])},
            f"Essentiality vs {Path(labels).name} ({cfg.protocol} protocol)", image_format(plot))
    if metrics_out:
        write_json_to(outputs.enter_context(atomic_output(metrics_out, "w")), payload)
    return payload


def write_bed(fh: IO[str], results: list, genome, meta: list, track_line: bool = False) -> None:
    """--bed: the per-gene track (BED6+2; see essentiality.bed_rows), provenance as `#` lines. With a track line,
    plain BED6 after a UCSC `track` line: browsers read columns 7 and 8 of a BED as thickStart and thickEnd
    (integers), which the raw score and its percentile are not."""
    lengths = {name: len(seq) for name, seq in genome.items()}
    columns = BED_COLUMNS[:6] if track_line else BED_COLUMNS
    if track_line:
        fh.write('track name="dnahnet_essentiality" description="dnaHNet essentiality: shade = rank among the '
                 'scored genes (darker = more essential)" useScore=1\n')
    else:
        for key, value in meta:
            fh.write(f"##{key}={value}\n")
        fh.write("# BED6+2: score = rank of essentiality_score among the scored genes x 1000 (1000 = most "
                 "essential); essentiality_score and its percentile follow\n")
    for row in bed_rows(results, lengths):
        fh.write("\t".join(format_value(row[c]) for c in columns) + "\n")


def register(app: typer.Typer) -> None:
    @app.command("essentiality")
    def essentiality_cmd(
        genome: Optional[str] = typer.Argument(None, help="Genome FASTA (plain or gzip); omit if the GFF embeds ##FASTA."),
        gff: str = typer.Option(..., "--gff", "-g", help="GFF3 annotation (NCBI, Prokka, Bakta; gzip ok; - = stdin)."),
        model: Optional[str] = typer.Option(None, "--model", "-m", help=MODEL_HELP),
        output: str = typer.Option("-", "--output", "-o", help="Per-gene TSV; - = stdout."),
        labels: Optional[str] = typer.Option(None, "--labels", help="Essentiality labels: TSV 'locus_tag_or_name<TAB>0/1', or a list of essential gene names."),
        metrics_out: Optional[str] = typer.Option(None, "--metrics", help="Write AUROC/AUPRC (and baselines) as JSON."),
        protocol: str = typer.Option("paper", "--protocol", help="paper: TAATAATAATAGTGA replaces 15 nt of the CDS, window centred on the gene, score LL(wt)-LL(ko); evo2: the same stop inserted every 12 nt of the CDS, 4,096-nt flanks; cassette: TAGCTAGCTAGC inserted at --positions or every --tile nt (docs/essentiality.md)."),
        anchor: Optional[str] = typer.Option(None, "--anchor", help="paper: the 12 nt before the replacement count from the first base of the start codon (first: CDS offsets 12-26) or from its end (after: 15-29). Default: first."),
        cassette: Optional[str] = typer.Option(None, "--cassette", help=f"Stop sequence; must hold a stop codon in the gene's frame. Default: TAATAATAATAGTGA (paper, evo2), {DEFAULT_CASSETTE} (cassette)."),
        positions: Optional[str] = typer.Option(None, "--positions", help="cassette: insertion points, fractions of the CDS (<1) or nt offsets (>=1), comma-separated. Default: 0.1."),
        tile: Optional[int] = typer.Option(None, "--tile", help="cassette: insert every N nt of the CDS instead of --positions; scores are averaged."),
        flank: Optional[int] = typer.Option(None, "--flank", min=0, help="Genomic bases each side of the CDS (paper, cassette: fewer, evenly, where the window cannot hold them). Default: fill the window (paper, cassette), 4096 (evo2)."),
        window: Optional[int] = typer.Option(None, "--window", "-w", help="Mutant window in bases for paper and cassette (default: the model's training length); not with evo2, which scores the CDS plus --flank whole."),
        reduce: Optional[str] = typer.Option(None, "--reduce", help="essentiality_score = -delta_mean (mean) or -delta_sum (sum). Default: sum (paper), mean (evo2, cassette)."),
        rc_average: bool = typer.Option(False, "--rc-average", help="Also score the reverse complement and average."),
        genes: Optional[str] = typer.Option(None, "--genes", help="Only these genes (comma-separated locus tags or names)."),
        max_genes: Optional[int] = typer.Option(None, "--max-genes", help="Only the first N genes (quick runs)."),
        circular: list[str] = typer.Option([], "--circular", help="Circular sequence name(s) besides GFF Is_circular=true."),
        bed: Optional[str] = typer.Option(None, "--bed", help="Also write a track of the scored genes: BED6+2, score 0-1000 = rank (1000 = most essential), then the raw score and its percentile."),
        track_line: bool = typer.Option(False, "--track-line", help="--bed for genome browsers: a UCSC track line, then plain BED6 (browsers read columns 7-8 as thickStart/thickEnd; tabix and bedtools do not accept the track line)."),
        plot: Optional[str] = typer.Option(None, "--plot", help="Figure (PNG; PDF or SVG by the name's extension): ROC and precision-recall curves against the gene-length and GC baselines (with --labels), else the score distribution; needs matplotlib."),
        no_meta: bool = typer.Option(False, "--no-meta", help="Leave out the ## provenance lines."),
        device: str = DEVICE,
        dtype: str = DTYPE,
        batch_size: int = BATCH_SIZE,
        max_tokens: int = MAX_TOKENS,
        quiet: bool = QUIET,
    ) -> None:
        """Predict gene essentiality by putting premature stops into each gene (higher score = more essential).

        Default (--protocol paper): TAATAATAATAGTGA replaces 15 nt just after the start codon, in a window of the model's training length centred on the gene, read on the gene's strand; score = LL(wild type) - LL(knock-out). Pseudogenes, partial and RNA genes are reported with a SKIP_* status.

        Example: dnahnet essentiality genome.fa --gff annot.gff --model models/small --labels keio.txt -o ess.tsv
        """
        cfg = EssentialityConfig.for_protocol(
            protocol, cassette=validate_cassette(cassette) if cassette is not None else None,
            positions=parse_positions(positions) if positions is not None else None, tile=tile, flank=flank,
            reduce=reduce, rc_average=rc_average, anchor=anchor,
        )
        run_essentiality(genome, gff, model, output, labels, metrics_out, cfg, genes, max_genes, circular, no_meta,
                         device, dtype, batch_size, max_tokens, quiet, window, bed=bed, plot=plot,
                         track_line=track_line)
