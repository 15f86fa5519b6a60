"""The built-in experiments of ``radstream ab run SCENARIO``: the operators' four questions.

Each scenario is either **real** (its arms run on this machine, in alternating blocks) or
**projected** (the pipeline runs one measured configuration, and each arm's figures are
computed from it, because this machine has no Lambda memory sizes and no S3 storage class).

- ``batch-size``: the local engine has no batch setting (a worker infers one image at a time)
  and :class:`~radstream.settings.Settings` has none either; the model server
  (``radstream model serve --max-batch-size``) batches the requests of several workers. The
  arms therefore run for real through a model server started per block with
  ``serve.max_batch_size`` 1, 4 and 8; the workers reach it through ``model.endpoint``.
- ``autoscaling``: the engine has no worker autoscaling (``engine.workers`` is fixed); the
  model server has (``--autoscale MIN:MAX``). Arms: one fixed instance against 1:2.
- ``lambda-memory``: projected (512, 1,024, 1,769 and 3,008 MB) from the measured per-stage
  time, with Lambda's CPU share per memory size (:mod:`radstream.ab.projection`).
- ``storage-class``: projected (S3 Standard against S3 Express One Zone) from the measured
  latencies plus each class's per-request latency, and the pricing table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from radstream.ab.projection import load_inputs

Mode = Literal["real", "projected"]
Projector = Literal["lambda-memory", "storage-class"]

# The load a scenario needs to show its effect, unless the command line gives one: batching
# and autoscaling only matter when several workers send at once.
_SERVER_ENGINE = {"engine.workers": "4"}


@dataclass(frozen=True)
class Scenario:
    """One built-in experiment."""

    name: str
    compares: str
    mode: Mode
    arms: dict[str, dict[str, str]]
    """Arm name → ``KEY=VALUE`` pairs (real scenarios); the projected arms' labels."""
    note: str
    measure: dict[str, str] = field(default_factory=dict)
    """Projected scenarios: the settings of the one configuration that runs for real."""
    projector: Projector | None = None
    concurrency: int = 4
    """Closed-loop studies in flight when no load is given."""

    @property
    def where(self) -> str:
        """For the scenario table: runs for real here, or projected."""
        return "real (local)" if self.mode == "real" else "projected (local run + model)"


def _memory_arms() -> dict[str, dict[str, str]]:
    sizes = load_inputs().lambda_cpu.default_sweep_mb
    return {f"{mb}MB": {"cost.memory_mb": str(mb)} for mb in sizes}


def scenarios() -> dict[str, Scenario]:
    """The built-in scenarios by name, in the order ``ab scenarios`` lists them."""
    batch_arms = {
        f"batch{n}": {**_SERVER_ENGINE, "serve.max_batch_size": str(n)} for n in (1, 4, 8)
    }
    return {
        s.name: s
        for s in (
            Scenario(
                name="batch-size",
                compares="model server max batch size 1 / 4 / 8 (4 workers, 1 model instance)",
                mode="real",
                arms=batch_arms,
                note=(
                    "The engine has no batch setting; a model server per block batches the "
                    "workers' requests (serve.max_batch_size)."
                ),
            ),
            Scenario(
                name="autoscaling",
                compares="model server: 1 fixed instance vs autoscale 1:2 (4 workers)",
                mode="real",
                arms={
                    "fixed": {**_SERVER_ENGINE, "serve.instances": "1"},
                    "autoscale": {
                        **_SERVER_ENGINE,
                        "serve.autoscale": "1:2",
                        "serve.scale_up_delay_s": "0.2",
                    },
                },
                note=(
                    "engine.workers is fixed (no worker autoscaling); the model server "
                    "autoscales its instances."
                ),
            ),
            Scenario(
                name="lambda-memory",
                compares="Lambda memory 512 / 1024 / 1769 / 3008 MB",
                mode="projected",
                arms=_memory_arms(),
                note=(
                    "No Lambda here: latency and cost projected from the measured stage "
                    "times at Lambda's CPU share per memory size."
                ),
                measure={"engine.workers": "2"},
                projector="lambda-memory",
                concurrency=2,
            ),
            Scenario(
                name="storage-class",
                compares="S3 Standard vs S3 Express One Zone",
                mode="projected",
                arms={
                    "standard": {"cost.storage_class": "standard"},
                    "express": {"cost.storage_class": "express"},
                },
                note=(
                    "No S3 here: latency projected from the measured run plus each class's "
                    "per-request latency; cost from the pricing table."
                ),
                # Measured with express pricing: its bill has every item (the per-GB ones
                # too), and standard's is the same requests at standard's prices.
                measure={"engine.workers": "2", "cost.storage_class": "express"},
                projector="storage-class",
                concurrency=2,
            ),
        )
    }
