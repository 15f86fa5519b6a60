"""The telemetry lake: its schema, SQL dialect, Parquet files and DuckDB runner."""
