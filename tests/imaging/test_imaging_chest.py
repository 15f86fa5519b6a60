"""Is this a chest X-ray? The header checks of ``require_chest``, on real radiographs.

pydicom-data ships two real CR radiographs: ``RG1`` (a chest PA) and ``RG3`` (an
extremity, AP), each uncompressed and as JPEG 2000; pydicom ships real structured reports.
Other modalities are pydicom-data's real MR and ultrasound images.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from real_radiographs import path_of

from radstream.errors import (
    BodyPartUnsupported,
    DicomNoPixelData,
    ModalityUnsupported,
    RadStreamError,
)
from radstream.imaging import Preprocessing, prepare_image
from radstream.imaging.dicom import dicom_facts, read_dicom_header

SMALL = Preprocessing(size=64)


def _read(name: str) -> bytes:
    with open(path_of(name), "rb") as handle:
        return handle.read()


def _edited(name: str, **elements: str | None) -> bytes:
    """A real file with header elements changed (None deletes the element)."""
    ds = pydicom.dcmread(path_of(name))
    for keyword, value in elements.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("name", ["RG1_UNCR.dcm", "RG1_J2KR.dcm"])
def test_a_real_chest_radiograph_passes(name: str) -> None:
    prepared = prepare_image(_read(name), preprocessing=SMALL, require_chest=True)
    assert prepared.dicom is not None
    assert (prepared.dicom.modality, prepared.dicom.body_part) == ("CR", "CHEST")
    assert prepared.dicom.view_position == "PA"


@pytest.mark.parametrize("name", ["RG3_UNCR.dcm", "RG3_J2KR.dcm"])
def test_a_real_extremity_radiograph_fails_body_part(name: str) -> None:
    with pytest.raises(BodyPartUnsupported) as caught:
        prepare_image(_read(name), preprocessing=SMALL, require_chest=True)
    error = caught.value
    assert error.code == "BODY_PART_UNSUPPORTED" and not error.retryable
    assert error.details["body_part"] == "EXTREMITY"
    assert "imaging.require_chest" in error.hint


@pytest.mark.parametrize("name", ["MR2_UNCR.dcm", "US1_UNCR.dcm", "693_UNCR.dcm", "SC_rgb.dcm"])
def test_other_modalities_fail_modality(name: str) -> None:
    with pytest.raises(ModalityUnsupported) as caught:
        prepare_image(_read(name), preprocessing=SMALL, require_chest=True)
    assert caught.value.code == "MODALITY_UNSUPPORTED" and not caught.value.retryable
    assert caught.value.hint


@pytest.mark.parametrize("name", ["test-SR.dcm", "reportsi.dcm"])
def test_a_structured_report_fails_no_pixel_data(name: str) -> None:
    path = get_testdata_file(name, download=False)
    assert path is not None
    data = open(str(path), "rb").read()  # noqa: SIM115
    assert pydicom.dcmread(io.BytesIO(data)).Modality == "SR"
    # Pixel Data is looked for first: a report is not an image at all, whatever its modality.
    with pytest.raises(DicomNoPixelData):
        prepare_image(data, require_chest=True)


@pytest.mark.parametrize(
    ("elements", "passes"),
    [
        ({"BodyPartExamined": None}, True),  # optional (Type 3): absent passes
        ({"BodyPartExamined": ""}, True),
        ({"BodyPartExamined": "THORAX"}, True),
        ({"BodyPartExamined": "LUNG"}, True),
        ({"Modality": "DX"}, True),
        ({"Modality": "RG"}, True),
        ({"Modality": "OT"}, False),  # "other": says nothing about the content
        ({"Modality": "MG"}, False),  # a projection radiograph, not of the chest
        ({"Modality": None}, False),
        ({"BodyPartExamined": "SKULL"}, False),
    ],
)
def test_accepted_values(elements: dict[str, str | None], passes: bool) -> None:
    data = _edited("RG1_UNCR.dcm", **elements)
    if passes:
        read_dicom_header(data, require_chest=True)
    else:
        with pytest.raises((ModalityUnsupported, BodyPartUnsupported)):
            read_dicom_header(data, require_chest=True)


def test_the_check_is_off_unless_asked_and_then_the_extremity_decodes() -> None:
    prepared = prepare_image(_read("RG3_UNCR.dcm"), preprocessing=SMALL)
    assert prepared.dicom is not None and prepared.dicom.body_part == "EXTREMITY"
    assert prepared.tensor.shape == (1, 1, 64, 64)


def test_checked_before_decoding() -> None:
    # A broken pixel stream is never reached: the header check fails first.
    ds = pydicom.dcmread(path_of("RG3_UNCR.dcm"))
    ds.PixelData = ds.PixelData[:100]
    buffer = io.BytesIO()
    ds.save_as(buffer)
    with pytest.raises(BodyPartUnsupported):
        prepare_image(buffer.getvalue(), require_chest=True)
    with pytest.raises(RadStreamError) as caught:
        prepare_image(buffer.getvalue())
    assert caught.value.code == "IMAGE_TRUNCATED"


def test_png_and_jpeg_are_not_checked() -> None:
    image = np.random.default_rng(0).integers(0, 255, (80, 80), dtype=np.uint8)
    for ext in (".png", ".jpg"):
        data = cv2.imencode(ext, image)[1].tobytes()
        prepared = prepare_image(data, preprocessing=SMALL, require_chest=True)
        assert prepared.dicom is None


@pytest.mark.filterwarnings("ignore:Invalid value for VR CS")
def test_facts_are_upper_case_and_stripped() -> None:
    ds = pydicom.dcmread(io.BytesIO(_edited("RG1_UNCR.dcm", BodyPartExamined="Chest ")))
    facts = dicom_facts(ds)
    assert facts.body_part == "CHEST"
