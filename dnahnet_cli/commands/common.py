"""Pieces shared by the scoring commands."""

from __future__ import annotations

import sys
from typing import Iterable, Optional

import typer

from dnahnet_cli.errors import DnahnetError


def load_engine(model: Optional[str], device: str, dtype: str, batch_size: int, max_tokens: int):
    """The likelihood engine for --model (None: the shipped default), imported lazily so that input
    errors are reported before torch loads."""
    from dnahnet_cli.tasks.engine import LikelihoodEngine

    return LikelihoodEngine.load(model, device=device, dtype=dtype, batch_size=batch_size, max_tokens=max_tokens)


STRANDS = {"both": ("forward", "reverse"), "forward": ("forward",), "reverse": ("reverse",)}  # --strand: what is read


def check_strand(strand: str) -> None:
    if strand not in STRANDS:
        raise DnahnetError(f"--strand must be one of {', '.join(STRANDS)}, not {strand!r}")


def sequences_and_engine(seqs_path: str, model: Optional[str], device: str, dtype: str, batch_size: int,
                         max_tokens: int, window: Optional[int], context: Optional[int], quiet: bool):
    """score-seqs and embed: (the FASTA's records, read and checked before the model loads; the engine; the window
    and the least left context of each base in records longer than it, by default the training length and half
    of it), the model announced once they are valid."""
    from dnahnet_cli.genomics.fasta import iter_fasta

    records = list(iter_fasta(seqs_path))
    engine = load_engine(model, device, dtype, batch_size, max_tokens)
    window = window or int(engine.window)
    context = window // 2 if context is None else context
    if window < 2 or not 0 <= context < window:
        raise DnahnetError(f"need --window >= 2 and 0 <= --context < --window (got {window}, {context})")
    announce(engine, quiet, window)
    return records, engine, window, context


def announce(engine, quiet: bool, window: int | None = None, what: str = "window") -> None:
    """One stderr line saying which model runs where, once every option is validated and work begins: the
    first sign of life a user sees, a second or two after start (bench/startup.py measures it). `window` is the
    one this command uses (its --window or --tile), when that is not the model's training length."""
    if not quiet:
        sys.stderr.write(f"dnahnet: model {engine.describe(window, what)}\n")


# Engine options shared by every scoring command (one definition, so help text and defaults never drift).
DEVICE = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps.")
DTYPE = typer.Option(
    "auto", "--dtype",
    help="auto (bf16 where the CPU has AMX/AVX512-BF16 or the GPU multiplies bf16 natively, else float32), float32, bfloat16 "
    "or float16. Scans, router, residual path and head stay float32 (docs/model.md).",
)
BATCH_SIZE = typer.Option(16, "--batch-size", help="Windows per forward pass.")
MAX_TOKENS = typer.Option(65536, "--max-tokens", help="Bases per forward pass (caps memory).")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress or summary on stderr.")


def split_names(values: Iterable[str]) -> list[str]:
    """Names from a repeatable, comma-separable option (e.g. --circular chr1,pA --circular pB), blanks dropped."""
    return [n for raw in values for n in (part.strip() for part in raw.split(",")) if n]


def warn_if_annotation_mismatch(annotation, sequence, gff, genome_name: str, quiet: bool) -> None:
    """Stderr warnings about the annotation: genes past the end of a linear sequence (skipped), and most CDSs of
    `gff` not beginning with a start codon in the genome (see genomics.gff.start_codon_mismatches): a GFF for
    another assembly with the same sequence names."""
    from dnahnet_cli.genomics.gff import start_codon_mismatches

    if annotation.past_end and not quiet:
        shown = "; ".join(annotation.past_end[:3]) + (" …" if len(annotation.past_end) > 3 else "")
        sys.stderr.write(f"dnahnet: warning: {len(annotation.past_end)} gene(s) run past the end of a linear sequence "
                         f"in {gff} and are skipped (SKIP_OUT_OF_BOUNDS): {shown}; mark a circular sequence "
                         "Is_circular=true, or give --circular NAME\n")
    bad, checked = start_codon_mismatches(annotation, sequence)
    if not quiet and checked >= 10 and bad > checked // 2:
        sys.stderr.write(f"dnahnet: warning: {bad} of {checked} CDSs checked in {gff} do not begin with a start codon "
                         f"in {genome_name}: is the GFF for another assembly (same names, other coordinates)?\n")
