"""The benchmark scripts behind README figures run, and print what the README quotes.

Small inputs and one repeat: these check that each script still measures every figure
the README cites from it (no time is asserted), not the figures themselves.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from radstream.aws.package import LAMBDA_UNZIPPED_LIMIT, STAGE_LAYERS, Artifact, PackageManifest

ROOT = Path(__file__).resolve().parents[2]


def _benchmark(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / f"benchmarks/{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered first: dataclasses look their module up in sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_per_step_measures_each_step_the_readme_quotes(standin_model: Path, tmp_path: Path) -> None:
    per_step = _benchmark("per_step")
    split = per_step.measure_steps(standin_model, 400, 500, repeat=1)
    assert set(split) == {"inference", "jpeg", "png8", "png16", "in_memory"}
    pipeline, beside = per_step.measure_pipeline(standin_model, tmp_path, 400, 500, studies=2)
    assert all(v > 0 for v in [*split.values(), pipeline, beside])
    assert set(per_step.STEPS) == set(per_step.LABELS)
    assert {"gap", "pipeline", "in_memory_beside_pipeline"} <= set(per_step.STEPS)


def test_lambda_sizes_prints_one_row_per_size_with_its_share() -> None:
    lambda_sizes = _benchmark("lambda_sizes")
    code = 10_500_000
    sizes = {
        stage: code
        + (236_400_000 if "imaging" in layers else 0)
        + (173_700_000 if "model" in layers else 0)
        for stage, layers in STAGE_LAYERS.items()
    }
    art = Artifact("code", Path("code.zip"), "0" * 64, 1, code)
    manifest = PackageManifest({"code": art}, "3.12", "x86_64", {}, sizes)
    rows = lambda_sizes.rows(manifest)
    assert rows[0] == ("store, record_failure", 10.5, 4)
    # validate reads the header of a sidecar-less DICOM: it carries the imaging layer too.
    assert [r[0] for r in rows[1:]] == [
        "infer (code + model)",
        "validate, prepare (code + imaging)",
    ]
    assert rows[-1][2] == round(100 * sizes["prepare"] / LAMBDA_UNZIPPED_LIMIT)


def test_opencv_free_times_both_paths_and_compares_their_inputs() -> None:
    import numpy as np

    from radstream.loadgen.encoders import EncodeFormat, encode
    from radstream.loadgen.phantom import synthetic_cxr

    opencv_free = _benchmark("opencv_free")
    pixels = synthetic_cxr(500, 600, np.random.default_rng(0))
    formats: tuple[EncodeFormat, ...] = ("jpeg", "png", "png16")
    for fmt in formats:
        data = encode(pixels, fmt, rng=np.random.default_rng(1))[0]
        row = opencv_free.measure(data, repeat=2)
        assert {"before", "after", "change_p50", "change_cpu_p50"} <= set(row)
        # The NumPy/Pillow path gives these 8- and 16-bit images the same model input.
        assert row["max_abs_input_diff"] == 0.0


def test_precision_counts_the_cpu_seconds_of_a_process_from_proc() -> None:
    precision = _benchmark("precision")
    before = precision._cpu_s(os.getpid())
    start = time.process_time()
    while time.process_time() - start < 0.2:  # burn CPU: the figure must grow with it
        sum(range(10_000))
    grown = precision._cpu_s(os.getpid()) - before
    # /proc counts in clock ticks (10 ms): allow one tick either side.
    assert grown == pytest.approx(time.process_time() - start, abs=0.03)
