"""The local runner in process: declared stage functions, backoff as on AWS, private logs."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from radstream.aws.asl import render_state_machine, state_name
from radstream.loadgen.study import make_study
from radstream.local.database import connect
from radstream.local.executor import Executor
from radstream.local.pool import parent_log_setup
from radstream.local.runner import ExecutionRunner
from radstream.local.store import FolderStore
from radstream.logs import configure
from radstream.pipeline.definition import PIPELINE, RetryPolicy
from radstream.settings import Settings
from radstream.stages.registry import stage_function
from support.clocks import FakeClock
from support.fakes import FixedLogitsModel, ListSink

PATIENT_ID = "PID-ZEBRA-90210"
PATIENT_NAME = "Quixote^Dulcinea"


class Harness:
    """One worker's runner over a real folder store and SQLite executor, on a fake clock."""

    def __init__(self, tmp_path: Path, model: FixedLogitsModel, **engine: float) -> None:
        self.clock = FakeClock()
        settings = Settings(
            data_dir=tmp_path / "data",
            engine={"lease_s": 30.0, "image_wait_s": 5.0, "retry_base_s": 0.2, **engine},
        )
        self.executor = Executor(connect(tmp_path / "engine.db"), lease_s=30.0, clock=self.clock)
        self.store = FolderStore(tmp_path / "buckets", listener=self.executor)
        self.sink = ListSink()
        self.settings = settings
        self.runner = ExecutionRunner(
            store=self.store,
            executor=self.executor,
            model=model,
            sink=self.sink,
            settings=settings,
            worker_id="w1",
            rng=lambda: 0.37,
            clock=self.clock,
        )

    def upload(self, folder: str, name: str, data: bytes) -> None:
        self.store.put("images", f"incoming/{folder}/{name}", data)

    def run_until_idle(self, max_steps: int = 200) -> None:
        for _ in range(max_steps):
            claim = self.executor.claim("w1")
            if claim is not None:
                self.runner.run(claim)
            elif self.executor.idle():
                return
            else:
                self.clock.advance(1.0)  # a retry waits for its backoff
        raise AssertionError("the executions did not finish")


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Capture RadStream's JSON log lines; restore the logger afterwards."""
    logger = logging.getLogger("radstream")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    stream = io.StringIO()
    configure(level="DEBUG", fmt="json", stream=stream)
    try:
        yield stream
    finally:
        logger.handlers[:] = saved[0]
        logger.setLevel(saved[1])
        logger.propagate = saved[2]


def _sidecar_with_patient(sidecar: bytes, study_id: str | None = None) -> bytes:
    fields = json.loads(sidecar)
    fields["patient_id"] = PATIENT_ID
    fields["patient_name"] = PATIENT_NAME
    if study_id is not None:
        fields["study_id"] = study_id
    return json.dumps(fields).encode()


def test_every_declared_stage_function_resolves_with_one_signature() -> None:
    for stage in PIPELINE.all_stages:
        function = stage_function(stage)
        assert callable(function), stage.name
        assert list(function.__annotations__) == ["ports", "context", "return"], stage.name


def test_logs_carry_execution_and_stage_but_no_patient_value(
    tmp_path: Path, log_lines: io.StringIO
) -> None:
    # The second inference hits a bug: an unexpected error, logged with its traceback.
    harness = Harness(tmp_path, FixedLogitsModel(fail_on={2}))
    rng = np.random.default_rng(7)
    for i in range(3):
        study = make_study(f"ok-{i}", "png", rng, width=96, height=96)
        harness.upload(study.study_id, study.image_name, study.image)
        harness.upload(
            study.study_id, f"{study.study_id}.json", _sidecar_with_patient(study.sidecar)
        )
    # A sidecar whose study id does not match its folder: invalid input.
    bad = make_study("bad", "png", rng, width=96, height=96)
    harness.upload("bad", bad.image_name, bad.image)
    harness.upload("bad", "bad.json", _sidecar_with_patient(bad.sidecar, study_id="other"))
    # A sidecar whose image never comes: retried (warnings), then IMAGE_MISSING.
    late = make_study("late", "png", rng, width=96, height=96)
    harness.upload("late", "late.json", _sidecar_with_patient(late.sidecar))
    harness.run_until_idle()

    text = log_lines.getvalue()
    assert PATIENT_ID not in text and PATIENT_NAME not in text
    assert "Quixote" not in text and "ZEBRA" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    rows = {row["id"]: row for row in harness.executor.executions()}
    assert len(rows) == 5
    finished = [line for line in lines if line["msg"].startswith("execution ")]
    assert sorted(line["execution_id"] for line in finished) == sorted(rows)
    for line in finished:
        row = rows[line["execution_id"]]
        assert line["level"] == "info" and "stage" in line
        assert line["msg"] == f"execution {row['state']}"
        assert line.get("code") == row["error_code"]
    codes = sorted(row["error_code"] or "" for row in rows.values())
    assert codes == ["", "", "IMAGE_MISSING", "INTERNAL_ERROR", "STUDY_ID_MISMATCH"]
    retries = [line for line in lines if line["level"] == "warning"]
    assert retries and {line["code"] for line in retries} == {"IMAGE_NOT_YET_PRESENT"}
    assert all(line["stage"] == "validate" and line["execution_id"] in rows for line in retries)
    [bug] = [line for line in lines if line["level"] == "error"]
    assert bug["stage"] == "infer" and bug["execution_id"] in rows
    assert "RuntimeError: a bug in the model client" in bug["traceback"]


def test_local_retries_wait_as_the_rendered_step_functions_retrier(tmp_path: Path) -> None:
    # Whole seconds, so that Step Functions can run the very same backoff.
    harness = Harness(
        tmp_path, FixedLogitsModel(), image_wait_s=1e6, retry_base_s=1.0, retry_max_s=4.0
    )
    harness.upload("s", "s.json", make_study("s", "png", np.random.default_rng(1)).sidecar)
    delays: list[float] = []
    for _ in range(5):
        claim = harness.executor.claim("w1")
        assert claim is not None
        harness.runner.run(claim)
        [row] = harness.executor.executions()
        delays.append(row["not_before"] - harness.clock.now)
        harness.clock.now = row["not_before"]

    engine = harness.settings.engine
    policy = RetryPolicy(base_s=engine.retry_base_s, max_s=engine.retry_max_s)
    asl = render_state_machine(function_arns=_arns(), retry=policy, artifacts_bucket="a")
    [retrier] = [
        r
        for r in asl["States"][state_name("validate")]["Retry"]
        if "IMAGE_NOT_YET_PRESENT" in r["ErrorEquals"]
    ]
    assert retrier["JitterStrategy"] == "FULL"

    def step_functions_wait(retry: int, u: float) -> float:
        # AWS: with FULL jitter, a random wait between 0 and the computed interval, which
        # is IntervalSeconds * BackoffRate ** (retry - 1), capped at MaxDelaySeconds.
        interval = retrier["IntervalSeconds"] * retrier["BackoffRate"] ** (retry - 1)
        return u * min(interval, retrier["MaxDelaySeconds"])

    assert delays == pytest.approx([step_functions_wait(k, 0.37) for k in range(1, 6)])
    assert delays == pytest.approx([0.37, 0.74, 1.48, 1.48, 1.48])


def _arns() -> dict[str, str]:
    return {s.name: f"arn:aws:lambda:eu-west-1:1:function:{s.name}" for s in PIPELINE.all_stages}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("module", "absent"),
    [
        # The infer Lambda with a remote endpoint ships without ONNX Runtime.
        ("radstream.stages.infer", ("radstream.model", "onnxruntime", "numpy")),
        # The handlers module is imported by every Lambda, validate and store included.
        ("radstream.aws.handlers", ("numpy", "cv2", "onnxruntime", "radstream.local")),
        # The prepare Lambda's layer has no OpenCV: nothing on its path may import it.
        ("radstream.stages.prepare, radstream.imaging", ("cv2",)),
    ],
)
def test_importing_leaves_the_heavy_packages_unloaded(module: str, absent: tuple[str, ...]) -> None:
    code = (
        f"import sys, {module}\n"
        f"loaded = [m for m in {absent!r} if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_spawned_workers_repeat_the_parents_log_setup(log_lines: io.StringIO) -> None:
    assert parent_log_setup() == ("DEBUG", "json")
    configure(level="WARNING", fmt="text", stream=log_lines)
    assert parent_log_setup() == ("WARNING", "text")
