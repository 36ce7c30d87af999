"""The repository is self-contained: no link or file reference in a tracked text file leads outside it.

Markdown links must name a file of the repository (no web links, no `../` out of the checkout); relative
paths in configuration and documents must resolve inside it; every Markdown file a comment or a page names
must exist here, and none names the documents that steer the project from outside it (what they fix is in
docs/); and no file carries a path of the machine it was written on.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
UPWARD_PATH = re.compile(r"(?<![\w./])(?:\.\./)+[\w./-]*")
MARKDOWN_NAME = re.compile(r"(?<![\w/.-])([\w./-]*[\w-]\.md)\b")
MACHINE_PATHS = (str(ROOT), "/" + "work/")
# The documents the project is steered by live outside the repository; what they fix is in docs/.
OUTSIDE_DOCUMENTS = re.compile(r"\b(?:" + "DES" + "IGN|STY" + "LE" + r")\b")


def tracked_text_files() -> dict[str, str]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    texts = {}
    for name in filter(None, listed.decode().split("\0")):
        path = ROOT / name
        if name == "uv.lock" or not path.is_file():
            continue  # the lock file names package registries, which is what it is for
        try:
            texts[name] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
    return texts


TEXTS = tracked_text_files()
MARKDOWN_FILES = {Path(name).name for name in TEXTS if name.endswith(".md")}


def inside(base: Path, target: str) -> Path | None:
    """Where `target` resolves from `base`, when that is inside the repository and exists."""
    resolved = (base / target).resolve()
    return resolved if resolved.is_relative_to(ROOT) and resolved.exists() else None


def problems(name: str, text: str) -> list[str]:
    base = (ROOT / name).parent
    found = []
    if name.endswith(".md"):
        for target in MARKDOWN_LINK.findall(text):
            path = target.split("#", 1)[0]
            if "://" in target or target.startswith("mailto:"):
                found.append(f"links outside the repository: {target}")
            elif path and inside(base, path) is None:
                found.append(f"links to a file the repository does not hold: {target}")
    if not name.endswith(".py"):  # in Python, `../` strings are test inputs (path traversal), not links
        for target in UPWARD_PATH.findall(text):
            if inside(base, target) is None:
                found.append(f"names a path outside the repository: {target}")
    for target in MARKDOWN_NAME.findall(text):
        if inside(base, target) is None and inside(ROOT, target) is None and target not in MARKDOWN_FILES:
            found.append(f"names a document the repository does not hold: {target}")
    found += [f"names a document outside the repository: {m}" for m in OUTSIDE_DOCUMENTS.findall(text)]
    found += [f"carries a path of this machine: {p}" for p in MACHINE_PATHS if p in text]
    return found


def test_no_link_leaves_the_repository() -> None:
    found = {name: problems(name, text) for name, text in sorted(TEXTS.items())}
    assert {name: found for name, found in found.items() if found} == {}
    assert {"README.md", "docs/configuration.md", "docs/architecture.md"} <= set(TEXTS)


def test_the_scan_finds_what_it_looks_for() -> None:
    steering = "DES" + "IGN"  # spelled apart, so that this file passes its own scan
    up = f"../shared/{steering}.md"
    assert problems("README.md", f"The contract is [here]({up}).") == [
        f"links to a file the repository does not hold: {up}",
        f"names a path outside the repository: {up}",
        f"names a document the repository does not hold: {up}",
        f"names a document outside the repository: {steering}",
    ]
    assert problems("docs/" + "x" + ".md", "[spec](https://example.org/spec)") == [
        "links outside the repository: https://example.org/spec"
    ]
    assert problems("tests/x.py", f'# see "Layout" in {steering}') == [
        f"names a document outside the repository: {steering}"
    ]
    assert problems("tests/x.py", "# see " + "notes" + ".md") == [
        "names a document the repository does not hold: " + "notes" + ".md"
    ]
    sound = "[configuration](docs/configuration.md), [ops](docs/architecture.md#parts)"
    assert problems("README.md", sound) == []
