"""Arms on stacks (``ab run --stack``): the plan from the arms' settings, and the lifecycle.

The real thing, deployed in the AWS emulator, is tests/aws/test_ab_stack.py (slow: two
stacks deployed, run and destroyed). Here AWS is replaced where a whole emulator deploy per
case would cost minutes: deploy and destroy are recorders, each block a canned bench report
(:mod:`ab_fake_bench`), so what is checked is this module's own work: which stacks exist
when, and that every failure path tears down what it deployed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from ab_fake_bench import FakeBench
from typer.testing import CliRunner

import radstream.ab.stacks as ab_stacks
from radstream.ab.run import ExperimentConfig, ExperimentFailed
from radstream.ab.scenarios import scenarios
from radstream.ab.stacks import AB_TAG, StackSpec, plan_stacks, run_on_stacks, stack_name
from radstream.aws.session import AwsTarget, StackRef
from radstream.bench.runner import BenchConfig
from radstream.cli import app
from radstream.errors import ConfigInvalid, DeployFailed, StackInUse
from radstream.settings import Settings

SPEC = StackSpec(prefix="rsab", target=AwsTarget(endpoint_url="http://127.0.0.1:9"))


def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "exp")


def test_scenario_arms_map_to_each_stacks_template_options(tmp_path: Path) -> None:
    memory = plan_stacks(settings(tmp_path), scenarios()["lambda-memory"].arms, SPEC)
    assert [(a.ref.name, a.template.memory_mb) for a in memory] == [
        ("rsab-512mb", 512), ("rsab-1024mb", 1024), ("rsab-1769mb", 1769), ("rsab-3008mb", 3008)
    ]  # fmt: skip
    storage = plan_stacks(settings(tmp_path), scenarios()["storage-class"].arms, SPEC)
    assert [(a.ref.name, a.template.express_artifacts) for a in storage] == [
        ("rsab-standard", False),
        ("rsab-express", True),
    ]
    # The arm's cost model matches its stack, and its functions name the arm in telemetry.
    assert [a.settings.cost.storage_class for a in storage] == ["standard", "express"]
    assert [a.template.settings_env["RADSTREAM_TELEMETRY__VARIANT"] for a in storage] == [
        "standard",
        "express",
    ]


def test_arms_a_stack_cannot_hold_are_refused_before_any_deploy(tmp_path: Path) -> None:
    with pytest.raises(ConfigInvalid, match="without --stack"):
        plan_stacks(settings(tmp_path), scenarios()["batch-size"].arms, SPEC)
    with pytest.raises(ConfigInvalid, match="collide"):
        plan_stacks(
            settings(tmp_path),
            {"A": {"cost.memory_mb": "512"}, "a": {"cost.memory_mb": "1024"}},
            SPEC,
        )
    with pytest.raises(ConfigInvalid, match="must start with a letter"):
        plan_stacks(settings(tmp_path), {"a": {}, "b": {}}, replace(SPEC, prefix="9rs"))
    assert stack_name("rs", "Big Arm_1") == "rs-big-arm-1"


@dataclass
class FakeAws:
    """Stacks that exist, and every deploy and destroy in order; ``refuse`` fails a deploy.

    ``tags``: each stack's tags as its last deploy set them (kept after a destroy, so a test
    can read what a run deployed with); a stack exists while it is ``standing``.
    """

    refuse: str | None = None
    standing: set[str] = field(default_factory=set)
    events: list[str] = field(default_factory=list)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)

    def deploy(self, ref: StackRef, options: Any, report: Callable[[str], None]) -> object:
        self.events.append(f"deploy {ref.name}")
        if ref.name == self.refuse:
            raise DeployFailed(f"stack {ref.name} ended ROLLBACK_COMPLETE")
        if ref.name in self.standing:
            report(f"stack {ref.name}: no changes")
        self.standing.add(ref.name)
        # As CloudFormation: a change set's tags replace the stack's (``options`` is the
        # fake deploy_options' reply, the stack tags it was given).
        self.tags[ref.name] = dict(options)
        return {}

    def stack(self, name: str, tags: dict[str, str]) -> None:
        """A stack that stands before the run (deployed some other way), with its tags."""
        self.standing.add(name)
        self.tags[name] = tags

    def destroy(self, ref: StackRef, report: Callable[[str], None]) -> None:
        self.events.append(f"destroy {ref.name}")
        self.standing.discard(ref.name)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> FakeAws:
    fake = FakeAws()
    monkeypatch.setattr(ab_stacks, "deploy_stack", fake.deploy)
    monkeypatch.setattr(ab_stacks, "destroy", fake.destroy)
    monkeypatch.setattr(ab_stacks, "check_target", lambda ref: "123456789012")
    monkeypatch.setattr(ab_stacks, "current_package", lambda *_: None)
    # Of the deploy's options, the fake deploy needs only the stack tags.
    monkeypatch.setattr(ab_stacks, "deploy_options", lambda *_, tags, **__: tags)
    monkeypatch.setattr(
        ab_stacks, "_tags", lambda ref: fake.tags[ref.name] if ref.name in fake.standing else None
    )
    monkeypatch.setattr(
        ab_stacks,
        "_describe",
        lambda ref: (
            ("CREATE_COMPLETE", f"id/{ref.name}") if ref.name in fake.standing else (None, None)
        ),
    )
    return fake


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch, aws: FakeAws) -> FakeBench:
    fake = FakeBench()
    seen: list[tuple[str, bool]] = []

    def run_bench(
        settings: Settings, cfg: BenchConfig, progress: Any = None, stack: Any = None
    ) -> Any:
        # Every block runs against its arm's stack, which stands while it runs.
        seen.append((stack.name, stack.name in aws.standing))
        return fake(settings, cfg, progress, stack)

    monkeypatch.setattr(ab_stacks, "run_bench", run_bench)
    fake.stacks_seen = seen  # type: ignore[attr-defined]
    return fake


def config(blocks: int = 2) -> ExperimentConfig:
    arms = scenarios()["storage-class"].arms
    bench = BenchConfig(studies=30, concurrency=2, warmup=1, seed=7)
    return ExperimentConfig(experiment="storage-class", arms=arms, bench=bench, blocks=blocks)


def test_a_run_deploys_alternates_compares_and_destroys(
    tmp_path: Path, aws: FakeAws, bench: FakeBench
) -> None:
    run = run_on_stacks(settings(tmp_path), config(), SPEC, report=lambda _: None)
    assert aws.events == [
        "deploy rsab-standard", "deploy rsab-express", "destroy rsab-express", "destroy rsab-standard"
    ]  # fmt: skip
    assert bench.stacks_seen == [  # type: ignore[attr-defined]
        ("rsab-standard", True), ("rsab-express", True), ("rsab-express", True), ("rsab-standard", True)
    ]  # fmt: skip
    assert [c.variant for c in bench.calls] == ["standard", "express", "express", "standard"]
    assert [c.storage_class for c in bench.calls] == ["standard", "express", "express", "standard"]
    result = run.result
    assert result.source == "stack" and result.projected == []
    assert not any(m.projected for m in result.metrics)
    assert [(s.stack, s.deploy, s.status, s.destroyed) for s in result.stacks] == [
        ("rsab-standard", "created", "CREATE_COMPLETE", True),
        ("rsab-express", "created", "CREATE_COMPLETE", True),
    ]
    assert [b.stack for b in run.log] == [c.variant and f"rsab-{c.variant}" for c in bench.calls]
    assert result.manifest["mode"] == "stack"
    # Every stack the run deployed carries the tag that later runs recognise as theirs.
    assert aws.tags == {"rsab-standard": {AB_TAG: "rsab"}, "rsab-express": {AB_TAG: "rsab"}}


def test_kept_stacks_are_reused_by_the_next_run(
    tmp_path: Path, aws: FakeAws, bench: FakeBench
) -> None:
    kept = replace(SPEC, keep=True)
    first = run_on_stacks(settings(tmp_path), config(1), kept, report=lambda _: None)
    assert aws.standing == {"rsab-standard", "rsab-express"}
    assert [s.destroyed for s in first.result.stacks] == [None, None]
    again = run_on_stacks(settings(tmp_path), config(1), SPEC, report=lambda _: None)
    assert [s.deploy for s in again.result.stacks] == ["unchanged", "unchanged"]
    assert aws.standing == set()


@pytest.mark.parametrize(
    ("tags", "why"),
    [
        # `aws deploy --stack rsab-express`: only deploy's own tag.
        ({"radstream:stack": "rsab-express"}, "no radstream:ab tag: not made by `ab run --stack`"),
        # Another experiment's stack whose name happens to match (`--stack rsab-x`, arm y…).
        ({AB_TAG: "other"}, "made by `ab run --stack other`"),
    ],
)
def test_an_existing_stack_not_made_by_this_prefix_is_refused_before_any_deploy(
    tmp_path: Path, aws: FakeAws, bench: FakeBench, tags: dict[str, str], why: str
) -> None:
    aws.stack("rsab-express", tags)
    with pytest.raises(StackInUse) as refused:
        run_on_stacks(settings(tmp_path), config(), SPEC, report=lambda _: None)
    assert refused.value.code == "STACK_IN_USE"
    assert f"stack rsab-express ({why}) already exists" in refused.value.message
    assert refused.value.details == {"stacks": ["rsab-express"]}
    # Refused before the first deploy (the other arm's stack too): nothing deployed or
    # destroyed, the existing stack untouched.
    assert aws.events == [] and bench.calls == []
    assert aws.standing == {"rsab-express"} and aws.tags["rsab-express"] == tags


def test_a_stack_an_earlier_run_tagged_is_reused_and_destroyed(
    tmp_path: Path, aws: FakeAws, bench: FakeBench
) -> None:
    aws.stack("rsab-standard", {AB_TAG: "rsab", "radstream:stack": "rsab-standard"})
    run = run_on_stacks(settings(tmp_path), config(1), SPEC, report=lambda _: None)
    assert [(s.stack, s.deploy, s.destroyed) for s in run.result.stacks] == [
        ("rsab-standard", "unchanged", True),
        ("rsab-express", "created", True),
    ]
    assert aws.events[-2:] == ["destroy rsab-express", "destroy rsab-standard"]
    assert aws.standing == set()


def test_the_cli_refuses_an_existing_stack_with_exit_2_and_its_code(
    tmp_path: Path, aws: FakeAws
) -> None:
    aws.stack("prod-standard", {"radstream:stack": "prod-standard"})
    package = tmp_path / "package"
    result = CliRunner().invoke(
        app,
        ["ab", "run", "storage-class", "--stack", "prod", "--package", str(package),
         "--endpoint-url", "http://127.0.0.1:9", "--data-dir", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert "STACK_IN_USE" in output and "prod-standard" in output, output
    assert aws.events == [] and not package.exists()


def test_a_failed_deploy_destroys_what_was_deployed_and_says_why(
    tmp_path: Path, aws: FakeAws, bench: FakeBench
) -> None:
    aws.refuse = "rsab-express"
    with pytest.raises(ExperimentFailed) as failed:
        run_on_stacks(settings(tmp_path), config(), SPEC, report=lambda _: None)
    assert bench.calls == []
    assert aws.events[-2:] == ["destroy rsab-express", "destroy rsab-standard"]
    assert aws.standing == set()
    message = failed.value.message
    assert "deploying stack rsab-express for arm 'express' failed" in message
    assert "ROLLBACK_COMPLETE" in message and "destroyed: rsab-standard, rsab-express" in message


def test_kept_stacks_stay_after_a_failure_and_the_message_names_them(
    tmp_path: Path, aws: FakeAws, bench: FakeBench
) -> None:
    aws.refuse = "rsab-express"
    with pytest.raises(ExperimentFailed, match=r"stacks kept \(--keep-stacks\): rsab-standard"):
        run_on_stacks(settings(tmp_path), config(), replace(SPEC, keep=True), report=print)
    assert aws.standing == {"rsab-standard"}
    assert not any(e.startswith("destroy") for e in aws.events)


def test_a_failed_block_destroys_every_stack(
    tmp_path: Path, aws: FakeAws, bench: FakeBench
) -> None:
    bench.fail_at = 2
    with pytest.raises(ExperimentFailed, match=r"block 3 of 4 .*disk full.*destroyed") as failed:
        run_on_stacks(settings(tmp_path), config(), SPEC, report=lambda _: None)
    assert failed.value.details["arm"] == "express"
    assert aws.standing == set()


def test_a_stack_that_cannot_be_destroyed_is_recorded_not_hidden(
    tmp_path: Path, aws: FakeAws, bench: FakeBench, monkeypatch: pytest.MonkeyPatch
) -> None:
    def stuck(ref: StackRef, report: Callable[[str], None]) -> None:
        if ref.name == "rsab-express":
            raise DeployFailed("stack rsab-express could not be deleted: bucket not empty")
        aws.destroy(ref, report)

    monkeypatch.setattr(ab_stacks, "destroy", stuck)
    run = run_on_stacks(settings(tmp_path), config(1), SPEC, report=lambda _: None)
    express = run.result.stacks[1]
    assert express.destroyed is False and "bucket not empty" in (express.error or "")
    assert run.result.stacks[0].destroyed is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # Model-server arms run on this machine only.
        (["batch-size", "--stack", "rsab"], "without --stack"),
        (["lambda-memory", "--arms", "512MB,2GB", "--stack", "rsab"], "--arms"),
        (["lambda-memory", "--arms", "512MB", "--stack", "rsab"], "--arms"),
        # Nothing listens on port 9: the target is checked before any package is built.
        (
            ["storage-class", "--stack", "rsab", "--endpoint-url", "http://127.0.0.1:9"],
            "127.0.0.1:9",
        ),
    ],
)
def test_a_stack_run_that_cannot_start_exits_2_before_deploying(
    tmp_path: Path, args: list[str], message: str
) -> None:
    package = tmp_path / "package"
    result = CliRunner().invoke(
        app, ["ab", "run", *args, "--package", str(package), "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not package.exists()
