"""A hostile corpus never takes a worker above 1.5 GB of resident memory.

The corpus (:mod:`hostile_corpus`: decompression bombs, lying headers, cut fragments, a
deflate bomb of 2 GiB in 2 MB) is uploaded to a real folder store, then a real worker
(`radstream run --until-idle --workers 1`, in a fresh process) processes it. Each sample
must end with its typed code, and the peak resident set of that process and its worker,
as the kernel reports it when the process is reaped (``wait4``'s ``ru_maxrss``: the
largest of the process and its waited-for children), must stay under the bound.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hostile_corpus import hostile_corpus

from radstream.layout import Bucket, dicom_drop_key
from radstream.loadgen.uploader import upload_study
from radstream.local.engine import LocalEngine
from radstream.local.outcomes import collect_outcomes
from radstream.settings import Settings

pytestmark = pytest.mark.slow

MEMORY_BOUND_BYTES = 1_500_000_000
"""Issue 11: a hostile corpus never takes a worker above 1.5 GB RSS."""


def test_the_hostile_corpus_fails_with_its_codes_within_the_memory_bound(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    engine = LocalEngine.open(settings)
    corpus = hostile_corpus()
    uploads = {}
    for i, sample in enumerate(corpus):
        if sample.sidecar_less:
            key = dicom_drop_key("hostile", sample.name)
            uploads[sample.name] = engine.store.put(Bucket.IMAGES, key, sample.data)
            continue
        study = f"hostile-{i:02d}"
        sidecar = {"study_id": study, "view": "PA", "timestamp": "2024-01-01T12:00:00Z"}
        uploads[sample.name] = upload_study(
            engine.store,
            folder=study,
            image_name=sample.name,
            image=sample.data,
            sidecar=json.dumps(sidecar).encode(),
        )
    engine.close()

    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "radstream.cli", "run", "--until-idle", "--workers", "1",
                "--data-dir", str(settings.data_dir), "--model", str(settings.model.path),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RADSTREAM_ENGINE__IMAGE_WAIT_S": "1"},
        )  # fmt: skip
        try:
            # Reaped here, not by Popen: wait4 also gives the tree's peak resident set.
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak = usage.ru_maxrss * 1024  # kilobytes on Linux
    output = log.read_text(errors="replace")[-3000:]
    assert proc.returncode == 0, output
    assert peak < MEMORY_BOUND_BYTES, f"peak RSS {peak / 1e6:.0f} MB\n{output}"

    engine = LocalEngine.open(settings)
    try:
        outcomes = collect_outcomes(engine.executor, engine.store, list(uploads.values()))
        by_name = dict(zip(uploads, outcomes, strict=True))
        got = {name: (o.status, o.error_code) for name, o in by_name.items()}
        want = {
            name: ("succeeded", None) if code is None else ("failed", code)
            for name, code in ((s.name, s.expected_code) for s in corpus)
        }
        assert got == want, output
    finally:
        engine.close()
    print(f"hostile corpus: peak RSS {peak / 1e6:.0f} MB of the worker process tree")
