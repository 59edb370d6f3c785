"""The reference checkpoint shipped inside the package, used when a command is given no --model."""

from __future__ import annotations

from pathlib import Path

from dnahnet_cli.errors import DnahnetError

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "data" / "default_model"
MODEL_HELP = "Checkpoint directory (default: the reference model shipped with dnahnet; see `dnahnet info`)."


def resolve_model(model: str | Path | None) -> Path:
    """The checkpoint to use: the one given, else the shipped default (an error if it is not installed)."""
    if model is not None:
        if not str(model).strip():  # Path("") is ".": an unset shell variable must not load the current folder
            raise DnahnetError("the model directory given is empty ('': an unset shell variable?); give a directory, "
                               "or leave it out for the default model")
        return Path(model)
    if not (DEFAULT_MODEL_DIR / "config.json").is_file():
        raise DnahnetError(
            f"no --model given and no default model is installed ({DEFAULT_MODEL_DIR} is missing); "
            "pass --model DIR (e.g. from `dnahnet init` or `dnahnet train`)"
        )
    return DEFAULT_MODEL_DIR
