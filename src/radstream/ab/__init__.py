"""A/B experiments over RadStream's pipeline: design, statistics, projections (issue 13).

The Python API a ``radstream ab`` command group calls:

- :func:`block_order` plans the run (balanced ABBA… or seeded random rounds);
- :func:`analyse` turns the measured :class:`BlockData` into an :class:`ExperimentResult`
  (``.model_dump(mode="json")`` is the ``--json`` output);
- :mod:`radstream.ab.projection` projects Lambda memory sizes and S3 storage classes where
  they cannot run, and :func:`summarise_sweep` gives Lambda Power Tuning's three picks.
"""

from radstream.ab.analysis import analyse, holm
from radstream.ab.design import Scheme, Slot, block_order, order_labels
from radstream.ab.metrics import METRIC_NAMES, METRICS, MetricSpec, compare_arms
from radstream.ab.model import (
    BlockData,
    ExperimentResult,
    Interval,
    MetricResult,
    Projection,
    SrmResult,
    SweepPoint,
    SweepSummary,
    Verdict,
)
from radstream.ab.srm import srm_check
from radstream.ab.sweep import StageTiming, project_memory, summarise_sweep
from radstream.ab.verdict import DEFAULT_MARGIN, decide

__all__ = [
    "DEFAULT_MARGIN",
    "METRICS",
    "METRIC_NAMES",
    "BlockData",
    "ExperimentResult",
    "Interval",
    "MetricResult",
    "MetricSpec",
    "Projection",
    "Scheme",
    "Slot",
    "SrmResult",
    "StageTiming",
    "SweepPoint",
    "SweepSummary",
    "Verdict",
    "analyse",
    "block_order",
    "compare_arms",
    "decide",
    "holm",
    "order_labels",
    "project_memory",
    "srm_check",
    "summarise_sweep",
]
