"""An arm's settings: dotted ``KEY=VALUE`` pairs on top of the settings, validated.

Keys are those of ``radstream.toml`` (``engine.workers``, ``model.intra_op_threads``,
``cost.storage_class`` …), checked against the :class:`~radstream.settings.Settings` model:
an unknown key is an :class:`UnknownSetting` error naming the keys its section has, and a
bad value is the model's own validation error, as :class:`~radstream.errors.ConfigInvalid`.

Keys under ``serve.`` are not settings of the pipeline but of a model server that the
experiment starts for the arm (``radstream model serve``'s options: ``serve.max_batch_size``,
``serve.instances``, ``serve.autoscale=MIN:MAX`` …); the pipeline's workers then reach the
model through it (``model.endpoint``). That is how batch size and autoscaling, which only the
model server has, run for real on this machine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel, ValidationError

from radstream.errors import ConfigInvalid
from radstream.serving.config import ServeConfig
from radstream.settings import Settings

SERVE_PREFIX = "serve."
# ServeConfig's fields an arm may set; the rest (path, host, port, name, token) belong to
# the experiment, which starts the server on a free local port with the arm's model.
SERVE_KEYS = (
    "max_batch_size",
    "max_queue_delay_ms",
    "max_queue",
    "instances",
    "autoscale",
    "scale_up_delay_s",
    "scale_down_delay_s",
    "intra_op_threads",
)


class UnknownSetting(ConfigInvalid):
    """A ``KEY=VALUE`` pair names a setting that does not exist."""

    code = "SETTING_UNKNOWN"
    hint = "Use the keys of radstream.toml, dotted (engine.workers=2), or serve.* for a server."


def parse_pairs(pairs: Sequence[str]) -> dict[str, str]:
    """``["engine.workers=1", …]`` as a mapping; ConfigInvalid for a pair without ``=``."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigInvalid(f"{pair!r}: expected KEY=VALUE, such as engine.workers=2")
        if key in parsed and parsed[key] != value.strip():
            raise ConfigInvalid(f"{key!r} is given twice with different values")
        parsed[key] = value.strip()
    return parsed


def split_serve(pairs: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The pairs for the settings, and those for a model server (``serve.`` stripped)."""
    settings = {k: v for k, v in pairs.items() if not k.startswith(SERVE_PREFIX)}
    serve = {k[len(SERVE_PREFIX) :]: v for k, v in pairs.items() if k.startswith(SERVE_PREFIX)}
    unknown = sorted(set(serve) - set(SERVE_KEYS))
    if unknown:
        raise UnknownSetting(
            f"unknown model-server setting(s) {', '.join(SERVE_PREFIX + k for k in unknown)}; "
            f"known: {', '.join(SERVE_PREFIX + k for k in SERVE_KEYS)}"
        )
    return settings, serve


def apply_settings(settings: Settings, pairs: Mapping[str, str]) -> Settings:
    """``settings`` with ``pairs`` (dotted keys, no ``serve.``) on top, each one validated."""
    by_section: dict[str, dict[str, str]] = {}
    top: dict[str, str] = {}
    fields = Settings.model_fields
    for key, value in pairs.items():
        section, dot, name = key.partition(".")
        if section not in fields:
            raise UnknownSetting(f"unknown setting {key!r}; sections: {', '.join(sorted(fields))}")
        current = getattr(settings, section)
        if not dot:
            if isinstance(current, BaseModel):
                raise UnknownSetting(f"{key!r} is a section; name one of its keys ({key}.KEY)")
            top[section] = value
            continue
        if not isinstance(current, BaseModel) or name not in type(current).model_fields:
            known = (
                ", ".join(f"{section}.{k}" for k in type(current).model_fields)
                if isinstance(current, BaseModel)
                else "none (not a section)"
            )
            raise UnknownSetting(f"unknown setting {key!r}; known in [{section}]: {known}")
        by_section.setdefault(section, {})[name] = value
    update: dict[str, object] = {}
    for section, values in by_section.items():
        current = getattr(settings, section)
        try:
            update[section] = type(current).model_validate(current.model_dump() | values)
        except ValidationError as exc:
            raise ConfigInvalid(f"[{section}] {_first_error(exc)}") from None
    if "data_dir" in top:
        update["data_dir"] = Path(top.pop("data_dir"))
    if top:  # a future top-level field: refuse rather than set it unvalidated
        raise UnknownSetting(f"cannot set {', '.join(sorted(top))} per arm")
    return settings.model_copy(update=update)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']} (got {err.get('input')!r})"


def _number(key: str, text: str, kind: type[int] | type[float]) -> int | float:
    try:
        return kind(text)
    except ValueError:
        raise ConfigInvalid(f"{SERVE_PREFIX}{key}={text!r}: expected a number") from None


def serve_config(model_path: Path, pairs: Mapping[str, str]) -> ServeConfig:
    """A model server's config for ``model_path`` with an arm's ``serve.`` pairs (stripped).

    ``autoscale`` takes ``MIN:MAX`` (or ``MIN-MAX``); ``off`` keeps a fixed instance count.
    The server listens on a free port of 127.0.0.1.
    """
    values: dict[str, object] = {}
    kinds = {f.name: f.type for f in dataclasses.fields(ServeConfig)}
    for key, text in pairs.items():
        if key not in SERVE_KEYS:
            raise UnknownSetting(f"unknown model-server setting {SERVE_PREFIX}{key}")
        if key == "autoscale":
            if text.lower() in ("off", "none", ""):
                values[key] = None
                continue
            low, sep, high = text.replace("-", ":").partition(":")
            if not sep:
                raise ConfigInvalid(f"{SERVE_PREFIX}autoscale={text!r}: expected MIN:MAX or off")
            values[key] = (int(_number(key, low, int)), int(_number(key, high, int)))
        else:
            values[key] = _number(key, text, int if "int" in str(kinds[key]) else float)
    return ServeConfig(model_path=model_path, port=0, **values)  # type: ignore[arg-type]
