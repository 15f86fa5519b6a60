"""Stage 4, store: write the result object; and the failure path's record_failure."""

from __future__ import annotations

from radstream.schema.outcome import Failure, Result
from radstream.stages.ports import ObjectStore

RESULTS_BUCKET = "results"


def result_key(study_id: str, image_id: str) -> str:
    """``results/{study_id}/{image_stem}.json``."""
    return f"results/{study_id}/{image_id}.json"


def failure_key(study_id: str, image_id: str) -> str:
    """``failed/{study_id}/{image_stem}.json``."""
    return f"failed/{study_id}/{image_id}.json"


def _encode(model: Result | Failure) -> bytes:
    return model.model_dump_json(indent=2).encode()


def store_result(store: ObjectStore, result: Result) -> str:
    """Write the result, and remove a failure left by an earlier upload of the same image.

    Written before the stale failure is removed, so a reader never sees neither.
    """
    key = result_key(result.study_id, result.image_id)
    store.put(RESULTS_BUCKET, key, _encode(result))
    store.delete(RESULTS_BUCKET, failure_key(result.study_id, result.image_id))
    return key


def record_failure(store: ObjectStore, failure: Failure) -> str:
    """Write the failure, and remove a result left by an earlier upload of the same image.

    The latest upload of an image decides its outcome: one image, one outcome object.
    """
    key = failure_key(failure.study_id, failure.image_id)
    store.put(RESULTS_BUCKET, key, _encode(failure))
    store.delete(RESULTS_BUCKET, result_key(failure.study_id, failure.image_id))
    return key
