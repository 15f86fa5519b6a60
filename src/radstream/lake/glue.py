"""The Glue table for telemetry, derived from the same model the producers write.

One definition serves the CloudFormation template (``TableInput``), ``glue.create_table``
and Athena DDL. Partition projection makes ``dt``/``hour`` partitions known without a
crawler or ``MSCK REPAIR TABLE``.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from radstream.lake.columns import PARTITION_KEYS, arrow_schema
from radstream.schema.telemetry import TelemetryRecord

DATABASE = "radstream"
TABLE = "telemetry"
PROJECTION_START = "2024-01-01"

_ATHENA_TYPES: dict[pa.DataType, str] = {
    pa.string(): "string",
    pa.int64(): "bigint",
    pa.float64(): "double",
    pa.bool_(): "boolean",
    pa.timestamp("ms", tz="UTC"): "timestamp",
}


def athena_type(arrow: pa.DataType) -> str:
    """The Athena/Glue type that reads a Parquet column of this Arrow type."""
    try:
        return _ATHENA_TYPES[arrow]
    except KeyError:
        raise TypeError(f"no Athena type for {arrow}") from None


def glue_columns() -> list[dict[str, str]]:
    """Data columns in producer order, with Athena types and descriptions."""
    fields = TelemetryRecord.model_fields
    columns = []
    for f in arrow_schema():
        column = {"Name": f.name, "Type": athena_type(f.type)}
        description = fields[f.name].description
        if description:
            column["Comment"] = description
        columns.append(column)
    return columns


def table_input(location: str) -> dict[str, Any]:
    """Glue ``TableInput`` for ``radstream.telemetry`` at ``location`` (``s3://…/telemetry/``)."""
    base = location.rstrip("/")
    return {
        "Name": TABLE,
        "Description": "RadStream telemetry: one row per stage attempt per execution.",
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {
            "classification": "parquet",
            "EXTERNAL": "TRUE",
            "projection.enabled": "true",
            "projection.dt.type": "date",
            "projection.dt.format": "yyyy-MM-dd",
            "projection.dt.range": f"{PROJECTION_START},NOW",
            "projection.dt.interval": "1",
            "projection.dt.interval.unit": "DAYS",
            "projection.hour.type": "integer",
            "projection.hour.range": "0,23",
            "projection.hour.digits": "2",
            "storage.location.template": f"{base}/dt=${{dt}}/hour=${{hour}}/",
        },
        "PartitionKeys": [{"Name": key, "Type": "string"} for key in PARTITION_KEYS],
        "StorageDescriptor": {
            "Columns": glue_columns(),
            "Location": f"{base}/",
            "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
            "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
            "SerdeInfo": {
                "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
            },
        },
    }


def create_table_ddl(location: str) -> str:
    """``CREATE EXTERNAL TABLE`` for Athena, equivalent to :func:`table_input`."""
    spec = table_input(location)
    columns = ",\n".join(
        f"  `{c['Name']}` {c['Type']}" for c in spec["StorageDescriptor"]["Columns"]
    )
    partitions = ", ".join(f"`{k['Name']}` {k['Type']}" for k in spec["PartitionKeys"])
    properties = ",\n".join(
        f"  '{k}' = '{v}'" for k, v in spec["Parameters"].items() if k != "EXTERNAL"
    )
    return (
        f"CREATE EXTERNAL TABLE IF NOT EXISTS {DATABASE}.{TABLE} (\n{columns}\n)\n"
        f"PARTITIONED BY ({partitions})\n"
        "STORED AS PARQUET\n"
        f"LOCATION '{spec['StorageDescriptor']['Location']}'\n"
        f"TBLPROPERTIES (\n{properties}\n)"
    )
