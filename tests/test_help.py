"""Help text without blemishes (issue 17): no `<bool>` on flags, arguments as REF/VCF, no dangling ' .' where
rich markup ate a bracketed default, an example at the top level."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

COMMANDS = ["", "init", "info", "presets", "score-variants", "score-seqs", "segment", "train", "essentiality",
            "check", "eval", "eval dms"]


def help_text(command: str) -> str:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    res = subprocess.run([sys.executable, "-m", "dnahnet_cli", *command.split(), "--help"], capture_output=True,
                         text=True, env=env)
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_no_blemishes(command):
    text = help_text(command)
    assert "<bool>" not in text
    assert not re.search(r"\{[a-z_]+\}", text), "arguments render as {name}"
    assert not re.search(r"\S \.\s*(│|$)", text, re.M), "a help line ends in ' .'"
    if command == "":
        assert "Example:" in text
    if command == "train":
        assert "--threads" not in text  # the global option: dnahnet --threads N train ...


def test_kernels_fast_from_the_environment_leaves_help_and_model_free_commands_working():
    """A cluster profile exporting DNAHNET_KERNELS=fast for its GPU nodes broke `--help`, `presets` and `info
    --device` (the diagnosis) on a CPU node, with an error naming a --kernels flag the user never typed."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU: --kernels fast may be satisfiable here")
    env = {**os.environ, "DNAHNET_KERNELS": "fast", "COLUMNS": "200"}
    for command in (["score-variants", "--help"], ["presets"], ["info", "--device"]):
        res = subprocess.run([sys.executable, "-m", "dnahnet_cli", *command], capture_output=True, text=True, env=env)
        assert res.returncode == 0, (command, res.stderr)
    res = subprocess.run([sys.executable, "-m", "dnahnet_cli", "segment", "x.fa"], capture_output=True, text=True,
                         env=env)
    assert res.returncode == 2 and "DNAHNET_KERNELS=fast (the environment) needs CUDA" in res.stderr, res.stderr
