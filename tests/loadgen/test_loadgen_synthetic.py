"""The synthetic image, its encodings and valid studies."""

from __future__ import annotations

import io
import json
import re
from datetime import datetime

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, RLELossless

from radstream.imaging import prepare_image
from radstream.loadgen.encoders import SOP_CLASS_CR, SOP_CLASS_DX
from radstream.loadgen.study import sidecar_fields
from radstream.loadgen.synthetic import ENCODE_FORMATS, encode, make_study, synthetic_cxr

STUDY_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
VIEWS = {"PA", "AP", "LATERAL", "OBLIQUE", "OTHER"}


@pytest.fixture(scope="module")
def pixels16() -> np.ndarray:
    return synthetic_cxr(600, 700, np.random.default_rng(21))


def test_synthetic_cxr_shape_type_and_determinism() -> None:
    first = synthetic_cxr(320, 400, np.random.default_rng(1))
    again = synthetic_cxr(320, 400, np.random.default_rng(1))
    other = synthetic_cxr(320, 400, np.random.default_rng(2))
    assert first.shape == (400, 320)
    assert first.dtype == np.uint16
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert int(first.max()) - int(first.min()) > 30_000  # a wide dynamic range


def test_synthetic_cxr_has_chest_anatomy(pixels16: np.ndarray) -> None:
    h, w = pixels16.shape
    air = pixels16[: h // 20, : w // 20].mean()  # corner outside the body
    lung = pixels16[int(h * 0.45) : int(h * 0.5), int(w * 0.17) : int(w * 0.22)].mean()
    spine = pixels16[int(h * 0.3) : int(h * 0.4), int(w * 0.49) : int(w * 0.51)].mean()
    belly = pixels16[int(h * 0.9) :, int(w * 0.3) : int(w * 0.4)].mean()
    assert air < lung < belly < spine


def test_synthetic_cxr_large_image_is_uint16_full_size() -> None:
    image = synthetic_cxr(2000, 2500, np.random.default_rng(0))
    assert image.shape == (2500, 2000)


@pytest.mark.parametrize("fmt", ENCODE_FORMATS)
def test_every_encoding_decodes_with_prepare_image(pixels16: np.ndarray, fmt: str) -> None:
    data, ext = encode(pixels16, fmt, rng=np.random.default_rng(0))  # type: ignore[arg-type]
    assert ext == {"png": ".png", "png16": ".png", "jpeg": ".jpg"}.get(fmt, ".dcm")
    prepared = prepare_image(data, filename=f"x{ext}", expected_size=(600, 700))
    assert prepared.tensor.shape == (1, 1, 224, 224)
    assert prepared.bit_depth == {"png16": 16, "dicom": 12, "dicom-rle": 12}.get(fmt, 8)


@pytest.mark.parametrize(
    ("fmt", "syntax", "bits"),
    [
        ("dicom", ExplicitVRLittleEndian, 12),
        ("dicom-rle", RLELossless, 12),
        ("dicom-jpeg", JPEGBaseline8Bit, 8),
    ],
)
def test_dicom_encodings_are_valid_part10(
    pixels16: np.ndarray, fmt: str, syntax: str, bits: int
) -> None:
    data, _ = encode(pixels16, fmt, rng=np.random.default_rng(4), patient_id="SYN-000042")  # type: ignore[arg-type]
    assert data[128:132] == b"DICM"
    ds = pydicom.dcmread(io.BytesIO(data))  # no force: must be a proper Part-10 file
    assert ds.file_meta.TransferSyntaxUID == syntax
    assert ds.SOPClassUID in (SOP_CLASS_CR, SOP_CLASS_DX)
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.Modality in ("CR", "DX")
    assert ds.PatientID == "SYN-000042"
    assert ds.BodyPartExamined == "CHEST"
    assert (ds.Rows, ds.Columns, ds.BitsStored) == (700, 600, bits)
    assert ds.PhotometricInterpretation in ("MONOCHROME1", "MONOCHROME2")
    if bits == 12:
        assert "RescaleSlope" in ds and "RescaleIntercept" in ds


def test_monochrome1_twin_gives_the_same_tensor(pixels16: np.ndarray) -> None:
    by_photometric: dict[str, np.ndarray] = {}
    for seed in range(40):
        data, _ = encode(pixels16, "dicom", rng=np.random.default_rng(seed))
        photometric = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).get(
            "PhotometricInterpretation"
        )
        by_photometric.setdefault(photometric, prepare_image(data).tensor)
        if len(by_photometric) == 2:
            break
    assert set(by_photometric) == {"MONOCHROME1", "MONOCHROME2"}
    np.testing.assert_allclose(
        by_photometric["MONOCHROME1"], by_photometric["MONOCHROME2"], atol=0.05
    )


def test_encoding_is_deterministic_for_a_seed(pixels16: np.ndarray) -> None:
    for fmt in ("dicom", "dicom-jpeg", "png"):
        first = encode(pixels16, fmt, rng=np.random.default_rng(8))
        again = encode(pixels16, fmt, rng=np.random.default_rng(8))
        assert first == again


def test_encode_refuses_unknown_format(pixels16: np.ndarray) -> None:
    with pytest.raises(ValueError, match="unknown format"):
        encode(pixels16, "gif", rng=np.random.default_rng(0))  # type: ignore[arg-type]


def assert_valid_sidecar(raw: bytes) -> dict[str, object]:
    """The sidecar rules the pipeline enforces, checked independently of its code."""
    assert len(raw) <= 1024 * 1024
    fields = json.loads(raw.decode("utf-8"))
    assert isinstance(fields, dict)
    assert isinstance(fields["study_id"], str) and STUDY_ID.match(fields["study_id"])
    assert isinstance(fields["view"], str) and fields["view"].upper() in VIEWS
    assert isinstance(fields["timestamp"], str)
    datetime.fromisoformat(fields["timestamp"])
    size = fields.get("image_size")
    if size is not None:
        assert isinstance(size, dict)
        for side in ("width", "height"):
            assert size.get(side) is None or (isinstance(size[side], int) and size[side] >= 1)
    return fields


def test_make_study_is_valid_and_consistent() -> None:
    study = make_study("ok-1", "dicom", np.random.default_rng(5), width=640, height=720)
    fields = assert_valid_sidecar(study.sidecar)
    assert study.expected_code is None
    assert study.image_name == "ok-1.dcm"
    assert fields["study_id"] == "ok-1"
    assert fields["modality"] in ("CR", "DX") and fields["body_part"] == "CHEST"
    assert str(fields["patient_id"]).startswith("SYN-")
    ds = pydicom.dcmread(io.BytesIO(study.image), stop_before_pixels=True)
    assert ds.PatientID == fields["patient_id"] and ds.Modality == fields["modality"]
    size = fields["image_size"]
    assert isinstance(size, dict) and size["width"] == 640 and size["height"] in (720, None)
    prepared = prepare_image(
        study.image, filename=study.image_name, expected_size=(size["width"], size["height"])
    )
    assert (prepared.width, prepared.height) == (640, 720)


def test_sidecars_show_real_world_variety() -> None:
    rng = np.random.default_rng(0)
    sidecars = [sidecar_fields(f"s-{i}", rng, width=10, height=20) for i in range(300)]
    for fields in sidecars:
        assert_valid_sidecar(json.dumps(fields).encode())
    views = {str(s["view"]) for s in sidecars}
    stamps = [str(s["timestamp"]) for s in sidecars]
    assert any(v.islower() for v in views) and any(v.isupper() for v in views)
    assert any(t.endswith("Z") for t in stamps)
    assert any(re.search(r"[+-]\d\d:\d\d$", t) for t in stamps)
    assert any(datetime.fromisoformat(t).tzinfo is None for t in stamps)
    assert any(s["image_size"]["height"] is None for s in sidecars)
    assert any(
        set(s)
        - {"study_id", "view", "timestamp", "patient_id", "modality", "body_part", "image_size"}
        for s in sidecars
    )
