"""Telemetry columns derived from :class:`TelemetryRecord`: the one source of the lake schema.

The Parquet writer (and later the Glue table) take their columns from here, so producers
and the catalogue cannot drift apart.
"""

from __future__ import annotations

import types
import typing
from datetime import datetime
from enum import Enum

import pyarrow as pa

from radstream.schema.telemetry import TelemetryRecord

PARTITION_KEYS: tuple[str, ...] = ("dt", "hour")


def _base_type(annotation: object) -> object:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0]
    return annotation


def _arrow_type(annotation: object) -> pa.DataType:
    base = _base_type(annotation)
    if base is bool:
        return pa.bool_()
    if base is int:
        return pa.int64()
    if base is float:
        return pa.float64()
    if base is datetime:
        return pa.timestamp("ms", tz="UTC")
    if base is str or (isinstance(base, type) and issubclass(base, Enum)):
        return pa.string()
    raise TypeError(f"no Arrow type for telemetry annotation {annotation!r}")


def arrow_schema() -> pa.Schema:
    """Arrow schema of a telemetry file (partition keys are in the path, not the file)."""
    return pa.schema(
        [
            pa.field(name, _arrow_type(field.annotation), nullable=not field.is_required())
            for name, field in TelemetryRecord.model_fields.items()
        ]
    )


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` in ``schema``: columns a file written before they existed become nulls."""
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, type=f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)
