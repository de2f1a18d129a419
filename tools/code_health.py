"""Code-health figures for a package: its longest functions and its size.

Usage: `.venv/bin/python tools/code_health.py [PACKAGE_DIR ...] [--top N]` (default: orderspace_pipelines, top 10).
Function length counts every line from `def` to the last line of the body, docstring included.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path


def function_lengths(root: Path) -> list[tuple[int, str]]:
    """(lines, "path:line qualified.name") for every function and method under root."""
    found: list[tuple[int, str]] = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        found.extend(_walk(tree, path, prefix=""))
    return found


def _walk(node: ast.AST, path: Path, prefix: str) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            name = f"{prefix}{child.name}"
            length = (child.end_lineno or child.lineno) - child.lineno + 1
            found.append((length, f"{path}:{child.lineno} {name}"))
            found.extend(_walk(child, path, prefix=f"{name}."))
        elif isinstance(child, ast.ClassDef):
            found.extend(_walk(child, path, prefix=f"{prefix}{child.name}."))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="*", default=["orderspace_pipelines"])
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    lengths: list[tuple[int, str]] = []
    lines = 0
    for root in map(Path, args.roots):
        lengths.extend(function_lengths(root))
        lines += sum(len(p.read_text(encoding="utf-8").splitlines()) for p in root.rglob("*.py"))
    lengths.sort(reverse=True)
    print(f"{len(lengths)} functions, {lines} lines in {', '.join(args.roots)}")
    print("| lines | function |\n|---:|---|")
    for length, where in lengths[: args.top]:
        print(f"| {length} | `{where}` |")


if __name__ == "__main__":
    main()
