"""The ``prepare`` stage on real DICOM radiographs: the chest check, and a view that disagrees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from dicom_samples import path_of

from radstream.errors import BodyPartUnsupported
from radstream.imaging import Preprocessing
from radstream.layout import Bucket, upload_key
from radstream.local.store import FolderStore
from radstream.schema.outcome import ModelRef
from radstream.settings import Settings
from radstream.stages import prepare
from radstream.stages.context import ExecutionContext
from radstream.stages.outcomes import build_result
from radstream.stages.ports import StageOptions, StagePorts


class _Tensors:
    def __init__(self) -> None:
        self.kept: dict[str, npt.NDArray[np.float32]] = {}

    def put(self, execution_id: str, tensor: npt.NDArray[np.float32]) -> None:
        self.kept[execution_id] = tensor

    def get(self, execution_id: str) -> npt.NDArray[np.float32]:
        return self.kept[execution_id]


class _Claims:
    def claim(self, context: ExecutionContext) -> bool:
        return True


def _ports(store: FolderStore, options: StageOptions) -> StagePorts:
    def no_model() -> object:
        raise AssertionError("prepare does not use the model")

    return StagePorts(
        store=store,
        model=no_model,  # type: ignore[arg-type]
        preprocessing=lambda: Preprocessing(size=64),
        tensors=_Tensors(),
        claims=_Claims(),
        options=options,
    )


def _context(store: FolderStore, name: str, view: str) -> ExecutionContext:
    key = upload_key("s1", name)
    store.put(Bucket.IMAGES, key, Path(path_of(name)).read_bytes())
    return ExecutionContext(
        execution_id="e1",
        key=upload_key("s1", "img.json"),
        study_id="s1",
        image_id="img",
        sidecar_key=upload_key("s1", "img.json"),
        image_key=key,
        view=view,
        study_timestamp="2024-01-02T03:04:05+00:00",
        sidecar_sha256="0" * 64,
    )


def _result(context: ExecutionContext) -> dict[str, object]:
    done = context.model_copy(
        update={"probabilities": {"Atelectasis": 0.5}, "raw_outputs": {"Atelectasis": 0.0}}
    )
    model = ModelRef(name="m", version="1", sha256="0" * 64, backend="onnxruntime")
    return build_result(done, model).model_dump(mode="json")


def test_the_setting_is_on_by_default() -> None:
    assert Settings().imaging.require_chest is True
    assert StageOptions.from_settings(Settings(), backend="onnxruntime").require_chest is True


def test_extremity_fails_in_the_stage_unless_switched_off(tmp_path: Path) -> None:
    store = FolderStore(tmp_path)
    context = _context(store, "RG3_UNCR.dcm", "AP")
    with pytest.raises(BodyPartUnsupported):
        prepare.run(_ports(store, StageOptions()), context)
    ports = _ports(store, StageOptions(require_chest=False))
    assert prepare.run(ports, context).preprocessing is not None


@pytest.mark.parametrize(("view", "recorded"), [("PA", None), ("pa", None), ("LATERAL", "PA")])
def test_a_view_position_that_disagrees_is_recorded(
    tmp_path: Path, view: str, recorded: str | None
) -> None:
    store = FolderStore(tmp_path)
    context = prepare.run(_ports(store, StageOptions()), _context(store, "RG1_UNCR.dcm", view))
    result = _result(context)
    assert result["view_mismatch"] == recorded
    # It survives a checkpoint (the local executor) or a Step Functions state (AWS).
    again = ExecutionContext.from_json(context.to_json())
    assert _result(again)["view_mismatch"] == recorded
