"""docs/architecture.md "Where things live": the dependency rules between our packages, from the source and
by importing.

Static rules, over every import statement (lazy ones too) and every `importlib.import_module` string:
- `keys` imports none of our packages;
- `issuer` and `mcp_server` import only `keys`;
- the orchestrator's runtime (everything outside `orchestrator._commands`) imports only `keys` and itself;
- no import cycle between the modules of a package (imports under `TYPE_CHECKING` are not run, so they do
  not count; a package `__init__` re-exporting its own modules is not a cycle).
- the agent worker (`orchestrator/__main__.py` and every module it reaches) imports neither FastAPI, the
  issuer nor the MCP server.
Dynamic rule: importing every module the agent worker reaches loads neither FastAPI, the issuer nor the MCP
server.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("keys", "issuer", "mcp_server", "orchestrator")
COMMANDS = "orchestrator._commands"
WORKER = "orchestrator.__main__"
# What each part may import besides itself.
ALLOWED = {"keys": set(), "issuer": {"keys"}, "mcp_server": {"keys"}, "orchestrator": {"keys"}}
NEVER_IN_THE_WORKER = ("fastapi", "issuer", "mcp_server")


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", "")
            if name == "TYPE_CHECKING":
                skipped.update(id(inner) for inner in ast.walk(node))
    return skipped


def imports_of(root: Path, path: Path) -> list[Edge]:
    """Every module a file imports, as absolute names; `from a import b` also names `a.b` (it may be one)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = module_name(root, path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    skipped = _type_checking_nodes(tree)
    edges: list[Edge] = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            edges.extend(Edge(here, alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            edges.append(Edge(here, target, node.lineno))
            edges.extend(Edge(here, f"{target}.{alias.name}", node.lineno) for alias in node.names)
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if name in {"import_module", "__import__"}:
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    edges.append(Edge(here, first.value, node.lineno))
                else:
                    # A computed module name cannot be checked, so it is not allowed in our packages.
                    edges.append(Edge(here, "<computed>", node.lineno))
    return edges


def import_graph(root: Path) -> dict[str, list[Edge]]:
    files = [p for pkg in PACKAGES if (root / pkg).is_dir() for p in sorted((root / pkg).rglob("*.py"))]
    return {module_name(root, path): imports_of(root, path) for path in files}


def packages_of(root: Path) -> set[str]:
    """The modules that are packages (their `__init__` re-exports are not cycles)."""
    inits = [p for pkg in PACKAGES if (root / pkg).is_dir() for p in (root / pkg).rglob("__init__.py")]
    return {module_name(root, path) for path in inits}


def _part(module: str) -> str:
    return "commands" if module == COMMANDS or module.startswith(COMMANDS + ".") else module.split(".")[0]


def _once(edges: list[Edge]) -> list[Edge]:
    """One edge per statement and target part: `from a import b` names `a` before `a.b`."""
    seen: set[tuple[int, str]] = set()
    kept = []
    for edge in edges:
        key = (edge.line, _part(edge.target))
        if key not in seen:
            seen.add(key)
            kept.append(edge)
    return kept


def forbidden_edges(graph: dict[str, list[Edge]]) -> list[str]:
    problems: list[str] = []
    for module, all_edges in sorted(graph.items()):
        edges = _once(all_edges)
        part = _part(module)
        if part == "commands":
            continue  # the composition root may import every package
        for edge in edges:
            if edge.target == "<computed>":
                problems.append(f"{module}:{edge.line} imports a computed module name")
                continue
            top = edge.target.split(".")[0]
            if top not in PACKAGES:
                continue  # a library
            target_part = _part(edge.target)
            if target_part != part and target_part not in ALLOWED[part]:
                problems.append(f"{module}:{edge.line} imports {edge.target}")
    return problems


def worker_edges(graph: dict[str, list[Edge]]) -> list[str]:
    """Imports of FastAPI or a service anywhere in the worker's closure (lazy ones too)."""
    return [
        f"the agent worker reaches {edge.target} ({module}:{edge.line})"
        for module in sorted(worker_closure(graph))
        for edge in _once(graph[module])
        if edge.target.split(".")[0] in NEVER_IN_THE_WORKER
    ]


def _internal(graph: dict[str, list[Edge]], module: str) -> set[str]:
    """The modules of the same package that `module` imports (a name that is not a module is skipped)."""
    top = module.split(".")[0]
    found = set()
    for edge in graph[module]:
        if edge.target.split(".")[0] == top and edge.target in graph and edge.target != module:
            found.add(edge.target)
    return found


def import_cycles(graph: dict[str, list[Edge]], packages: set[str]) -> list[str]:
    """Strongly connected components of more than one module (package `__init__`s left out), iteratively."""
    nodes = [m for m in graph if m not in packages]
    succ = {m: sorted(t for t in _internal(graph, m) if t in nodes) for m in nodes}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[str] = []
    for start in sorted(nodes):
        if start in index:
            continue
        work = [(start, iter(succ[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(succ[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append("import cycle: " + " <-> ".join(sorted(component)))
    return cycles


def worker_closure(graph: dict[str, list[Edge]]) -> set[str]:
    """The orchestrator and keys modules the agent worker reaches from `orchestrator/__main__.py`, lazy
    imports included; an import of another package is reported by `worker_edges`, not walked."""
    seen: set[str] = set()
    todo = [WORKER]
    while todo:
        module = todo.pop()
        if module in seen or module not in graph or module.split(".")[0] not in {"orchestrator", "keys"}:
            continue
        seen.add(module)
        parent = module.rpartition(".")[0]
        if parent:
            todo.append(parent)  # importing a module runs its package's __init__ first
        for edge in graph[module]:
            for candidate in (edge.target, edge.target.rpartition(".")[0]):
                if candidate in graph:
                    todo.append(candidate)
    return seen


def check(root: Path) -> list[str]:
    graph = import_graph(root)
    return forbidden_edges(graph) + worker_edges(graph) + import_cycles(graph, packages_of(root))


_PROBE = textwrap.dedent(
    """
    import importlib, json, sys
    for name in json.loads(sys.argv[1]):
        importlib.import_module(name)
    print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
    """
)


def loaded_by_worker(root: Path) -> set[str]:
    """Top-level modules loaded, in a fresh interpreter, by importing every module the worker reaches."""
    modules = sorted(worker_closure(import_graph(root)) - {WORKER})  # __main__ would run the worker
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(root)}
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(modules)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


# -- the rules hold on this tree ------------------------------------------------------------------------


def test_no_forbidden_import_and_no_cycle() -> None:
    assert check(ROOT) == []


def test_the_worker_loads_neither_fastapi_nor_the_services() -> None:
    closure = worker_closure(import_graph(ROOT))
    assert "orchestrator._call._worker" in closure  # the walk really follows the worker
    assert not any(_part(m) in {"issuer", "mcp_server", "commands"} for m in closure)
    loaded = loaded_by_worker(ROOT)
    assert "livekit" in loaded  # the probe really imported the worker
    assert loaded.isdisjoint(NEVER_IN_THE_WORKER)


# -- the checker catches what it must --------------------------------------------------------------------


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    for pkg in PACKAGES:
        (root / pkg).mkdir(exist_ok=True)
        (root / pkg / "__init__.py").touch()
    return root


def test_catches_every_kind_of_forbidden_edge(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "keys/_a.py": "from issuer import create_app\n",
            "issuer/_b.py": "import importlib\nimportlib.import_module('mcp_server')\n",
            "issuer/_c.py": "from ..orchestrator import x\n",
            "mcp_server/_d.py": "def f():\n    from orchestrator._commands import main\n",
            "orchestrator/_call/__init__.py": "",
            "orchestrator/_call/_e.py": "import fastapi\nfrom mcp_server import seed_bank\n",
            "orchestrator/_call/_f.py": "from orchestrator._commands._cli import main\n",
            "orchestrator/_call/_g.py": "import importlib\nimportlib.import_module(name)\n",
            "orchestrator/_commands/__init__.py": "from issuer import create_app\nfrom mcp_server import x\n",
            "orchestrator/__main__.py": "from orchestrator._call import _h\n",
            "orchestrator/_call/_h.py": "def late():\n    import fastapi.responses\n",
            "orchestrator/_call/_i.py": "from orchestrator import _commands\n",
        },
    )
    assert worker_edges(import_graph(root)) == [
        "the agent worker reaches fastapi.responses (orchestrator._call._h:2)"
    ]
    assert forbidden_edges(import_graph(root)) == [
        "issuer._b:2 imports mcp_server",
        "issuer._c:1 imports orchestrator",
        "keys._a:1 imports issuer",
        "mcp_server._d:2 imports orchestrator._commands",
        "orchestrator._call._e:2 imports mcp_server",
        "orchestrator._call._f:1 imports orchestrator._commands._cli",
        "orchestrator._call._g:2 imports a computed module name",
        "orchestrator._call._i:1 imports orchestrator._commands",
    ]


def test_catches_a_cycle_but_not_a_type_checking_import(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "keys/_a.py": "from keys._b import B\n",
            "keys/_b.py": "from keys import _c\n",
            "keys/_c.py": "from . import _a\n",
            "issuer/_x.py": "from issuer._y import Y\n",
            "issuer/_y.py": "import typing\nif typing.TYPE_CHECKING:\n    from issuer._x import X\n",
        },
    )
    assert import_cycles(import_graph(root), packages_of(root)) == [
        "import cycle: keys._a <-> keys._b <-> keys._c"
    ]


def test_catches_fastapi_loaded_by_the_worker(tmp_path: Path) -> None:
    """The real tree with one bad import added deep in the worker's closure fails the dynamic check."""
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            target = tmp_path / path.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    refs = tmp_path / "orchestrator" / "_agent" / "_refs.py"
    text = refs.read_text().replace("from __future__ import annotations\n", "")
    refs.write_text("import fastapi.responses\n" + text)
    assert "fastapi" in loaded_by_worker(tmp_path)
