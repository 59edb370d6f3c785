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
