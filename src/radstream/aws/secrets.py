"""Secrets on AWS: the functions read them from Secrets Manager, not from the template.

The model token and the pseudonym key would otherwise sit in plain environment variables
of every function, readable by anyone allowed ``lambda:GetFunctionConfiguration``. The
stack keeps each in a Secrets Manager secret (with ``--kms``, under the stack key); a
function that needs one gets only its name, as ``SECRET_ID_{VARIABLE}``, and its role may
read only that secret. At container start the value is fetched once and set as the
``RADSTREAM_*`` variable the settings read, so the stages see the same settings as locally.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

SECRET_ID_PREFIX = "SECRET_ID_"
"""``SECRET_ID_RADSTREAM_MODEL__TOKEN`` names the secret of ``RADSTREAM_MODEL__TOKEN``
(outside ``RADSTREAM_``: the settings never read the name itself)."""


def secret_id_variable(variable: str) -> str:
    """The environment variable that names the secret behind ``variable``."""
    return f"{SECRET_ID_PREFIX}{variable}"


def load_secrets(environ: MutableMapping[str, str], client: Callable[[], Any]) -> list[str]:
    """Set each ``RADSTREAM_*`` variable whose secret ``environ`` names, from Secrets
    Manager (``client()`` makes the client, only when there is a secret); return the names
    set. Errors (a denied or missing secret) propagate: a function must not run without."""
    wanted = {
        name.removeprefix(SECRET_ID_PREFIX): secret
        for name, secret in environ.items()
        if name.startswith(SECRET_ID_PREFIX) and secret
    }
    if not wanted:
        return []
    secrets = client()
    for variable, secret in wanted.items():
        environ[variable] = str(secrets.get_secret_value(SecretId=secret)["SecretString"])
    return sorted(wanted)
