"""The load options shared by ``upload --synthetic`` and ``bench``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from radstream.bench.runner import BenchConfig


@dataclass(frozen=True)
class LoadOptions:
    """What to send and at which load shape, as given on the command line."""

    studies: int
    rate: float | None
    concurrency: int | None
    poisson: bool
    shape: str | None
    trace: Path | None
    fmt: str
    size: str
    invalid_ratio: float
    seed: int

    @property
    def has_shape(self) -> bool:
        """Whether any load shape was given (rate, concurrency, shape or trace)."""
        return bool(self.rate or self.shape or self.trace or self.concurrency)

    def config(
        self,
        *,
        warmup: int,
        baseline: bool = False,
        slo: list[str] | None = None,
        model_backend: str = "lambda",
        endpoint_hourly_usd: float | None = None,
    ) -> BenchConfig:
        """These options as a :class:`~radstream.bench.runner.BenchConfig`."""
        from radstream.bench.runner import BenchConfig

        width, height = parse_size(self.size)
        return BenchConfig(
            studies=self.studies,
            rate=self.rate,
            concurrency=self.concurrency,
            poisson=self.poisson,
            shape=self.shape,
            trace=self.trace,
            format=self.fmt,
            width=width,
            height=height,
            invalid_ratio=self.invalid_ratio,
            seed=self.seed,
            warmup=warmup,
            baseline=baseline,
            slo=slo or [],
            model_backend=model_backend,
            endpoint_hourly_usd=endpoint_hourly_usd,
        )


def parse_size(text: str) -> tuple[int, int]:
    """``WxH`` → (width, height); a usage error otherwise."""
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise typer.BadParameter(f"--size {text!r}: expected WxH such as 2000x2500")
    return int(width), int(height)
