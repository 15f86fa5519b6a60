"""Per-step split of the in-memory time per image, and what the pipeline adds to it.

README ("Performance") quotes: DenseNet121 inference about 59 ms, JPEG decode at 1/8 size
plus preprocessing about 7 ms, 8-bit PNG about 30 ms, 16-bit PNG about 90 ms, and a gap of
about 1.5 ms per image of store reads, hashing, SQLite transactions, result and telemetry
writes. This script prints each of them, measured in one process on one core:

  inference         ONNX Runtime (one intra-op thread) on a prepared [1,1,224,224] tensor
  jpeg              ``prepare_image`` (decode + preprocess) of a 2000x2500 chest JPEG
  png8, png16       the same image as 8-bit and 16-bit PNG
  in_memory         jpeg + inference on bytes in memory: the limit's time per image
  pipeline          one worker's ``ExecutionRunner`` over a folder store, the SQLite executor
                    and the Parquet telemetry sink, per image, uploads done beforehand
  gap               pipeline - in-memory time measured image by image beside it

Times are medians (p50) over ``--repeat`` runs after a warm-up; ``pipeline`` is the mean
over ``--studies`` JPEG studies. The model is the untrained DenseNet121 stand-in (same
architecture and cost as TorchXRayVision's) unless ``--model`` names another ONNX file.

Run:  .venv/bin/python benchmarks/per_step.py [--repeat 15] [--studies 24] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from radstream.imaging import Preprocessing, prepare_image
from radstream.lake.parquet_sink import ParquetSink
from radstream.loadgen.synthetic import make_study
from radstream.loadgen.uploader import upload_generated
from radstream.local.database import connect
from radstream.local.executor import Executor
from radstream.local.runner import ExecutionRunner
from radstream.local.store import FolderStore
from radstream.model import OnnxModel, ensure_standin
from radstream.settings import Settings

STEPS = (
    "inference",
    "jpeg",
    "png8",
    "png16",
    "in_memory",
    "pipeline",
    "in_memory_beside_pipeline",
    "gap",
)
LABELS = {
    "inference": "inference (DenseNet121, 1 thread)",
    "jpeg": "JPEG decode at 1/8 + preprocess",
    "png8": "PNG 8-bit decode + preprocess",
    "png16": "PNG 16-bit decode + preprocess",
    "in_memory": "in-memory time per image (JPEG)",
    "pipeline": "one worker's pipeline time per image (JPEG)",
    "in_memory_beside_pipeline": "in-memory time, interleaved with the pipeline",
    "gap": "remaining gap (pipeline - in-memory beside it)",
}


def p50_ms(function: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``function`` in ms over ``repeat`` calls, after one warm-up."""
    function()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return round(1000.0 * statistics.median(samples), 2)


def measure_steps(model_path: Path, width: int, height: int, repeat: int) -> dict[str, float]:
    """Inference, each decode path, and their sum for JPEG, in ms per image."""
    model = OnnxModel.load(model_path, intra_op_threads=1)
    info = model.info
    pre = Preprocessing(info.input_size, info.input_min, info.input_max, info.channels)
    rng = np.random.default_rng(7)
    images = {
        fmt: make_study(f"s-{fmt}", fmt, rng, width=width, height=height)
        for fmt in ("jpeg", "png", "png16")
    }

    def prepare(fmt: str) -> Callable[[], object]:
        study = images[fmt]
        return lambda: prepare_image(study.image, filename=study.image_name, preprocessing=pre)

    tensor = prepare_image(
        images["jpeg"].image, filename=images["jpeg"].image_name, preprocessing=pre
    ).tensor
    jpeg = images["jpeg"]
    return {
        "inference": p50_ms(lambda: model.predict_logits(tensor), repeat),
        "jpeg": p50_ms(prepare("jpeg"), repeat),
        "png8": p50_ms(prepare("png"), repeat),
        "png16": p50_ms(prepare("png16"), repeat),
        "in_memory": p50_ms(
            lambda: model.predict_logits(
                prepare_image(jpeg.image, filename=jpeg.image_name, preprocessing=pre).tensor
            ),
            repeat,
        ),
    }


def measure_pipeline(
    model_path: Path, root: Path, width: int, height: int, studies: int
) -> tuple[float, float]:
    """Mean ms per image of one worker's runner over ``studies`` JPEG studies, and of the
    in-memory path on the same bytes, interleaved so both see the same machine load."""
    settings = Settings(data_dir=root / "data", model={"path": model_path})
    executor = Executor(connect(root / "engine.db"), lease_s=settings.engine.lease_s)
    store = FolderStore(root / "buckets", listener=executor)
    sink = ParquetSink(
        root / "lake",
        writer_id="w1",
        flush_rows=settings.telemetry.flush_rows,
        flush_s=settings.telemetry.flush_s,
    )
    model = OnnxModel.load(model_path, intra_op_threads=1)
    info = model.info
    pre = Preprocessing(info.input_size, info.input_min, info.input_max, info.channels)
    runner = ExecutionRunner(
        store=store, executor=executor, model=model, sink=sink, settings=settings, worker_id="w1"
    )
    rng = np.random.default_rng(11)
    base = [make_study(f"p{i:04d}", "jpeg", rng, width=width, height=height) for i in range(4)]

    def run_all(prefix: str, count: int) -> tuple[list[float], list[float]]:
        for i in range(count):
            upload_generated(store, base[i % len(base)].renamed(f"{prefix}{i:04d}"))
        pipeline: list[float] = []
        in_memory: list[float] = []
        for i in range(count):
            claim = executor.claim("w1")
            if claim is None:
                raise RuntimeError(f"{count - i} of {count} studies were not claimed")
            start = time.perf_counter()
            runner.run(claim)
            pipeline.append(time.perf_counter() - start)
            study = base[i % len(base)]
            start = time.perf_counter()
            model.predict_logits(
                prepare_image(study.image, filename=study.image_name, preprocessing=pre).tensor
            )
            in_memory.append(time.perf_counter() - start)
        return pipeline, in_memory

    run_all("warm", 3)
    pipeline, in_memory = run_all("run", studies)
    sink.close()
    failed = [r for r in executor.executions() if r["state"] != "succeeded"]
    if failed:
        raise RuntimeError(f"{len(failed)} studies failed: {failed[0]['error_code']}")
    return (
        round(1000.0 * statistics.mean(pipeline), 2),
        round(1000.0 * statistics.mean(in_memory), 2),
    )


def main() -> int:
    """Measure and print the split (``--json``: one object of ms values)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--studies", type=int, default=24)
    parser.add_argument("--size", default="2000x2500")
    parser.add_argument("--model", type=Path, default=None, help="ONNX file [the stand-in]")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_path = args.model or ensure_standin(root / "models")
        split = measure_steps(model_path, width, height, args.repeat)
        pipeline, beside = measure_pipeline(model_path, root, width, height, args.studies)
    split["pipeline"] = pipeline
    # The gap is taken against the in-memory time measured beside the runner, image by
    # image: on a loaded machine two separate measurements differ by more than the gap.
    split["in_memory_beside_pipeline"] = beside
    split["gap"] = round(pipeline - beside, 2)
    if args.json:
        print(json.dumps({"ms_per_image": split, "size": args.size, "repeat": args.repeat}))
    else:
        for step in STEPS:
            print(f"{LABELS[step]:<46} {split[step]:8.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
