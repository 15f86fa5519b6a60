"""The run manifest: enough to tell two benchmark runs apart and to reproduce one."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from datetime import UTC, datetime
from importlib import metadata

from pydantic import JsonValue

from radstream import __version__
from radstream.bench.report import Machine, Manifest

_PACKAGES = ("onnxruntime", "numpy", "opencv-python-headless", "pillow", "pydicom", "duckdb")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return round(pages * size / 2**30, 1)


def build_manifest(config: dict[str, JsonValue], model: dict[str, str]) -> Manifest:
    """Config (and its hash), versions, machine and model of a run."""
    canonical = json.dumps(config, sort_keys=True, default=str)
    return Manifest(
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        command=" ".join(sys.argv),
        config_hash=hashlib.sha256(canonical.encode()).hexdigest()[:16],
        config=config,
        radstream=__version__,
        python=platform.python_version(),
        packages={p: _version(p) for p in _PACKAGES},
        machine=Machine(
            cpu=_cpu_model(),
            cores=os.cpu_count(),
            memory_gib=_memory_gib(),
            os=platform.platform(),
        ),
        model=model,
    )
