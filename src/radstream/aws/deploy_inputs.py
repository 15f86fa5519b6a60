"""What a deploy sends besides the template: the package, the model and the secrets.

``radstream aws deploy`` and ``radstream ab run --stack`` (which deploys one stack per arm)
both turn settings and template options into :class:`~radstream.aws.deploy.DeployOptions`
here, so an experiment's stacks are deployed exactly as ``aws deploy`` would deploy them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from radstream.aws.deploy import DeployOptions, lambda_settings
from radstream.aws.package import PackageManifest, build_package, load_manifest
from radstream.aws.template import TemplateOptions
from radstream.model.loading import resolve_model_path
from radstream.model.metadata import read_model_info
from radstream.settings import Settings


def current_package(
    package_dir: Path, python_version: str, architecture: str, report: Callable[[str], None]
) -> PackageManifest:
    """The package built into ``package_dir``, rebuilt when missing, stale or built for
    another Python or architecture."""
    manifest = load_manifest(package_dir)
    if (
        manifest is None
        or manifest.architecture != architecture
        or manifest.python_version != python_version
    ):
        report(f"building the Lambda package into {package_dir}")
        manifest = build_package(
            package_dir, python_version=python_version, architecture=architecture
        )
    return manifest


def deploy_options(
    settings: Settings,
    template: TemplateOptions,
    package: PackageManifest,
    *,
    express_zone: str | None = None,
    named_queries: bool = True,
    tags: Mapping[str, str] | None = None,
) -> DeployOptions:
    """The deploy of ``template`` with ``settings``' model and secrets (``tags``: the
    stack's tags besides ``radstream:stack``)."""
    model_path = resolve_model_path(settings)
    info = read_model_info(model_path)
    preprocessing = {
        "size": info.input_size,
        "input_min": info.input_min,
        "input_max": info.input_max,
        "channels": info.channels,
    }
    _, secrets = lambda_settings(settings)
    return DeployOptions(
        secrets=secrets,
        package=package,
        # With an endpoint the model runs there; its file supplies preprocessing only.
        model_path=None if template.model_endpoint else model_path,
        model_preprocessing=preprocessing,
        template=template,
        express_zone=express_zone,
        named_queries=named_queries,
        tags=dict(tags or {}),
    )
