"""Two README claims about the command line, through the real CLI with the heavy parts faked.

* ``radstream demo`` exits non-zero when a study is lost or ends otherwise than it was
  built to (so a script or CI job running the demo notices).
* ``radstream model serve`` warns when it binds a non-loopback address without a token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import radstream.demo as demo
import radstream.model as model_pkg
import radstream.model.loading as loading
import radstream.serving.server as server
from radstream.bench.outcomes import summarise
from radstream.cli import app
from radstream.cli.model import LEGACY_TOKEN_ENV, TOKEN_ENV
from radstream.demo import DemoReport
from radstream.stages.completions import Outcome
from support.fakes import fake_model_info

OK = "incoming/a/a.json"
BAD = "incoming/b/b.json"


def _outcome(key: str, status: str, code: str | None = None) -> Outcome:
    done = None if status == "lost" else 2.0
    return Outcome(
        sidecar_key=key,
        status=status,  # type: ignore[arg-type]
        error_code=code,
        created_at=1.0,
        finished_at=done,
    )


REPORTS = {
    "as-designed": ([_outcome(OK, "succeeded"), _outcome(BAD, "failed", "IMAGE_EMPTY")], 0),
    "lost": ([_outcome(OK, "succeeded"), _outcome(BAD, "lost")], 1),
    "wrong-code": ([_outcome(OK, "succeeded"), _outcome(BAD, "failed", "IMAGE_TRUNCATED")], 1),
    "bad-study-succeeded": ([_outcome(OK, "succeeded"), _outcome(BAD, "succeeded")], 1),
    "good-study-failed": (
        [_outcome(OK, "failed", "INTERNAL_ERROR"), _outcome(BAD, "failed", "IMAGE_EMPTY")],
        1,
    ),
}


@pytest.mark.parametrize("case", list(REPORTS))
def test_demo_exit_status_follows_lost_and_unexpected_outcomes(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcomes, exit_code = REPORTS[case]

    def fake_run_demo(*_args: Any, **_kwargs: Any) -> DemoReport:
        return DemoReport(
            summary=summarise(outcomes),
            outcomes=outcomes,
            expected={OK: None, BAD: "IMAGE_EMPTY"},
            model="fake v1",
        )

    monkeypatch.setattr(demo, "run_demo", fake_run_demo)
    result = CliRunner().invoke(
        app, ["demo", "--studies", "2", "--invalid", "1", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == exit_code, result.output
    if exit_code:
        assert "unexpected" in result.output or "lost" in result.output


def test_the_exit_decision_sees_what_the_report_calls_unexpected() -> None:
    # The CLI's decision rests on DemoReport.unexpected: lost counts there too.
    lost = REPORTS["lost"][0]
    report = DemoReport(
        summary=summarise(lost), outcomes=lost, expected={OK: None, BAD: "IMAGE_EMPTY"}
    )
    assert report.unexpected == [f"{BAD}: expected IMAGE_EMPTY, got lost"]


WARNING = "without a token"


@pytest.mark.parametrize(
    ("host", "token", "warned"),
    [
        ("0.0.0.0", None, True),
        ("10.1.2.3", None, True),
        ("::", None, True),
        ("0.0.0.0", "file", False),
        ("0.0.0.0", "env", False),
        ("127.0.0.1", None, False),
        ("localhost", None, False),
        ("::1", None, False),
    ],
)
def test_serve_warns_on_a_non_loopback_bind_without_a_token(
    host: str, token: str | None, warned: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[Any] = []
    monkeypatch.setattr(loading, "resolve_model_path", lambda _settings: tmp_path / "m.onnx")
    monkeypatch.setattr(model_pkg, "read_model_info", lambda _path: fake_model_info())
    monkeypatch.setattr(server, "serve", lambda config, announce: served.append(config))
    for name in (TOKEN_ENV, LEGACY_TOKEN_ENV):
        monkeypatch.delenv(name, raising=False)
    args = ["model", "serve", "--host", host, "--data-dir", str(tmp_path)]
    if token == "file":
        secret = tmp_path / "token"
        secret.write_text("s3cret\n")
        args += ["--token-file", str(secret)]
    elif token == "env":
        monkeypatch.setenv(TOKEN_ENV, "s3cret")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(served) == 1 and served[0].host == host  # the server was asked to start
    assert (WARNING in result.output) is warned, result.output
    if warned:
        assert host in result.output
