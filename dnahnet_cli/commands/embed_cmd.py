"""`dnahnet embed`: one vector per FASTA record (the mean final hidden state, tasks/embedding.py), as a TSV that
pandas, R or a classifier reads directly."""

from __future__ import annotations

from typing import Optional

import typer

from dnahnet_cli.commands.common import (BATCH_SIZE, DEVICE, DTYPE, MAX_TOKENS, QUIET, STRANDS, check_strand,
                                         sequences_and_engine)
from dnahnet_cli.commands.reporting import Progress
from dnahnet_cli.model.default_model import MODEL_HELP

RECORDS_PER_CALL = 256  # records embedded together (progress granularity)


def run_embed(seqs_path: str, output: str, model: Optional[str], window: Optional[int], context: Optional[int],
              strand: str, no_meta: bool, device: str, dtype: str, batch_size: int, max_tokens: int,
              quiet: bool) -> int:
    """Embed every record of a FASTA; returns the number of records."""
    from dnahnet_cli.genomics.fileio import check_outputs
    from dnahnet_cli.genomics.outputs import TsvWriter, open_output, provenance
    from dnahnet_cli.tasks.embedding import mean_embeddings

    check_strand(strand)
    check_outputs({"--output": output}, inputs={"SEQS": seqs_path})
    records, engine, window, context = sequences_and_engine(seqs_path, model, device, dtype, batch_size, max_tokens,
                                                            window, context, quiet)
    width = engine.model.config.d_model[0]
    columns = ["name", "length", "status"] + [f"e{k}" for k in range(1, width + 1)]
    meta = [] if no_meta else provenance(
        {"dnahnet_input": seqs_path, "dnahnet_window": window, "dnahnet_context": context, "dnahnet_strand": strand,
         "dnahnet_embedding": f"e1-e{width}: mean over the record's bases of the model's final hidden state (the "
                              "input of its next-base head, after reading each base); "
                              + {"both": "the mean of the record and its reverse complement", "forward": "the record "
                                 "as given", "reverse": "its reverse complement"}[strand]},
        engine.provenance)
    progress = Progress("embed records", len(records), quiet)
    with open_output(output) as fh:
        writer = TsvWriter(fh, columns, meta, float_fmt=".6g")
        for lo in range(0, len(records), RECORDS_PER_CALL):
            chunk = records[lo: lo + RECORDS_PER_CALL]
            vectors = mean_embeddings(engine, [s.upper() for _, s in chunk], window, context, STRANDS[strand])
            for (name, seq), vector in zip(chunk, vectors):
                row = {"name": name, "length": len(seq), "status": "OK" if seq else "SKIP_EMPTY"}
                if seq:
                    row.update({f"e{k}": float(v) for k, v in enumerate(vector, 1)})
                writer.write(row)
            progress.update(lo + len(chunk))
    return len(records)


def register(app: typer.Typer) -> None:
    @app.command("embed")
    def embed_cmd(
        seqs: str = typer.Argument(..., help="FASTA of sequences to embed (plain or gzip; - = stdin)."),
        model: Optional[str] = typer.Option(None, "--model", "-m", help=MODEL_HELP),
        output: str = typer.Option("-", "--output", "-o", help="TSV, one row per record; - = stdout."),
        window: Optional[int] = typer.Option(None, "--window", "-w", min=16, help="Longest stretch the model sees at once (default: the model's training length)."),
        context: Optional[int] = typer.Option(None, "--context", min=0, help="Minimum left context of each base in records longer than the window (default: window/2)."),
        strand: str = typer.Option("both", "--strand", help="both (mean of the record and its reverse complement), forward or reverse."),
        no_meta: bool = typer.Option(False, "--no-meta", help="Leave out the ## provenance lines."),
        device: str = DEVICE,
        dtype: str = DTYPE,
        batch_size: int = BATCH_SIZE,
        max_tokens: int = MAX_TOKENS,
        quiet: bool = QUIET,
    ) -> None:
        """One vector per sequence: the mean over its bases of the model's final hidden state (TSV: name, length,
        status, e1..eD).

        Example: dnahnet embed genes.fa -o genes.emb.tsv
        """
        run_embed(seqs, output, model, window, context, strand, no_meta, device, dtype, batch_size, max_tokens,
                  quiet)
