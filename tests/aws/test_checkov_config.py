"""`.checkov.yaml`: every skipped check carries its reason, and the config covers the
variants `make checkov` scans."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_skipped_check_has_a_one_line_reason() -> None:
    lines = (ROOT / ".checkov.yaml").read_text(encoding="utf-8").splitlines()
    start = lines.index("skip-check:")
    skips = [(i, line.strip()) for i, line in enumerate(lines) if i > start and line.strip()]
    assert skips, "no skip-check entries"
    checks = [(i, text) for i, text in skips if text.startswith("- ")]
    assert checks
    for index, text in checks:
        assert re.fullmatch(r"- CKV2?_AWS_\d+", text), text
        reason = lines[index - 1].strip()
        assert reason.startswith("# ") and len(reason) > 40, f"{text} has no reason: {reason!r}"
    assert len({text for _, text in checks}) == len(checks)  # no check skipped twice


def test_make_checkov_scans_every_variant() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for flag in ("--kms", "--express-artifacts", "--state-machine=EXPRESS", "--model-endpoint",
                 "--architecture=arm64"):  # fmt: skip
        assert flag in makefile, flag
    assert re.search(r"^test: .*\bcheckov\b", makefile, re.MULTILINE)
