"""ministack, the AWS API emulator, started for a test module or session and always stopped.

The launcher is ``scripts/emulator.py`` (it installs the pinned emulator into ``.emu/`` on
first use). :func:`running_emulator` adds what every AWS test needs around it: dummy
credentials and a region in the environment, the emulator's CA bundle when it serves TLS,
and a stop that cannot leak the process, pass or fail.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest

from support.scripts import load_script

REGION = "us-east-1"


@dataclass(frozen=True)
class Emulator:
    """A running ministack: its endpoint URL, its log file and its data directory."""

    url: str
    log: Path
    data_dir: Path


@cache
def launcher() -> ModuleType:
    """``scripts/emulator.py`` as a module, loaded once."""
    return load_script("emulator")


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 10) -> None:
    """Terminate ``proc``; kill it if it has not exited after ``timeout_s``."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def running_emulator(
    data_dir: Path, *, tls: bool = False, iam: bool = False, region: str = REGION
) -> Iterator[Emulator]:
    """Start ministack in ``data_dir``; yield it with dummy AWS credentials in the environment.

    ``tls``: HTTPS with a self-signed certificate, trusted through ``AWS_CA_BUNDLE`` (so
    TLS-only bucket policies hold). ``iam``: IAM policies are enforced (ministack's AUTH
    mode). The environment is restored and the process stopped on the way out.
    """
    emu = launcher()
    log = data_dir / "ministack.log"
    with pytest.MonkeyPatch.context() as env:
        # botocore signs every request; ministack only checks the signature's policy with iam.
        env.setenv("AWS_ACCESS_KEY_ID", "test")
        env.setenv("AWS_SECRET_ACCESS_KEY", "test")
        env.setenv("AWS_DEFAULT_REGION", region)
        env.delenv("AWS_SESSION_TOKEN", raising=False)
        env.delenv("AWS_PROFILE", raising=False)
        proc, url = emu.start(data_dir, log, tls=tls, iam=iam)
        try:
            if tls:
                env.setenv("AWS_CA_BUNDLE", str(emu.ca_bundle(data_dir)))
            yield Emulator(url=url, log=log, data_dir=data_dir)
        finally:
            stop(proc)
