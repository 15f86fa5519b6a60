"""Run an A/B experiment on the local pipeline: blocks of bench runs, then the statistics.

Each block is one :func:`~radstream.bench.runner.run_bench` (its warm-up studies first, then
``studies`` measured ones) with the arm's settings on top of the base settings and
``telemetry.variant`` set to the arm's name, so the lake's rows say which arm they belong
to (``radstream query execution_latency_percentiles --param by_variant=true``). Blocks run
in :func:`block_order`; the blocks of one round use the same seed, so every arm gets the
same images. An arm with ``serve.`` keys
gets a model server of its own for each block (:mod:`radstream.ab.overrides`).

A projected scenario runs its one measured configuration for ``blocks`` blocks and derives
each arm's blocks from them (:mod:`radstream.ab.derive`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import pyarrow as pa
from pydantic import JsonValue

from radstream.ab.analysis import analyse
from radstream.ab.derive import (
    NOT_PROJECTED,
    MeasuredBlock,
    memory_arm_blocks,
    storage_arm_blocks,
)
from radstream.ab.design import Scheme, Slot, block_order
from radstream.ab.model import BlockData, ExperimentResult, Projection, StackUse, SweepSummary
from radstream.ab.overrides import apply_settings, serve_config, split_serve
from radstream.ab.projection import load_inputs
from radstream.ab.scenarios import Scenario
from radstream.ab.sweep import StageTiming
from radstream.ab.verdict import DEFAULT_MARGIN
from radstream.bench.report import BenchReport
from radstream.bench.runner import BenchConfig, run_bench
from radstream.errors import ConfigInvalid, RadStreamError
from radstream.lake.parquet_sink import read_lake
from radstream.model import read_model_info
from radstream.model.loading import resolve_model_path
from radstream.pricing import load_pricing
from radstream.serving.server import running_server
from radstream.settings import Settings

Progress = Callable[[str, int, int], None]
BlockHook = Callable[[Slot, int], None]
"""Called as each block starts: its slot and the number of blocks in the run."""


class ExperimentFailed(RadStreamError):
    """The experiment could not be completed (a block failed); nothing was analysed."""

    code = "AB_RUN_FAILED"
    hint = "See the message for the block and its error; fix it and run the experiment again."


@dataclass(frozen=True)
class ExperimentConfig:
    """What to compare and how: the arms, the blocks, the load of each block."""

    experiment: str
    arms: dict[str, dict[str, str]]
    """Arm name → ``KEY=VALUE`` pairs (settings, and ``serve.`` keys for a model server)."""
    bench: BenchConfig
    blocks: int = 4
    margin: float = DEFAULT_MARGIN
    level: float = 0.95
    """Confidence level of the intervals (``--level``)."""
    scheme: Scheme = "abba"
    seed: int = 0
    scenario: Scenario | None = None


@dataclass(frozen=True)
class BlockLog:
    """When one block ran (seconds since the experiment started), for the report."""

    position: int
    round: int
    arm: str
    start_s: float
    end_s: float
    p50_ms: float | None = None
    throughput_per_min: float | None = None
    stable: bool | None = None
    stack: str | None = None
    """The deployed stack the block ran on (``--stack``); None on this machine."""


@dataclass
class ExperimentRun:
    """The result, and what the report draws beyond it."""

    result: ExperimentResult
    latencies: dict[str, list[float]]
    log: list[BlockLog] = field(default_factory=list)


def validate_arms(settings: Settings, arms: Mapping[str, Mapping[str, str]]) -> None:
    """Every arm's pairs applied once, so a bad key fails before any block runs."""
    if len(arms) < 2:
        raise ConfigInvalid(f"an experiment needs at least two arms, got {list(arms)}")
    for pairs in arms.values():
        plain, serve = split_serve(pairs)
        apply_settings(settings, plain)
        if serve:
            serve_config(settings.models_dir / "check.onnx", serve)


@contextmanager
def arm_settings(base: Settings, arm: str, pairs: Mapping[str, str]) -> Iterator[Settings]:
    """The arm's settings for one block; with ``serve.`` keys, a model server runs meanwhile."""
    plain, serve = split_serve(pairs)
    settings = apply_settings(base, plain)
    telemetry = settings.telemetry.model_copy(update={"variant": arm})
    settings = settings.model_copy(update={"telemetry": telemetry})
    if not serve:
        yield settings
        return
    path = resolve_model_path(settings)
    # The server serves the file under its own name, as `model serve` does; the workers must
    # ask for that name (an endpoint_model left at another default is answered 404).
    config = dataclasses.replace(serve_config(path, serve), name=read_model_info(path).name)
    with running_server(config) as url:
        model = settings.model.model_copy(update={"endpoint": url, "endpoint_model": config.name})
        yield settings.model_copy(update={"model": model})


def block_data(slot: Slot, report: BenchReport) -> BlockData:
    """What the analysis needs from one block's bench report."""
    o = report.outcomes
    return BlockData(
        position=slot.position,
        round=slot.round,
        arm=slot.arm,
        latencies_ms=list(report.series.latencies_ms),
        throughput_per_min=report.throughput_per_min,
        cost_per_image_usd=report.cost_per_image_usd,
        planned=o.valid,
        measured=o.succeeded + o.failed,
        valid=o.valid - o.not_sent,
        succeeded=o.succeeded,
    )


def _stage_timings(settings: Settings, seen: set[str], arm: str) -> list[list[StageTiming]]:
    """Per measured study new to the lake since ``seen``: its stage attempts."""
    table = read_lake(settings.lake_dir)
    rows = table.select(["execution_id", "study_id", "stage", "duration_ms", "variant"]).to_pylist()
    studies: dict[str, list[StageTiming]] = {}
    for row in rows:
        # Bench names its measured studies RUN-m-ID and its warm-up ones RUN-w-ID.
        if row["execution_id"] in seen or row["variant"] != arm or "-m-" not in row["study_id"]:
            continue
        s = float(row["duration_ms"]) / 1000.0
        studies.setdefault(row["study_id"], []).append(StageTiming(cpu_s=s, wall_s=s))
    seen.update(str(r["execution_id"]) for r in rows)
    return list(studies.values())


def _executions(settings: Settings) -> set[str]:
    table: pa.Table = read_lake(settings.lake_dir)
    return {str(v) for v in table.column("execution_id").to_pylist()}


BlockRunner = Callable[[Slot, BenchConfig], tuple[BenchReport, list[list[StageTiming]]]]
"""Runs one block: its bench report, and (projected runs only) its studies' stage timings."""


def run_blocks(
    slots: list[Slot],
    cfg: ExperimentConfig,
    run_block: BlockRunner,
    on_block: BlockHook | None = None,
    where: Mapping[str, str] | None = None,
) -> tuple[list[tuple[Slot, BenchReport, list[list[StageTiming]]]], list[BlockLog]]:
    """Run ``slots`` in order with ``run_block``; ExperimentFailed names the block that
    failed or timed out. ``where`` maps an arm to the stack its blocks ran on."""
    started = time.monotonic()
    log: list[BlockLog] = []
    reports: list[tuple[Slot, BenchReport, list[list[StageTiming]]]] = []
    for slot in slots:
        if on_block is not None:
            on_block(slot, len(slots))
        bench = dataclasses.replace(cfg.bench, seed=cfg.bench.seed + slot.round)
        t0 = time.monotonic() - started
        try:
            report, timings = run_block(slot, bench)
        except Exception as exc:  # any failure ends the run: say which block, and why
            raise ExperimentFailed(
                f"block {slot.position + 1} of {len(slots)} (arm {slot.arm!r}, round "
                f"{slot.round + 1}) failed: {exc}",
                block=slot.position,
                arm=slot.arm,
            ) from exc
        if report.timed_out:
            raise ExperimentFailed(
                f"block {slot.position + 1} of {len(slots)} (arm {slot.arm!r}) timed out after "
                f"{bench.timeout_s:g} s; lower --studies or the load"
            )
        end = time.monotonic() - started
        log.append(
            BlockLog(
                slot.position,
                slot.round,
                slot.arm,
                round(t0, 3),
                round(end, 3),
                report.p50_ms,
                report.throughput_per_min,
                report.stable,
                (where or {}).get(slot.arm),
            )
        )
        reports.append((slot, report, timings))
    return reports, log


def experiment_manifest(
    base: Settings,
    cfg: ExperimentConfig,
    mode: str,
    plan: Mapping[str, Mapping[str, str]],
    reports: list[tuple[Slot, BenchReport, list[list[StageTiming]]]],
    log: list[BlockLog],
) -> dict[str, object]:
    """The design, the block log and the bench's versions and machine, for ``manifest``."""
    return {
        "scenario": cfg.scenario.name if cfg.scenario else None,
        "mode": mode,
        "studies_per_block": cfg.bench.studies,
        "warmup_per_block": cfg.bench.warmup,
        "blocks_per_arm": cfg.blocks,
        "scheme": "sequential (one measured arm)" if mode == "projected" else cfg.scheme,
        "seed": cfg.seed,
        "data_dir": str(base.data_dir),
        "measured_arms": {k: dict(v) for k, v in plan.items()},
        "block_log": [dataclasses.asdict(b) for b in log],
        "bench": _bench_manifest(reports[0][1]) if reports else {},
    }


def run_experiment(
    base: Settings,
    cfg: ExperimentConfig,
    progress: Progress | None = None,
    on_block: BlockHook | None = None,
) -> ExperimentRun:
    """Run every block and analyse them; ExperimentFailed if a block fails.

    ``base`` should point at the experiment's own data directory: every block's engine,
    lake and model live there. (On deployed stacks: :func:`radstream.ab.stacks.run_on_stacks`.)
    """
    validate_arms(base, cfg.arms)
    cfg.bench.validate()
    scenario = cfg.scenario
    projected = scenario is not None and scenario.mode == "projected"
    if projected:
        assert scenario is not None
        plan = {"measured": scenario.measure}
        slots = [Slot(position=r, round=r, arm="measured") for r in range(cfg.blocks)]
    else:
        plan = cfg.arms
        slots = block_order(list(cfg.arms), cfg.blocks, scheme=cfg.scheme, seed=cfg.seed)
    seen = _executions(base)

    def run_block(slot: Slot, bench: BenchConfig) -> tuple[BenchReport, list[list[StageTiming]]]:
        with arm_settings(base, slot.arm, plan[slot.arm]) as settings:
            report = run_bench(settings, bench, progress)
        return report, _stage_timings(settings, seen, slot.arm) if projected else []

    reports, log = run_blocks(slots, cfg, run_block, on_block)
    if projected:
        assert scenario is not None
        manifest = experiment_manifest(base, cfg, "projected", plan, reports, log)
        return _projected(base, cfg, scenario, reports, log, manifest)
    return measured_run(base, cfg, reports, log)


def measured_run(
    base: Settings,
    cfg: ExperimentConfig,
    reports: list[tuple[Slot, BenchReport, list[list[StageTiming]]]],
    log: list[BlockLog],
    stacks: Sequence[StackUse] | None = None,
) -> ExperimentRun:
    """The blocks of a run that measured every arm, analysed: on this machine, or with
    ``stacks`` on those deployed stacks (the manifest's mode and ``source`` are ``stack``)."""
    mode = "real" if stacks is None else "stack"
    manifest = experiment_manifest(base, cfg, mode, cfg.arms, reports, log)
    blocks = [block_data(slot, report) for slot, report, _ in reports]
    result = analyse(
        experiment=cfg.experiment,
        arms=cfg.arms,
        blocks=blocks,
        margin=cfg.margin,
        level=cfg.level,
        seed=cfg.seed,
        manifest=manifest,
    )
    if stacks is not None:
        result = result.model_copy(update={"source": "stack", "stacks": list(stacks)})
    return ExperimentRun(result, latencies_by_arm(blocks), log)


def _bench_manifest(report: BenchReport) -> dict[str, JsonValue]:
    dump = report.manifest.model_dump(mode="json")
    return {k: dump[k] for k in ("radstream", "python", "packages", "machine", "model", "config")}


def latencies_by_arm(blocks: list[BlockData]) -> dict[str, list[float]]:
    """Every measured latency of each arm, blocks pooled (for the report's CDFs)."""
    out: dict[str, list[float]] = {}
    for b in blocks:
        out.setdefault(b.arm, []).extend(b.latencies_ms)
    return out


def _projected(
    base: Settings,
    cfg: ExperimentConfig,
    scenario: Scenario,
    reports: list[tuple[Slot, BenchReport, list[list[StageTiming]]]],
    log: list[BlockLog],
    manifest: dict[str, object],
) -> ExperimentRun:
    pricing = load_pricing(base.cost.pricing)
    inputs = load_inputs()
    measured = [MeasuredBlock(s.round, r, t) for s, r, t in reports]
    sweep: SweepSummary | None = None
    labels: list[Projection]
    if scenario.projector == "lambda-memory":
        arm_of = {int(p["cost.memory_mb"]): arm for arm, p in cfg.arms.items()}
        blocks, labels, sweep = memory_arm_blocks(measured, list(arm_of), pricing, inputs, arm_of)
    else:
        classes = {arm: p["cost.storage_class"] for arm, p in cfg.arms.items()}
        blocks, labels = storage_arm_blocks(measured, classes, pricing, inputs)
    # Positions as if the derived arms had run in the balanced order, round by round.
    order = block_order(list(cfg.arms), cfg.blocks, scheme=cfg.scheme, seed=cfg.seed)
    where = {(s.round, s.arm): s.position for s in order}
    blocks = sorted(
        (b.model_copy(update={"position": where[(b.round, b.arm)]}) for b in blocks),
        key=lambda b: b.position,
    )
    result = analyse(
        experiment=cfg.experiment,
        arms=cfg.arms,
        blocks=blocks,
        margin=cfg.margin,
        level=cfg.level,
        seed=cfg.seed,
        projected=labels,
        sweep=sweep,
        manifest=manifest,
    )
    # Throughput has no projected value on purpose: say so rather than "too few blocks".
    rows = [
        m.model_copy(update={"reason": NOT_PROJECTED, "more_blocks_per_arm": None})
        if m.metric == "throughput_per_min" and m.a is None
        else m
        for m in result.metrics
    ]
    result = result.model_copy(update={"metrics": rows, "source": "projected"})
    return ExperimentRun(result, latencies_by_arm(blocks), log)
