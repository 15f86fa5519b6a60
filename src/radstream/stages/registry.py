"""The stage functions the pipeline declares, resolved from ``StageDef.function``.

The pipeline definition names each stage's function as ``module:function`` (it is ground
layer and imports no stage code); both engines call what this resolves, so the local
runner and the Lambda handlers cannot run different code for one stage. The module is
imported on first use, so a Lambda imports only its own stage's libraries.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable

from radstream.pipeline.definition import StageDef
from radstream.stages.context import ExecutionContext
from radstream.stages.ports import StagePorts

StageFunction = Callable[[StagePorts, ExecutionContext], ExecutionContext]
"""``run(ports, context) -> context``: the one signature of every stage function."""


@functools.cache
def resolve(function: str) -> StageFunction:
    """Import ``module:function`` and return the function."""
    module_name, _, name = function.partition(":")
    if not module_name or not name:
        raise ValueError(f"a stage function is 'module:function', got {function!r}")
    found: StageFunction = getattr(importlib.import_module(module_name), name)
    if not callable(found):
        raise TypeError(f"{function} is not a function")
    return found


def stage_function(stage: StageDef) -> StageFunction:
    """The function declared for ``stage``."""
    return resolve(stage.function)
