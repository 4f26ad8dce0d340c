"""The package's import graph: every import resolves, no circle (function-level imports included), no
private name across modules.

A circle hidden behind a function-level import still ties two modules into one; a private
name imported from another module is an interface nobody declared; an import of a module
that moved away can still "work" where an older copy of the package is installed beside
this one. All three are read from the source, without importing anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mdaq_spark"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _imports(users: dict[str, Path] | None = None) -> dict[str, list[tuple[str, tuple[str, ...], int]]]:
    """module -> [(imported module, names taken from it, line)], every import outside TYPE_CHECKING.

    `users` (name -> file) are read instead of the package's own modules.
    """
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    out: dict[str, list[tuple[str, tuple[str, ...], int]]] = {}
    for name, path in (users or modules).items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_lines(tree)
        found = []
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            if isinstance(node, ast.Import):
                found += [(a.name, (), node.lineno) for a in node.names if a.name.startswith("mdaq_spark")]
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mdaq_spark"):
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    if sub in modules:  # `from mdaq_spark import schema`: the module itself
                        found.append((sub, (), node.lineno))
                    else:
                        found.append((node.module, (alias.name,), node.lineno))
        out[name] = found
    return out


def _defined_names(path: Path) -> set[str]:
    """Names a module binds at its top level (assignments, functions, classes, imports)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.If | ast.Try):
            for child in ast.walk(node):
                if isinstance(child, ast.Import | ast.ImportFrom):
                    names.update((a.asname or a.name).split(".")[0] for a in child.names)
    return names


def test_every_import_of_the_package_resolves():
    """In the package and in the tests, benches, scripts and jobs that use it."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    root = PACKAGE.parent
    users = {
        str(p.relative_to(root)): p for d in ("tests", "bench", "scripts", "jobs") for p in (root / d).rglob("*.py")
    }
    broken = []
    for m, edges in {**_imports(), **_imports(users)}.items():
        for target, names, line in edges:
            if target not in modules:
                broken.append(f"{m}:{line} imports {target}, which is not a module of the package")
                continue
            defined = _defined_names(modules[target])
            broken += [
                f"{m}:{line} imports {n} from {target}, which defines no such name" for n in names if n not in defined
            ]
    assert not broken, "\n".join(broken)


def test_package_has_no_import_circle():
    graph = {m: sorted({target for target, _, _ in edges if target != m}) for m, edges in _imports().items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in graph.get(m, []):
            if state.get(t) == 1:
                circles.append([*stack[stack.index(t) :], t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_no_private_name_is_imported_across_modules():
    private = [
        f"{m}:{line} imports {name} from {target}"
        for m, edges in _imports().items()
        for target, names, line in edges
        for name in names
        if name.startswith("_") and not name.startswith("__") and target != m
    ]
    assert not private, "\n".join(private)


def test_the_graph_is_read():
    """The checks above see the real package: a known edge is there."""
    edges = _imports()
    assert any(t == "mdaq_spark.schema" for t, _, _ in edges["mdaq_spark.stages.select"])
    assert "mdaq_spark.pipeline.runner" in edges
