"""Reduced precision: speed per runtime and precision, fidelity on real chest X-rays, cost.

In one run, on the same images:

(a) the in-memory limit (decode + preprocess + inference on bytes in memory, one process
    per core, one thread each, as ``radstream.bench.limit``) for each runtime and precision:
    ONNX Runtime fp32 (the default), ONNX Runtime int8 (static QDQ, per-channel), OpenVINO
    fp32 and OpenVINO bf16. The configurations are measured interleaved, forwards and then
    backwards, and the median kept, so a machine that speeds up or slows down biases none
    of them;
(b) the pipeline's JPEG throughput (folder store, SQLite executor, worker pool, telemetry)
    with fp32 and with the fastest reduced precision that passes the fidelity gate, also
    interleaved (fp32, best, best, fp32 per round; the median);
(c) fidelity against the fp32 model: max and mean |Δp| over the 18 labels, on the
    pydicom-data CR chest radiograph (RG1) in every encoding the imaging tests build, and on
    synthetic images from ``radstream.loadgen``;
(d) the modelled AWS cost per image (``radstream.bench.cost``): the infer Lambda's duration
    is the measured one-process CPU time per inference of each configuration.

Every throughput is given twice: by the clock (images per second of wall time) and per CPU
second (images per CPU second of the processes involved, times the workers: what they would
do with the cores to themselves). On a machine shared with other work, the clock figures
move with that work from one run to the next; the CPU figures do not, and the ratios
between configurations are best read from them.

The reference is the untrained stand-in: the fidelity figures are numerical fidelity to the
fp32 model, not clinical accuracy.

Run:  PYTHONPATH=<openvino> .venv/bin/python benchmarks/precision.py [--studies 120]
(OpenVINO is the optional ``openvino`` extra; without it only ONNX Runtime is measured.)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from radstream.bench.cost import CostInputs, estimate_cost
from radstream.bench.limit import Backend, measure_limit
from radstream.imaging import prepare_image
from radstream.loadgen.study import Study, make_study
from radstream.loadgen.uploader import upload_generated
from radstream.local.engine import LocalEngine
from radstream.local.executor import execution_id
from radstream.local.pool import WorkerPool
from radstream.model import OnnxModel, ensure_standin
from radstream.model.backends import cpu_support, load_backend
from radstream.model.fidelity import FidelityReport, compare_models
from radstream.model.openvino_runtime import openvino_available
from radstream.model.quantize import optimize_model, quantize_int8_bytes, split_holdout
from radstream.pricing import load_pricing
from radstream.settings import Settings
from radstream.stages.ports import ObjectInfo
from radstream.stages.prepare import preprocessing_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "imaging"))
import real_radiographs  # test data builder (tests/imaging), not a package

UNIQUE_IMAGES = 24
# Validate and store do no model work; their Lambda durations are taken as fixed here.
OTHER_STAGE_MS = {"validate": 20.0, "store": 30.0}


@dataclass(frozen=True)
class Config:
    """One runtime and precision, and the file it runs."""

    label: str
    runtime: str
    precision: str
    path: Path

    def backend(self) -> Backend:
        """The model as ``radstream.bench.limit`` loads it."""
        return Backend(self.path, runtime=self.runtime, precision=self.precision)


def _wait_all(engine: LocalEngine, infos: list[ObjectInfo], timeout: float) -> None:
    ids = [execution_id(i.bucket, i.key, i.etag) for i in infos]
    deadline = time.monotonic() + timeout
    while engine.executor.terminal_count(ids) < len(ids):
        if time.monotonic() > deadline:
            raise TimeoutError("pipeline did not finish")
        time.sleep(0.1)  # slow: the figures come from the engine's own timestamps


def _upload(engine: LocalEngine, study: Study, tag: str) -> ObjectInfo:
    return upload_generated(engine.store, study.renamed(f"{tag}-{study.study_id}"))


@dataclass(frozen=True)
class PipelineRun:
    """The pipeline's throughput over one burst: by the clock, and per CPU second."""

    images_per_s: float
    cpu_images_per_s: float
    """Images per CPU second of the workers and this process (uploads, router), times the
    workers: what the pipeline would do with its cores to itself."""


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pipeline_throughput(settings: Settings, studies: list[Study], tag: str) -> PipelineRun:
    """The whole pipeline over ``studies``, all uploaded at once after a warm-up."""
    with LocalEngine.open(settings) as engine, WorkerPool(settings) as pool:
        pool.wait_ready(engine.executor)
        warm = [_upload(engine, s, f"{tag}w") for s in studies[: 2 * settings.engine.workers]]
        _wait_all(engine, warm, 120)
        pids = [p.pid for p in pool.processes if p.pid is not None]
        cpu0 = sum(_cpu_s(pid) for pid in pids) + time.process_time()
        burst = [_upload(engine, s, tag) for s in studies]
        _wait_all(engine, burst, 600)
        cpu = sum(_cpu_s(pid) for pid in pids) + time.process_time() - cpu0
        ids = [execution_id(i.bucket, i.key, i.etag) for i in burst]
        rows = list(engine.executor.latest(ids).values())
    failed = [r for r in rows if r["state"] != "succeeded"]
    if failed:
        raise RuntimeError(f"{len(failed)} studies failed: {failed[0]['error_code']}")
    wall = max(r["finished_at"] for r in rows) - min(r["created_at"] for r in rows)
    return PipelineRun(len(rows) / wall, len(rows) * settings.engine.workers / cpu)


def fidelity(reference: OnnxModel, config: Config, tensors: list[np.ndarray]) -> FidelityReport:
    """The configuration's fidelity to the fp32 model on ``tensors``."""
    candidate = load_backend(
        config.path, precision=config.precision, runtime=config.runtime, allow_unverified=True
    )
    return compare_models(reference, candidate, tensors)


def infer_interleaved(
    configs: list[Config], tensors: list[np.ndarray], rounds: int = 15, calls: int = 4
) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) ms per inference of each configuration, one thread, taking turns."""
    models = {
        c.label: load_backend(
            c.path, precision=c.precision, runtime=c.runtime, allow_unverified=True
        )
        for c in configs
    }
    times: dict[str, list[float]] = {label: [] for label in models}
    cpu: dict[str, list[float]] = {label: [] for label in models}
    for model in models.values():  # warm-up
        model.predict_logits(tensors[0])
    for i in range(rounds):
        for label, model in models.items():
            t, c = time.perf_counter(), time.process_time()
            for k in range(calls):
                model.predict_logits(tensors[(i + k) % len(tensors)])
            times[label].append(1000 * (time.perf_counter() - t) / calls)
            cpu[label].append(1000 * (time.process_time() - c) / calls)
    return {
        label: (statistics.median(times[label]), statistics.median(cpu[label])) for label in models
    }


def cost_per_image(prepare_ms: float, infer_ms: float, image_bytes: float, n: int = 1000) -> float:
    """Modelled AWS cost per image with these prepare and infer Lambda durations."""
    stage_ms = {
        "validate": [OTHER_STAGE_MS["validate"]] * n,
        "prepare": [prepare_ms] * n,
        "infer": [infer_ms] * n,
        "store": [OTHER_STAGE_MS["store"]] * n,
    }
    inputs = CostInputs(
        executions=n,
        succeeded=n,
        stage_ms=stage_ms,
        telemetry_records=4 * n,
        image_bytes_mean=image_bytes,
    )
    per_image = estimate_cost(inputs, load_pricing()).per_image_usd
    assert per_image is not None
    return per_image


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=120)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--size", default="2000x2500")
    parser.add_argument("--calibration", type=int, default=32, help="synthetic images")
    parser.add_argument("--rounds", type=int, default=2, help="limit runs: 2 per round")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    report: dict[str, object] = {
        "workers": args.workers,
        "studies": args.studies,
        "cpu": {k: v for k, v in cpu_support().as_dict().items() if v},
    }

    with tempfile.TemporaryDirectory(prefix="radstream-precision-") as tmp:
        root = Path(tmp)
        fp32_path = ensure_standin(root / "models")
        reference = OnnxModel.load(fp32_path)
        pre = preprocessing_for(reference.info)
        rng = np.random.default_rng(11)
        unique = [
            make_study(f"p{i:05d}", "jpeg", rng, width=width, height=height)
            for i in range(UNIQUE_IMAGES)
        ]
        studies = [unique[i % UNIQUE_IMAGES].renamed(f"p{i:05d}") for i in range(args.studies)]
        images = [(s.image_name, s.image) for s in studies]
        image_bytes = statistics.mean(len(s.image) for s in unique)

        # Calibration: synthetic images of another seed, never the measured ones.
        crng = np.random.default_rng(23)
        calibration = [
            prepare_image(s.image, filename=s.image_name, preprocessing=pre).tensor
            for s in (
                make_study(f"c{i}", "jpeg", crng, width=1000, height=1250)
                for i in range(args.calibration)
            )
        ]
        synthetic = [
            prepare_image(s.image, filename=s.image_name, preprocessing=pre).tensor for s in unique
        ]
        real, skipped = [], []
        for name in real_radiographs.ENCODINGS:
            try:
                data = real_radiographs.encoded(name)
                real.append(prepare_image(data, filename=f"{name}.dcm", preprocessing=pre).tensor)
            except Exception as exc:  # an encoder or decoder missing here: say which
                skipped.append(f"{name}: {type(exc).__name__}")
        report["real_images"] = {"encodings": len(real), "skipped": skipped}

        configs = [Config("onnxruntime fp32", "onnxruntime", "fp32", fp32_path)]
        # int8: calibrated on synthetic images; the gate's held-out part is synthetic too.
        int8_path = root / "models" / "int8.onnx"
        kept, _ = split_holdout(len(calibration))
        t = time.perf_counter()
        try:
            optimize_model(fp32_path, calibration, int8_path, precision="int8")
            int8_gate = "passed"
        except Exception as exc:  # the gate failed: measure the candidate anyway, marked so
            int8_gate = f"failed ({exc})"
            import onnx

            from radstream.model.metadata import write_precision_metadata

            model = onnx.load_model_from_string(
                quantize_int8_bytes(fp32_path, [calibration[i] for i in kept])
            )
            for prop in onnx.load_model(str(fp32_path)).metadata_props:
                entry = model.metadata_props.add()
                entry.key, entry.value = prop.key, prop.value
            write_precision_metadata(
                model, precision="int8", runtime="onnxruntime", fidelity_json="{}"
            )
            onnx.save_model(model, str(int8_path))
        report["int8_optimize_s"] = round(time.perf_counter() - t, 1)
        report["int8_gate_on_synthetic_holdout"] = int8_gate
        configs.append(Config("onnxruntime int8", "onnxruntime", "int8", int8_path))
        if openvino_available():
            bf16_path = root / "models" / "bf16.onnx"
            try:
                optimize_model(
                    fp32_path, calibration, bf16_path, precision="bf16", runtime="openvino"
                )
                report["bf16_gate_on_synthetic_holdout"] = "passed"
            except Exception as exc:
                report["bf16_gate_on_synthetic_holdout"] = f"failed ({exc})"
                bf16_path = fp32_path
            configs.append(Config("openvino fp32", "openvino", "fp32", fp32_path))
            configs.append(Config("openvino bf16", "openvino", "bf16", bf16_path))

        # (c) fidelity, before any clock.
        fid = {
            c.label: (fidelity(reference, c, real), fidelity(reference, c, synthetic))
            for c in configs
        }

        # Inference alone, one thread, in this process: the models take turns every few
        # calls, so noise from other work on the machine falls on all of them alike.
        infer_only = infer_interleaved(configs, synthetic[:4])

        # (a) limits, interleaved forwards then backwards, ``--rounds`` times; the median.
        runs: dict[str, list[dict[str, float]]] = {c.label: [] for c in configs}
        for _ in range(args.rounds):
            for config in [*configs, *reversed(configs)]:
                limit = measure_limit(config.backend(), images, args.workers)
                runs[config.label].append(asdict(limit))
        limits = {
            label: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
            for label, rs in runs.items()
        }

        # (b) pipeline: fp32, and the fastest reduced precision that passes on real images.
        fp32 = configs[0]
        passing = [c for c in configs[1:] if c.precision != "fp32" and fid[c.label][0].passed]
        best = max(passing, key=lambda c: limits[c.label]["images_per_s"], default=None)
        pipe_runs: dict[str, list[PipelineRun]] = {}
        order = [fp32, *([best] if best else [])]
        # Interleaved like the limits (fp32, best, best, fp32, ...): the machine's other
        # work falls on both alike.
        for i, config in enumerate([c for _ in range(args.rounds) for c in [*order, *order[::-1]]]):
            settings = Settings(
                data_dir=root / f"data-{config.runtime}-{config.precision}-{i}",
                model={
                    "path": config.path,
                    "precision": config.precision,
                    "runtime": config.runtime,
                },
                engine={"workers": args.workers},
                telemetry={"flush_s": 2.0},
            )
            run = pipeline_throughput(settings, studies, f"{config.precision}{i}")
            pipe_runs.setdefault(config.label, []).append(run)
        pipe = {
            label: PipelineRun(
                statistics.median(r.images_per_s for r in runs_),
                statistics.median(r.cpu_images_per_s for r in runs_),
            )
            for label, runs_ in pipe_runs.items()
        }

    fp32_limit = limits[fp32.label]["images_per_s"]
    fp32_cpu_limit = limits[fp32.label]["cpu_images_per_s"]
    rows = []
    for c in configs:
        lim = limits[c.label]
        real_f, syn_f = fid[c.label]
        run = pipe.get(c.label)
        rows.append(
            {
                "config": c.label,
                "limit_images_per_s": round(lim["images_per_s"], 2),
                "limit_over_fp32": round(lim["images_per_s"] / fp32_limit, 2),
                "limit_cpu_images_per_s": round(lim["cpu_images_per_s"], 2),
                "limit_cpu_over_fp32": round(lim["cpu_images_per_s"] / fp32_cpu_limit, 2),
                "prepare_ms": round(lim["prepare_ms"], 1),
                "infer_ms": round(lim["infer_ms"], 1),
                "cpu_ms_per_image": round(lim["cpu_ms_per_image"], 1),
                "infer_ms_one_process": round(infer_only[c.label][0], 1),
                "infer_cpu_ms_one_process": round(infer_only[c.label][1], 1),
                "infer_speedup_one_process": round(
                    infer_only[fp32.label][0] / infer_only[c.label][0], 2
                ),
                "infer_cpu_speedup_one_process": round(
                    infer_only[fp32.label][1] / infer_only[c.label][1], 2
                ),
                "pipeline_images_per_s": round(run.images_per_s, 2) if run else None,
                "pipeline_over_fp32_limit": round(run.images_per_s / fp32_limit, 2)
                if run
                else None,
                "pipeline_cpu_images_per_s": round(run.cpu_images_per_s, 2) if run else None,
                "pipeline_cpu_over_fp32_cpu_limit": round(run.cpu_images_per_s / fp32_cpu_limit, 2)
                if run
                else None,
                "real_max_abs_dp": round(real_f.max_abs_delta, 4),
                "real_mean_abs_dp": round(real_f.mean_abs_delta, 4),
                "real_top1_agreement": round(real_f.top1_agreement, 3),
                "synthetic_max_abs_dp": round(syn_f.max_abs_delta, 4),
                "synthetic_rank_correlation": round(syn_f.rank_correlation, 4),
                # The infer Lambda runs one image on one core: its duration scales with the
                # one-process speed-up (CPU time: what a core of its own would take);
                # prepare is the fp32 run's (the same work for all).
                "usd_per_1000_images": round(
                    1000
                    * cost_per_image(
                        limits[fp32.label]["prepare_ms"], infer_only[c.label][1], image_bytes
                    ),
                    4,
                ),
            }
        )
    report["rows"] = rows
    report["limit_runs"] = {k: [round(r["images_per_s"], 2) for r in v] for k, v in runs.items()}
    report["pipeline_runs"] = {
        k: [(round(r.images_per_s, 2), round(r.cpu_images_per_s, 2)) for r in v]
        for k, v in pipe_runs.items()
    }
    if best is not None:
        ratio = pipe[best.label].images_per_s / fp32_limit
        cpu_ratio = pipe[best.label].cpu_images_per_s / fp32_cpu_limit
        close = fid[best.label][0].max_abs_delta <= 0.02
        report["target"] = {
            "best": best.label,
            "pipeline_over_fp32_limit": round(ratio, 2),
            "pipeline_cpu_over_fp32_cpu_limit": round(cpu_ratio, 2),
            "max_abs_dp_real": round(fid[best.label][0].max_abs_delta, 4),
            "met": ratio >= 1.7 and close,
            "met_per_cpu_second": cpu_ratio >= 1.7 and close,
        }
    if args.json:
        print(json.dumps(report))
    else:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
