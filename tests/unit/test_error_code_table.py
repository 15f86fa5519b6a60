"""README "Error codes" table against the code: every code listed exists, its "retried" column
is the class's ``retryable``, and every code a stage can raise is listed.

The codes live in ``radstream.errors``, except ``MODEL_REQUEST_REJECTED``, which the KServe
client defines next to the HTTP handling that raises it.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import radstream
import radstream.errors as errors
import radstream.model.kserve_client as kserve_client
from radstream.errors import RadStreamError

ROOT = Path(__file__).resolve().parents[2]
SRC = Path(radstream.__file__).resolve().parent
README = ROOT / "README.md"

# Codes for the operator's commands (deploy, package, Athena queries): raised by the CLI
# and the deploy tooling, never by a stage, so never in a failure object.
COMMAND_ONLY = {
    "STACK_NOT_FOUND": "aws deploy / destroy / status",
    "DEPLOY_FAILED": "aws deploy",
    "PACKAGE_TOO_LARGE": "aws package",
    "QUERY_FAILED": "lake query --athena",
}

# Where a stage's code runs: what a stage raises comes from these modules.
STAGE_MODULES = [
    "stages",
    "imaging",
    "model",
    "kserve",
    "schema",
    "layout.py",
    "local/store.py",
    "local/runner.py",
    "aws/s3_store.py",
    "aws/handlers.py",
]
# model/export_txrv.py is the `model export-txrv` command, not something a stage imports.
NOT_STAGE = {SRC / "model" / "export_txrv.py"}


def _readme_table() -> dict[str, bool]:
    """code -> retried, from the table under "### Error codes"."""
    text = README.read_text(encoding="utf-8")
    section = text.split("### Error codes", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, bool] = {}
    for line in section.splitlines():
        found = re.match(r"\|\s*`([A-Z0-9_]+)`\s*\|\s*(yes|no)\s*\|", line)
        if found:
            assert found[1] not in rows, f"{found[1]} is listed twice"
            rows[found[1]] = found[2] == "yes"
    assert len(rows) >= 30, "the error-code table was not found where it used to be"
    return rows


def _code_classes() -> dict[str, type[RadStreamError]]:
    """code -> class, for every class that sets its own code in errors.py or the client."""
    classes: dict[str, type[RadStreamError]] = {}
    for module in (errors, kserve_client):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(cls, RadStreamError)
                and cls.__module__ == module.__name__
                and "code" in vars(cls)
            ):
                assert cls.code not in classes, f"two classes claim {cls.code}"
                classes[cls.code] = cls
    return classes


def _stage_sources() -> dict[Path, str]:
    paths: list[Path] = []
    for name in STAGE_MODULES:
        target = SRC / name
        paths.extend(sorted(target.rglob("*.py")) if target.is_dir() else [target])
    return {p: p.read_text(encoding="utf-8") for p in paths if p not in NOT_STAGE}


def test_the_one_code_outside_errors_py_is_found() -> None:
    classes = _code_classes()
    outside = {c for c, cls in classes.items() if cls.__module__ != errors.__name__}
    assert outside == {"MODEL_REQUEST_REJECTED"}


def test_every_listed_code_exists_and_its_retried_column_is_retryable() -> None:
    classes = _code_classes()
    table = _readme_table()
    missing = sorted(set(table) - set(classes))
    assert not missing, f"README lists codes no class defines: {missing}"
    wrong = {code: retried for code, retried in table.items() if classes[code].retryable != retried}
    assert not wrong, f"README's 'retried' column disagrees with `retryable`: {wrong}"


@pytest.mark.parametrize(
    "code", [code for code in sorted(_code_classes()) if code not in COMMAND_ONLY]
)
def test_every_code_a_stage_can_raise_is_listed(code: str) -> None:
    assert code in _readme_table(), (
        f"{code} is missing from README's error-code table (add a row, or, if no stage "
        "can raise it, add it to COMMAND_ONLY with the command that does)"
    )


def test_command_only_codes_are_not_in_the_failure_table() -> None:
    assert set(COMMAND_ONLY) <= set(_code_classes())
    assert not set(COMMAND_ONLY) & set(_readme_table())


@pytest.mark.parametrize("code", sorted(COMMAND_ONLY))
def test_a_command_only_code_is_not_raised_where_stages_run(code: str) -> None:
    name = _code_classes()[code].__name__
    users = [
        str(p.relative_to(SRC))
        for p, text in _stage_sources().items()
        if re.search(rf"\b{name}\b", text)
    ]
    assert not users, f"{code} ({name}) is used where a stage runs: list it in the README"


def test_the_stage_sources_are_found() -> None:
    # Guards the test above against a moved folder making it vacuous.
    sources = _stage_sources()
    assert len(sources) > 30
    assert any("ImageFileTooLarge" in text for text in sources.values())
