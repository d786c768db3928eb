"""Measure the package layout: code lines, long functions, function-level imports, import circles.

Code lines are source lines holding code: blank lines, comments and docstrings are
not counted.  Run ``python scripts/layout_metrics.py`` from the repository root.
"""

from __future__ import annotations

import argparse
import ast
import io
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "kernelcomp"


def module_name(path: Path) -> str:
    """The dotted module name of a file of the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _docstring_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                lines |= set(range(body[0].lineno, body[0].end_lineno + 1))
    return lines


def code_lines(source: str, tree: ast.AST) -> set[int]:
    """Line numbers that hold code (no blank, comment or docstring lines)."""
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
            tokenize.ENDMARKER, tokenize.ENCODING}
    lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in skip:
            lines |= set(range(tok.start[0], tok.end[0] + 1))
    return lines - _docstring_lines(tree)


def resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module named by an ``ImportFrom`` node."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def known_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, modules: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """(imported kernelcomp module, line, inside a function) for every import of a file.

    ``from pkg import name`` counts as an import of ``pkg.name`` when that is a module.
    Imports under ``if TYPE_CHECKING:`` are left out (they never run).
    """
    name = module_name(path)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for sub in child.orelse:
                    visit_one(sub, in_function)
                continue
            visit_one(child, in_function)

    def visit_one(child: ast.AST, in_function: bool) -> None:
        if isinstance(child, ast.Import):
            for alias in child.names:
                if alias.name.split(".")[0] == "kernelcomp":
                    found.append((alias.name, child.lineno, in_function))
        elif isinstance(child, ast.ImportFrom):
            target = resolve(name, is_package, child)
            if target.split(".")[0] == "kernelcomp":
                subs = [f"{target}.{a.name}" for a in child.names
                        if f"{target}.{a.name}" in modules]
                for sub in subs:
                    found.append((sub, child.lineno, in_function))
                if len(subs) < len(child.names):
                    found.append((target, child.lineno, in_function))
        else:
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                      ast.Lambda))
            visit(child, inner)

    visit(tree, False)
    return found


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> kernelcomp modules it imports (module level and function level).

    An import of ``a.b.c`` runs ``a.b.c`` and, first, the ``__init__`` of ``a.b``
    (edges too). A module's own packages are not edges: they are already being
    imported when it runs. ``tests/test_import_layering.py`` checks this graph.
    """
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        own = {name.rsplit(".", k)[0] for k in range(name.count(".") + 1)}
        targets = set()
        for target, _, _ in imports(path, modules):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            while target and target != "kernelcomp":  # the packages' __init__ run first
                if target not in own:
                    targets.add(target)
                target = target.rpartition(".")[0]
        graph[name] = targets
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def functions(path: Path) -> list[tuple[str, int]]:
    """(qualified name, code lines) of every function of a file (nested ones on their own)."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    lines = code_lines(source, tree)
    out = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = child.decorator_list[0].lineno if child.decorator_list else child.lineno
                span = set(range(start, child.end_lineno + 1))
                out.append((f"{prefix}{child.name}", len(span & lines)))
                walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")
            else:
                walk(child, prefix)

    walk(tree, "")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args(argv)
    modules = known_modules()
    sizes = []
    for name, path in modules.items():
        source = path.read_text(encoding="utf-8")
        sizes.append((len(code_lines(source, ast.parse(source))), name))
    sizes.sort(reverse=True)
    print(f"code lines, whole package: {sum(s for s, _ in sizes)} "
          f"({sum(len(p.read_text().splitlines()) for p in modules.values())} physical)")
    print("largest modules (code lines):")
    for size, name in sizes[: args.top]:
        print(f"  {size:5d}  {name}")
    funcs = [(n, f"{module_name(p)}.{q}") for p in modules.values() for q, n in functions(p)
             if "_kernels" not in module_name(p)]
    funcs.sort(reverse=True)
    print("longest functions outside _kernels/ (code lines):")
    for n, q in funcs[: args.top]:
        print(f"  {n:5d}  {q}")
    per_place: dict[str, int] = {"cli": 0, "rest": 0}
    late = []
    for name, path in modules.items():
        seen = set()
        for target, line, inside in imports(path, modules):
            if inside and (line, target.rsplit(".", 1)[0]) not in seen:
                seen.add((line, target.rsplit(".", 1)[0]))
        for line, _ in seen:
            per_place["cli" if name.startswith("kernelcomp.cli") else "rest"] += 1
            late.append((name, line))
    print(f"function-level intra-package import statements: {sum(per_place.values())} "
          f"(cli {per_place['cli']}, elsewhere {per_place['rest']})")
    found = circles(import_graph(modules))
    print(f"import circles: {len(found)}")
    for comp in found:
        print("  " + " <-> ".join(comp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
