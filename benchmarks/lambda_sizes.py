"""Unzipped size of each Lambda function (code plus its layers), as README's table shows it.

Builds the package as ``radstream aws package`` does (default: Python 3.12, x86_64, the
runtime ``aws deploy`` uses), into a temporary folder unless ``--out`` is given, and prints
one row per group of functions of equal size: MB unzipped and the share of Lambda's
250 MiB (262.1 MB) limit. The first build downloads the manylinux wheels (about 130 MB)
into ``.radstream/wheels/{python}-{arch}``; later builds reuse them.

Run:  .venv/bin/python benchmarks/lambda_sizes.py [--python-version 3.12]
      [--architecture x86_64|arm64] [--out DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from radstream.aws.package import (
    DEFAULT_PYTHON,
    LAMBDA_UNZIPPED_LIMIT,
    STAGE_LAYERS,
    PackageManifest,
    build_package,
)


def rows(manifest: PackageManifest) -> list[tuple[str, float, int]]:
    """(functions, MB unzipped, % of the limit), one row per size, smallest first."""
    by_size: dict[int, list[str]] = defaultdict(list)
    for stage, size in manifest.functions.items():
        by_size[size].append(stage)
    table = []
    for size, stages in sorted(by_size.items()):
        layers = sorted({layer for s in stages for layer in STAGE_LAYERS[s]})
        name = ", ".join(stages) + (f" (code + {' + '.join(layers)})" if layers else "")
        table.append((name, round(size / 1e6, 1), round(100 * size / LAMBDA_UNZIPPED_LIMIT)))
    return table


def main() -> int:
    """Build, then print the table (``--json``: the functions' bytes and the limit)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python-version", default=DEFAULT_PYTHON)
    parser.add_argument("--architecture", default="x86_64", choices=["x86_64", "arm64"])
    parser.add_argument("--out", type=Path, default=None, help="keep the build here")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        manifest = build_package(
            args.out or Path(tmp),
            python_version=args.python_version,
            architecture=args.architecture,
        )
    if args.json:
        print(
            json.dumps(
                {
                    "python_version": manifest.python_version,
                    "architecture": manifest.architecture,
                    "limit_unzipped_bytes": LAMBDA_UNZIPPED_LIMIT,
                    "functions_unzipped_bytes": manifest.functions,
                }
            )
        )
        return 0
    limit_mb = LAMBDA_UNZIPPED_LIMIT / 1e6
    print(
        f"| function (`radstream aws package`, {manifest.architecture}, "
        f"Python {manifest.python_version}) | unzipped | of {limit_mb:.1f} MB |"
    )
    print("|---|---|---|")
    for name, mb, percent in rows(manifest):
        print(f"| {name} | {mb} MB | {percent} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
