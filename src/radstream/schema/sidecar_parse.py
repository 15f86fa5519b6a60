"""Turn untrusted sidecar bytes into a :class:`Sidecar`, or a typed error.

Limits are checked before parsing so that a hostile sidecar (huge, or nested 100,000 deep)
costs almost nothing and cannot crash the worker with a RecursionError.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from radstream.errors import (
    SidecarInvalidField,
    SidecarInvalidJson,
    SidecarMissingField,
    SidecarNotObject,
    SidecarNotUtf8,
    SidecarTooDeep,
    SidecarTooLarge,
    StudyIdInvalid,
)
from radstream.schema.sidecar import PATIENT_FIELDS, STUDY_ID_RULE, Sidecar

MAX_SIDECAR_BYTES = 1024 * 1024
MAX_SIDECAR_DEPTH = 32


def parse_sidecar(
    data: bytes, *, max_bytes: int = MAX_SIDECAR_BYTES, max_depth: int = MAX_SIDECAR_DEPTH
) -> Sidecar:
    """Validate sidecar bytes. Raises a ``Sidecar*`` or ``StudyIdInvalid`` error on bad input."""
    if len(data) > max_bytes:
        raise SidecarTooLarge(
            f"sidecar is {len(data)} bytes; the limit is {max_bytes}", size=len(data)
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SidecarNotUtf8(f"sidecar is not UTF-8: invalid byte at offset {exc.start}") from exc
    depth = json_depth(text)
    if depth > max_depth:
        raise SidecarTooDeep(f"sidecar nests {depth} levels; the limit is {max_depth}")
    try:
        raw: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SidecarInvalidJson(
            f"sidecar is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except (ValueError, RecursionError) as exc:
        # e.g. an integer literal longer than Python's 4300-digit conversion limit
        raise SidecarInvalidJson(f"sidecar JSON cannot be read: {exc}") from exc
    if not isinstance(raw, dict):
        raise SidecarNotObject(f"sidecar must be a JSON object, got {type(raw).__name__}")
    return validate_sidecar_dict(raw)


def validate_sidecar_dict(raw: dict[str, Any]) -> Sidecar:
    """Validate an already-parsed sidecar object, mapping pydantic errors to typed errors."""
    try:
        return Sidecar.model_validate(raw)
    except ValidationError as exc:
        raise _typed_error(exc) from None


def _typed_error(
    exc: ValidationError,
) -> SidecarMissingField | SidecarInvalidField | StudyIdInvalid:
    errors = exc.errors(include_url=False)
    missing = [_loc(e["loc"]) for e in errors if e["type"] == "missing"]
    if missing:
        return SidecarMissingField(
            f"sidecar lacks required field(s): {', '.join(missing)}", fields=missing
        )
    first = errors[0]
    field = _loc(first["loc"])
    if field == "study_id":
        return StudyIdInvalid(
            f"study_id {shown_value(first['loc'], first.get('input'))} is not a valid study id: "
            f"{STUDY_ID_RULE}"
        )
    problems = "; ".join(
        f"{_loc(e['loc'])}: {_reason(e['msg'])} (got {shown_value(e['loc'], e.get('input'))})"
        for e in errors
    )
    return SidecarInvalidField(f"sidecar field(s) invalid: {problems}", fields=[field])


SHOWN_CHARS = 40
"""How much of a rejected value a message shows: enough to recognise it, not a dump."""


def shown_value(loc: tuple[int | str, ...], value: object) -> str:
    """A rejected value for a message: truncated, and never a patient field's value."""
    if loc and str(loc[0]) in PATIENT_FIELDS:
        return "a value not shown: patient field"
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def _reason(message: str) -> str:
    # pydantic prefixes custom validators' messages with "Value error, ".
    return message.removeprefix("Value error, ")


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(root)"


def json_depth(text: str) -> int:
    """Maximum nesting depth of JSON text, without parsing it (brackets inside strings ignored)."""
    # Cheap exit: fewer opening brackets than the limit cannot nest deeper than that.
    opens = text.count("{") + text.count("[")
    if opens <= MAX_SIDECAR_DEPTH:
        return opens
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "}]":
            depth -= 1
    return deepest
