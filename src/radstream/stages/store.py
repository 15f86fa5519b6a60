"""Stage 4, store: write the result object; and the failure path's record_failure."""

from __future__ import annotations

from contextlib import suppress

from radstream import layout
from radstream.errors import StoreKeyInvalid
from radstream.layout import Bucket
from radstream.schema.outcome import Failure, ModelRef, Result
from radstream.stages.context import ExecutionContext
from radstream.stages.outcomes import build_failure, build_result, unvalidated_outcome_ids
from radstream.stages.ports import ObjectStore, StagePorts

# Re-exported for callers written before radstream.layout; new code uses layout directly.
RESULTS_BUCKET: str = Bucket.RESULTS
result_key = layout.result_key
failure_key = layout.failure_key


def _encode(model: Result | Failure) -> bytes:
    return model.model_dump_json(indent=2).encode()


def store_result(store: ObjectStore, result: Result) -> str:
    """Write the result, and remove a failure left by an earlier upload of the same image.

    Written before the stale failure is removed, so a reader never sees neither. A DICOM
    drop that failed before its header was read had its failure filed under its upload's
    folder and file (``failed/{folder}/{stem}.json``), not under the header's study and
    SOP instance: that one is removed too, so the upload ends with one outcome object.
    """
    key = layout.result_key(result.study_id, result.image_id)
    store.put(Bucket.RESULTS, key, _encode(result))
    stale = {layout.failure_key(result.study_id, result.image_id)}
    if layout.is_dicom_drop(result.sidecar_key):
        drop_failure = layout.failure_key(*unvalidated_outcome_ids(result.sidecar_key))
        # A key no store takes could not have been written by record_failure either.
        with suppress(StoreKeyInvalid):
            stale.add(layout.check_key(drop_failure))
    for failure in sorted(stale):
        store.delete(Bucket.RESULTS, failure)
    return key


def record_failure(store: ObjectStore, failure: Failure) -> str:
    """Write the failure, and remove a result left by an earlier upload of the same image.

    The latest run for an image decides its outcome: one image, one outcome object.
    """
    key = layout.failure_key(failure.study_id, failure.image_id)
    store.put(Bucket.RESULTS, key, _encode(failure))
    store.delete(Bucket.RESULTS, layout.result_key(failure.study_id, failure.image_id))
    return key


def run(ports: StagePorts, context: ExecutionContext) -> ExecutionContext:
    """The ``store`` stage: build the result from the context and write it."""
    model = context.model
    if model is None:
        # A local checkpoint written before infer recorded its model: ask the model.
        info = ports.model().info
        model = ModelRef(
            name=info.name, version=info.version, sha256=info.sha256, backend=ports.options.backend
        )
    key = store_result(ports.store, build_result(context, model))
    return context.model_copy(update={"outcome_key": key})


def run_record_failure(ports: StagePorts, context: ExecutionContext) -> ExecutionContext:
    """The ``record_failure`` stage: write the failure object of ``context.failure``."""
    error = context.failure
    if error is None:
        raise RuntimeError("record_failure reached without an error in the context")
    failure = build_failure(context, error, attempts=error.attempt or 1)
    key = record_failure(ports.store, failure)
    return context.model_copy(update={"outcome_key": key})
