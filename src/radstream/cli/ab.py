"""``ab …``: A/B experiments over the pipeline (``ab scenarios``, ``ab run``).

Exit status of ``ab run``: 0 whatever the verdicts; 2 when the experiment could not be run
or completed (a bad setting, a block that failed), with the reason.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from radstream.cli.app import (
    AwsEndpointOpt,
    DataDir,
    JsonOpt,
    RegionOpt,
    app,
    console,
    out,
    phase_progress,
    progress_bar,
    stack_ref,
)
from radstream.cli.load import LoadOptions
from radstream.errors import ConfigInvalid
from radstream.settings import load_settings

if TYPE_CHECKING:
    from radstream.ab.design import Slot
    from radstream.ab.model import ExperimentResult
    from radstream.ab.scenarios import Scenario

ab_app = typer.Typer(
    help="A/B experiments: compare two or more settings with statistics.", no_args_is_help=True
)
app.add_typer(ab_app, name="ab")


@ab_app.command("scenarios")
def ab_scenarios(as_json: JsonOpt = False) -> None:
    """List the built-in experiments: what each compares, and whether it runs here."""
    from radstream.ab.scenarios import scenarios

    found = scenarios()
    if as_json:
        rows = [
            {"name": s.name, "compares": s.compares, "mode": s.mode, "arms": s.arms, "note": s.note}
            for s in found.values()
        ]
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    table = Table(title="A/B scenarios")
    for column in ("name", "compares", "runs", "note"):
        table.add_column(column)
    for s in found.values():
        table.add_row(s.name, s.compares, s.where, s.note)
    out.print(table)


@ab_app.command("run")
def ab_run(
    scenario: Annotated[
        str | None, typer.Argument(help="A built-in scenario (see `ab scenarios`)")
    ] = None,
    arm_a: Annotated[
        list[str] | None, typer.Option("--a", help="Arm a's KEY=VALUE setting (repeatable)")
    ] = None,
    arm_b: Annotated[
        list[str] | None, typer.Option("--b", help="Arm b's KEY=VALUE setting (repeatable)")
    ] = None,
    studies: Annotated[int, typer.Option(min=2, help="Measured studies per arm and block")] = 12,
    blocks: Annotated[
        int, typer.Option(min=1, help="Blocks per arm (throughput and cost need 5)")
    ] = 5,
    rate: Annotated[float | None, typer.Option(help="Open loop: studies per second")] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="Closed loop: studies in flight [default: the scenario's, 2]"),
    ] = None,
    shape: Annotated[
        str | None, typer.Option(help="step:R/S,R/S… | burst:N/S | ramp:R0-R1/S")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="png|png16|jpeg|dicom|mix")] = "jpeg",
    size: Annotated[str, typer.Option(help="Image size WxH")] = "2000x2500",
    warmup: Annotated[int, typer.Option(min=0, help="Unmeasured studies per block")] = 2,
    seed: Annotated[int, typer.Option(help="Images, block order and bootstrap")] = 1,
    margin: Annotated[
        float, typer.Option(min=0.0, max=0.5, help="Equivalence margin of 'same' (b/a)")
    ] = 0.05,
    level: Annotated[
        float, typer.Option(min=0.5, max=0.999, help="Confidence level of the intervals")
    ] = 0.95,
    random_order: Annotated[
        bool, typer.Option("--random-order", help="Random block order (seeded), not ABBA")
    ] = False,
    report: Annotated[Path | None, typer.Option(help="Write a self-contained HTML report")] = None,
    only: Annotated[
        str | None,
        typer.Option(
            "--arms",
            help="Only these of the scenario's arms, comma-separated; the first is the baseline",
        ),
    ] = None,
    stack: Annotated[
        str | None,
        typer.Option(
            help="Run on AWS: deploy a stack NAME-<arm> per arm (costs money), run the blocks "
            "against them, destroy them at the end"
        ),
    ] = None,
    keep_stacks: Annotated[
        bool, typer.Option("--keep-stacks", help="With --stack: leave the stacks deployed")
    ] = False,
    package_dir: Annotated[
        Path,
        typer.Option("--package", help="With --stack: Lambda package directory (built if missing)"),
    ] = Path("dist/lambda"),
    python_version: Annotated[
        str | None,
        typer.Option(help="With --stack: Lambda Python [3.12]; 3.11 for an emulator on 3.11"),
    ] = None,
    region: RegionOpt = None,
    endpoint_url: AwsEndpointOpt = None,
    as_json: JsonOpt = False,
    data_dir: DataDir = None,
) -> None:
    """Compare arms of settings in alternating blocks, with bootstrap intervals and verdicts.

    Give a SCENARIO, or --a and --b (KEY=VALUE as in radstream.toml, e.g. engine.workers=1;
    serve.* keys start a model server per block). Each experiment gets its own data
    directory under the data directory's ab/ folder. With --stack NAME the arms run on AWS,
    each on its own stack NAME-<arm> deployed with its settings (storage-class and
    lambda-memory then measure rather than project); real deploys cost money."""
    from radstream.ab.run import ExperimentConfig, run_experiment
    from radstream.ab.scenarios import scenarios

    chosen: Scenario | None = None
    if scenario is not None:
        found = scenarios()
        if scenario not in found:
            raise typer.BadParameter(
                f"unknown scenario {scenario!r}; one of: {', '.join(found)}", param_hint="SCENARIO"
            )
        if arm_a or arm_b:
            raise typer.BadParameter("give a SCENARIO or --a/--b, not both")
        chosen = found[scenario]
        arms = chosen.arms
        name = chosen.name
    else:
        if not arm_a or not arm_b:
            raise typer.BadParameter("give a SCENARIO, or both --a and --b KEY=VALUE settings")
        from radstream.ab.overrides import parse_pairs

        arms = {"a": parse_pairs(arm_a), "b": parse_pairs(arm_b)}
        name = "custom"
    if only is not None:
        arms = pick_arms(arms, only)
    if not (rate or shape or concurrency):
        concurrency = chosen.concurrency if chosen else 2
    load = LoadOptions(
        studies=studies,
        rate=rate,
        concurrency=concurrency,
        poisson=False,
        shape=shape,
        trace=None,
        fmt=fmt,
        size=size,
        invalid_ratio=0.0,
        seed=seed,
    )
    root = load_settings(data_dir=data_dir).data_dir
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    exp_dir = root / "ab" / f"{name}-{stamp}"
    settings = load_settings(data_dir=exp_dir)
    cfg = ExperimentConfig(
        experiment=name,
        arms=arms,
        bench=load.config(warmup=warmup),
        blocks=blocks,
        margin=margin,
        level=level,
        scheme="random" if random_order else "abba",
        seed=seed,
        scenario=chosen,
    )
    if stack is not None:
        from radstream.ab.stacks import StackSpec, run_on_stacks, stack_name
        from radstream.aws.package import DEFAULT_PYTHON

        ref = stack_ref(settings, stack, region, endpoint_url)
        spec = StackSpec(
            prefix=stack,
            target=ref.target,
            package_dir=package_dir,
            python_version=python_version or DEFAULT_PYTHON,
            keep=keep_stacks,
        )
        where = f"emulator {ref.target.endpoint_url}" if ref.target.endpoint_url else "AWS"
        console.print(
            f"[yellow]stacks[/yellow] one stack per arm on {escape(where)}: "
            f"{escape(', '.join(stack_name(stack, a) for a in arms))}"
            + (
                ""
                if ref.target.endpoint_url
                else " (real deploys: they cost money while they stand)"
            )
        )
    elif chosen is not None and chosen.mode == "projected":
        console.print(
            f"[yellow]projection[/yellow] {escape(chosen.note)} The figures of the arms are "
            "PROJECTED from one measured configuration, not measured."
        )
    console.print(f"experiment data in {escape(str(exp_dir))}")
    with progress_bar() as bar:
        progress = phase_progress(bar)

        def on_block(slot: Slot, total: int) -> None:
            progress("blocks", slot.position, total)
            bar.console.print(f"block {slot.position + 1}/{total}: arm {escape(slot.arm)}")

        try:
            if stack is not None:
                run = run_on_stacks(
                    settings,
                    cfg,
                    spec,
                    progress,
                    on_block,
                    report=lambda line: bar.console.print(escape(line)),
                )
            else:
                run = run_experiment(settings, cfg, progress, on_block)
        except ValueError as exc:  # the design or the analysis refused the input
            raise ConfigInvalid(str(exc)) from exc
        progress("blocks", len(run.log), len(run.log))
    if report is not None:
        from radstream.ab.report import render_ab_report

        render_ab_report(run, report)
        console.print(f"report written to {escape(str(report))}")
    if as_json:
        sys.stdout.write(json.dumps(run.result.model_dump(mode="json")) + "\n")
    else:
        print_result(run.result)
    left = [u for u in run.result.stacks if u.destroyed is False]
    if left:
        from radstream.ab.run import ExperimentFailed

        names = ", ".join(u.stack for u in left)
        raise ExperimentFailed(
            f"the experiment completed, but stacks could not be destroyed and still cost "
            f"money: {names}; remove each with `radstream aws destroy --stack NAME`"
        )


def pick_arms(arms: dict[str, dict[str, str]], only: str) -> dict[str, dict[str, str]]:
    """The arms named in ``only`` (comma-separated), in that order: the first is the baseline."""
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in arms]
    if unknown or len(names) < 2 or len(set(names)) != len(names):
        raise typer.BadParameter(
            f"name two or more distinct arms of: {', '.join(arms)}", param_hint="--arms"
        )
    return {n: arms[n] for n in names}


def _num(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "USD":
        return f"${v:.3g}"
    if unit == "fraction":
        return f"{v:.3f}"
    return f"{v:.4g}"


def print_result(result: ExperimentResult) -> None:
    """The verdict table, the sample-ratio check and the projection labels (stdout)."""
    projected = bool(result.projected)
    title = f"A/B experiment {result.experiment}" + (" (PROJECTED)" if projected else "")
    table = Table(title=title)
    for column in ("metric", "b vs a", "a", "b", "b/a", "interval of b/a", "p", "verdict"):
        table.add_column(column, no_wrap=True)
    for m in result.metrics:
        ci = m.ci95["ratio"] if m.ci95 else None
        table.add_row(
            m.metric + (" *" if m.projected else ""),
            f"{m.arm_b} vs {m.arm_a}",
            _num(m.a, m.unit),
            _num(m.b, m.unit),
            f"{m.ratio:.3f}" if m.ratio is not None else "-",
            f"{ci.low:.3f}-{ci.high:.3f}" if ci else "-",
            f"{m.p_value:.2g}" if m.p_value is not None else "-",
            m.verdict,
        )
    # Piped output is 80 columns by default, too narrow for nine columns: widen it there.
    wide = out if out.is_terminal else Console(width=160, soft_wrap=True)
    wide.print(table)
    out.print(f"order: {' '.join(result.order)}")
    out.print(f"sample ratio: {escape(result.srm.reason)}")
    out.print(f"multiple comparisons: {escape(result.correction)}")
    if result.sweep is not None:
        out.print(f"memory sweep (projected): {escape(result.sweep.reason)}")
    if result.stacks:
        out.print("[green]measured on deployed stacks, not projected:[/green]")
        for u in result.stacks:
            fate = {True: "destroyed", False: "NOT destroyed", None: "kept"}[u.destroyed]
            out.print(
                f"  - arm {escape(u.arm)}: stack {escape(u.stack)} ({u.deploy}, "
                f"{u.status or '-'}; {u.memory_mb} MB, "
                f"{'S3 Express' if u.express_artifacts else 'S3 Standard'} tensors), {fate}"
            )
    if projected:
        methods = sorted({p.method for p in result.projected})
        out.print("[yellow]* projected, not measured:[/yellow]")
        for method in methods:
            out.print(f"  - {escape(method)}")
