"""Service-level objectives: targets, overrides, and a pass/fail verdict per target."""

from __future__ import annotations

from dataclasses import dataclass

from radstream.bench.report import SloResult
from radstream.errors import ConfigInvalid


@dataclass(frozen=True)
class Target:
    """One objective: ``value op limit`` must hold."""

    name: str
    op: str  # "<", "<=", ">", ">="
    limit: float
    description: str


DEFAULT_TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("p95_ms", "<", 5000.0, "end-to-end p95 latency (ms)"),
        Target("throughput_per_min", ">=", 10.0, "sustained images per minute"),
        Target("cost_per_image_usd", "<", 0.002, "cost per successful image (USD)"),
        Target("success_rate", ">", 0.99, "valid studies that produced a result"),
    )
}

_OPS = {
    "<": lambda v, lim: v < lim,
    "<=": lambda v, lim: v <= lim,
    ">": lambda v, lim: v > lim,
    ">=": lambda v, lim: v >= lim,
}


class SloInvalid(ConfigInvalid):
    """An --slo argument that names no target or has no number."""

    code = "SLO_INVALID"
    hint = "Use --slo NAME=NUMBER with NAME one of p95_ms, throughput_per_min, cost_per_image_usd, success_rate."


def targets_with(overrides: list[str]) -> dict[str, Target]:
    """The default targets with ``NAME=VALUE`` overrides applied."""
    targets = dict(DEFAULT_TARGETS)
    for item in overrides:
        name, sep, value = item.partition("=")
        if not sep or name not in targets:
            raise SloInvalid(f"--slo {item!r}: unknown target or missing '='")
        try:
            limit = float(value)
        except ValueError:
            raise SloInvalid(f"--slo {item!r}: {value!r} is not a number") from None
        base = targets[name]
        targets[name] = Target(name, base.op, limit, base.description)
    return targets


def verdict(values: dict[str, float | None], targets: dict[str, Target]) -> dict[str, SloResult]:
    """Per target: value, limit, op and pass. A value that was not measured fails."""
    out: dict[str, SloResult] = {}
    for name, target in targets.items():
        value = values.get(name)
        passed = value is not None and _OPS[target.op](value, target.limit)
        out[name] = SloResult(
            value=value,
            limit=target.limit,
            op=target.op,
            passed=bool(passed),
            description=target.description,
        )
    return out
