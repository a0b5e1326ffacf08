"""The layers of `shared/`, read from the source: the domain never imports the HTTP edge, and no modules
import each other in a circle.

Every module under `shared/` is parsed with `ast` (nothing is imported). Two rules:

* `shared.api` (request/response models, problem documents, parsing, views) is the HTTP edge. Services,
  stores, clients, mapping and the top-level modules (`shared/*.py`) never import it, at module level or
  inside a function: they raise domain errors (`shared.errors`) and take domain inputs (`shared.models`),
  and the edge renders and converts.
* The module-level imports among `shared` modules (including `if TYPE_CHECKING:` blocks) form no cycle.
  A shared piece two modules need goes down a layer.
* Imports sit at the top of every module of `shared/`, `functions/` and `function_app.py`, never inside a
  function: an import hidden in a function dodges a cycle without breaking it. The heavy Azure SDKs are
  deferred in one place, `shared/sdk.py` (`tests/unit/test_sdk.py` checks that start-up loads none).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "shared"
EDGE = "shared.api"
DOMAIN_PACKAGES = ("shared.services", "shared.stores", "shared.clients", "shared.mapping")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the module imported (a submodule when `from package import submodule`)
    line: int
    module_level: bool  # not inside a function (class bodies and `if` blocks run at import)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(SHARED.rglob("*.py"))}


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _imports(module: str) -> Iterator[Import]:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"), filename=str(MODULES[module]))

    def walk(node: ast.AST, module_level: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(module, alias.name, child.lineno, module_level)
            elif isinstance(child, ast.ImportFrom):
                base = _resolve(module, child)
                for alias in child.names:
                    # `from shared.services import queries` imports the submodule, `from x import name` x.
                    sub = f"{base}.{alias.name}"
                    yield Import(module, sub if sub in MODULES else base, child.lineno, module_level)
            inner = module_level and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            yield from walk(child, inner)

    yield from walk(tree, True)


IMPORTS: list[Import] = [i for m in MODULES for i in _imports(m)]


def _is_domain(module: str) -> bool:
    top_level = module.count(".") == 1  # shared/<name>.py
    return top_level or any(module == p or module.startswith(p + ".") for p in DOMAIN_PACKAGES)


def _is_edge(target: str) -> bool:
    return target == EDGE or target.startswith(EDGE + ".")


def test_the_modules_were_found() -> None:
    assert {"shared.errors", "shared.services.registration", "shared.api.problems"} <= set(MODULES)
    assert any(i.target == "shared.errors" for i in IMPORTS)


def test_imports_are_at_the_top() -> None:
    sources = [*SHARED.rglob("*.py"), *(ROOT / "functions").rglob("*.py"), ROOT / "function_app.py"]
    local: list[str] = []
    for path in sorted(sources):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                local += [f"{path.relative_to(ROOT)}:{inner.lineno} in {node.name}()" for inner in ast.walk(node)
                          if isinstance(inner, ast.Import | ast.ImportFrom)]
    assert not local, ("imports inside functions (move them to the top; defer an Azure SDK name through "
                       "shared.sdk):\n  " + "\n  ".join(local))


def test_the_domain_never_imports_the_http_edge() -> None:
    offending = sorted(
        {
            f"{MODULES[i.module].relative_to(ROOT)}:{i.line} imports {i.target}"
            for i in IMPORTS
            if _is_domain(i.module) and _is_edge(i.target)
        }
    )
    assert not offending, (
        "services, stores, clients, mapping and shared/*.py must not import shared.api (raise the domain "
        "errors of shared.errors, take shared.models inputs; the edge renders and converts):\n  "
        + "\n  ".join(offending)
    )


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; only the components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_strongly_connected_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _strongly_connected(graph) == [["a", "b", "c"]]


def test_no_import_cycles_among_shared_modules() -> None:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    lines: dict[tuple[str, str], int] = {}
    for i in IMPORTS:
        if i.module_level and i.target in MODULES and i.target != i.module:
            graph[i.module].add(i.target)
            lines.setdefault((i.module, i.target), i.line)
    cycles = _strongly_connected(graph)
    report = []
    for members in cycles:
        edges = [
            f"{MODULES[a].relative_to(ROOT)}:{lines[a, b]} -> {b}"
            for a in members
            for b in sorted(graph[a])
            if b in members
        ]
        report.append(", ".join(members) + "\n    " + "\n    ".join(edges))
    assert not cycles, (
        "module-level imports among shared modules form cycles; move the piece they share down a layer:\n  "
        + "\n  ".join(report)
    )
