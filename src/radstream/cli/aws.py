"""``aws …``: template, package, deploy, destroy and status of a deployed stack."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from radstream.cli.app import (
    AwsEndpointOpt,
    DataDir,
    JsonOpt,
    ModelPath,
    RegionOpt,
    aws_app,
    console,
    out,
    settings_for,
    stack_ref,
)
from radstream.settings import Settings

if TYPE_CHECKING:
    from radstream.aws.template import TemplateOptions

MemoryOpt = Annotated[int | None, typer.Option(help="Lambda memory [cost.memory_mb]")]
ArchOpt = Annotated[str | None, typer.Option(help="x86_64 or arm64 [cost.architecture]")]
MachineOpt = Annotated[str | None, typer.Option(help="STANDARD or EXPRESS [cost.state_machine]")]
ExpressOpt = Annotated[
    bool | None,
    typer.Option("--express-artifacts/--standard-artifacts", help="S3 Express for tensors"),
]
EndpointModelOpt = Annotated[
    str | None, typer.Option(help="KServe v2 URL; unset: ONNX Runtime in Lambda")
]
KmsOpt = Annotated[bool, typer.Option("--kms", help="SSE-KMS with a key from the stack")]
AlarmTopicOpt = Annotated[
    str | None,
    typer.Option(help="SNS topic ARN every alarm notifies [default: console only]"),
]
AlarmEmailOpt = Annotated[
    str | None,
    typer.Option(
        help="e-mail address subscribed to an alarm topic of the stack (confirm the mail "
        "SNS sends) [default: none]"
    ),
]
DashboardOpt = Annotated[
    bool,
    typer.Option(
        "--dashboard/--no-dashboard",
        help="CloudWatch dashboard and operational alarms (the loss alarms stay)",
    ),
]
ReservedOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--reserved-concurrency",
        help="STAGE=N: reserve (and cap) a stage's concurrency, e.g. infer=20 to protect a "
        "model endpoint; repeatable",
    ),
]
StackOpt = Annotated[str, typer.Option(help="Stack name (prefixes every resource name)")]
PythonOpt = Annotated[
    str | None,
    typer.Option(
        help="Lambda Python [3.12]; 3.11 only for an emulator that runs the code on Python 3.11"
    ),
]


@dataclass(frozen=True)
class TemplateFlags:
    """The template flags of ``aws template`` and ``aws deploy``; None: the setting."""

    memory_mb: int | None = None
    architecture: str | None = None
    state_machine: str | None = None
    express_artifacts: bool | None = None
    model_endpoint: str | None = None
    kms: bool = False
    reserved_concurrency: tuple[str, ...] = ()
    """``STAGE=N`` pairs."""
    alarm_topic: str | None = None
    alarm_email: str | None = None
    dashboard: bool = True

    def options(self, settings: Settings) -> TemplateOptions:
        """The flags, else the settings: `aws template` prints exactly what `aws deploy`
        sends."""
        from radstream.aws.deploy import template_options_from

        chosen = asdict(self)
        chosen["reserved_concurrency"] = parse_reserved(self.reserved_concurrency)
        return template_options_from(settings, **chosen)


def parse_reserved(pairs: tuple[str, ...] | list[str]) -> dict[str, int]:
    """``["infer=20"]`` → ``{"infer": 20}``; raises ``typer.BadParameter`` otherwise."""
    parsed: dict[str, int] = {}
    for pair in pairs:
        stage, sep, number = pair.partition("=")
        if not sep or not number.strip().isdigit():
            raise typer.BadParameter(
                f"{pair!r} is not STAGE=N (e.g. infer=20)", param_hint="--reserved-concurrency"
            )
        parsed[stage.strip().replace("-", "_")] = int(number)
    return parsed


@aws_app.command("template")
def aws_template(
    stack: StackOpt,
    memory_mb: MemoryOpt = None,
    architecture: ArchOpt = None,
    state_machine: MachineOpt = None,
    express_artifacts: ExpressOpt = None,
    model_endpoint: EndpointModelOpt = None,
    kms: KmsOpt = False,
    reserved_concurrency: ReservedOpt = None,
    alarm_topic: AlarmTopicOpt = None,
    alarm_email: AlarmEmailOpt = None,
    dashboard: DashboardOpt = True,
    data_dir: DataDir = None,
) -> None:
    """Print the CloudFormation template of the whole stack (JSON), as `aws deploy` sends it."""
    from radstream.aws.template import template_json

    flags = TemplateFlags(
        memory_mb,
        architecture,
        state_machine,
        express_artifacts,
        model_endpoint,
        kms,
        tuple(reserved_concurrency or ()),
        alarm_topic,
        alarm_email,
        dashboard,
    )
    options = flags.options(settings_for(data_dir))
    sys.stdout.write(template_json(stack, options) + "\n")


@aws_app.command("package")
def aws_package(
    out_dir: Annotated[Path, typer.Option("--out", help="Where to write the zips")] = Path(
        "dist/lambda"
    ),
    architecture: ArchOpt = None,
    python_version: PythonOpt = None,
    data_dir: DataDir = None,
) -> None:
    """Build the Lambda package and layers (manylinux wheels; reproducible; size-checked)."""
    from radstream.aws.package import DEFAULT_PYTHON, build_package

    settings = settings_for(data_dir)
    manifest = build_package(
        out_dir,
        python_version=python_version or DEFAULT_PYTHON,
        architecture=architecture or settings.cost.architecture,
    )
    for artifact in manifest.artifacts.values():
        out.print(
            f"{escape(str(artifact.path))}  {artifact.zipped_bytes / 1e6:7.1f} MB zipped  "
            f"{artifact.unzipped_bytes / 1e6:7.1f} MB unzipped  sha256 {artifact.sha256[:16]}"
        )
    for stage, size in manifest.functions.items():
        out.print(f"function {stage:<15} {size / 1e6:7.1f} MB of 262.1 MB")


@aws_app.command("deploy")
def aws_deploy(
    stack: StackOpt,
    region: RegionOpt = None,
    endpoint_url: AwsEndpointOpt = None,
    model: ModelPath = None,
    package_dir: Annotated[
        Path, typer.Option("--package", help="Package directory (built if missing)")
    ] = Path("dist/lambda"),
    python_version: PythonOpt = None,
    memory_mb: MemoryOpt = None,
    architecture: ArchOpt = None,
    state_machine: MachineOpt = None,
    express_artifacts: ExpressOpt = None,
    model_endpoint: EndpointModelOpt = None,
    kms: KmsOpt = False,
    reserved_concurrency: ReservedOpt = None,
    alarm_topic: AlarmTopicOpt = None,
    alarm_email: AlarmEmailOpt = None,
    dashboard: DashboardOpt = True,
    express_zone: Annotated[
        str | None,
        typer.Option(
            help="Availability Zone id of the S3 Express directory bucket (e.g. use1-az4) "
            "[default: the stack's, else one of the region's]"
        ),
    ] = None,
    named_queries: Annotated[
        bool | None,
        typer.Option(
            "--named-queries/--no-named-queries",
            help="Athena named queries [default: yes on AWS, no with --endpoint-url]",
        ),
    ] = None,
    confirm: Annotated[
        bool, typer.Option("--confirm", help="Ask before applying the change set")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Create or update the stack through a change set; print the change set and the outputs."""
    from radstream.aws.deploy import deploy
    from radstream.aws.deploy_inputs import current_package, deploy_options
    from radstream.aws.package import DEFAULT_PYTHON
    from radstream.aws.preflight import check_target

    settings = settings_for(data_dir, model)
    ref = stack_ref(settings, stack, region, endpoint_url)
    flags = TemplateFlags(
        memory_mb,
        architecture,
        state_machine,
        express_artifacts,
        model_endpoint,
        kms,
        tuple(reserved_concurrency or ()),
        alarm_topic,
        alarm_email,
        dashboard,
    )
    options = flags.options(settings)
    # Credentials and target first: a missing profile must not cost a 145 MB build.
    check_target(ref)
    manifest = current_package(
        package_dir,
        python_version or DEFAULT_PYTHON,
        options.architecture,
        lambda line: console.print(escape(line)),
    )

    def ask(_changes: object) -> bool:
        return typer.confirm("apply these changes?")

    outputs = deploy(
        ref,
        deploy_options(
            settings,
            options,
            manifest,
            express_zone=express_zone,
            named_queries=(
                named_queries if named_queries is not None else ref.target.endpoint_url is None
            ),
        ),
        report=console.print,
        confirm=ask if confirm else None,
    )
    for key, value in sorted(outputs.items()):
        out.print(f"{key:<28} {escape(str(value))}")


@aws_app.command("destroy")
def aws_destroy(
    stack: StackOpt,
    region: RegionOpt = None,
    endpoint_url: AwsEndpointOpt = None,
    data_dir: DataDir = None,
) -> None:
    """Empty the stack's buckets (all versions) and delete the stack and its code bucket."""
    from radstream.aws.deploy import destroy

    destroy(stack_ref(settings_for(data_dir), stack, region, endpoint_url), report=console.print)


@aws_app.command("status")
def aws_status(
    stack: StackOpt,
    region: RegionOpt = None,
    endpoint_url: AwsEndpointOpt = None,
    as_json: JsonOpt = False,
    data_dir: DataDir = None,
) -> None:
    """The stack's status, outputs and executions by status."""
    from radstream.aws.deploy import status

    report = status(stack_ref(settings_for(data_dir), stack, region, endpoint_url))
    if as_json:
        out.print_json(json.dumps(report))
        return
    out.print(f"stack {escape(str(report['stack']))}: {report['status']}")
    for key, value in sorted(report["outputs"].items()):
        out.print(f"  {key:<28} {escape(str(value))}")
    executions = ", ".join(f"{k} {v}" for k, v in sorted(report["executions"].items()))
    out.print(f"  executions: {executions or 'none'}")
