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

-- name: stage_latency
-- description: Per-stage latency p50/p95/p99 and count of successful stage attempts.
-- params: start_date=1970-01-01, end_date=9999-12-31
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
GROUP BY stage
ORDER BY stage;

-- name: execution_latency
-- description: End-to-end latency of each finished execution: first queue wait plus first start to last end.
-- params: start_date=1970-01-01, end_date=9999-12-31
SELECT
  execution_id,
  arbitrary(study_id) AS study_id,
  max(CASE WHEN stage = 'store' AND status = 'ok' THEN 1 ELSE 0 END) AS succeeded,
  coalesce(max(CASE WHEN attempt = 1 THEN queue_wait_ms END), 0)
    + date_diff('millisecond', min(start_ts), max(end_ts)) AS e2e_ms
FROM radstream.telemetry
WHERE dt BETWEEN :start_date AND :end_date
GROUP BY execution_id
HAVING max(CASE WHEN stage IN ('store', 'record_failure') AND status = 'ok' THEN 1 ELSE 0 END) = 1
ORDER BY e2e_ms DESC;

-- name: execution_latency_percentiles
-- description: Percentiles of end-to-end latency over finished executions, successes and all.
-- params: start_date=1970-01-01, end_date=9999-12-31
WITH per_execution AS (
  SELECT
    execution_id,
    max(CASE WHEN stage = 'store' AND status = 'ok' THEN 1 ELSE 0 END) AS succeeded,
    coalesce(max(CASE WHEN attempt = 1 THEN queue_wait_ms END), 0)
      + date_diff('millisecond', min(start_ts), max(end_ts)) AS e2e_ms
  FROM radstream.telemetry
  WHERE dt BETWEEN :start_date AND :end_date
  GROUP BY execution_id
  HAVING max(CASE WHEN stage IN ('store', 'record_failure') AND status = 'ok' THEN 1 ELSE 0 END) = 1
)
SELECT
  CASE WHEN succeeded = 1 THEN 'succeeded' ELSE 'failed' END AS outcome,
  count(*) AS n,
  approx_percentile(e2e_ms, 0.5) AS p50_ms,
  approx_percentile(e2e_ms, 0.95) AS p95_ms,
  approx_percentile(e2e_ms, 0.99) AS p99_ms,
  max(e2e_ms) AS max_ms
FROM per_execution
GROUP BY 1
ORDER BY 1;

-- name: throughput_per_minute
-- description: Executions finished per minute (by the end of their last stage), split by outcome.
-- params: start_date=1970-01-01, end_date=9999-12-31
SELECT
  date_trunc('minute', end_ts) AS minute,
  count_if(stage = 'store') AS succeeded,
  count_if(stage = 'record_failure') AS failed
FROM radstream.telemetry
WHERE dt BETWEEN :start_date AND :end_date
  AND status = 'ok'
  AND stage IN ('store', 'record_failure')
GROUP BY 1
ORDER BY 1;

-- name: success_rate
-- description: Finished executions, successes, failures and the success rate (a re-run after a failure is its own execution).
-- params: start_date=1970-01-01, end_date=9999-12-31
SELECT
  count(DISTINCT CASE WHEN stage = 'store' THEN execution_id END) AS succeeded,
  count(DISTINCT CASE WHEN stage = 'record_failure' THEN execution_id END) AS failed,
  CAST(count(DISTINCT CASE WHEN stage = 'store' THEN execution_id END) AS DOUBLE)
    / nullif(count(DISTINCT execution_id), 0) AS success_rate
FROM radstream.telemetry
WHERE dt BETWEEN :start_date AND :end_date
  AND status = 'ok'
  AND stage IN ('store', 'record_failure');

-- name: failures_by_code
-- description: Failed executions by error code, most frequent first.
-- params: start_date=1970-01-01, end_date=9999-12-31
SELECT
  error_code,
  count(DISTINCT execution_id) AS executions
FROM radstream.telemetry
WHERE dt BETWEEN :start_date AND :end_date
  AND stage = 'record_failure'
GROUP BY error_code
ORDER BY executions DESC, error_code;

-- name: slowest_executions
-- description: The 20 slowest finished executions with their per-stage breakdown (ms).
-- params: start_date=1970-01-01, end_date=9999-12-31
SELECT
  execution_id,
  arbitrary(study_id) AS study_id,
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
GROUP BY execution_id
HAVING max(CASE WHEN stage IN ('store', 'record_failure') AND status = 'ok' THEN 1 ELSE 0 END) = 1
ORDER BY e2e_ms DESC, execution_id
LIMIT 20;

-- name: cost_per_image_daily
-- description: Cost per successful image per day, from the per-stage cost column.
-- params: start_date=1970-01-01, end_date=9999-12-31
SELECT
  dt,
  sum(cost_usd) AS cost_usd,
  count(DISTINCT CASE WHEN stage = 'store' AND status = 'ok' THEN execution_id END) AS images,
  sum(cost_usd)
    / nullif(count(DISTINCT CASE WHEN stage = 'store' AND status = 'ok' THEN execution_id END), 0)
    AS cost_per_image_usd
FROM radstream.telemetry
WHERE dt BETWEEN :start_date AND :end_date
GROUP BY dt
ORDER BY dt;

-- name: variant_comparison
-- description: Two A/B variants side by side: executions, success rate and end-to-end p50/p95.
-- params: start_date=1970-01-01, end_date=9999-12-31, variant_a=A, variant_b=B
WITH per_execution AS (
  SELECT
    execution_id,
    arbitrary(variant) AS variant,
    max(CASE WHEN stage = 'store' AND status = 'ok' THEN 1 ELSE 0 END) AS succeeded,
    coalesce(max(CASE WHEN attempt = 1 THEN queue_wait_ms END), 0)
      + date_diff('millisecond', min(start_ts), max(end_ts)) AS e2e_ms
  FROM radstream.telemetry
  WHERE dt BETWEEN :start_date AND :end_date
    AND variant IN (:variant_a, :variant_b)
  GROUP BY execution_id
  HAVING max(CASE WHEN stage IN ('store', 'record_failure') AND status = 'ok' THEN 1 ELSE 0 END) = 1
)
SELECT
  variant,
  count(*) AS executions,
  CAST(sum(succeeded) AS DOUBLE) / count(*) AS success_rate,
  approx_percentile(e2e_ms, 0.5) AS p50_ms,
  approx_percentile(e2e_ms, 0.95) AS p95_ms
FROM per_execution
GROUP BY variant
ORDER BY variant;

-- name: batch_sizes
-- description: Batch sizes formed at the model: how many inference calls ran with each size.
-- params: start_date=1970-01-01, end_date=9999-12-31
SELECT
  batch_size,
  count(*) AS calls,
  avg(duration_ms) AS mean_infer_ms
FROM radstream.telemetry
WHERE dt BETWEEN :start_date AND :end_date
  AND stage = 'infer'
  AND status = 'ok'
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

-- The dashboard's queries (`radstream dashboard`). Each takes a window of finish times,
-- [from_ts, to_ts), written 'YYYY-MM-DD HH:MM:SS UTC' (the zone in the text, so that neither
-- engine reads it in a session time zone), besides the dt range that prunes partitions, and
-- one A/B variant or all of them (variant empty). An execution belongs to the window its last
-- stage ended in; a stage attempt to the window it ended in.

-- name: dashboard_objectives
-- description: The four objectives over a window: finished executions, success rate, end-to-end p95 and the share slower than slow_ms, throughput per active minute, cost per successful image.
-- params: start_date=1970-01-01, end_date=9999-12-31, from_ts=1970-01-01 00:00:00 UTC, to_ts=9999-12-31 23:59:59 UTC, variant=, slow_ms=5000
WITH per_execution AS (
  SELECT
    execution_id,
    max(CASE WHEN stage = 'store' AND status = 'ok' THEN 1 ELSE 0 END) AS succeeded,
    coalesce(max(CASE WHEN attempt = 1 THEN queue_wait_ms END), 0)
      + date_diff('millisecond', min(start_ts), max(end_ts)) AS e2e_ms,
    min(start_ts) AS started_at,
    max(end_ts) AS finished_at,
    coalesce(sum(cost_usd), 0) AS cost_usd
  FROM radstream.telemetry
  WHERE dt BETWEEN :start_date AND :end_date
    AND (:variant = '' OR variant = :variant)
  GROUP BY execution_id
  HAVING max(CASE WHEN stage IN ('store', 'record_failure') AND status = 'ok' THEN 1 ELSE 0 END) = 1
    AND max(end_ts) >= CAST(:from_ts AS TIMESTAMP WITH TIME ZONE)
    AND max(end_ts) < CAST(:to_ts AS TIMESTAMP WITH TIME ZONE)
)
SELECT
  count(*) AS executions,
  coalesce(sum(succeeded), 0) AS succeeded,
  count(*) - coalesce(sum(succeeded), 0) AS failed,
  CAST(sum(succeeded) AS DOUBLE) / nullif(count(*), 0) AS success_rate,
  approx_percentile(e2e_ms, 0.95) AS p95_ms,
  CAST(count_if(e2e_ms > CAST(:slow_ms AS DOUBLE)) AS DOUBLE) / nullif(count(*), 0) AS slow_share,
  count(*) / greatest(date_diff('millisecond', min(started_at), max(finished_at)) / 60000.0, 1.0)
    AS throughput_per_min,
  sum(cost_usd) / nullif(sum(succeeded), 0) AS cost_per_image_usd
FROM per_execution;

-- name: dashboard_latency_per_minute
-- description: End-to-end latency p50/p95/p99 of the executions that finished in each minute of a window.
-- params: start_date=1970-01-01, end_date=9999-12-31, from_ts=1970-01-01 00:00:00 UTC, to_ts=9999-12-31 23:59:59 UTC, variant=
WITH per_execution AS (
  SELECT
    execution_id,
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
  date_trunc('minute', finished_at) AS minute,
  count(*) AS executions,
  approx_percentile(e2e_ms, 0.5) AS p50_ms,
  approx_percentile(e2e_ms, 0.95) AS p95_ms,
  approx_percentile(e2e_ms, 0.99) AS p99_ms
FROM per_execution
GROUP BY 1
ORDER BY 1;

-- name: dashboard_throughput_per_minute
-- description: Executions finished per minute of a window (by the end of their last stage), split by outcome.
-- params: start_date=1970-01-01, end_date=9999-12-31, from_ts=1970-01-01 00:00:00 UTC, to_ts=9999-12-31 23:59:59 UTC, variant=
SELECT
  date_trunc('minute', end_ts) AS minute,
  count_if(stage = 'store') AS succeeded,
  count_if(stage = 'record_failure') AS failed
FROM radstream.telemetry
WHERE dt BETWEEN :start_date AND :end_date
  AND status = 'ok'
  AND stage IN ('store', 'record_failure')
  AND end_ts >= CAST(:from_ts AS TIMESTAMP WITH TIME ZONE)
  AND end_ts < CAST(:to_ts AS TIMESTAMP WITH TIME ZONE)
  AND (:variant = '' OR variant = :variant)
GROUP BY 1
ORDER BY 1;

-- name: dashboard_failures_per_minute
-- description: Failed executions per minute of a window and error code.
-- params: start_date=1970-01-01, end_date=9999-12-31, from_ts=1970-01-01 00:00:00 UTC, to_ts=9999-12-31 23:59:59 UTC, variant=
SELECT
  date_trunc('minute', end_ts) AS minute,
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
ORDER BY 1, 2;

-- name: dashboard_stage_latency
-- description: Per-stage latency p50/p95/p99 of the successful stage attempts that ended in a window.
-- params: start_date=1970-01-01, end_date=9999-12-31, from_ts=1970-01-01 00:00:00 UTC, to_ts=9999-12-31 23:59:59 UTC, variant=
SELECT
  stage,
  count(*) AS n,
  approx_percentile(duration_ms, 0.5) AS p50_ms,
  approx_percentile(duration_ms, 0.95) AS p95_ms,
  approx_percentile(duration_ms, 0.99) AS p99_ms
FROM radstream.telemetry
WHERE dt BETWEEN :start_date AND :end_date
  AND status = 'ok'
  AND end_ts >= CAST(:from_ts AS TIMESTAMP WITH TIME ZONE)
  AND end_ts < CAST(:to_ts AS TIMESTAMP WITH TIME ZONE)
  AND (:variant = '' OR variant = :variant)
GROUP BY stage
ORDER BY stage;

-- name: dashboard_cost_per_image_daily
-- description: Cost per successful image per day (dt), one variant or all, from the per-stage cost column.
-- params: start_date=1970-01-01, end_date=9999-12-31, variant=
SELECT
  dt,
  sum(cost_usd) AS cost_usd,
  count(DISTINCT CASE WHEN stage = 'store' AND status = 'ok' THEN execution_id END) AS images,
  sum(cost_usd)
    / nullif(count(DISTINCT CASE WHEN stage = 'store' AND status = 'ok' THEN execution_id END), 0)
    AS cost_per_image_usd
FROM radstream.telemetry
WHERE dt BETWEEN :start_date AND :end_date
  AND (:variant = '' OR variant = :variant)
GROUP BY dt
ORDER BY dt;

-- name: dashboard_batch_sizes
-- description: Batch sizes formed at the model in a window: inference calls per size.
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

-- name: dashboard_variants
-- description: Every A/B variant side by side over a window: executions, success rate, end-to-end p50/p95, cost per successful image.
-- params: start_date=1970-01-01, end_date=9999-12-31, from_ts=1970-01-01 00:00:00 UTC, to_ts=9999-12-31 23:59:59 UTC
WITH per_execution AS (
  SELECT
    execution_id,
    arbitrary(variant) AS variant,
    max(CASE WHEN stage = 'store' AND status = 'ok' THEN 1 ELSE 0 END) AS succeeded,
    coalesce(max(CASE WHEN attempt = 1 THEN queue_wait_ms END), 0)
      + date_diff('millisecond', min(start_ts), max(end_ts)) AS e2e_ms,
    coalesce(sum(cost_usd), 0) AS cost_usd
  FROM radstream.telemetry
  WHERE dt BETWEEN :start_date AND :end_date
    AND variant IS NOT NULL
  GROUP BY execution_id
  HAVING max(CASE WHEN stage IN ('store', 'record_failure') AND status = 'ok' THEN 1 ELSE 0 END) = 1
    AND max(end_ts) >= CAST(:from_ts AS TIMESTAMP WITH TIME ZONE)
    AND max(end_ts) < CAST(:to_ts AS TIMESTAMP WITH TIME ZONE)
)
SELECT
  variant,
  count(*) AS executions,
  CAST(sum(succeeded) AS DOUBLE) / count(*) AS success_rate,
  approx_percentile(e2e_ms, 0.5) AS p50_ms,
  approx_percentile(e2e_ms, 0.95) AS p95_ms,
  sum(cost_usd) / nullif(sum(succeeded), 0) AS cost_per_image_usd
FROM per_execution
GROUP BY variant
ORDER BY variant;
