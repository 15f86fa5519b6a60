"""Settings you can trust: unknown keys refused with a suggestion, values traced to their
source, and the README's configuration reference generated from the model."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from radstream.settings import (
    REFERENCE_BEGIN,
    REFERENCE_END,
    Settings,
    did_you_mean,
    effective_settings,
    load_settings,
    reference_markdown,
    setting_fields,
    toml_line,
    where_set,
)

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    import os

    for name in list(os.environ):
        if name.startswith("RADSTREAM_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_unknown_keys_are_refused_in_the_file_and_the_environment(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / "radstream.toml").write_text("worker = 1\n")
    with pytest.raises(ValidationError, match="worker"):
        load_settings()
    (clean_env / "radstream.toml").write_text("[engine]\nworkers = 1\n")
    assert load_settings().engine.workers == 1
    monkeypatch.setenv("RADSTREAM_ENGINE__WORKRS", "2")
    with pytest.raises(ValidationError, match="workrs"):
        load_settings()


@pytest.mark.parametrize(
    ("loc", "guess"),
    [
        (("worker",), "engine.workers"),
        (("engine", "worker"), "engine.workers"),
        (("engin", "workers"), "engine.workers"),
        (("model", "endpoint_name"), "model.endpoint_model"),
        (("nothing_like_it",), None),
    ],
)
def test_did_you_mean(loc: tuple[str, ...], guess: str | None) -> None:
    assert did_you_mean(loc) == guess


def test_values_are_traced_to_file_line_environment_or_flag(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / "radstream.toml").write_text(
        '# comment\ndata_dir = "x"\n\n[engine]\nlease_s = 4\n[model]\ntoken = "secret"\n'
    )
    monkeypatch.setenv("RADSTREAM_ENGINE__WORKERS", "3")
    assert toml_line(Path("radstream.toml"), ("engine", "lease_s")) == 5
    assert where_set(("engine", "lease_s")) == "radstream.toml:5"
    assert where_set(("engine", "workers")) == "RADSTREAM_ENGINE__WORKERS"
    assert where_set(("engine", "poll_s")) is None
    rows = {r.key: r for r in effective_settings(load_settings(), {("data_dir",): "--data-dir"})}
    assert (rows["data_dir"].origin, rows["data_dir"].where) == ("flag", "--data-dir")
    assert (rows["engine.lease_s"].origin, rows["engine.lease_s"].value) == ("file", "4.0")
    assert rows["engine.lease_s"].where == "radstream.toml:5"
    assert rows["engine.workers"].origin == "environment"
    assert rows["engine.poll_s"].origin == "default"
    assert rows["model.token"].value == "****"  # secrets are never printed
    assert len(rows) == len(list(setting_fields()))


def test_the_readme_reference_is_generated_from_the_settings_model() -> None:
    text = README.read_text(encoding="utf-8")
    start, end = text.index(REFERENCE_BEGIN), text.index(REFERENCE_END) + len(REFERENCE_END)
    assert text[start:end] + "\n" == reference_markdown(), (
        "README's configuration reference is stale: replace it with `radstream config reference`"
    )
    for key, _field in setting_fields():
        assert f"`{'.'.join(key)}`" in reference_markdown()


def test_every_setting_is_described() -> None:
    assert [".".join(k) for k, f in setting_fields() if not f.description] == []
    assert Settings.model_config.get("extra") == "forbid"
