"""An experiment's arms on AWS: one deployed stack per arm, side by side (``--stack NAME``).

``radstream ab run SCENARIO --stack NAME`` deploys ``NAME-<arm>`` for every arm, each with
its arm's settings (``cost.memory_mb`` → the functions' memory, ``cost.storage_class`` →
tensors in S3 Express or S3 Standard: :func:`radstream.aws.deploy.template_options_from`),
then runs the blocks in the usual alternating order, each block a ``bench --stack`` run
against its arm's stack, and analyses them with the same statistics as a local run. At the
end every stack is destroyed (unless ``keep``), and a failure half-way destroys what was
deployed before it is reported.

**Only stacks of its own.** Every stack a run deploys carries the stack tag
``radstream:ab`` = ``NAME``. Before anything is deployed, each ``NAME-<arm>`` that already
exists must carry that tag (a stack an earlier ``ab run --stack NAME --keep-stacks`` left):
any other existing stack (one of ``aws deploy``'s, say ``prod-a`` for ``--stack prod``) is
refused with StackInUse, since the run would deploy the arm's settings over it and, at the
end, empty its buckets (results included) and delete it.

**Why two stacks side by side, not one stack updated between blocks.** An update through a
change set takes minutes (new function configurations, and for the storage class a new
bucket) and would happen before every block, so a run of K rounds would pay 2K updates; with
stacks side by side each is deployed once and blocks alternate freely, which is what the
drift-cancelling design needs. Stack names (and since issue 12 the Glue database and every
other account-wide name) are per stack, so the arms' stacks cannot collide. Also, an updated
stack's first block would run on functions the update just replaced, cold, on one arm only.
The price is paying for both stacks while they stand; they are torn down at the end.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from botocore.exceptions import ClientError

from radstream.ab.design import Slot, block_order
from radstream.ab.model import StackUse
from radstream.ab.overrides import apply_settings, split_serve
from radstream.ab.run import (
    BlockHook,
    ExperimentConfig,
    ExperimentFailed,
    ExperimentRun,
    Progress,
    measured_run,
    run_blocks,
)
from radstream.ab.sweep import StageTiming
from radstream.aws.deploy import DeployOptions, destroy, template_options_from
from radstream.aws.deploy import deploy as deploy_stack
from radstream.aws.deploy_inputs import current_package, deploy_options
from radstream.aws.package import DEFAULT_PYTHON, PackageManifest
from radstream.aws.preflight import check_target
from radstream.aws.session import AwsTarget, StackRef
from radstream.aws.template import TemplateOptions
from radstream.bench.report import BenchReport
from radstream.bench.runner import BenchConfig, run_bench
from radstream.errors import ConfigInvalid, RadStreamError, StackInUse
from radstream.settings import Settings

Report = Callable[[str], None]
Deploy = Callable[[StackRef, DeployOptions, Report], object]
Destroy = Callable[[StackRef, Report], None]
AB_TAG = "radstream:ab"
"""The stack tag that marks a stack as made by ``ab run --stack NAME``; its value is NAME."""


@dataclass(frozen=True)
class StackSpec:
    """Where and how to deploy the arms' stacks."""

    prefix: str
    """``--stack NAME``: each arm's stack is ``NAME-<arm>``."""
    target: AwsTarget
    package_dir: Path = Path("dist/lambda")
    python_version: str = DEFAULT_PYTHON
    keep: bool = False
    """``--keep-stacks``: leave the stacks standing (a later run with the same options
    reuses them: their deploy finds no changes)."""
    express_zone: str | None = None


@dataclass(frozen=True)
class ArmStack:
    """One arm's stack: its name, the arm's settings and the template options from them."""

    arm: str
    ref: StackRef
    settings: Settings
    """The arm's settings, ``telemetry.variant`` set to the arm: the stack's functions get
    it, so every telemetry row the stack writes names its arm."""
    template: TemplateOptions


def stack_name(prefix: str, arm: str) -> str:
    """``NAME-<arm>``, the arm's name reduced to what a stack name may hold."""
    slug = re.sub(r"[^A-Za-z0-9-]+", "-", arm).strip("-").lower()
    return f"{prefix}-{slug}"


def plan_stacks(
    base: Settings, arms: Mapping[str, Mapping[str, str]], spec: StackSpec
) -> list[ArmStack]:
    """Each arm's stack, checked before anything is deployed.

    ConfigInvalid for fewer than two arms, an arm with ``serve.`` keys (a model server on
    this machine is no part of a stack), arms whose stack names collide, arms of different
    architectures (one package serves the run), or a name or option AWS would refuse.
    """
    if len(arms) < 2:
        raise ConfigInvalid(f"an experiment needs at least two arms, got {list(arms)}")
    plan: list[ArmStack] = []
    for arm, pairs in arms.items():
        plain, serve = split_serve(pairs)
        if serve:
            raise ConfigInvalid(
                f"arm {arm!r} sets {', '.join('serve.' + k for k in serve)}: a model server "
                "on this machine is no part of a stack; run this experiment without --stack"
            )
        settings = apply_settings(base, plain)
        telemetry = settings.telemetry.model_copy(update={"variant": arm})
        settings = settings.model_copy(update={"telemetry": telemetry})
        name = stack_name(spec.prefix, arm)
        template = template_options_from(settings)
        template.check(name)
        plan.append(ArmStack(arm, StackRef(name, spec.target), settings, template))
    names = [a.ref.name for a in plan]
    if len(set(names)) != len(names):
        raise ConfigInvalid(f"the arms' stack names collide: {names}; rename the arms")
    if len({a.template.architecture for a in plan}) > 1:
        raise ConfigInvalid("with --stack every arm must use the same cost.architecture")
    return plan


def _describe(ref: StackRef) -> tuple[str | None, str | None]:
    """The stack's status and id, or (None, None) when it does not exist."""
    try:
        reply = ref.target.client("cloudformation").describe_stacks(StackName=ref.name)
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None, None
        raise
    stacks = reply.get("Stacks", [])
    if not stacks:
        return None, None
    return str(stacks[0]["StackStatus"]), str(stacks[0].get("StackId"))


def _tags(ref: StackRef) -> dict[str, str] | None:
    """The stack's tags, or None when it does not exist (or was deleted)."""
    try:
        reply = ref.target.client("cloudformation").describe_stacks(StackName=ref.name)
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    stacks = [s for s in reply.get("Stacks", []) if s.get("StackStatus") != "DELETE_COMPLETE"]
    if not stacks:
        return None
    return {str(t["Key"]): str(t["Value"]) for t in stacks[0].get("Tags", [])}


@dataclass
class ArmStacks:
    """The arms' stacks through one run: claimed, deployed in arm order, destroyed in reverse.

    ``deploy`` and ``destroy`` are :mod:`radstream.aws.deploy`'s unless a caller gives its
    own. :attr:`uses` records what happened to each stack, for the result. Only claimed
    stacks are deployed, so only they can be destroyed: the ones this run creates and the
    ones an earlier run of the same prefix made (:meth:`claim`).
    """

    plan: list[ArmStack]
    spec: StackSpec
    report: Report = print
    deploy: Deploy = deploy_stack
    destroy: Destroy = destroy
    uses: dict[str, StackUse] = field(default_factory=dict)
    attempted: list[ArmStack] = field(default_factory=list, init=False)
    """The stacks a deploy was started for, in order (a failed one may be half-built)."""
    existed: dict[str, bool] = field(default_factory=dict, init=False)
    """Arm → whether its stack stood before this run (then made by an earlier run of this
    prefix: tagged); filled by :meth:`claim`."""

    def claim(self) -> None:
        """Check every arm's stack before anything is deployed: StackInUse names those that
        exist but were not made by ``ab run --stack`` with this prefix (no ``radstream:ab``
        tag, or another prefix's)."""
        prefix = self.spec.prefix
        existed: dict[str, bool] = {}
        refused: dict[str, str] = {}
        for arm in self.plan:
            tags = _tags(arm.ref)
            existed[arm.arm] = tags is not None
            if tags is None or tags.get(AB_TAG) == prefix:
                continue
            other = tags.get(AB_TAG)
            refused[arm.ref.name] = (
                f"no {AB_TAG} tag: not made by `ab run --stack`"
                if other is None
                else f"made by `ab run --stack {other}`"
            )
        if refused:
            listed = ", ".join(f"{name} ({why})" for name, why in refused.items())
            raise StackInUse(
                f"{'stacks' if len(refused) > 1 else 'stack'} {listed} already "
                f"{'exist' if len(refused) > 1 else 'exists'}; `ab run --stack {prefix}` would "
                "deploy an arm's settings over it and then destroy it (its buckets emptied, "
                "results included), so nothing was deployed",
                stacks=list(refused),
            )
        self.existed = existed

    def _use(self, arm: ArmStack, **update: object) -> StackUse:
        t = arm.template
        base = self.uses.get(arm.arm) or StackUse(
            arm=arm.arm,
            stack=arm.ref.name,
            region=arm.ref.target.region,
            endpoint_url=arm.ref.target.endpoint_url,
            memory_mb=t.memory_mb,
            express_artifacts=t.express_artifacts,
            architecture=t.architecture,
            state_machine=t.state_machine_type,
            deploy="failed",
        )
        use = base.model_copy(update=update)
        self.uses[arm.arm] = use
        return use

    def deploy_all(self) -> None:
        """Deploy (or reuse) every arm's stack; ExperimentFailed names the one that failed.

        Claims the stacks first unless :meth:`claim` was called (StackInUse, nothing deployed).
        """
        if not self.existed:
            self.claim()
        spec = self.spec
        package = current_package(
            spec.package_dir, spec.python_version, self.plan[0].template.architecture, self.report
        )
        for arm in self.plan:
            self.attempted.append(arm)
            self._deploy_one(arm, package)

    def _deploy_one(self, arm: ArmStack, package: PackageManifest) -> None:
        existed = self.existed[arm.arm]
        said: list[str] = []

        def report(line: object) -> None:
            said.append(str(line))
            self.report(str(line))

        self.report(f"deploying {arm.ref.name} for arm {arm.arm}")
        try:
            options = deploy_options(
                arm.settings,
                arm.template,
                package,
                express_zone=self.spec.express_zone,
                # As `aws deploy`: an emulator has no Athena named queries to speak of.
                named_queries=self.spec.target.endpoint_url is None,
                tags={AB_TAG: self.spec.prefix},
            )
            self.deploy(arm.ref, options, report)
        except Exception as exc:
            self._use(arm, deploy="failed", error=reason(exc))
            raise ExperimentFailed(
                f"deploying stack {arm.ref.name} for arm {arm.arm!r} failed: {reason(exc)}",
                arm=arm.arm,
            ) from exc
        # deploy() says so when the stack already has these options: it is reused as is.
        unchanged = any(line.endswith(f"{arm.ref.name}: no changes") for line in said)
        status, stack_id = _describe(arm.ref)
        self._use(
            arm,
            deploy="unchanged" if unchanged else "updated" if existed else "created",
            status=status,
            stack_id=stack_id,
        )

    def teardown(self) -> list[str]:
        """Destroy every stack deployed or attempted (not with ``keep``); the failures.

        Those are claimed stacks only: created by this run or tagged by an earlier one."""
        if self.spec.keep:
            return []
        failures: list[str] = []
        for arm in reversed(self.attempted):
            self.report(f"destroying {arm.ref.name}")
            try:
                self.destroy(arm.ref, self.report)
            except Exception as exc:  # go on: the other stacks must go all the same
                failures.append(f"{arm.ref.name}: {reason(exc)}")
                self._use(arm, destroyed=False, error=reason(exc))
                continue
            self._use(arm, destroyed=True)
        return failures


def reason(exc: BaseException) -> str:
    """An error's message without its code and hint (those of the outer error follow)."""
    return exc.message if isinstance(exc, RadStreamError) else str(exc) or type(exc).__name__


def run_on_stacks(
    base: Settings,
    cfg: ExperimentConfig,
    spec: StackSpec,
    progress: Progress | None = None,
    on_block: BlockHook | None = None,
    report: Report = print,
) -> ExperimentRun:
    """Deploy every arm's stack, run the blocks against them, analyse, tear them down.

    The figures are measured on the stacks (``source`` is ``stack``), never projected, even
    for the scenarios a local run projects. ExperimentFailed (after the teardown) when a
    deploy or a block fails; a teardown that fails after a complete run is recorded in
    ``stacks`` (``destroyed`` false, ``error``) rather than losing the result.
    """
    cfg.bench.validate()
    plan = plan_stacks(base, cfg.arms, spec)
    by_arm = {a.arm: a for a in plan}
    slots = block_order(list(cfg.arms), cfg.blocks, scheme=cfg.scheme, seed=cfg.seed)

    def run_block(slot: Slot, bench: BenchConfig) -> tuple[BenchReport, list[list[StageTiming]]]:
        arm = by_arm[slot.arm]
        return run_bench(arm.settings, bench, progress, stack=arm.ref), []

    # Credentials and endpoint first, before a package is built or anything deployed (the
    # CLI explains botocore's own errors with a hint).
    check_target(plan[0].ref)
    stacks = ArmStacks(plan, spec, report, deploy_stack, destroy)
    # Outside the try: a refused stack was never deployed, so there is nothing to tear down.
    stacks.claim()
    try:
        stacks.deploy_all()
        reports, log = run_blocks(
            slots, cfg, run_block, on_block, {a.arm: a.ref.name for a in plan}
        )
    except Exception as exc:
        left = stacks.teardown()
        details = exc.details if isinstance(exc, RadStreamError) else {}
        message = _with_teardown(reason(exc), stacks, left)
        raise ExperimentFailed(message, **details) from exc
    except BaseException:  # an interrupt: the stacks must not outlive it either
        stacks.teardown()
        raise
    left = stacks.teardown()
    if left:
        report(f"could not destroy: {'; '.join(left)}")
    return measured_run(base, cfg, reports, log, [stacks.uses[a.arm] for a in plan])


def _with_teardown(message: str, stacks: ArmStacks, left: list[str]) -> str:
    if stacks.spec.keep:
        kept = ", ".join(a.ref.name for a in stacks.attempted) or "none deployed"
        return f"{message}; stacks kept (--keep-stacks): {kept}"
    gone = [u.stack for u in stacks.uses.values() if u.destroyed]
    text = f"{message}; destroyed: {', '.join(gone) or 'none'}"
    if left:
        text += f"; COULD NOT DESTROY (they still cost money): {'; '.join(left)}"
    return text
