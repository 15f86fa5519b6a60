"""What ``engine.fsync = true`` costs per study on this machine's disk, without the model.

A study's durable writes, as the pipeline makes them: the image and sidecar puts (each an
"object created" event committed to SQLite), the claim, the checkpoints the pipeline
definition asks for, the result put and the finishing commit. No decoding or inference,
so the difference between the two modes is the fsyncs alone, not lost in the noise of
the model's time. Each mode is run ``--rounds`` times, alternating, on a fresh data
directory under ``--dir`` (default: the system temp folder; use the disk you deploy on),
and the median ms per study is reported.

Run:  .venv/bin/python benchmarks/fsync_cost.py [--studies 200] [--rounds 5] [--dir PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from radstream.layout import Bucket, result_key
from radstream.loadgen.uploader import upload_study
from radstream.local.database import connect
from radstream.local.executor import Executor
from radstream.local.store import FolderStore
from radstream.pipeline.definition import PIPELINE
from radstream.stages.context import ExecutionContext

IMAGE_BYTES = 1024 * 1024  # about a 2000x2500 JPEG
RESULT_BYTES = 2000


def one_round(root: Path, studies: int, *, fsync: bool, image: bytes) -> float:
    """Milliseconds per study for ``studies`` studies written end to end."""
    executor = Executor(connect(root / "engine.db", fsync=fsync))
    store = FolderStore(root / "buckets", listener=executor, fsync=fsync)
    checkpoints = [s.next for s in PIPELINE.stages if s.checkpoint and s.next]
    result = b"x" * RESULT_BYTES
    start = time.perf_counter()
    for n in range(studies):
        upload_study(store, folder=f"s{n}", image_name="a.jpg", image=image, sidecar=b"{}")
        claim = executor.claim("bench")
        if claim is None:
            raise RuntimeError("the upload did not start an execution")
        for stage in checkpoints:
            executor.checkpoint(claim, "bench", stage, ExecutionContext(study_id=f"s{n}"))
        key = result_key(f"s{n}", "a")
        store.put(Bucket.RESULTS, key, result)
        executor.finish(claim, "bench", succeeded=True, outcome_key=key)
    return (time.perf_counter() - start) * 1000 / studies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (a real disk)")
    args = parser.parse_args()
    image = np.random.default_rng(3).bytes(IMAGE_BYTES)
    ms: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.rounds):
        for fsync in (False, True):
            with tempfile.TemporaryDirectory(prefix="radstream-fsync-", dir=args.dir) as tmp:
                ms[fsync].append(one_round(Path(tmp), args.studies, fsync=fsync, image=image))
    off, on = statistics.median(ms[False]), statistics.median(ms[True])
    print(
        json.dumps(
            {
                "studies": args.studies,
                "rounds": args.rounds,
                "ms_per_study_fsync_off": round(off, 2),
                "ms_per_study_fsync_on": round(on, 2),
                "fsync_adds_ms_per_study": round(on - off, 2),
                "rounds_ms_off": [round(v, 2) for v in ms[False]],
                "rounds_ms_on": [round(v, 2) for v in ms[True]],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
