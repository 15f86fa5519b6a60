"""Each bad-input kind, run through the real stages, fails with the code ``BAD_KINDS`` gives.

The older check compared each study's ``expected_code`` with ``BAD_KINDS``, the table it was
copied from, so it could not fail. Here the code comes out of the pipeline (the local
runner over a real store and executor, on a fake clock), and a good study built the same
way succeeds, so a kind that stopped being bad, or went bad in another way, is caught.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from radstream.layout import Bucket
from radstream.loadgen.bad_inputs import BAD_KINDS, make_bad_study
from radstream.loadgen.synthetic import make_studies
from radstream.loadgen.uploader import upload_generated
from radstream.local.database import connect
from radstream.local.executor import Executor
from radstream.local.runner import ExecutionRunner
from radstream.local.store import FolderStore
from radstream.settings import Settings
from support.clocks import FakeClock
from support.fakes import FixedLogitsModel, ListSink


def _run_all(tmp_path: Path, studies: dict[str, object]) -> dict[str, str | None]:
    """Upload every study, run until idle; study id -> error code (None: a result)."""
    clock = FakeClock()
    executor = Executor(connect(tmp_path / "e.db"), lease_s=30.0, clock=clock)
    store = FolderStore(tmp_path / "buckets", listener=executor)
    settings = Settings(
        data_dir=tmp_path / "data", engine={"image_wait_s": 5.0, "retry_base_s": 0.2}
    )
    runner = ExecutionRunner(
        store=store,
        executor=executor,
        model=FixedLogitsModel(),
        sink=ListSink(),
        settings=settings,
        worker_id="w1",
        rng=lambda: 0.5,
        clock=clock,
    )
    for study in studies.values():
        upload_generated(store, study)  # type: ignore[arg-type]
    for _ in range(500):
        claim = executor.claim("w1")
        if claim is not None:
            runner.run(claim)
        elif executor.idle():
            break
        else:
            clock.advance(1.0)  # a retry waits for its backoff; a missing image for its wait
    else:
        raise AssertionError("the executions did not finish")
    codes: dict[str, str | None] = {}
    for key in store.list(Bucket.RESULTS, ""):
        kind, study_id = key.split("/")[0], key.split("/")[1]
        document = json.loads(store.get(Bucket.RESULTS, key))
        assert study_id not in codes, f"two outcomes for {study_id}"
        codes[study_id] = document["error"]["code"] if kind == "failed" else None
    return codes


def test_every_bad_kind_fails_in_the_pipeline_with_its_code(tmp_path: Path) -> None:
    rng = np.random.default_rng(23)
    bad = {kind: make_bad_study(kind, f"bad-{i:02d}", rng) for i, kind in enumerate(BAD_KINDS)}
    [good] = make_studies(1, 0, formats=("jpeg",), rng=rng, width=320, height=320)
    studies: dict[str, object] = {s.study_id: s for s in bad.values()}
    studies[good.study_id] = good
    codes = _run_all(tmp_path, studies)
    # The study_id_invalid sidecar names an unsafe id: its outcome is still under its folder.
    got = {kind: codes.get(study.study_id, "no outcome") for kind, study in bad.items()}
    assert got == BAD_KINDS
    assert codes[good.study_id] is None  # the control: built the same way, not bad
