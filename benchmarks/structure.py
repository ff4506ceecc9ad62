"""How the code is built, in figures: the import graph between the floors (common → training → exporter →
vespa_app → siamese), imports running up, import cycles between modules, long files and functions,
function-local imports of the project's own modules, lines over the limit.

    python benchmarks/structure.py [ROOT]     (a checkout; default: this one)

``tests/test_layers.py`` holds the floors to their order with the same reading.
"""

from __future__ import annotations

import ast
import json
import sys
from collections import defaultdict
from pathlib import Path

FLOORS = ("common", "training", "exporter", "vespa_app", "siamese")  # each may import those before it
LINE_LIMIT = 110
HEAVY = (
    "torch",
    "transformers",
    "onnx",
    "onnxruntime",
    "optimum",
    "vespa",
    "sentence_transformers",
    "faiss",
    "huggingface_hub",
    "matplotlib",
    "pyarrow",
    "tensorboard",
)


def modules(root: Path) -> dict[str, Path]:
    """Every module of the floors, by dotted name."""
    found = {}
    for floor in FLOORS:
        for path in sorted((root / floor).rglob("*.py")) if (root / floor).is_dir() else []:
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> list[tuple[str, bool, int]]:
    """(module imported, at function level?, line) for each import of the project's own modules."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []

    def visit(node, local: bool):
        for child in ast.iter_child_nodes(node):
            inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            targets = []
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    up = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*up, base] if base else up)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in child.names]
            for target in targets:
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    found.append((target, local, child.lineno))
            visit(child, inner)

    visit(tree, False)
    return found


def floor(module: str) -> int:
    return FLOORS.index(module.split(".")[0])


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            strong(v)
    return out


def long_functions(tree) -> list[tuple[str, int]]:
    return [
        (n.name, n.end_lineno - n.lineno + 1)
        for n in ast.walk(tree)
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 60
    ]


def read(root: Path) -> dict:
    found = modules(root)
    known = set(found)
    graph: dict[str, set[str]] = defaultdict(set)
    up, local, by_floor = [], [], defaultdict(int)
    for name, path in found.items():
        for target, is_local, line in imports(name, path, known):
            graph[name].add(target)
            by_floor[f"{name.split('.')[0]} → {target.split('.')[0]}"] += 1
            if floor(target) > floor(name):
                up.append(f"{path.relative_to(root)}:{line} → {target}")
            if is_local:
                local.append(f"{path.relative_to(root)}:{line} → {target}")
    lines = {p: p.read_text().split("\n") for p in found.values()}
    code_lines = sum(len(text) for text in lines.values())
    over = sum(len(line) > LINE_LIMIT for text in lines.values() for line in text)
    functions = [
        (f"{p.relative_to(root)}::{f}", n)
        for p in found.values()
        for f, n in long_functions(ast.parse(p.read_text()))
    ]
    return {
        "modules": len(found),
        "lines": code_lines,
        "imports between floors": dict(sorted(by_floor.items())),
        "imports running up": up,
        "import cycles": cycles(graph),
        "files over 300 lines": sorted(
            f"{p.relative_to(root)} ({len(t)})" for p, t in lines.items() if len(t) > 300
        ),
        "functions over 60 lines": [f"{f} ({n})" for f, n in functions],
        "function-local imports of own modules": local,
        f"lines over {LINE_LIMIT} characters": over,
        "vespa_app → training imports": by_floor.get("vespa_app → training", 0),
    }


def main() -> int:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent
    figures = read(root)
    for key, value in figures.items():
        shown = len(value) if isinstance(value, list) else value
        print(f"{key}: {shown}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
