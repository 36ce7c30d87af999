"""The "Where things live" map of docs/architecture.md, rendered from the tree: folders, concepts, modules.

`python -m tests.support.layout` prints the map to paste between the markers of docs/architecture.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGES = ("keys", "issuer", "mcp_server", "orchestrator")
START = "<!-- where-things-live:start -->"
END = "<!-- where-things-live:end -->"


def summary(path: Path) -> str:
    """The first line of a module's docstring: the one line that says what it is for."""
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    if not docstring:
        raise ValueError(f"{path} has no docstring: say in one line what the module is for")
    return docstring.splitlines()[0]


def _folder(root: Path, folder: Path, depth: int) -> list[str]:
    name = folder.relative_to(root).as_posix() if depth == 0 else folder.name
    lines = [f"{'  ' * depth}- `{name}/` — {summary(folder / '__init__.py')}"]
    modules = sorted(p for p in folder.glob("*.py") if p.name != "__init__.py")
    lines += [f"{'  ' * (depth + 1)}- `{p.name}` — {summary(p)}" for p in modules]
    for sub in sorted(p for p in folder.iterdir() if (p / "__init__.py").is_file()):
        lines += _folder(root, sub, depth + 1)
    return lines


def render(root: Path) -> str:
    """The map of the four packages under `root`, between its markers."""
    lines = [START]
    for package in PACKAGES:
        lines += _folder(root, root / package, 0)
    lines.append(END)
    return "\n".join(lines) + "\n"


def documented(text: str) -> str:
    """The map as a document holds it, markers included (empty when the markers are missing)."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        return ""
    return text[start : end + len(END)] + "\n"


if __name__ == "__main__":
    print(render(Path(__file__).resolve().parents[2]), end="")
