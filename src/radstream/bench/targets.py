"""What a benchmark runs against: the embedded engine, or a deployed AWS stack.

A target gives the load driver a store to upload to and a source of completions, reads the
telemetry rows of the run back, and says what it ran (workers, model). On a stack, outcomes
are seen by LISTing the results bucket (so latencies are upper bounds, see
:mod:`radstream.aws.completions`) and telemetry is read from the Parquet objects Firehose
writes to the telemetry bucket.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pyarrow as pa
from pydantic import JsonValue

from radstream.errors import RadStreamError
from radstream.lake.parquet_sink import read_lake
from radstream.layout import TELEMETRY, Bucket
from radstream.loadgen.driver import DriveResult
from radstream.local.completions import CompletionWatcher
from radstream.local.engine import LocalEngine
from radstream.local.pool import WorkerPool
from radstream.model import read_model_info
from radstream.model.loading import resolve_model_path
from radstream.settings import Settings
from radstream.stages.completions import CompletionSource, outcome_key_of
from radstream.stages.ports import ObjectStore

if TYPE_CHECKING:
    from radstream.aws.s3_store import S3ObjectStore
    from radstream.aws.session import StackRef


@dataclass(frozen=True)
class Drive:
    """What the load driver needs while a run is in progress."""

    store: ObjectStore
    completions: CompletionSource
    after_send: Callable[[], object]  # keeps the pipeline alive between sends


class BenchTarget(Protocol):
    """Where uploads go, where outcomes and telemetry come from, and what ran them."""

    # Local worker processes; None for a stack, where Lambda scales by itself.
    workers: int | None
    # True when telemetry can land after the outcomes (Firehose buffers it).
    telemetry_delayed: bool

    def config(self) -> dict[str, JsonValue]:
        """What the manifest records about the target."""
        ...

    def drive(self) -> AbstractContextManager[Drive]:
        """The pipeline, running, for the length of the load."""
        ...

    def lake(self, since: float) -> AbstractContextManager[Callable[[], pa.Table]]:
        """A reader of the telemetry rows written since ``since`` (and possibly more)."""
        ...

    def model(self, run: DriveResult) -> dict[str, str]:
        """Name, version and SHA-256 of the model the run used."""
        ...


class LocalTarget:
    """The embedded engine and a worker pool on this machine."""

    telemetry_delayed = False

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.workers: int | None = settings.engine.workers
        info = read_model_info(resolve_model_path(settings))
        self._model = {"name": info.name, "version": info.version, "sha256": info.sha256}

    def config(self) -> dict[str, JsonValue]:
        """The worker count: it bounds what the run could reach."""
        return {"workers": self.workers}

    @contextmanager
    def drive(self) -> Iterator[Drive]:
        """Engine and pool; on exit the pool has stopped and flushed its telemetry."""
        settings = self._settings
        with LocalEngine.open(settings) as engine, WorkerPool(settings) as pool:
            pool.wait_ready(engine.executor)
            yield Drive(engine.store, CompletionWatcher(engine.conn), pool.supervise)

    @contextmanager
    def lake(self, since: float) -> Iterator[Callable[[], pa.Table]]:
        """The local lake, read whole: the rows are filtered by study afterwards."""
        yield lambda: read_lake(self._settings.lake_dir)

    def model(self, run: DriveResult) -> dict[str, str]:
        """The model file the workers loaded."""
        return self._model


class StackTarget:
    """A deployed stack: uploads to its images bucket, outcomes from its results bucket."""

    workers: int | None = None
    telemetry_delayed = True

    def __init__(self, stack: StackRef, run_tag: str) -> None:
        from radstream.aws.outcomes import stack_store

        self._stack = stack
        self._run_tag = run_tag
        # Resolved before anything is generated or sent: a missing stack fails at once.
        self._store = stack_store(stack)

    def config(self) -> dict[str, JsonValue]:
        """The stack, and the emulator endpoint when there is one."""
        target = self._stack.target
        return {
            "workers": None,
            "stack": self._stack.name,
            "region": target.region,
            "endpoint_url": target.endpoint_url,
        }

    @contextmanager
    def drive(self) -> Iterator[Drive]:
        """The stack needs no setup; the watcher LISTs only this run's outcome keys."""
        from radstream.aws.completions import S3CompletionWatcher

        watcher = S3CompletionWatcher(self._store, study_prefix=f"{self._run_tag}-")
        yield Drive(self._store, watcher, lambda: None)

    @contextmanager
    def lake(self, since: float) -> Iterator[Callable[[], pa.Table]]:
        """A temporary local copy of the run's telemetry objects, refreshed on each read."""
        with tempfile.TemporaryDirectory(prefix="radstream-bench-lake-") as tmp:
            yield S3LakeCopy(self._store, Path(tmp), since).read

    def model(self, run: DriveResult) -> dict[str, str]:
        """The model named in a result object of the run: what the stack actually ran."""
        for sidecar_key, completion in run.completions.items():
            if completion.kind != "result":
                continue
            try:
                result = json.loads(
                    self._store.get(Bucket.RESULTS, outcome_key_of(sidecar_key, "result"))
                )
            except (RadStreamError, ValueError):
                continue
            model = result.get("model") if isinstance(result, dict) else None
            if isinstance(model, dict):
                return {k: str(model.get(k)) for k in ("name", "version", "sha256")}
        return {}


class S3LakeCopy:
    """The stack's telemetry objects of a run's hours, copied into a local lake layout.

    Firehose names its partitions by arrival time (``telemetry/dt=…/hour=…/``, UTC), so the
    run's rows are in the partitions of the hours since it started; other runs' rows in
    those hours are copied too and filtered out by study id afterwards. Each object is
    downloaded once however often the copy is read.
    """

    # Some slack for this machine's clock running ahead of Firehose's.
    _CLOCK_SLACK_S = 300.0

    def __init__(self, store: S3ObjectStore, root: Path, since: float) -> None:
        self._store = store
        self._root = root
        self._since = since - self._CLOCK_SLACK_S
        self._copied: set[str] = set()

    def read(self) -> pa.Table:
        """Copy objects not copied yet, then read the copy as the local lake is read."""
        for prefix in self._prefixes(time.time()):
            for key in self._store.list(Bucket.TELEMETRY, prefix):
                if key in self._copied:
                    continue
                parts = key.split("/")
                if len(parts) < 4:
                    continue
                # The reader takes only visible ``*.parquet`` names, and Firehose on AWS
                # adds no suffix to its objects unless told to.
                name = "_".join(parts[3:]).lstrip(".")
                name = name if name.endswith(".parquet") else f"{name}.parquet"
                path = self._root / parts[1] / parts[2] / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(self._store.get(Bucket.TELEMETRY, key))
                self._copied.add(key)
        return read_lake(self._root)

    def _prefixes(self, now: float) -> list[str]:
        hour = 3600.0
        start = int(self._since // hour)
        return [
            TELEMETRY + datetime.fromtimestamp(h * hour, tz=UTC).strftime("dt=%Y-%m-%d/hour=%H/")
            for h in range(start, int(now // hour) + 1)
        ]
