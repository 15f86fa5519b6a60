"""Error codes are the public contract: unique, stable-looking, each with advice."""

from __future__ import annotations

import re

from radstream.errors import RadStreamError, all_error_classes, error_from_exception


def test_codes_are_unique_upper_snake_and_have_hints() -> None:
    classes = all_error_classes()
    codes = [c.code for c in classes]
    assert len(codes) == len(set(codes)), "two error classes share a code"
    for cls in classes:
        assert re.fullmatch(r"[A-Z][A-Z0-9_]+", cls.code), cls
        assert cls.hint.strip(), cls


def test_unexpected_exceptions_are_wrapped_with_a_code() -> None:
    wrapped = error_from_exception(KeyError("x"))
    assert isinstance(wrapped, RadStreamError)
    assert wrapped.code == "INTERNAL_ERROR"
    assert wrapped.to_dict()["message"].startswith("unexpected KeyError")
