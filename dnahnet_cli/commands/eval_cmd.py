"""`dnahnet eval ...`: zero-shot benchmarks. A Typer sub-app, so more evaluations can join `dms` later.

`eval dms` maps each protein substitution of a DMS table onto the gene's coding sequence in the genome,
scores LL(mutant) - LL(wild type) in genomic context and reports Spearman's rho against the measured
fitness (protocol and codon rule: dnahnet_cli/tasks/dms.py). Output TSV columns: mutant n_subs codon_changes
genomic_changes (1-based, + strand) n_nt_changes n_codon_variants dms_score ll_wt ll_mut delta status.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from dnahnet_cli.tasks.dms import COLUMNS, blosum62_score, check_windows, codon_usage, plan_mutant, plan_record, prepare_target, read_dms, read_protein, score_plans
from dnahnet_cli.model.default_model import MODEL_HELP
from dnahnet_cli.commands.common import BATCH_SIZE, DEVICE, DTYPE, MAX_TOKENS, QUIET
from dnahnet_cli.errors import DnahnetError
from dnahnet_cli.genomics.fileio import atomic_output, atomic_path, check_one_stdin, check_outputs, output_group
from dnahnet_cli.genomics.gff import OK, context_window, load_annotated_genome
from dnahnet_cli.tasks.metrics import spearman
from dnahnet_cli.genomics.outputs import TsvWriter, open_output, provenance
from dnahnet_cli.commands.common import announce, load_engine
from dnahnet_cli.commands.reporting import Progress, write_json_to
from dnahnet_cli.tasks.plots import image_format, plot_dms_scatter, require_matplotlib

eval_app = typer.Typer(
    help="Zero-shot evaluations against experimental data (protein DMS, ...).\n\n"
    "Example: dnahnet eval dms --genome genome.fa.gz --gff annot.gff.gz --gene infA --dms dms.csv",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def flanks_used(target, size: int, flank: Optional[int]) -> str:
    """The genomic bases scored before and after the CDS (forward strand): --flank, or less where the CDS and
    those flanks would not fit the window or a linear contig ends; a CDS longer than the window has none."""
    g = target.gene
    lo, hi = g.cds_extent
    r0, r1 = context_window(g, len(target.seq), target.circular, size, flank)
    if r0 > lo or r1 < hi:
        return "none (the CDS is longer than the window: cropped around the mutated codons)"
    return f"{lo - r0} and {r1 - hi}"


def run_dms(
    genome_path: Optional[str], gff: str, gene: str, dms: str, model: str, output: str, protein_path: Optional[str],
    region_start: Optional[int], codons: str, mutant_col: str, score_col: Optional[str], window: Optional[int],
    flank: Optional[int], limit: Optional[int], metrics_out: Optional[str], no_meta: bool, device: str, dtype: str,
    batch_size: int, max_tokens: int, quiet: bool, plot: Optional[str] = None,
) -> dict:
    """The whole `eval dms` pipeline; returns the metrics dict."""
    if codons not in ("best", "all"):
        raise DnahnetError(f"--codons must be best or all, not {codons!r}")
    if limit is not None and limit < 1:
        raise DnahnetError(f"--limit must be >= 1, not {limit}")
    if plot == "-":
        raise DnahnetError("--plot needs a file name (a PNG)")
    check_outputs({"--output": output, "--metrics": metrics_out, "--plot": plot},
                  inputs={"--genome": genome_path, "--gff": gff, "--dms": dms, "--protein": protein_path})
    if plot:
        require_matplotlib()
        image_format(plot)  # a bad extension: refused before any work
    check_one_stdin({"GENOME": genome_path, "--gff": gff, "--dms": dms, "--protein": protein_path})
    annotation, genome, genome_source = load_annotated_genome(genome_path, gff)
    protein = read_protein(protein_path) if protein_path else None
    target = prepare_target(annotation, genome, gene, protein, region_start, protein_path or "protein")
    records, score_col = read_dms(dms, mutant_col, score_col)
    records = records[:limit] if limit else records
    usage = codon_usage(annotation, genome, target.gene.transl_table)
    plans = [plan_mutant(target, r, codons, usage, f"{dms}: line {r.line}") for r in records]
    if window:  # an explicit window is checked before the model loads; the model's own once it is known
        check_windows(target, plans, window, flank, dms)

    engine = load_engine(model, device, dtype, batch_size, max_tokens)
    size = window or int(engine.window)
    if not window:
        check_windows(target, plans, size, flank, dms)
    announce(engine, quiet, size)
    flanks = flanks_used(target, size, flank)
    lo, hi = target.gene.cds_extent
    cds = hi - lo
    if flank is not None and not quiet and cds + 2 * flank > size:  # (a linear contig's end may clip it too)
        sys.stderr.write(f"dnahnet: note: --flank {flank} does not fit the {size}-nt window with the {cds}-nt CDS; "
                         f"flanks used: {flanks}\n")
    score_plans(target, plans, engine, size, flank, Progress("eval dms mutants", quiet=quiet), source=dms)

    g = target.gene
    meta = [] if no_meta else provenance(
        {"dnahnet_genome": genome_source, "dnahnet_gff": gff, "dnahnet_dms": dms, "dnahnet_dms_columns":
         f"mutant={mutant_col}; score={score_col}",
         "dnahnet_gene": f"{g.label} {g.name} {g.seqid}:{g.start0 + 1}-{g.end}({g.strand})",
         "dnahnet_region_start": target.region_start, "dnahnet_codons": codons, "dnahnet_window": size,
         "dnahnet_flank": f"{'auto' if flank is None else flank}; used {flanks}",
         "dnahnet_score": "delta = LL(mutant) - LL(wild type), natural log; higher = fitter"},
        engine.provenance)
    ok = [p for p in plans if p.status == OK]
    delta = np.array([p.delta for p in ok])
    measured = np.array([p.record.score for p in ok])
    used = int(np.sum(np.isfinite(delta) & np.isfinite(measured)))
    rho = spearman(delta, measured)
    # trivial baselines on the same mutants, each oriented so that higher = predicted fitter
    blosum = np.array([blosum62_score(p.record.subs) for p in ok])
    n_subs = -np.array([len(p.record.subs) for p in ok], dtype=np.float64)
    baselines = {"blosum62": spearman(blosum, measured)}
    if len(set(n_subs.tolist())) > 1:  # multi-mutants: the number of substitutions
        baselines["neg_n_substitutions"] = spearman(n_subs, measured)
    payload = {
        "task": "dms", "dms": dms, "mutant_col": mutant_col, "score_col": score_col, "gene": g.label, "name": g.name,
        "region_start": target.region_start,
        "codons": codons, "window": size, "spearman_rho": rho, "n_mutants": len(plans), "n_scored": len(ok),
        "n_used_for_rho": used, "baselines_spearman_rho": baselines, "n_skipped": len(plans) - len(ok),
        "skipped_by_status": dict(Counter(p.status for p in plans if p.status != OK)), "model": engine.provenance,
    }
    with output_group() as outputs:  # the TSV, --plot and --metrics appear together or not at all
        writer = TsvWriter(outputs.enter_context(open_output(output)), COLUMNS, meta)
        for p in plans:
            writer.write(plan_record(p))
        if plot:
            plot_dms_scatter(str(outputs.enter_context(atomic_path(plot))), delta, measured,
                             f"{Path(dms).parent.name or Path(dms).name} ({g.name or g.label})", baselines,
                             image_format(plot))
        if metrics_out:
            write_json_to(outputs.enter_context(atomic_output(metrics_out, "w")), payload)
    if not quiet:
        r = "NA" if not math.isfinite(rho) else f"{rho:.4f}"
        sys.stderr.write(
            f"dnahnet: eval dms {g.name or g.label}: Spearman rho {r} over {used} mutants "
            f"({len(ok)} scored, {len(plans) - len(ok)} skipped)\n"
        )
        for name, value in baselines.items():
            sys.stderr.write(f"  baseline {name}: Spearman rho {'NA' if not math.isfinite(value) else f'{value:.4f}'}\n")
    return payload


@eval_app.command("dms")
def dms_cmd(
    gff: str = typer.Option(..., "--gff", "-g", help="GFF3 annotation holding the gene (gzip ok; - = stdin)."),
    gene: str = typer.Option(..., "--gene", help="Gene assayed: locus_tag, Name or synonym."),
    dms: str = typer.Option(..., "--dms", help="DMS table (CSV/TSV) with a mutant column (M1H, A2G:L5P) and a score column."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    genome: Optional[str] = typer.Option(None, "--genome", help="Genome FASTA; omit if the GFF embeds ##FASTA."),
    output: str = typer.Option("-", "--output", "-o", help="Per-mutant TSV; - = stdout."),
    protein: Optional[str] = typer.Option(None, "--protein", help="FASTA of the assayed protein (default: the translated CDS)."),
    region_start: Optional[int] = typer.Option(None, "--region-start", min=1, help="Residue of the gene's protein where the assayed protein starts (default: found automatically)."),
    codons: str = typer.Option("best", "--codons", help="best: fewest nt changes, ties by genome codon usage; all: log-mean-exp over every codon."),
    mutant_col: str = typer.Option("mutant", "--mutant-col", help="Mutant column name."),
    score_col: Optional[str] = typer.Option(None, "--score-col", help="Measured score column [DMS_score or score]."),
    window: Optional[int] = typer.Option(None, "--window", "-w", min=16, help="Window in bases (default: the model's training length)."),
    flank: Optional[int] = typer.Option(None, "--flank", min=0, help="Genomic bases each side of the CDS (default: fill the window)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N mutants (quick runs)."),
    metrics_out: Optional[str] = typer.Option(None, "--metrics", help="Write Spearman rho and counts as JSON."),
    plot: Optional[str] = typer.Option(None, "--plot", help="Figure (PNG; PDF or SVG by the name's extension): model score against measured fitness, with Spearman rho and the baselines'; needs matplotlib."),
    no_meta: bool = typer.Option(False, "--no-meta", help="Leave out the ## provenance lines."),
    device: str = DEVICE,
    dtype: str = DTYPE,
    batch_size: int = BATCH_SIZE,
    max_tokens: int = MAX_TOKENS,
    quiet: bool = QUIET,
) -> None:
    """Score a protein deep mutational scan in genomic context and report Spearman's rho.

    Each substitution is written into the gene's codon (fewest nucleotide changes, ties broken by the genome's codon usage; or --codons all) and scored as LL(mutant) - LL(wild type) on the gene's strand, in a window of the model's training length (--window) centred on the gene (on the mutated codons when the gene is longer), as essentiality's paper protocol. BLOSUM62 (and, for multi-mutants, the number of substitutions) are reported beside it as baselines.

    Example: dnahnet eval dms --genome genome.fa --gff annot.gff --gene infA --dms dms.csv --model models/small
    """
    run_dms(genome, gff, gene, dms, model, output, protein, region_start, codons, mutant_col, score_col, window, flank,
            limit, metrics_out, no_meta, device, dtype, batch_size, max_tokens, quiet, plot=plot)


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
