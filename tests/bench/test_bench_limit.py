"""The in-memory limit loads the model as the pipeline does (runtime and precision)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radstream.bench.limit import Backend, LimitFailed, measure_limit
from radstream.loadgen.study import make_study


@pytest.mark.slow  # worker processes
def test_limit_measures_every_image_and_splits_prepare_from_infer(standin_model: Path) -> None:
    rng = np.random.default_rng(3)
    studies = [make_study(f"s{i}", "jpeg", rng, width=256, height=320) for i in range(4)]
    images = [(s.image_name, s.image) for s in studies]
    limit = measure_limit(Backend(standin_model), images, workers=1)
    assert limit.images_per_s > 0
    assert limit.prepare_ms > 0 and limit.infer_ms > 0
    assert limit.ms_per_image == pytest.approx(limit.prepare_ms + limit.infer_ms)
    # CPU time is the process's own: one process, so its throughput is 1000 / ms per image.
    assert limit.cpu_ms_per_image > 0
    assert limit.cpu_images_per_s == pytest.approx(1000.0 / limit.cpu_ms_per_image)


@pytest.mark.slow  # worker processes
def test_a_worker_that_cannot_load_its_model_fails_the_limit_instead_of_hanging(
    tmp_path: Path,
) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    rng = np.random.default_rng(4)
    study = make_study("s0", "jpeg", rng, width=256, height=320)
    with pytest.raises(LimitFailed, match="MODEL_FILE_INVALID"):
        measure_limit(Backend(broken), [(study.image_name, study.image)] * 2, workers=2)
