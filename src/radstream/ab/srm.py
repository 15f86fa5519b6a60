"""Sample-ratio mismatch: did each arm get the number of studies the design planned?

A mismatch means the arms were not treated alike (one lost studies to timeouts, a block was
cut short), and then no metric comparison can be trusted, whatever its interval says. The
test is Pearson's chi-square goodness of fit of the measured counts against the planned
shares, flagged at p < 0.001 as is conventional for SRM checks (Kohavi et al., *Trustworthy
Online Controlled Experiments*, ch. 21): the check runs on every experiment, so a strict
threshold keeps false alarms rare.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import stats

from radstream.ab.model import SrmResult

SRM_THRESHOLD = 0.001


def srm_check(
    planned: Mapping[str, int], measured: Mapping[str, int], *, threshold: float = SRM_THRESHOLD
) -> SrmResult:
    """Compare measured studies per arm with the planned counts (chi-square, flag p < 0.001)."""
    arms = list(planned)
    if set(measured) - set(arms):
        raise ValueError(f"measured arms {sorted(set(measured) - set(arms))} were not planned")
    if any(planned[a] <= 0 for a in arms) or len(arms) < 2:
        raise ValueError(f"every one of at least two arms must plan studies, got {dict(planned)}")
    plan = np.asarray([planned[a] for a in arms], dtype=np.float64)
    seen = np.asarray([measured.get(a, 0) for a in arms], dtype=np.float64)
    plan_counts = dict(planned)
    seen_counts = {a: measured.get(a, 0) for a in arms}
    total = float(seen.sum())
    if total == 0:
        return SrmResult(
            planned=plan_counts,
            measured=seen_counts,
            chi2=None,
            p_value=None,
            threshold=threshold,
            mismatch=True,
            reason="no study was measured in any arm",
        )
    expected = plan / plan.sum() * total
    chi2, p = stats.chisquare(seen, expected)
    p_value = float(p)
    mismatch = p_value < threshold
    shares = ", ".join(f"{a} {int(s)}/{int(q)}" for a, s, q in zip(arms, seen, plan, strict=True))
    reason = (
        f"measured/planned {shares}: p = {p_value:.2g} "
        + ("< " if mismatch else ">= ")
        + f"{threshold:g}"
        + (", the arms were not treated alike; distrust the comparison" if mismatch else "")
    )
    return SrmResult(
        planned=plan_counts,
        measured=seen_counts,
        chi2=float(chi2),
        p_value=p_value,
        threshold=threshold,
        mismatch=mismatch,
        reason=reason,
    )
