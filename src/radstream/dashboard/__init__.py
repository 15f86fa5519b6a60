"""``radstream dashboard``: a live web page of the lake's named queries (a tool, layer 5).

It reads the pipeline only through the telemetry lake and the named queries of
``athena_queries.sql``; see :mod:`.figures` and :mod:`.app`.
"""
