"""``radstream dashboard``: a live web page of the lake's named queries (a tool, layer 5).

It reads the pipeline through the named queries of ``athena_queries.sql`` (on the local lake
with DuckDB, or on a stack's Athena), and the engine's own count of executions by state;
see :mod:`.figures`, :mod:`.engine`, :mod:`.stack` and :mod:`.app`.
"""
