"""Tests for radstream.model.labels: label tables, sigmoid and the CheXpert mapping."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from radstream.model import CHEXPERT_LABELS, NO_FINDING_RULE, TXRV_LABELS, sigmoid, to_chexpert


def _probs(**overrides: float) -> list[float]:
    """TXRV-ordered probabilities, 0.1 everywhere except the named labels."""
    values = dict.fromkeys(TXRV_LABELS, 0.1)
    for key, value in overrides.items():
        values[key.replace("__", " ")] = value
    return [values[label] for label in TXRV_LABELS]


def test_label_tables() -> None:
    assert len(TXRV_LABELS) == 18
    assert TXRV_LABELS[0] == "Atelectasis"
    assert TXRV_LABELS[7] == "Effusion"
    assert TXRV_LABELS[-1] == "Enlarged Cardiomediastinum"
    assert len(CHEXPERT_LABELS) == 14
    assert CHEXPERT_LABELS[0] == "No Finding"
    assert CHEXPERT_LABELS[-1] == "Support Devices"
    assert len(set(TXRV_LABELS)) == 18
    assert len(set(CHEXPERT_LABELS)) == 14


def test_sigmoid_is_stable_for_extreme_logits() -> None:
    x = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0])
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        y = sigmoid(x)
    assert y[0] == 0.0
    assert y[2] == 0.5
    assert y[-1] == 1.0
    assert np.all(np.isfinite(y))
    assert np.all(np.diff(y) >= 0)


def test_sigmoid_keeps_float32_and_matches_formula() -> None:
    x = np.linspace(-10, 10, 41, dtype=np.float32)
    y = sigmoid(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, 1.0 / (1.0 + np.exp(-x.astype(np.float64))), rtol=1e-6)
    assert sigmoid([0, 1]).dtype == np.float64
    assert math.isnan(float(sigmoid(np.array([np.nan]))[0]))


def test_to_chexpert_keys_in_order() -> None:
    result = to_chexpert(_probs())
    assert list(result) == list(CHEXPERT_LABELS)


def test_missing_labels_are_none_not_zero() -> None:
    result = to_chexpert(_probs())
    assert result["Pleural Other"] is None
    assert result["Support Devices"] is None


def test_effusion_maps_to_pleural_effusion() -> None:
    result = to_chexpert(_probs(Effusion=0.73))
    assert result["Pleural Effusion"] == pytest.approx(0.73)


def test_direct_matches() -> None:
    result = to_chexpert(_probs(Cardiomegaly=0.61, Lung__Opacity=0.42))
    assert result["Cardiomegaly"] == pytest.approx(0.61)
    assert result["Lung Opacity"] == pytest.approx(0.42)
    assert result["Enlarged Cardiomediastinum"] == pytest.approx(0.1)


def test_no_finding_is_one_minus_max_over_all_outputs() -> None:
    # Infiltration has no CheXpert column, yet it still lowers No Finding.
    result = to_chexpert(_probs(Infiltration=0.9, Edema=0.3))
    assert result["No Finding"] == pytest.approx(0.1)
    assert "upper bound" in NO_FINDING_RULE


def test_nan_counts_as_missing() -> None:
    result = to_chexpert(_probs(Fracture=float("nan"), Hernia=float("nan"), Mass=0.5))
    assert result["Fracture"] is None
    assert result["No Finding"] == pytest.approx(0.5)
    all_nan = to_chexpert([float("nan")] * 18)
    assert all(value is None for value in all_nan.values())


def test_accepts_numpy_and_custom_labels() -> None:
    labels = ("Pleural Effusion", "Effusion", "Support Devices", "Cardiomegaly")
    result = to_chexpert(np.array([0.2, 0.9, 0.95, 0.3], dtype=np.float32), labels)
    # The exact name wins over the alias; devices do not count against No Finding.
    assert result["Pleural Effusion"] == pytest.approx(0.2)
    assert result["Support Devices"] == pytest.approx(0.95)
    assert result["No Finding"] == pytest.approx(0.1)
    assert all(isinstance(v, float) for v in result.values() if v is not None)


@pytest.mark.parametrize(
    ("probabilities", "labels", "message"),
    [
        ([0.1] * 17, TXRV_LABELS, "17 probabilities for 18 labels"),
        ([0.1, 0.2], ("A", "A"), "unique"),
        ([3.0] + [0.1] * 17, TXRV_LABELS, "apply sigmoid"),
    ],
)
def test_rejects_bad_input(
    probabilities: list[float], labels: tuple[str, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        to_chexpert(probabilities, labels)
