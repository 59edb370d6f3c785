"""The command-line layer: one module per command group, each defining `register(app)` for the Typer
app in `dnahnet_cli.cli`, plus the option definitions (`common`) and stderr progress/JSON helpers
(`reporting`) they share.

Commands parse and validate arguments, open inputs and outputs, call `tasks`/`train`, and report; they
hold no model or format logic of their own. Heavy modules (torch, the engine) are imported inside the
command functions so that `--help` and usage errors stay fast. Nothing below imports from here.
"""
