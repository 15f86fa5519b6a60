"""Whatever the bytes, prepare_image fails only with typed RadStreamError subclasses."""

from __future__ import annotations

import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from radstream.errors import RadStreamError
from radstream.imaging import ImagingLimits, Preprocessing, prepare_image
from radstream.loadgen.encoders import encode
from radstream.loadgen.phantom import synthetic_cxr

# Small inputs and a small model size keep each example around a millisecond while
# still reaching every decoder.
_PREPROCESSING = Preprocessing(size=16)
_LIMITS = ImagingLimits(max_pixels=4_000_000)
_PIXELS = synthetic_cxr(48, 40, np.random.default_rng(0))
_SEEDS = [
    encode(_PIXELS, fmt, rng=np.random.default_rng(1))[0]
    for fmt in ("png", "png16", "jpeg", "dicom", "dicom-rle", "dicom-jpeg")
]


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    """A valid small image with some bytes overwritten and perhaps cut short."""
    data = bytearray(draw(st.sampled_from(_SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    cut = draw(st.integers(1, len(data)))
    return bytes(data[:cut])


_BYTES = st.one_of(
    st.binary(max_size=512),
    st.binary(max_size=256).map(lambda b: b"\x89PNG\r\n\x1a\n" + b),
    st.binary(max_size=256).map(lambda b: b"\xff\xd8\xff" + b),
    st.binary(max_size=256).map(lambda b: b"\x00" * 128 + b"DICM" + b),
    mutated_images(),
)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=_BYTES, filename=st.sampled_from([None, "x.png", "x.JPG", "x.dcm", "x"]))
def test_arbitrary_bytes_raise_only_typed_errors(data: bytes, filename: str | None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns loudly about malformed elements
        try:
            prepared = prepare_image(
                data, filename=filename, preprocessing=_PREPROCESSING, limits=_LIMITS
            )
        except RadStreamError:
            return
    assert prepared.tensor.shape == (1, 1, 16, 16)
    assert np.isfinite(prepared.tensor).all()
