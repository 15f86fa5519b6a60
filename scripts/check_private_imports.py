"""Fail when a module in src/radstream uses another module's private (``_name``) symbol.

import-linter checks which modules import which; this checks what they take. A name with
one leading underscore is its module's own business, so ``from radstream.x import _helper``
and ``x._helper(...)`` (with ``x`` an imported radstream module) are refused outside
``radstream.x`` itself. Dunders (``__version__``) are public. Tests are not checked.

Usage: ``python scripts/check_private_imports.py [SRC_DIR]`` (default ``src``); exit 1 and
one line per use when there is any. ``make test`` runs it after ``lint-imports``.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "radstream"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def module_name(path: Path, src: Path) -> str:
    """``src/radstream/a/b.py`` -> ``radstream.a.b``; a package's ``__init__`` is the package."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(dotted: str, src: Path) -> bool:
    """Whether ``dotted`` names a module or package under ``src`` (not a class or function)."""
    path = src.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or path.is_dir()


def _resolve(node: ast.ImportFrom, here: str, is_package: bool) -> str:
    """The absolute module an ``ImportFrom`` reads from (relative imports resolved)."""
    if node.level == 0:
        return node.module or ""
    base = here.split(".")
    # In a package's __init__, one dot is the package itself; in a module, its parent.
    keep = len(base) - node.level + (1 if is_package else 0)
    return ".".join([*base[:keep], *([node.module] if node.module else [])])


def private_uses(path: Path, src: Path) -> Iterator[str]:
    """Each use of another module's private name in ``path``, as ``file:line: message``."""
    here = module_name(path, src)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    aliases: dict[str, str] = {}  # local name -> the radstream module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = _resolve(node, here, path.name == "__init__.py")
            if not (source == PACKAGE or source.startswith(PACKAGE + ".")):
                continue
            for alias in node.names:
                if _private(alias.name) and source != here:
                    yield f"{path}:{node.lineno}: imports {alias.name} from {source}"
                # `from radstream.lake import compact` binds a module; remember it.
                if _is_module(f"{source}.{alias.name}", src):
                    aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE + ".") and alias.asname:
                    aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and _private(node.attr)
            and aliases[node.value.id] != here
        ):
            yield f"{path}:{node.lineno}: uses {node.attr} of {aliases[node.value.id]}"


def main(argv: list[str]) -> int:
    """Check every module under the source directory; print each finding."""
    src = Path(argv[0] if argv else "src")
    found = [
        use for path in sorted((src / PACKAGE).rglob("*.py")) for use in private_uses(path, src)
    ]
    for line in found:
        print(line)
    if found:
        print(f"{len(found)} private name(s) used across modules", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
