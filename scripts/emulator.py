"""Install and start the AWS emulator (ministack) for the AWS end-to-end tests.

ministack is pinned and lives in its own virtual environment (``.emu/``), so its
dependencies never mix with RadStream's. It binds 127.0.0.1 only. DuckDB is installed
beside it because its Firehose Parquet conversion and its Athena both run on DuckDB. Both,
and everything they need, come from ``requirements/emulator.txt``, locked with hashes
(``requirements/emulator.in`` is its source; ``make lock`` refreshes it).

Usage: ``python scripts/emulator.py install`` (idempotent), or import :func:`start`.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EMU = ROOT / ".emu"
LOCK = ROOT / "requirements" / "emulator.txt"


def _stamp() -> Path:
    """Marks ``.emu/`` as installed from this very lock; a changed lock installs again."""
    return EMU / f".installed-{hashlib.sha256(LOCK.read_bytes()).hexdigest()[:16]}"


def python() -> Path:
    """The emulator's interpreter; Lambda code runs on it too."""
    return EMU / "bin" / "python"


def install() -> None:
    """Create ``.emu/`` and install the pinned emulator into it (once)."""
    stamp = _stamp()
    if stamp.exists():
        return
    if not python().exists():
        subprocess.run([sys.executable, "-m", "venv", str(EMU)], check=True)
    subprocess.run(
        [str(python()), "-m", "pip", "install", "--quiet", "--require-hashes", "-r", str(LOCK)],
        check=True,
    )
    stamp.touch()


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ca_bundle(data_dir: Path) -> Path:
    """The emulator's self-signed certificate (with ``tls=True``), for ``AWS_CA_BUNDLE``."""
    return data_dir / "ministack-tls" / "server.crt"


def start(
    data_dir: Path, log: Path, port: int | None = None, *, tls: bool = False, iam: bool = False
) -> tuple[subprocess.Popen[bytes], str]:
    """Start ministack on 127.0.0.1; return the process and its endpoint URL once healthy.

    ``tls``: serve HTTPS with a self-signed certificate (:func:`ca_bundle`), so bucket
    policies that deny non-TLS requests hold. ``iam``: evaluate IAM policies (ministack's
    AUTH mode), so each Lambda runs with exactly its role's permissions.
    """
    install()
    port = port or free_port()
    env = {
        **os.environ,
        "BIND_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "S3_DATA_DIR": str(data_dir / "s3"),
        "TMPDIR": str(data_dir),
        "LOG_LEVEL": "WARNING",
        "LAMBDA_EXECUTOR": "local",
    }
    if tls:
        # The Lambda code runs in ministack's subprocesses, which inherit this.
        env.update(USE_SSL="1", AWS_CA_BUNDLE=str(ca_bundle(data_dir)))
    if iam:
        env["AUTH"] = "true"
    out = log.open("wb")
    proc = subprocess.Popen(
        [str(python()), "-m", "ministack"], env=env, stdout=out, stderr=subprocess.STDOUT
    )
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    # The health probe only asks whether it is up; the certificate may not exist yet.
    probe = ssl._create_unverified_context() if tls else None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ministack exited with {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"{url}/_ministack/health", timeout=1, context=probe):
                return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"ministack did not become healthy in 60 s; see {log}")


if __name__ == "__main__":
    if sys.argv[1:] == ["install"]:
        install()
    else:
        sys.exit("usage: python scripts/emulator.py install")
