"""The pipeline's stage functions: pure over the small interfaces in :mod:`.ports`.

Each stage declared in :mod:`radstream.pipeline.definition` names one function here with
the signature ``run(ports: StagePorts, context: ExecutionContext) -> ExecutionContext``
(:mod:`.ports`, :mod:`.context`); :func:`.registry.stage_function` resolves it, for the
local runner and the Lambda handlers alike.
"""
