"""The terminal summary of a benchmark run: the rows ``radstream bench`` prints.

Kept next to the report so that the CLI only lays the rows out (a Rich table); values
carry Rich markup for the SLO verdicts.
"""

from __future__ import annotations

from radstream.bench.report import BenchReport


def summary_rows(report: BenchReport) -> list[tuple[str, str]]:
    """``(label, value)`` rows: latency, lateness, throughput, success, cost, stages, SLOs."""
    r = report
    rows = [
        ("studies measured (valid)", str(r.n)),
        (
            "end-to-end p50 / p95 / p99 / max",
            f"{r.p50_ms} / {r.p95_ms} / {r.p99_ms} / {r.max_ms} ms (from intended send)",
        ),
        ("late sends", f"{r.late_sends.count} (max {r.late_sends.max_ms} ms)"),
        (
            "throughput",
            f"{r.throughput_per_min} /min ({'stable' if r.stable else 'UNSTABLE'})",
        ),
        ("success rate", f"{r.success_rate}"),
        ("cost per image", f"${r.cost_per_image_usd}"),
    ]
    if r.efficiency is not None:
        rows.append(("efficiency (vs in-memory limit)", f"{r.efficiency}"))
    for stage, stats in r.stages.items():
        rows.append((f"  {stage} p50 / p95", f"{stats.p50_ms} / {stats.p95_ms} ms"))
    for name, slo in r.slo.items():
        mark = "[green]pass[/green]" if slo.passed else "[red]FAIL[/red]"
        rows.append((f"SLO {name} {slo.op} {slo.limit}", f"{slo.value}  {mark}"))
    return rows
