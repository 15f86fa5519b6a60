"""The AWS emulator (ministack) for the AWS tests: installed into .emu/, bound to 127.0.0.1.

Tests using ``emulator`` or ``lambda_package`` are marked ``slow`` (tests/support/slow.py).
The slow tests here get a longer timeout than pytest's default: the first of them on a
fresh machine installs ministack and downloads the Lambda package's wheels, and the stack
end-to-end tests deploy and run a whole stack in the emulator.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.emulator import Emulator, running_emulator

# Seconds; pytest's default (pyproject, [tool.pytest.ini_options] timeout) is 300.
EMULATOR_TIMEOUT_S = 1200


@pytest.hookimpl(trylast=True)  # after tests/conftest.py has marked by fixture
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give the slow AWS tests that set no timeout of their own :data:`EMULATOR_TIMEOUT_S`."""
    here = Path(__file__).parent
    for item in items:
        if (
            item.path.is_relative_to(here)
            and item.get_closest_marker("slow") is not None
            and item.get_closest_marker("timeout") is None
        ):
            item.add_marker(pytest.mark.timeout(EMULATOR_TIMEOUT_S))


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """One ministack for the whole session, with dummy credentials in the environment.

    It serves HTTPS and enforces IAM: the stack's TLS-only bucket policies hold, and each
    Lambda runs with its own role's permissions only, so an end-to-end run that succeeds
    shows the least-privilege roles are also sufficient.
    """
    with running_emulator(tmp_path_factory.mktemp("ministack"), tls=True, iam=True) as emu:
        yield emu


@pytest.fixture(scope="session")
def lambda_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Lambda package, built once per session for the emulator's Python (3.11)."""
    from radstream.aws.package import build_package

    out = tmp_path_factory.mktemp("lambda-package")
    build_package(out, python_version="3.11", architecture="x86_64")
    return out
