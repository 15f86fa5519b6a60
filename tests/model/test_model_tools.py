"""Tests for the model tools: import_model, export_txrv and predict_image."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest

from radstream.errors import ImageSizeMismatch, ModelFileInvalid
from radstream.imaging import Preprocessing, prepare_image
from radstream.loadgen.synthetic import make_study
from radstream.model import (
    CHEXPERT_LABELS,
    TXRV_LABELS,
    OnnxModel,
    read_model_info,
    sigmoid,
    to_chexpert,
)
from radstream.model.export_txrv import INSTALL_HINT, ExportDependencyMissing, export_txrv
from radstream.model.importer import import_model, resolve_labels
from radstream.stages.predict import predict_image
from support.models import conv_classifier, save


def run_plain(path: Path, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    result: npt.NDArray[np.float32] = session.run(None, {session.get_inputs()[0].name: batch})[0]
    return result


def batch_of(n: int, size: int) -> npt.NDArray[np.float32]:
    return np.random.default_rng(3).uniform(-1024, 1024, (n, 1, size, size)).astype(np.float32)


# --- import_model ------------------------------------------------------------------------


def test_import_adds_metadata_and_keeps_the_weights(tmp_path: Path) -> None:
    src = save(conv_classifier(size=224), tmp_path / "mine.onnx")
    models = tmp_path / "models"
    dest = import_model(src, models)
    assert dest == models / "mine-v1.onnx"
    info = read_model_info(dest)
    assert info.labels == TXRV_LABELS
    assert (info.name, info.version, info.input_size, info.channels) == ("mine", "1", 224, 1)
    assert (info.input_min, info.input_max) == (-1024, 1024)
    batch = batch_of(2, 224)
    np.testing.assert_array_equal(OnnxModel.load(dest).predict_logits(batch), run_plain(src, batch))
    assert sorted(p.name for p in models.iterdir()) == ["mine-v1.onnx"]  # no temp files left


def test_import_with_a_label_list_a_label_file_and_options(tmp_path: Path) -> None:
    src = save(conv_classifier(size=64, classes=3), tmp_path / "three.onnx")
    dest = import_model(
        src,
        tmp_path,
        labels="Effusion, Cardiomegaly ,Edema",
        input_range=(0, 255.5),
        size=64,
        name="tri",
        version="2b",
    )
    info = read_model_info(dest)
    assert dest.name == "tri-v2b.onnx"
    assert info.labels == ("Effusion", "Cardiomegaly", "Edema")
    assert (info.input_min, info.input_max, info.input_size) == (0, 255.5, 64)

    label_file = tmp_path / "labels.txt"
    label_file.write_text("# outputs in order\nA\n\nB\nC\n", encoding="utf-8")
    dest = import_model(src, tmp_path, labels=str(label_file), size=64, name="tri")
    assert read_model_info(dest).labels == ("A", "B", "C")
    dest = import_model(src, tmp_path, labels=["x", "y", "z"], size=64, name="tri")
    assert read_model_info(dest).labels == ("x", "y", "z")


def test_import_replaces_metadata_of_the_standin(standin_model: Path, tmp_path: Path) -> None:
    dest = import_model(standin_model, tmp_path, name="again", version="7")
    info = read_model_info(dest)
    assert (info.name, info.version, info.labels) == ("again", "7", TXRV_LABELS)
    batch = batch_of(1, 224)
    np.testing.assert_array_equal(
        OnnxModel.load(dest).predict_logits(batch),
        OnnxModel.load(standin_model).predict_logits(batch),
    )


def test_import_folds_external_weights_into_one_file(tmp_path: Path) -> None:
    src = tmp_path / "ext" / "ext.onnx"
    src.parent.mkdir()
    onnx.save(
        conv_classifier(),
        str(src),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="ext.data",
        size_threshold=0,
    )
    dest = import_model(src, tmp_path / "models", size=32)
    assert read_model_info(dest).name == "ext"  # read_model_info refuses external data
    batch = batch_of(1, 32)
    np.testing.assert_array_equal(OnnxModel.load(dest).predict_logits(batch), run_plain(src, batch))


@pytest.mark.parametrize(
    ("model", "kwargs", "message"),
    [
        (
            conv_classifier(classes=18),
            {"labels": "a,b,c"},
            r"has shape \[N, 18\], expected \[N, 3\]",
        ),
        (conv_classifier(size=32), {"size": 224}, r"expected \[N, 1, 224, 224\]"),
        (conv_classifier(channels=3), {}, r"has shape \[N, 3, 32, 32\], expected \[N, 1, 32, 32\]"),
        (
            conv_classifier(classes=18, output_dims=["N", "K"]),
            {"labels": "a,b,c"},
            r"for a batch of 1 the output has shape \[1, 18\], expected \[1, 3\]",
        ),
    ],
    ids=["labels", "size", "channels", "symbolic-output"],
)
def test_import_refuses_a_model_that_does_not_fit(
    tmp_path: Path, model: onnx.ModelProto, kwargs: dict[str, object], message: str
) -> None:
    src = save(model, tmp_path / "bad.onnx")
    options: dict[str, object] = {"size": 32, **kwargs}
    with pytest.raises(ModelFileInvalid, match=message):
        import_model(src, tmp_path / "models", **options)  # type: ignore[arg-type]
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_import_refuses_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ModelFileInvalid, match="does not exist"):
        import_model(tmp_path / "nope.onnx", tmp_path)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not onnx at all" * 10)
    with pytest.raises(ModelFileInvalid, match="not a valid ONNX model"):
        import_model(garbage, tmp_path)
    with pytest.raises(ModelFileInvalid, match=r"label file .* does not exist"):
        resolve_labels(str(tmp_path / "missing-labels.txt"))


def test_label_arguments_are_checked() -> None:
    assert resolve_labels("txrv18") == TXRV_LABELS
    with pytest.raises(ValueError, match="unique"):
        resolve_labels("a,b,a")
    with pytest.raises(ValueError, match="non-empty"):
        resolve_labels([])


def test_import_refuses_bad_arguments(tmp_path: Path) -> None:
    src = save(conv_classifier(), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="input_range"):
        import_model(src, tmp_path, size=32, input_range=(5, 5))
    with pytest.raises(ValueError, match="model name"):
        import_model(src, tmp_path, size=32, name="../escape")


# --- export_txrv -------------------------------------------------------------------------


def test_export_without_torch_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(ExportDependencyMissing) as missing:
        export_txrv(None, tmp_path / "txrv.onnx")
    assert INSTALL_HINT in missing.value.message
    assert INSTALL_HINT == "pip install torch==2.13.0 torchxrayvision"
    assert missing.value.code == "EXPORT_DEPENDENCY_MISSING"
    assert not missing.value.retryable
    assert not (tmp_path / "txrv.onnx").exists()


def _torch_and_xrv() -> tuple[Any, Any]:
    torch = pytest.importorskip(
        "torch", reason="torch is an optional extra (pip install torch==2.13.0 torchxrayvision)"
    )
    xrv = pytest.importorskip(
        "torchxrayvision",
        reason="torchxrayvision is an optional extra (pip install torch==2.13.0 torchxrayvision)",
    )
    return torch, xrv


@pytest.mark.parametrize("whole_model", [True, False], ids=["pickled-model", "state-dict"])
def test_export_reproduces_torchxrayvision(tmp_path: Path, whole_model: bool) -> None:
    torch, xrv = _torch_and_xrv()
    torch.manual_seed(0)
    # Random weights, but torchxrayvision's calibration thresholds for the "all" model.
    threshs = torch.tensor(xrv.models.model_urls["densenet121-res224-all"]["op_threshs"])
    model = xrv.models.DenseNet(op_threshs=threshs).eval()
    weights = tmp_path / "random.pt"
    # torchxrayvision publishes whole pickled models; a state_dict works as well.
    torch.save(model if whole_model else model.state_dict(), str(weights))

    out = export_txrv(weights, tmp_path / "txrv.onnx", weights_name="densenet121-res224-all")
    info = read_model_info(out)
    assert info.labels == TXRV_LABELS
    assert (info.input_size, info.input_min, info.input_max, info.channels) == (224, -1024, 1024, 1)
    graph = onnx.load(str(out)).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch axis

    batch = batch_of(3, 224)
    logits = OnnxModel.load(out).predict_logits(batch)
    with torch.no_grad():
        expected = model(torch.from_numpy(batch)).numpy()  # calibrated probabilities
    np.testing.assert_allclose(sigmoid(logits), expected, atol=1e-4)


def test_export_of_an_uncalibrated_model_keeps_raw_logits(tmp_path: Path) -> None:
    torch, xrv = _torch_and_xrv()
    torch.manual_seed(1)
    model = xrv.models.DenseNet().eval()  # no op_threshs: forward returns logits
    weights = tmp_path / "plain.pt"
    torch.save(model.state_dict(), str(weights))
    out = export_txrv(weights, tmp_path / "plain.onnx", weights_name="no-such-weights")
    batch = batch_of(2, 224)
    with torch.no_grad():
        expected = model(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(
        OnnxModel.load(out).predict_logits(batch), expected, rtol=1e-4, atol=1e-3
    )


# --- predict_image -----------------------------------------------------------------------


def test_predict_image_gives_the_pipeline_probabilities(
    standin_model: Path, tmp_path: Path
) -> None:
    study = make_study("pred-1", "jpeg", np.random.default_rng(5), width=600, height=750)
    image = tmp_path / study.image_name
    image.write_bytes(study.image)
    sidecar = tmp_path / "pred-1.json"
    sidecar.write_bytes(study.sidecar)
    model = OnnxModel.load(standin_model)

    result = predict_image(image, model, sidecar_path=sidecar)
    assert list(result) == list(CHEXPERT_LABELS)
    assert result["Pleural Other"] is None and result["Support Devices"] is None
    values = [v for v in result.values() if v is not None]
    assert len(values) == 12 and all(0.0 <= v <= 1.0 for v in values)

    tensor = prepare_image(study.image, filename=image.name, preprocessing=Preprocessing()).tensor
    expected = to_chexpert(sigmoid(model.predict_logits(tensor)[0]), model.info.labels)
    assert result == pytest.approx(expected, abs=1e-6)
    assert predict_image(image, model) == pytest.approx(expected, abs=1e-6)


def test_predict_image_checks_the_sidecar_size(standin_model: Path, tmp_path: Path) -> None:
    study = make_study("pred-2", "png", np.random.default_rng(6), width=300, height=400)
    image = tmp_path / study.image_name
    image.write_bytes(study.image)
    fields = json.loads(study.sidecar)
    fields["image_size"] = {"width": 301, "height": 400}
    sidecar = tmp_path / "pred-2.json"
    sidecar.write_text(json.dumps(fields), encoding="utf-8")
    with pytest.raises(ImageSizeMismatch):
        predict_image(image, OnnxModel.load(standin_model), sidecar_path=sidecar)
