"""`dnahnet train`: essential options on the command line, everything else in a TOML file (--config).

Precedence: built-in defaults < --config file < command-line options. Under `torchrun --nproc-per-node N`
the same command trains with DDP (see docs/training.md).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import List, Optional

import typer

from dnahnet_cli.errors import DnahnetError


def _floats(text: Optional[str], what: str) -> Optional[list[float]]:
    if text is None:
        return None
    if text.strip().lower() in ("", "none"):
        return []
    try:
        return [float(x) for x in re.split(r"[,\s]+", text.strip()) if x]  # "3,2", "3, 2" and "3 2" alike
    except ValueError:
        raise DnahnetError(f"{what}: expected numbers separated by commas like 3,2, got {text!r}") from None


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        data: Optional[List[Path]] = typer.Option(None, "--data", help="Training FASTA/FASTA.gz file or directory (repeat for more)."),
        val: Optional[List[Path]] = typer.Option(None, "--val", help="Validation FASTA file or directory (repeat for more)."),
        preset: Optional[str] = typer.Option(None, "--preset", "-p", help="Model preset (see `dnahnet presets`), e.g. tiny, small, base, base-tpp."),
        init: Optional[str] = typer.Option(None, "--init", help="Start from this checkpoint directory instead of a preset."),
        config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML file with any training option (see examples/train.toml)."),
        out: Optional[str] = typer.Option(None, "--out", "-o", help="Run directory: checkpoints/, final/, metrics.jsonl, cache/. Default: run."),
        seq_len: Optional[int] = typer.Option(None, "--seq-len", help="Window length in tokens incl. BOS (paper: 8192). Default: 8192."),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="Windows per micro-batch per process. Default: 8."),
        grad_accum: Optional[int] = typer.Option(None, "--grad-accum", help="Micro-batches per optimiser step. Default: 1."),
        steps: Optional[int] = typer.Option(None, "--steps", help="Optimiser steps. Default: 1000."),
        lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate (times per-stage multipliers). Default: 1e-3."),
        alpha: Optional[float] = typer.Option(None, "--alpha", help="Ratio-loss weight. Default: the model's, 0.02."),
        ratio_targets: Optional[str] = typer.Option(None, "--ratio-targets", help="Final per-stage compression targets, e.g. 3,2. Default: the model's."),
        resume: Optional[bool] = typer.Option(None, "--resume/--no-resume", help="Continue the run in --out from its latest checkpoint."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Seed for initialisation and data order. Default: 0."),
        device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N. Default: auto."),
        threads: Optional[int] = typer.Option(None, "--threads", hidden=True, help="Deprecated spelling of the global option: dnahnet --threads N train ..."),
        dtype: Optional[str] = typer.Option(None, "--dtype", help="auto (bf16 autocast where matmuls are native bf16: AMX/AVX512-BF16 CPUs, bf16 GPUs; else fp32), fp32 or bf16. Default: auto."),
        cache_dir: Optional[str] = typer.Option(None, "--cache-dir", help="Token cache directory. Default: <out>/cache."),
        val_windows: Optional[int] = typer.Option(None, "--val-windows", help="Validation windows, spread evenly (0: all). Default: 64."),
        eval_every: Optional[int] = typer.Option(None, "--eval-every", help="Validate every N steps. Default: 100."),
        log_every: Optional[int] = typer.Option(None, "--log-every", help="Log training metrics every N steps. Default: 10."),
        ckpt_every: Optional[int] = typer.Option(None, "--ckpt-every", help="Checkpoint every N steps. Default: 200."),
        keep_last: Optional[int] = typer.Option(None, "--keep-last", help="Periodic checkpoints to keep. Default: 3."),
        quiet: Optional[bool] = typer.Option(None, "--quiet", "-q", help="No progress output (metrics.jsonl is still written)."),
    ) -> None:
        """Train dnaHNet (or a Transformer++ / Mamba2 / StripedHyena2-style baseline preset) on FASTA genomes.

        Example: dnahnet train --data corpus/train --val corpus/val --preset tiny --seq-len 1024 --steps 200 --out run
        """
        from dnahnet_cli.train.config import load_toml
        from dnahnet_cli.train.trainer import train

        options = load_toml(config) if config is not None else {}
        if init is not None and not init.strip():  # Path('') would be '.', the current folder
            raise DnahnetError("--init is empty ('': an unset shell variable?); give a checkpoint directory")
        cli = {
            "data": [str(p) for p in data] if data else None, "val": [str(p) for p in val] if val else None,
            "preset": preset, "init": init, "out": out,
            "seq_len": seq_len, "batch_size": batch_size, "grad_accum": grad_accum, "steps": steps, "lr": lr,
            "alpha": alpha, "ratio_targets": _floats(ratio_targets, "--ratio-targets"), "resume": resume,
            "seed": seed, "device": device, "threads": threads or explicit_threads(), "dtype": dtype,
            "cache_dir": cache_dir, "val_windows": val_windows, "eval_every": eval_every, "log_every": log_every,
            "ckpt_every": ckpt_every, "keep_last": keep_last, "quiet": quiet,
        }
        if preset and init:
            raise DnahnetError("give either --preset or --init, not both")
        options.update({k: v for k, v in cli.items() if v is not None})
        if preset:
            options.pop("init", None)
        if init:
            options.pop("preset", None)
        summary = train(options)
        main_rank = os.environ.get("RANK", "0") == "0"  # under torchrun, one line, not one per process
        if summary.get("val_bpn") is not None and not options.get("quiet") and main_rank:
            typer.echo(f"final validation: {summary['val_bpn']:.4f} bits/nt (start {summary['first_val_bpn']:.4f})"
                       if summary.get("first_val_bpn") is not None else
                       f"final validation: {summary['val_bpn']:.4f} bits/nt", err=True)


def explicit_threads() -> Optional[int]:
    """The global `dnahnet --threads N` (or DNAHNET_THREADS) when the user gave one: like every command-line
    option it wins over a config file's `threads` and, being a runtime option, over a resumed checkpoint's."""
    value = os.environ.get("DNAHNET_THREADS", "")
    return int(value) if value.isdigit() and int(value) >= 1 else None


def main() -> None:
    """`python -m dnahnet_cli.commands.train_cmd ...` (a torchrun target that does not need cli.py)."""
    import sys

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    register(app)
    try:
        app(standalone_mode=False)
    except DnahnetError as exc:
        sys.stderr.write(f"dnahnet: error: {exc}\n")
        sys.exit(exc.exit_code)
    except Exception as exc:  # usage errors (typer vendors click, so test by duck typing)
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
