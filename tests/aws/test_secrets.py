"""The functions' secrets come from Secrets Manager once per container."""

from __future__ import annotations

from typing import Any

import pytest

from radstream.aws.secrets import load_secrets


class _Secrets:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.asked: list[str] = []

    def get_secret_value(self, **kwargs: str) -> dict[str, Any]:
        self.asked.append(kwargs["SecretId"])
        return {"SecretString": self.values[kwargs["SecretId"]]}


def test_each_named_secret_becomes_its_setting() -> None:
    secrets = _Secrets({"rs/radstream/model-token": "t0ken"})
    environ = {"SECRET_ID_RADSTREAM_MODEL__TOKEN": "rs/radstream/model-token", "OTHER": "x"}
    assert load_secrets(environ, lambda: secrets) == ["RADSTREAM_MODEL__TOKEN"]
    assert environ["RADSTREAM_MODEL__TOKEN"] == "t0ken"
    assert secrets.asked == ["rs/radstream/model-token"]


def test_no_secret_no_client() -> None:
    def refuse() -> Any:
        raise AssertionError("a client was made with no secret to read")

    assert load_secrets({"RADSTREAM_MODEL__TIMEOUT_S": "5"}, refuse) == []


def test_a_secret_that_cannot_be_read_stops_the_function() -> None:
    with pytest.raises(KeyError):
        load_secrets({"SECRET_ID_RADSTREAM_MODEL__TOKEN": "gone"}, lambda: _Secrets({}))
