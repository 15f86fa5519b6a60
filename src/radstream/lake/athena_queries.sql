-- RadStream named queries over the telemetry table (database radstream, table telemetry).
--
-- Written in Athena (Trino) SQL. Locally they run unchanged on DuckDB over the Parquet
-- lake: `radstream query NAME`. Each query starts with a `-- name:` line, then a
-- `-- description:` line, and optionally `-- params:` with defaults (k=v, comma-separated).
-- Parameters are written :name and bound as values, never spliced into the text.
-- Date ranges filter on the `dt` partition (YYYY-MM-DD), so Athena reads only those days.
-- Latency figures use successful stage attempts (status = 'ok') only. The first claim's
-- queue wait is the one on its attempt-1 row; max() picks it the same way on both engines
-- (min_by would not: Trino keeps a NULL that DuckDB's arg_min skips).
--
-- Each metric has exactly one query here; the dashboard (`radstream dashboard`) runs these
-- same queries with parameters, and so does `radstream query`. The common parameters:
--   start_date, end_date  the dt partitions read (YYYY-MM-DD), so Athena scans only those days;
--   from_ts, to_ts        a window of finish times [from_ts, to_ts), written
--                         'YYYY-MM-DD HH:MM:SS UTC' (the zone in the text, so that neither
--                         engine reads it in a session time zone). An execution belongs to
--                         the window its last stage ended in; a stage attempt to the window
--                         it ended in. The defaults take everything;
--   variant               one A/B variant, or all of them (empty, the default);
--   by_variant            'true': one row per variant (the A/B comparison); the default,
--                         'false', leaves the variant column empty;
--   bucket_s              time buckets of that many seconds, aligned on the epoch (UTC): 60
--                         gives one row a minute, 86400 one a UTC day; 0 gives one row for
--                         the whole window, with an empty bucket. The bucket is written with
--                         date_diff and an interval, which Trino and DuckDB share, so the text
--                         also runs on an emulator that hands it to DuckDB untranslated.

-- name: stage_latency
-- description: Per-stage latency p50/p95/p99 and mean of the successful stage attempts that ended in the window.
-- params: start_date=1970-01-01, end_date=9999-12-31, from_ts=1970-01-01 00:00:00 UTC, to_ts=9999-12-31 23:59:59 UTC, variant=
SELECT
  stage,
  count(*) AS n,
  approx_percentile(duration_ms, 0.5) AS p50_ms,
  approx_percentile(duration_ms, 0.95) AS p95_ms,
  approx_percentile(duration_ms, 0.99) AS p99_ms,
  avg(duration_ms) AS mean_ms
FROM radstream.telemetry
WHERE dt BETWEEN :start_date AND :end_date
  AND status = 'ok'
  AND end_ts >= CAST(:from_ts AS TIMESTAMP WITH TIME ZONE)
  AND end_ts < CAST(:to_ts AS TIMESTAMP WITH TIME ZONE)
  AND (:variant = '' OR variant = :variant)
GROUP BY stage
ORDER BY stage;

-- name: execution_latency
-- description: The top slowest finished executions (all of them with a large top): end-to-end latency (first queue wait plus first start to last end) and its per-stage breakdown (ms).
-- params: start_date=1970-01-01, end_date=9999-12-31, from_ts=1970-01-01 00:00:00 UTC, to_ts=9999-12-31 23:59:59 UTC, variant=, top=20
WITH per_execution AS (
  SELECT
    execution_id,
    arbitrary(study_id) AS study_id,
    arbitrary(variant) AS variant,
    max(CASE WHEN stage = 'store' AND status = 'ok' THEN 1 ELSE 0 END) AS succeeded,
    coalesce(max(CASE WHEN attempt = 1 THEN queue_wait_ms END), 0)
      + date_diff('millisecond', min(start_ts), max(end_ts)) AS e2e_ms,
    coalesce(max(CASE WHEN attempt = 1 THEN queue_wait_ms END), 0) AS queue_wait_ms,
    sum(CASE WHEN stage = 'validate' THEN duration_ms ELSE 0 END) AS validate_ms,
    sum(CASE WHEN stage = 'prepare' THEN duration_ms ELSE 0 END) AS prepare_ms,
    sum(CASE WHEN stage = 'infer' THEN duration_ms ELSE 0 END) AS infer_ms,
    sum(CASE WHEN stage = 'store' THEN duration_ms ELSE 0 END) AS store_ms,
    sum(CASE WHEN stage = 'record_failure' THEN duration_ms ELSE 0 END) AS record_failure_ms,
    max(attempt) AS attempts
  FROM radstream.telemetry
  WHERE dt BETWEEN :start_date AND :end_date
    AND (:variant = '' OR variant = :variant)
  GROUP BY execution_id
  HAVING max(CASE WHEN stage IN ('store', 'record_failure') AND status = 'ok' THEN 1 ELSE 0 END) = 1
    AND max(end_ts) >= CAST(:from_ts AS TIMESTAMP WITH TIME ZONE)
    AND max(end_ts) < CAST(:to_ts AS TIMESTAMP WITH TIME ZONE)
),
ranked AS (
  SELECT
    per_execution.*,
    row_number() OVER (ORDER BY e2e_ms DESC, execution_id) AS slowness
  FROM per_execution
)
SELECT
  execution_id,
  study_id,
  variant,
  succeeded,
  e2e_ms,
  queue_wait_ms,
  validate_ms,
  prepare_ms,
  infer_ms,
  store_ms,
  record_failure_ms,
  attempts
FROM ranked
WHERE slowness <= CAST(:top AS BIGINT)
ORDER BY slowness;

-- name: execution_latency_percentiles
-- description: End-to-end latency p50/p95/p99/max of finished executions by outcome, and the share slower than slow_ms; over the window or per bucket, per variant with by_variant=true.
-- params: start_date=1970-01-01, end_date=9999-12-31, from_ts=1970-01-01 00:00:00 UTC, to_ts=9999-12-31 23:59:59 UTC, variant=, by_variant=false, bucket_s=0, slow_ms=5000
WITH per_execution AS (
  SELECT
    execution_id,
    CASE WHEN :by_variant = 'true' THEN arbitrary(variant) END AS variant,
    max(CASE WHEN stage = 'store' AND status = 'ok' THEN 1 ELSE 0 END) AS succeeded,
    coalesce(max(CASE WHEN attempt = 1 THEN queue_wait_ms END), 0)
      + date_diff('millisecond', min(start_ts), max(end_ts)) AS e2e_ms,
    max(end_ts) AS finished_at
  FROM radstream.telemetry
  WHERE dt BETWEEN :start_date AND :end_date
    AND (:variant = '' OR variant = :variant)
  GROUP BY execution_id
  HAVING max(CASE WHEN stage IN ('store', 'record_failure') AND status = 'ok' THEN 1 ELSE 0 END) = 1
    AND max(end_ts) >= CAST(:from_ts AS TIMESTAMP WITH TIME ZONE)
    AND max(end_ts) < CAST(:to_ts AS TIMESTAMP WITH TIME ZONE)
)
SELECT
  CAST('1970-01-01 00:00:00 UTC' AS TIMESTAMP WITH TIME ZONE)
    + CAST(
      floor(date_diff('second', CAST('1970-01-01 00:00:00 UTC' AS TIMESTAMP WITH TIME ZONE), finished_at)
        / nullif(CAST(:bucket_s AS BIGINT), 0)) * CAST(:bucket_s AS BIGINT)
      AS BIGINT) * INTERVAL '1' SECOND AS bucket,
  variant,
  CASE WHEN succeeded = 1 THEN 'succeeded' ELSE 'failed' END AS outcome,
  count(*) AS n,
  approx_percentile(e2e_ms, 0.5) AS p50_ms,
  approx_percentile(e2e_ms, 0.95) AS p95_ms,
  approx_percentile(e2e_ms, 0.99) AS p99_ms,
  max(e2e_ms) AS max_ms,
  CAST(count_if(e2e_ms > CAST(:slow_ms AS DOUBLE)) AS DOUBLE) / count(*) AS slow_share
FROM per_execution
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3;

-- name: success_rate
-- description: Finished executions, successes, failures, success rate, and throughput (executions finished per minute between the first and the last finish, one minute at least); over the window or per bucket, per variant with by_variant=true. A re-run after a failure is its own execution.
-- params: start_date=1970-01-01, end_date=9999-12-31, from_ts=1970-01-01 00:00:00 UTC, to_ts=9999-12-31 23:59:59 UTC, variant=, by_variant=false, bucket_s=0
SELECT
  CAST('1970-01-01 00:00:00 UTC' AS TIMESTAMP WITH TIME ZONE)
    + CAST(
      floor(date_diff('second', CAST('1970-01-01 00:00:00 UTC' AS TIMESTAMP WITH TIME ZONE), end_ts)
        / nullif(CAST(:bucket_s AS BIGINT), 0)) * CAST(:bucket_s AS BIGINT)
      AS BIGINT) * INTERVAL '1' SECOND AS bucket,
  CASE WHEN :by_variant = 'true' THEN variant END AS variant,
  count(DISTINCT execution_id) AS finished,
  count(DISTINCT CASE WHEN stage = 'store' THEN execution_id END) AS succeeded,
  count(DISTINCT CASE WHEN stage = 'record_failure' THEN execution_id END) AS failed,
  CAST(count(DISTINCT CASE WHEN stage = 'store' THEN execution_id END) AS DOUBLE)
    / nullif(count(DISTINCT execution_id), 0) AS success_rate,
  CAST(count(DISTINCT execution_id) AS DOUBLE)
    / greatest(CAST(date_diff('millisecond', min(end_ts), max(end_ts)) AS DOUBLE) / 60000, 1)
    AS throughput_per_min
FROM radstream.telemetry
WHERE dt BETWEEN :start_date AND :end_date
  AND status = 'ok'
  AND stage IN ('store', 'record_failure')
  AND end_ts >= CAST(:from_ts AS TIMESTAMP WITH TIME ZONE)
  AND end_ts < CAST(:to_ts AS TIMESTAMP WITH TIME ZONE)
  AND (:variant = '' OR variant = :variant)
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: failures_by_code
-- description: Failed executions by error code, most frequent first; over the window or per bucket.
-- params: start_date=1970-01-01, end_date=9999-12-31, from_ts=1970-01-01 00:00:00 UTC, to_ts=9999-12-31 23:59:59 UTC, variant=, bucket_s=0
SELECT
  CAST('1970-01-01 00:00:00 UTC' AS TIMESTAMP WITH TIME ZONE)
    + CAST(
      floor(date_diff('second', CAST('1970-01-01 00:00:00 UTC' AS TIMESTAMP WITH TIME ZONE), end_ts)
        / nullif(CAST(:bucket_s AS BIGINT), 0)) * CAST(:bucket_s AS BIGINT)
      AS BIGINT) * INTERVAL '1' SECOND AS bucket,
  error_code,
  count(DISTINCT execution_id) AS executions
FROM radstream.telemetry
WHERE dt BETWEEN :start_date AND :end_date
  AND stage = 'record_failure'
  AND status = 'ok'
  AND end_ts >= CAST(:from_ts AS TIMESTAMP WITH TIME ZONE)
  AND end_ts < CAST(:to_ts AS TIMESTAMP WITH TIME ZONE)
  AND (:variant = '' OR variant = :variant)
GROUP BY 1, 2
ORDER BY 1, executions DESC, error_code;

-- name: cost_per_image
-- description: Cost per successful image from the per-stage cost column, per bucket (by default a UTC day) or over the window, per variant with by_variant=true.
-- params: start_date=1970-01-01, end_date=9999-12-31, from_ts=1970-01-01 00:00:00 UTC, to_ts=9999-12-31 23:59:59 UTC, variant=, by_variant=false, bucket_s=86400
SELECT
  CAST('1970-01-01 00:00:00 UTC' AS TIMESTAMP WITH TIME ZONE)
    + CAST(
      floor(date_diff('second', CAST('1970-01-01 00:00:00 UTC' AS TIMESTAMP WITH TIME ZONE), end_ts)
        / nullif(CAST(:bucket_s AS BIGINT), 0)) * CAST(:bucket_s AS BIGINT)
      AS BIGINT) * INTERVAL '1' SECOND AS bucket,
  CASE WHEN :by_variant = 'true' THEN variant END AS variant,
  sum(cost_usd) AS cost_usd,
  count(DISTINCT CASE WHEN stage = 'store' AND status = 'ok' THEN execution_id END) AS images,
  sum(cost_usd)
    / nullif(count(DISTINCT CASE WHEN stage = 'store' AND status = 'ok' THEN execution_id END), 0)
    AS cost_per_image_usd
FROM radstream.telemetry
WHERE dt BETWEEN :start_date AND :end_date
  AND end_ts >= CAST(:from_ts AS TIMESTAMP WITH TIME ZONE)
  AND end_ts < CAST(:to_ts AS TIMESTAMP WITH TIME ZONE)
  AND (:variant = '' OR variant = :variant)
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: batch_sizes
-- description: Batch sizes formed at the model: how many successful inference calls ended in the window with each size.
-- params: start_date=1970-01-01, end_date=9999-12-31, from_ts=1970-01-01 00:00:00 UTC, to_ts=9999-12-31 23:59:59 UTC, variant=
SELECT
  batch_size,
  count(*) AS calls,
  avg(duration_ms) AS mean_infer_ms
FROM radstream.telemetry
WHERE dt BETWEEN :start_date AND :end_date
  AND stage = 'infer'
  AND status = 'ok'
  AND end_ts >= CAST(:from_ts AS TIMESTAMP WITH TIME ZONE)
  AND end_ts < CAST(:to_ts AS TIMESTAMP WITH TIME ZONE)
  AND (:variant = '' OR variant = :variant)
GROUP BY batch_size
ORDER BY batch_size;

-- name: data_quality
-- description: Rows with null ids, negative durations, or end before start; executions with no terminal stage.
-- params: start_date=1970-01-01, end_date=9999-12-31
WITH per_execution AS (
  SELECT
    execution_id,
    max(CASE WHEN stage IN ('store', 'record_failure') AND status = 'ok' THEN 1 ELSE 0 END)
      AS finished
  FROM radstream.telemetry
  WHERE dt BETWEEN :start_date AND :end_date
  GROUP BY execution_id
)
SELECT
  (SELECT count(*) FROM radstream.telemetry
    WHERE dt BETWEEN :start_date AND :end_date) AS total_rows,
  (SELECT count(*) FROM radstream.telemetry
    WHERE dt BETWEEN :start_date AND :end_date
      AND (execution_id IS NULL OR study_id IS NULL OR stage IS NULL)) AS null_ids,
  (SELECT count(*) FROM radstream.telemetry
    WHERE dt BETWEEN :start_date AND :end_date AND duration_ms < 0) AS negative_durations,
  (SELECT count(*) FROM radstream.telemetry
    WHERE dt BETWEEN :start_date AND :end_date AND end_ts < start_ts) AS end_before_start,
  (SELECT count(*) FROM per_execution WHERE finished = 0) AS orphan_executions;
