"""Step Functions size quotas, measured on what is deployed and what flows through it.

The older test measured the definition RadStream renders before CloudFormation substitutes
anything, against the 1 MiB quota, which it misses by a factor of hundreds. Here:

* the definition as Step Functions receives it, for every template variant, with each
  substitution at its longest (64-character function names in ARNs of the aws-us-gov
  partition, a 63-character bucket name), under the 1,048,576-byte definition quota;
* what passes between states, the quota that user input can reach: a state's input or
  output is limited to 262,144 bytes (256 KiB). A sidecar near RadStream's own 1 MiB
  limit, full of long strings, unknown keys and annotations, must not make the context
  handed from stage to stage (or to RecordFailure) grow with it.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from radstream.aws.template import build_template
from radstream.aws.template.compute import definition_of
from radstream.layout import Bucket
from radstream.loadgen.study import make_study
from radstream.local.database import connect
from radstream.local.executor import Executor
from radstream.local.runner import ExecutionRunner
from radstream.local.store import FolderStore
from radstream.pipeline.definition import PIPELINE
from radstream.settings import Settings
from radstream.stages.context import ExecutionContext
from radstream.stages.registry import stage_function
from support.clocks import FakeClock
from support.fakes import FixedLogitsModel, ListSink

DEFINITION_QUOTA = 1_048_576
PAYLOAD_QUOTA = 262_144
SIDECAR_LIMIT = 1024 * 1024
LONGEST_ARN = "arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:" + "f" * 64
LONGEST_BUCKET = "b" * 63
VARIANTS = [
    {"state_machine_type": machine, "express_artifacts": express, "model_endpoint": endpoint}
    for machine, express, endpoint in itertools.product(
        ("STANDARD", "EXPRESS"), (False, True), (None, "https://model.internal:8443")
    )
]


def _deployed_definition(template: dict[str, Any]) -> str:
    [machine] = [
        r for r in template["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine"
    ]
    text = json.dumps(definition_of(machine, partition="aws-us-gov"))
    for name in machine["Properties"]["DefinitionSubstitutions"]:
        longest = LONGEST_ARN if name.endswith("Arn") else LONGEST_BUCKET
        text = text.replace("${" + name + "}", longest)
    assert "${" not in text, "a substitution was left unmeasured"
    return text


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(str(x) for x in v.values()))
def test_the_deployed_definition_fits_its_quota(variant: dict[str, Any]) -> None:
    text = _deployed_definition(build_template("rs-size", **variant))
    assert LONGEST_ARN in text  # the substitutions were made, so the size is the deployed one
    assert len(text.encode()) < DEFINITION_QUOTA


def _huge_sidecar(study_sidecar: bytes, *, study_id: str | None = None) -> bytes:
    fields = json.loads(study_sidecar)
    fields |= {
        "modality": "M" * 150_000,
        "body_part": "B" * 150_000,
        "annotations": [{"label": "x" * 90, "box": [1, 2, 3, 4]}] * 2_000,
        **{f"unknown_{i}": "u" * 1_000 for i in range(150)},
    }
    if study_id is not None:
        fields["study_id"] = study_id
    raw = json.dumps(fields).encode()
    assert PAYLOAD_QUOTA < len(raw) < SIDECAR_LIMIT  # accepted by RadStream, over the quota
    return raw


def _stage_outputs(tmp_path: Path, sidecar: bytes, image: bytes, image_name: str) -> list[int]:
    """Size in bytes of the JSON context after each stage, as a Lambda would return it."""
    clock = FakeClock()
    executor = Executor(connect(tmp_path / "e.db"), lease_s=30.0, clock=clock)
    store = FolderStore(tmp_path / "buckets", listener=executor)
    store.put(Bucket.IMAGES, f"incoming/s/{image_name}", image)
    store.put(Bucket.IMAGES, "incoming/s/s.json", sidecar)
    runner = ExecutionRunner(
        store=store,
        executor=executor,
        model=FixedLogitsModel(),
        sink=ListSink(),
        settings=Settings(data_dir=tmp_path / "data"),
        worker_id="w1",
        clock=clock,
    )
    claim = executor.claim("w1")
    assert claim is not None
    context: ExecutionContext = claim.context
    sizes = []
    for stage in PIPELINE.stages:
        context = stage_function(stage)(runner.ports, context)
        sizes.append(len(json.dumps(context.to_json()).encode()))
    return sizes


def test_a_huge_sidecar_does_not_grow_the_state_payload(tmp_path: Path) -> None:
    study = make_study("s", "png", np.random.default_rng(2), width=96, height=96)
    sizes = _stage_outputs(tmp_path, _huge_sidecar(study.sidecar), study.image, study.image_name)
    assert len(sizes) == len(PIPELINE.stages)
    assert max(sizes) < PAYLOAD_QUOTA // 16, sizes  # small, and far from the quota


def test_a_huge_invalid_sidecar_does_not_grow_the_failure_payload(tmp_path: Path) -> None:
    study = make_study("s", "png", np.random.default_rng(2), width=96, height=96)
    fields = json.loads(_huge_sidecar(study.sidecar))
    fields["view"] = "V" * 200_000  # an invalid value, quoted (truncated) in the message
    raw = json.dumps(fields).encode()
    clock = FakeClock()
    executor = Executor(connect(tmp_path / "e.db"), lease_s=30.0, clock=clock)
    store = FolderStore(tmp_path / "buckets", listener=executor)
    store.put(Bucket.IMAGES, f"incoming/s/{study.image_name}", study.image)
    store.put(Bucket.IMAGES, "incoming/s/s.json", raw)
    runner = ExecutionRunner(
        store=store,
        executor=executor,
        model=FixedLogitsModel(),
        sink=ListSink(),
        settings=Settings(data_dir=tmp_path / "data"),
        worker_id="w1",
        clock=clock,
    )
    claim = executor.claim("w1")
    assert claim is not None
    runner.run(claim)
    [row] = executor.executions()
    assert row["error_code"] == "SIDECAR_INVALID_FIELD"
    # What RecordFailure was handed, and what it wrote: both small.
    assert len(row["context"].encode()) < PAYLOAD_QUOTA // 16
    failure = store.get(Bucket.RESULTS, "failed/s/s.json")
    assert len(failure) < PAYLOAD_QUOTA // 16
