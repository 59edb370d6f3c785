"""`dnahnet init`, `dnahnet info` and `dnahnet presets`: create and describe checkpoints."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from dnahnet_cli.model.lm import ModelConfig

stdout = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)


def describe(cfg: ModelConfig) -> dict:
    """Parameter counts per stage and component, built on the meta device (no memory, instant)."""
    import torch

    from dnahnet_cli.model.lm import DNAHNet, ModelConfig

    with torch.device("meta"):
        counts = DNAHNet(ModelConfig.from_dict(cfg.to_dict())).parameter_counts()
    total = counts["total"]
    encdec = sum(v for k, v in counts.items() if k.endswith((".encoder", ".decoder")))
    return {"counts": counts, "total": total, "encoder_decoder_share": encdec / total if total else 0.0}


def register(app: typer.Typer) -> None:
    @app.command("init")
    def init_cmd(
        preset: str = typer.Option(..., "--preset", "-p", help="Preset name (see `dnahnet presets`)."),
        out: Path = typer.Option(..., "--out", "-o", help="Checkpoint directory to create."),
        seed: int = typer.Option(0, "--seed", help="Random seed for the initial weights."),
        force: bool = typer.Option(False, "--force", help="Replace an existing checkpoint directory (an empty one too; never a directory holding anything else)."),
    ) -> None:
        """Write a freshly initialised checkpoint (safetensors + config.json).

        Example: dnahnet init --preset tiny -o models/tiny
        """
        import torch

        from dnahnet_cli.errors import DnahnetError
        from dnahnet_cli.model.checkpoint import CHECKPOINT_FILES, is_checkpoint_dir, save_checkpoint
        from dnahnet_cli.model.lm import DNAHNet
        from dnahnet_cli.model.presets import get_preset

        cfg = get_preset(preset)
        out = Path(os.path.abspath(out))  # "." and "" have no name to swap a new directory in under
        if out.exists() and Path.cwd().resolve().is_relative_to(out.resolve()):
            raise DnahnetError(f"--out {out}: the current directory (or one above it) cannot be replaced; "
                               f"give the checkpoint a directory of its own, e.g. -o models/{out.name or 'tiny'}")
        if out.exists() and not force:
            raise DnahnetError(f"{out} already exists (use --force to overwrite)")
        if out.exists() and not out.is_dir():
            raise DnahnetError(f"{out} is a file, not a checkpoint directory (--force replaces directories only)")
        if out.exists() and any(out.iterdir()) and not is_checkpoint_dir(out):
            raise DnahnetError(f"{out} is a directory that holds no dnahnet checkpoint; --force replaces checkpoints "
                               f"only, so choose a new or empty directory")
        others = sorted(p.name + "/" * p.is_dir() for p in out.iterdir() if p.name not in CHECKPOINT_FILES) \
            if out.is_dir() else []
        if others:  # the swap would delete them with the old checkpoint
            raise DnahnetError(f"{out} holds files that are not part of a checkpoint ({', '.join(others[:3])}"
                               f"{', ...' if len(others) > 3 else ''}); --force replaces a checkpoint only: move "
                               "them away or choose another directory")
        base = next((p for p in out.parents if p.exists()), None)  # missing folders above are created
        if base is None:
            raise DnahnetError(f"--out {out}: not a directory a checkpoint can be written to")
        if not base.is_dir() or not os.access(base, os.W_OK | os.X_OK):
            raise DnahnetError(f"--out {out}: {base} is not a writable directory")
        from dnahnet_cli.model.config import MAX_SEED

        if not 0 <= seed <= MAX_SEED:  # the range `train --seed` takes (torch alone would overflow past 2**64)
            raise DnahnetError(f"--seed must be between 0 and {MAX_SEED}, got {seed}")
        torch.manual_seed(seed)
        model = DNAHNet(cfg)
        save_checkpoint(out, model, {"preset": preset, "seed": seed, "trained": False})
        typer.echo(f"wrote {out} ({preset}, {describe(cfg)['total']:,} parameters)", err=True)

    @app.command("info")
    def info_cmd(
        model_dir: Optional[str] = typer.Argument(None, help="Checkpoint directory (default: the shipped reference model)."),
        json_out: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
        device: bool = typer.Option(False, "--device", help="Describe this machine instead: threads, bf16 support, what --dtype auto picks and why."),
    ) -> None:
        """Describe a checkpoint: config, target ratios, parameters per stage and component.

        Examples: dnahnet info models/tiny; dnahnet info (the default model); dnahnet info --device
        """
        import json

        from dnahnet_cli.commands.reporting import json_safe
        from dnahnet_cli.model.default_model import resolve_model

        if device:
            from dnahnet_cli.model.precision import describe_compute

            facts = describe_compute()
            if json_out:
                typer.echo(json.dumps(facts, indent=2))
            else:
                for key, value in facts.items():
                    stdout.print(f"{key:<16}{value if value is not None else '-'}", highlight=False, markup=False)
            return

        from dnahnet_cli.model.checkpoint import read_checkpoint_info

        model_dir = resolve_model(model_dir)
        info = read_checkpoint_info(model_dir)
        cfg: ModelConfig = info["model_config"]
        desc = describe(cfg)
        if json_out:
            payload = {k: v for k, v in info.items() if k != "model_config"}
            payload.update(parameters=desc["counts"], encoder_decoder_share=desc["encoder_decoder_share"])
            typer.echo(json.dumps(json_safe(payload), indent=2))  # strict JSON: a NaN in metadata is null
            return
        meta = info.get("metadata", {})
        name = f"{meta['name']}; " if isinstance(meta.get("name"), str) else ""
        title = f"{model_dir}  ({name}dnahnet {info.get('dnahnet_version')}, preset {meta.get('preset', cfg.name)})"
        lines = [
            f"arch_layout     {json.dumps(cfg.arch_layout)}",
            f"stages          {cfg.n_stages}   target ratios {tuple(cfg.ratio_targets) or '-'}"
            f"   total compression {_prod(cfg.ratio_targets):g}",
            f"d_model         {cfg.d_model}   d_intermediate {cfg.d_intermediate}",
            f"attention       heads {cfg.num_heads}  rotary {cfg.rotary_emb_dim}  window {cfg.window_size}",
            f"mamba2          d_state {cfg.d_state}  headdim {cfg.headdim}  expand {cfg.expand}  d_conv {cfg.d_conv}",
            f"training length {cfg.max_seq_len} tokens ({cfg.max_seq_len - 1} nt + BOS; the default scoring window "
            f"is {cfg.max_seq_len} nt)   lr multipliers {cfg.lr_multipliers}",
        ] + _training_summary(meta)
        stdout.print(title, style="bold", markup=False)  # paths and commands may hold [brackets]: never markup
        for line in lines:
            stdout.print(line, markup=False)
        table = Table(title="parameters", show_edge=False)
        table.add_column("component")
        table.add_column("parameters", justify="right")
        table.add_column("share", justify="right")
        for key, value in desc["counts"].items():
            if key != "total":
                table.add_row(key, f"{value:,}", f"{value / desc['total']:.1%}")
        table.add_row("[bold]total[/bold]", f"[bold]{desc['total']:,}[/bold]", "100%")
        stdout.print(table)
        stdout.print(f"encoder/decoder share {desc['encoder_decoder_share']:.1%}")

    @app.command("presets")
    def presets_cmd() -> None:
        """List the named model presets with their sizes.

        Example: dnahnet presets
        """
        from dnahnet_cli.model.presets import DESCRIPTIONS, PARAMETERS, PRESETS

        table = Table(show_edge=False)
        for col in ("preset", "stages", "targets", "d_model", "parameters", "enc/dec", "description"):
            table.add_column(col)
        for name, cfg in PRESETS.items():
            total, encdec = PARAMETERS[name]
            table.add_row(name, str(cfg.n_stages), str(tuple(cfg.ratio_targets)) if cfg.ratio_targets else "-",
                          str(cfg.d_model), f"{total / 1e6:.2f}M", f"{encdec / total:.0%}",
                          DESCRIPTIONS.get(name, ""))
        stdout.print(table)


def _training_summary(meta: dict) -> list[str]:
    """`info`'s training lines: the shipped model's `training` record, or what `dnahnet train` writes into its
    checkpoints."""
    import json

    if isinstance(meta.get("training"), dict):
        return _shipped_training(meta)
    if meta.get("training"):
        return [f"training        {json.dumps(meta['training'])}"]
    if "step" not in meta:
        return []  # `init`: an untrained model
    tc = meta.get("train_config") if isinstance(meta.get("train_config"), dict) else {}  # JSON may hold anything
    val, step = meta.get("val_bpn"), meta["step"]
    parts = [f"step {step:,} of {tc['steps']:,}" if isinstance(step, int) and isinstance(tc.get("steps"), int)
             else f"step {step}",
             f"val {val:.4f} bits/nt" if isinstance(val, (int, float)) else "no validation",
             f"seq_len {tc.get('seq_len', '?')} x batch {tc.get('batch_size', '?')}",
             f"precision {meta.get('precision', '?')}"]
    return ["training        " + "   ".join(parts)]


def _shipped_training(meta: dict) -> list[str]:
    """A shipped model's `training` record (docs/results/model_card/ship.py) as a few readable lines: the totals over
    every cycle it continues, this cycle's recipe and the chain of models; `info --json` has the whole record."""

    def num(value, fmt: str) -> str:
        return format(value, fmt) if isinstance(value, (int, float)) and not isinstance(value, bool) else "?"

    t = meta["training"]
    chain, node = [], t
    while isinstance(prev := node.get("continues"), dict):  # the model this one was trained on from, and its own, ...
        chain.append(str(prev.get("name", "?")))
        node = prev["training"] if isinstance(prev.get("training"), dict) else {}
    flops = t.get("training_flops_total", t.get("training_flops"))
    nts = t.get("nucleotides_total", t.get("nucleotides"))
    lines = [f"training        {num(flops, '.3g')} FLOPs on {num(nts, ',')} nt in {len(chain) + 1} cycle(s); "
             f"final validation {num(t.get('final_val_bits_per_nt'), '.4f')} bits/nt, realised ratios "
             f"{t.get('realised_ratios', '?')}"]
    lines.append(f"last cycle      {num(t.get('steps'), ',')} steps x {num(t.get('batch_size'), ',')} x "
                 f"{num(t.get('seq_len_tokens'), ',')} tokens, lr {num(t.get('lr'), 'g')} ({t.get('schedule', '?')}), "
                 f"seed {t.get('seed', '?')}, weights {t.get('weights_dtype', '?')}")
    if chain:
        lines.append(f"continues       {' <- '.join(chain)}")
    if t.get("data"):
        lines.append(f"data            {t['data']}")
    if meta.get("licence"):
        lines.append(f"licence         {meta['licence']}")
    return lines


def _prod(values) -> float:
    out = 1.0
    for v in values:
        out *= v
    return out
