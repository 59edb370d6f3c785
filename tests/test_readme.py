"""Every fenced README command runs as written (issue 17), apart from the install and test blocks and the
Snakemake line (tests/test_snakemake_example.py runs that workflow). Commands run with bash in a scratch
directory whose `examples` is the repository's, so outputs land outside the checkout."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    commands = []
    for block in blocks:
        if "pip install" in block or "pytest" in block:
            continue  # the install and test blocks: what CI itself runs
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip()
            if line and not line.startswith("#") and not line.startswith("snakemake "):
                commands.append(line)
    return commands


def test_readme_has_the_quick_start():
    cmds = readme_commands()
    assert any(c.startswith("dnahnet score-variants") for c in cmds) and any(c.startswith("dnahnet train") for c in cmds)


@pytest.mark.parametrize("command", readme_commands(), ids=lambda c: c.split("#")[0].strip()[:60])
def test_readme_command_runs(command, tmp_path_factory):
    work = tmp_path_factory.getbasetemp() / "readme"  # one directory for all, in order: init before info
    work.mkdir(exist_ok=True)
    if not (work / "examples").exists():
        (work / "examples").symlink_to(ROOT / "examples")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "DNAHNET_THREADS": "1"}
    res = subprocess.run(["bash", "-c", command], cwd=work, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, f"{command}\n{res.stderr[-2000:]}"
    assert "Traceback" not in res.stderr
