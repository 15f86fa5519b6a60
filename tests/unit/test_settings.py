"""Settings: environment over TOML over defaults; contradictions refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from radstream.settings import Settings, load_settings
from radstream.stages.telemetry import pseudonym


def test_environment_beats_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "rs.toml"
    toml.write_text('data_dir = "from-toml"\n[engine]\nworkers = 3\nlease_s = 9\n')
    monkeypatch.setenv("RADSTREAM_CONFIG", str(toml))
    monkeypatch.setenv("RADSTREAM_ENGINE__WORKERS", "5")
    settings = load_settings()
    assert settings.data_dir == Path("from-toml")
    assert (settings.engine.workers, settings.engine.lease_s) == (5, 9.0)
    assert load_settings(data_dir=tmp_path).data_dir == tmp_path


def test_pseudonymising_without_a_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="pseudonym_key"):
        Settings(telemetry={"pseudonymise": True})


def test_pseudonyms_are_stable_keyed_and_opaque() -> None:
    assert pseudonym("st-1", "k") == pseudonym("st-1", "k")
    assert pseudonym("st-1", "k") != pseudonym("st-1", "other")
    assert "st-1" not in pseudonym("st-1", "k")
