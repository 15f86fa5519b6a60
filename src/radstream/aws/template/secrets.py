"""The stack's secrets: one Secrets Manager secret per secret setting that is set, read
only by the functions that use it (see :mod:`radstream.aws.secrets` for the runtime side)."""

from __future__ import annotations

from dataclasses import dataclass

from radstream.aws.secrets import secret_id_variable
from radstream.pipeline.definition import StageDef

from .intrinsics import KMS_KEY, Json, get_att, ref, statement, sub
from .options import TemplateOptions


@dataclass(frozen=True)
class SecretSetting:
    """A setting that must not appear in the template or a function's configuration."""

    variable: str
    """The ``RADSTREAM_*`` variable the settings read."""
    parameter: str
    """The NoEcho template parameter ``deploy`` sends it in."""
    description: str

    def name(self, stack: str) -> str:
        """The secret's name: ``{stack}/radstream/model-token`` (one per stack)."""
        slug = self.parameter[0].lower() + "".join(
            f"-{c.lower()}" if c.isupper() else c for c in self.parameter[1:]
        )
        return f"{stack}/radstream/{slug}"

    @property
    def resource(self) -> str:
        """Logical id of its secret: ``ModelTokenSecret``."""
        return f"{self.parameter}Secret"

    @property
    def condition(self) -> str:
        """The condition under which the secret exists: the parameter is not empty."""
        return f"Has{self.parameter}"

    def used_by(self, stage: StageDef, options: TemplateOptions) -> bool:
        """Whether ``stage``'s function reads it."""
        if self.variable == "RADSTREAM_MODEL__TOKEN":
            # Only the stage that calls a remote model endpoint sends the token.
            return stage.uses_model and not options.in_process_model
        return True  # the pseudonym key: every stage writes telemetry with study ids


SECRET_SETTINGS: tuple[SecretSetting, ...] = (
    SecretSetting("RADSTREAM_MODEL__TOKEN", "ModelToken", "bearer token of the model endpoint"),
    SecretSetting(
        "RADSTREAM_TELEMETRY__PSEUDONYM_KEY", "PseudonymKey", "HMAC key of study id pseudonyms"
    ),
)


def secret_conditions() -> Json:
    """One condition per secret: its parameter was given."""
    return {
        s.condition: {"Fn::Not": [{"Fn::Equals": [ref(s.parameter), ""]}]} for s in SECRET_SETTINGS
    }


def secret_resources(stack: str, options: TemplateOptions) -> Json:
    """A secret per secret setting that is set (with ``--kms``, under the stack key)."""
    resources: Json = {}
    for secret in SECRET_SETTINGS:
        props: Json = {
            "Name": secret.name(stack),
            "Description": f"RadStream {stack}: {secret.description}",
            "SecretString": ref(secret.parameter),
        }
        if options.kms:
            props["KmsKeyId"] = get_att(KMS_KEY, "Arn")
        resources[secret.resource] = {
            "Type": "AWS::SecretsManager::Secret",
            "Condition": secret.condition,
            "Properties": props,
        }
    return resources


def secret_environment(stack: str, stage: StageDef, options: TemplateOptions) -> dict[str, Json]:
    """The names of the secrets ``stage``'s function reads (absent when not set)."""
    return {
        secret_id_variable(s.variable): {
            "Fn::If": [s.condition, s.name(stack), ref("AWS::NoValue")]
        }
        for s in SECRET_SETTINGS
        if s.used_by(stage, options)
    }


def secret_statements(stack: str, stage: StageDef, options: TemplateOptions) -> list[Json]:
    """Read access to exactly the secrets ``stage`` uses, by name (Secrets Manager adds
    six random characters to a secret's ARN)."""
    arn = "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret"
    used = [s for s in SECRET_SETTINGS if s.used_by(stage, options)]
    if not used:
        return []
    return [
        statement(
            ["secretsmanager:GetSecretValue"],
            [sub(f"{arn}:{s.name(stack)}-??????") for s in used],
        )
    ]


def uses_secrets(stage: StageDef, options: TemplateOptions) -> bool:
    """Whether ``stage`` reads any secret (its role then may decrypt with the stack key)."""
    return any(s.used_by(stage, options) for s in SECRET_SETTINGS)
