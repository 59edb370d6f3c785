"""The package layers import only downward (docs/architecture.md), and every subpackage says what it holds."""

import ast
from pathlib import Path

import dnahnet_cli

PKG = Path(dnahnet_cli.__file__).parent
RANK = {"__init__": 0, "errors": 0, "genomics": 1, "model": 2, "tasks": 3, "train": 3, "commands": 4, "cli": 5, "__main__": 6}


def _imports(path: Path) -> set[str]:
    """Top-level dnahnet_cli subpackages/modules a file imports (absolute or relative, anywhere in the file)."""
    tree = ast.parse(path.read_text())
    here = path.relative_to(PKG).parts[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(here[: len(here) - (node.level - 1)])
                parts = base + (node.module.split(".") if node.module else [n.name for n in node.names][:1])
            elif node.module and node.module.startswith("dnahnet_cli"):
                parts = node.module.split(".")[1:] or [n.name for n in node.names][:1]
            else:
                continue
            if parts:
                found.add(parts[0])
        elif isinstance(node, ast.Import):
            for n in node.names:
                if n.name.startswith("dnahnet_cli."):
                    found.add(n.name.split(".")[1])
    return found


def test_layers_import_only_downward():
    violations = []
    for path in PKG.rglob("*.py"):
        me = path.relative_to(PKG).with_suffix("").parts[0]
        if me not in RANK:
            violations.append(f"{path.relative_to(PKG)}: module outside the layers of docs/architecture.md")
            continue
        for other in _imports(path):
            if other in RANK and other != me and RANK[other] >= RANK[me]:
                violations.append(f"{path.relative_to(PKG)} imports {other}")
    assert not violations, violations


def test_every_subpackage_has_a_docstring():
    for sub in ("genomics", "model", "tasks", "train", "commands"):
        doc = ast.get_docstring(ast.parse((PKG / sub / "__init__.py").read_text()))
        assert doc and len(doc) > 100, sub
