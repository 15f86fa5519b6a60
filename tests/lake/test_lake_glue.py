"""The Glue table and what the producers write agree, column by column."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import sqlglot
from lake_records import record

from radstream.lake.glue import athena_type, create_table_ddl, glue_columns, table_input
from radstream.schema import PATIENT_FIELDS, TelemetryRecord


def test_producer_files_and_glue_columns_agree(
    write_lake: Callable[[list[TelemetryRecord]], Path],
) -> None:
    lake = write_lake([record(), record(stage="infer", cost_usd=0.001, variant="A")])
    [written] = list(lake.rglob("*.parquet"))
    file_schema = pq.read_schema(written)
    produced = [(f.name, athena_type(f.type)) for f in file_schema]
    declared = [(c["Name"], c["Type"]) for c in glue_columns()]
    assert produced == declared
    assert [name for name, _ in declared] == list(TelemetryRecord.model_fields)
    # The partition keys are the folder names the sink writes.
    spec = table_input("s3://bucket/telemetry")
    assert [k["Name"] for k in spec["PartitionKeys"]] == ["dt", "hour"]
    assert written.parent.name.startswith("hour=")
    assert written.parent.parent.name.startswith("dt=")


def test_partition_projection_needs_no_crawler() -> None:
    params = table_input("s3://bucket/telemetry/")["Parameters"]
    assert params["projection.enabled"] == "true"
    assert params["projection.dt.type"] == "date"
    assert params["projection.dt.format"] == "yyyy-MM-dd"
    assert params["projection.hour.digits"] == "2"
    assert params["storage.location.template"] == "s3://bucket/telemetry/dt=${dt}/hour=${hour}/"


def test_ddl_is_athena_sql_naming_radstream_telemetry() -> None:
    ddl = create_table_ddl("s3://bucket/telemetry")
    tree = sqlglot.parse_one(ddl, read="athena")
    assert tree.find(sqlglot.exp.Table).sql() == "radstream.telemetry"
    assert "STORED AS PARQUET" in ddl


def test_no_patient_column() -> None:
    assert not {c["Name"] for c in glue_columns()} & PATIENT_FIELDS
