"""Synthetic studies for demos, load tests and end-to-end tests.

This module is the load generator's front door: it builds batches of studies and
re-exports the pieces (image phantom, encoders, `Study`, `make_study`) from the small
modules that implement them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from radstream.loadgen.bad_inputs import BAD_KINDS, make_bad_study
from radstream.loadgen.encoders import ENCODE_FORMATS, EncodeFormat, encode
from radstream.loadgen.phantom import synthetic_cxr
from radstream.loadgen.study import Study, check_format, make_study

__all__ = [
    "ENCODE_FORMATS",
    "EncodeFormat",
    "Study",
    "encode",
    "make_studies",
    "make_study",
    "synthetic_cxr",
]


def make_studies(
    n: int,
    invalid: int,
    *,
    formats: Sequence[str],
    rng: np.random.Generator,
    width: int = 2000,
    height: int = 2500,
) -> list[Study]:
    """``n`` studies with ids ``syn-00001``.., of which ``invalid`` are built to fail.

    Valid studies cycle through ``formats``; invalid ones cycle through ``BAD_KINDS`` in
    order, so consecutive bad studies are of different kinds. Which positions are bad is
    shuffled with ``rng``, and the same seed gives the same studies byte for byte.
    """
    if not 0 <= invalid <= n:
        raise ValueError(f"invalid must be between 0 and n ({n}), got {invalid}")
    if not formats:
        raise ValueError("formats must name at least one format")
    for fmt in formats:
        check_format(fmt)
    kinds = list(BAD_KINDS)
    plan: list[tuple[str, str]] = [("valid", formats[i % len(formats)]) for i in range(n - invalid)]
    plan += [("bad", kinds[i % len(kinds)]) for i in range(invalid)]
    order = rng.permutation(len(plan))
    studies = []
    for number, index in enumerate(order, start=1):
        study_id = f"syn-{number:05d}"
        what, detail = plan[int(index)]
        if what == "valid":
            studies.append(make_study(study_id, detail, rng, width=width, height=height))
        else:
            studies.append(make_bad_study(detail, study_id, rng))
    return studies
