"""The project's ``scripts/*.py`` as modules, for tests that call their functions."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_script(name: str) -> ModuleType:
    """``scripts/{name}.py`` as a module named ``radstream_{name}`` (scripts/ is no package).

    Each call loads it afresh; callers that want one instance cache it.
    """
    spec = importlib.util.spec_from_file_location(f"radstream_{name}", ROOT / f"scripts/{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
