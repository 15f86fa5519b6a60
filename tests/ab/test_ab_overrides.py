"""An arm's KEY=VALUE settings: parsed, validated by the Settings model, typed errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from radstream.ab.overrides import (
    UnknownSetting,
    apply_settings,
    parse_pairs,
    serve_config,
    split_serve,
)
from radstream.errors import ConfigInvalid
from radstream.settings import Settings


def base() -> Settings:
    return Settings(data_dir=Path("/tmp/ab-base"), engine={"workers": 3})


def test_pairs_parse_and_apply_with_types() -> None:
    pairs = parse_pairs(
        ["engine.workers=1", " cost.storage_class = express", "model.timeout_s=2.5"]
    )
    settings = apply_settings(base(), pairs)
    assert settings.engine.workers == 1
    assert settings.cost.storage_class == "express"
    assert settings.model.timeout_s == 2.5
    # Everything not named is kept, the base is not changed.
    assert settings.data_dir == Path("/tmp/ab-base")
    assert base().engine.workers == 3


def test_unknown_key_is_a_typed_error_naming_what_exists() -> None:
    with pytest.raises(UnknownSetting, match=r"engine\.workers"):
        apply_settings(base(), {"engine.wrokers": "2"})
    with pytest.raises(UnknownSetting, match="sections"):
        apply_settings(base(), {"engin.workers": "2"})
    with pytest.raises(UnknownSetting, match="is a section"):
        apply_settings(base(), {"engine": "2"})
    assert issubclass(UnknownSetting, ConfigInvalid)


def test_bad_value_is_refused_by_the_model() -> None:
    with pytest.raises(ConfigInvalid, match="workers"):
        apply_settings(base(), {"engine.workers": "0"})
    with pytest.raises(ConfigInvalid, match="storage_class"):
        apply_settings(base(), {"cost.storage_class": "glacier"})


@pytest.mark.parametrize("pair", ["engine.workers", "=2", ""])
def test_pair_without_key_or_equals_is_refused(pair: str) -> None:
    with pytest.raises(ConfigInvalid, match="KEY=VALUE"):
        parse_pairs([pair])


def test_conflicting_repeats_are_refused() -> None:
    assert parse_pairs(["engine.workers=2", "engine.workers=2"]) == {"engine.workers": "2"}
    with pytest.raises(ConfigInvalid, match="twice"):
        parse_pairs(["engine.workers=2", "engine.workers=3"])


def test_serve_keys_go_to_a_model_server_config() -> None:
    plain, serve = split_serve(
        {"engine.workers": "4", "serve.max_batch_size": "8", "serve.autoscale": "1:3"}
    )
    assert plain == {"engine.workers": "4"}
    config = serve_config(Path("m.onnx"), serve)
    assert config.max_batch_size == 8
    assert config.autoscale == (1, 3)
    assert config.port == 0  # a free port: blocks never collide
    assert serve_config(Path("m.onnx"), {"autoscale": "off"}).autoscale is None
    assert serve_config(Path("m.onnx"), {"max_queue_delay_ms": "2.5"}).max_queue_delay_ms == 2.5


def test_bad_serve_keys_and_values_are_refused() -> None:
    with pytest.raises(UnknownSetting, match=r"serve\.port"):
        split_serve({"serve.port": "80"})
    with pytest.raises(ConfigInvalid, match="number"):
        serve_config(Path("m.onnx"), {"max_batch_size": "many"})
    with pytest.raises(ConfigInvalid, match="MIN:MAX"):
        serve_config(Path("m.onnx"), {"autoscale": "3"})
    with pytest.raises(ConfigInvalid, match="max_batch_size"):
        serve_config(Path("m.onnx"), {"max_batch_size": "0"})
