"""Which model file the settings point at: the user's, or the cached stand-in."""

from __future__ import annotations

from pathlib import Path

from radstream.errors import ModelFileInvalid
from radstream.model.builder import ensure_standin
from radstream.settings import Settings


def resolve_model_path(settings: Settings) -> Path:
    """``model.path`` if set (it must exist), else the stand-in, built on first use."""
    if settings.model.path is not None:
        path = settings.model.path.expanduser()
        if not path.is_file():
            raise ModelFileInvalid(f"model file {path} does not exist")
        return path
    return ensure_standin(settings.models_dir)
