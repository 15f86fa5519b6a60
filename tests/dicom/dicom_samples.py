"""Real DICOM files for the receiver and patient-data tests (installed, never downloaded).

pydicom-data's ``RG1`` (a CR chest PA) and ``RG3`` (a CR extremity), pydicom's own MR and
structured report; see tests/imaging/real_radiographs.py for the radiographs.
"""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset


def path_of(name: str) -> Path:
    """Absolute path of a pydicom-data (or pydicom) test file."""
    path = get_testdata_file(name, download=False)
    if path is None:
        raise FileNotFoundError(f"{name} is not installed; pip install pydicom-data")
    return Path(str(path))


def dataset(name: str) -> Dataset:
    """The file ``name`` read in full."""
    return pydicom.dcmread(path_of(name))


def to_bytes(ds: Dataset) -> bytes:
    """A data set as a Part-10 file."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
