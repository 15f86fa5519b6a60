"""The AWS emulator (ministack) for the AWS tests: installed into .emu/, bound to 127.0.0.1."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Emulator:
    """A running ministack: its endpoint URL and log file."""

    url: str
    log: Path


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """One ministack for the whole session, with dummy credentials in the environment.

    It serves HTTPS and enforces IAM: the stack's TLS-only bucket policies hold, and each
    Lambda runs with its own role's permissions only, so an end-to-end run that succeeds
    shows the least-privilege roles are also sufficient.
    """
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        launcher = importlib.import_module("emulator")
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    data_dir = tmp_path_factory.mktemp("ministack")
    log = data_dir / "ministack.log"
    proc, url = launcher.start(data_dir, log, tls=True, iam=True)
    patch = pytest.MonkeyPatch()
    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CA_BUNDLE": str(launcher.ca_bundle(data_dir)),
    }.items():
        patch.setenv(name, value)
    try:
        yield Emulator(url=url, log=log)
    finally:
        patch.undo()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except Exception:
            proc.kill()


@pytest.fixture(scope="session")
def lambda_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Lambda package, built once per session for the emulator's Python (3.11)."""
    from radstream.aws.package import build_package

    out = tmp_path_factory.mktemp("lambda-package")
    build_package(out, python_version="3.11", architecture="x86_64")
    return out
