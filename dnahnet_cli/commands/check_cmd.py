"""`dnahnet check`: a self-test to run after installing (see dnahnet_cli/tasks/selfcheck.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from dnahnet_cli.errors import DnahnetError
from dnahnet_cli.model.default_model import MODEL_HELP


def register(app: typer.Typer) -> None:
    @app.command("check")
    def check_cmd(
        model: Optional[str] = typer.Option(None, "--model", "-m", help=MODEL_HELP),
        device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N."),
        dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16 or float16."),
        write_reference: bool = typer.Option(False, "--write-reference",
                                             help="Record this model's reference values as MODEL/check.json (when "
                                                  "shipping a model; needs --model and float32, written only when "
                                                  "the other checks pass)."),
    ) -> None:
        """Check that this installation computes what it should: the model's recorded reference values, incremental ==
        full forward, batch invariance, and fast kernels against the reference path. Exit 0 when all pass.

        Examples: dnahnet check; dnahnet check --device cuda --dtype bfloat16
        """
        from dnahnet_cli.model.default_model import resolve_model
        from dnahnet_cli.tasks.engine import LikelihoodEngine
        from dnahnet_cli.tasks.selfcheck import run_checks
        from dnahnet_cli.tasks.selfcheck import write_reference as record

        if getattr(sys.stdout, "closed_at_start", False):  # its report is the output: refuse before the work
            raise DnahnetError("check prints its report on standard output, which was closed (>&-)")
        if write_reference and model is None:  # never the installed package's model by accident
            raise DnahnetError("--write-reference needs --model DIR (it writes DIR/check.json; to record the shipped "
                               "model's values, name its directory)")
        model_dir = resolve_model(model)
        engine = LikelihoodEngine.load(model_dir, device=device, dtype=dtype)
        if write_reference and engine.dtype != "float32":
            raise DnahnetError(f"--write-reference records float32 values, not {engine.dtype}: use --dtype float32")
        checks = run_checks(engine, Path(model_dir), writing_reference=write_reference)
        prov = engine.provenance
        typer.echo(f"dnahnet check: model {model_dir} (sha256 {prov['sha256'][:12]}…), device {prov['device']}, "
                   f"precision {prov['precision']}")
        for c in checks:
            if c.skipped:
                typer.echo(f"  SKIP  {c.name}: {c.skipped}")
                continue
            status = "PASS" if c.passed else "FAIL"
            measured = "" if c.exact else f": deviation {c.value:.2e} (tolerance {c.tolerance:.0e})"
            typer.echo(f"  {status}  {c.name}{measured}" + (f"  [{c.detail}]" if c.detail else ""))
        ran = [c for c in checks if not c.skipped]
        failed = [c for c in ran if not c.passed]
        if failed:
            typer.echo(f"dnahnet check: {len(failed)} of {len(ran)} checks FAILED: this installation is not "
                       "numerically sound; do not trust its scores (try --dtype float32 and --device cpu)"
                       + ("; no reference values written" if write_reference else ""))
            sys.exit(1)
        if write_reference:  # only from an installation whose other checks pass
            typer.echo(f"wrote {record(engine, Path(model_dir))}", err=True)
        skipped = len(checks) - len(ran)
        typer.echo(f"dnahnet check: all {len(ran)} checks passed" + (f" ({skipped} skipped, see above)" if skipped else "")
                   + ": the installation is numerically sound")
