"""scripts/check_private_imports.py, on small made-up packages: what it refuses and allows."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from support.scripts import load_script


@pytest.fixture(scope="module")
def check() -> ModuleType:
    return load_script("check_private_imports")


def _tree(src: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_private_names_across_modules_are_refused(check: ModuleType, tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "radstream/__init__.py": "",
            "radstream/a/__init__.py": "from .b import _inner_ok as _x\n",
            "radstream/a/b.py": "_inner_ok = 1\n_y = 2\nclass K:\n    _z = 3\n",
            "radstream/c.py": (
                "from radstream.a.b import _y\n"
                "from radstream.a import b\n"
                "import radstream.a.b as bb\n"
                "from radstream.a.b import K\n"
                "b._y; bb._y; K._z; b.__name__\n"
            ),
            "radstream/a/d.py": "from ..a.b import _y\nfrom . import b\nb._y\n",
        },
    )
    assert check.main([str(tmp_path)]) == 1
    found = sorted(
        use.split(": ", 1)[1]
        for path in sorted((tmp_path / "radstream").rglob("*.py"))
        for use in check.private_uses(path, tmp_path)
    )
    assert found == [
        "imports _inner_ok from radstream.a.b",  # a package's __init__ is another module
        "imports _y from radstream.a.b",
        "imports _y from radstream.a.b",
        "uses _y of radstream.a.b",
        "uses _y of radstream.a.b",
        "uses _y of radstream.a.b",
    ]


def test_public_and_own_names_pass(check: ModuleType, tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "radstream/__init__.py": "__version__ = '1'\n",
            "radstream/a.py": "from radstream import __version__\n_own = 1\nprint(_own)\n",
            "radstream/b.py": "from radstream.a import __version__\nimport os\nos._exit\n",
        },
    )
    assert check.main([str(tmp_path)]) == 0
