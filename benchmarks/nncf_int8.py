"""int8 with NNCF: does post-training quantization beat bf16 on this CPU, within the gate?

The issue asks to measure both quantizers (ONNX Runtime's and NNCF) and keep the better.
``benchmarks/precision.py`` measures ONNX Runtime's (the one ``model optimize`` uses); this
script measures NNCF's candidates beside it, on the same calibration and the same images:

- NNCF on the ONNX model (ONNX backend: a QDQ ONNX file, our file format), run by ONNX
  Runtime and by OpenVINO;
- NNCF on the OpenVINO model (OpenVINO backend: an int8 IR), run by OpenVINO, computing
  what it leaves unquantized in f32 and, on a CPU with AMX/AVX512_BF16, in bf16;
- each with ``preset=MIXED`` and ``subset_size`` = all calibration images, with fast bias
  correction (NNCF's default) and with full bias correction plus the first convolution
  and the classifier ignored (``ignored_scope``), as ``radstream.model.quantize`` does;
- the references: ONNX Runtime fp32, ONNX Runtime int8 (``quantize_int8_bytes``) and
  OpenVINO bf16.

Calibration: synthetic chest JPEGs preprocessed exactly as the pipeline does, 3/4 of them
(``split_holdout``); the other 1/4 is the held-out set ``optimize`` would gate on. Fidelity
(max and mean |Δp| against ONNX Runtime fp32, ``radstream.model.fidelity``): the pydicom-data
CR chest radiograph in every encoding ``tests/imaging/real_radiographs.py`` builds, and
synthetic 2000x2500 JPEGs. Speed: one process, one thread, the models taking turns every
four calls; wall and CPU (``time.process_time``) ms per inference, the CPU figure being the
one that does not grow when other work shares the cores.

Run:  PYTHONPATH=<openvino+nncf> .venv/bin/python benchmarks/nncf_int8.py [--calibration 32]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from radstream.imaging import prepare_image
from radstream.loadgen.study import make_study
from radstream.model import OnnxModel, ensure_standin
from radstream.model.client import ModelClient
from radstream.model.fidelity import compare_models
from radstream.model.openvino_runtime import OpenVinoModel
from radstream.model.quantize import quantize_int8_bytes, split_holdout
from radstream.stages.prepare import preprocessing_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "imaging"))
import real_radiographs  # test data builder (tests/imaging), not a package


def _ov_client(model: Any, info: Any, hint: str) -> OpenVinoModel:
    """An OpenVINO model (IR or ONNX-read) compiled as ``OpenVinoModel.load`` compiles."""
    import openvino as ov

    compiled = ov.Core().compile_model(
        model,
        "CPU",
        {
            "INFERENCE_PRECISION_HINT": hint,
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            "ENABLE_CPU_PINNING": False,
            "INFERENCE_NUM_THREADS": 1,
        },
    )
    return OpenVinoModel(compiled.create_infer_request(), info, f"int8/{hint}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calibration", type=int, default=32, help="synthetic images")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    import nncf
    import onnx
    import openvino as ov

    logging.getLogger("nncf").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="radstream-nncf-") as tmp:
        root = Path(tmp)
        fp32 = ensure_standin(root / "models")
        ref = OnnxModel.load(fp32)
        pre = preprocessing_for(ref.info)
        crng = np.random.default_rng(23)
        calib = [
            prepare_image(s.image, filename=s.image_name, preprocessing=pre).tensor
            for s in (
                make_study(f"c{i}", "jpeg", crng, width=1000, height=1250)
                for i in range(args.calibration)
            )
        ]
        kept, held = split_holdout(len(calib))
        cal, hold = [calib[i] for i in kept], [calib[i] for i in held]
        rng = np.random.default_rng(11)
        syn = [
            prepare_image(s.image, filename=s.image_name, preprocessing=pre).tensor
            for s in (make_study(f"p{i}", "jpeg", rng, width=2000, height=2500) for i in range(24))
        ]
        real = []
        for name in real_radiographs.ENCODINGS:
            try:
                data = real_radiographs.encoded(name)
            except Exception:  # an encoder missing here; precision.py lists which
                continue
            real.append(prepare_image(data, filename=f"{name}.dcm", preprocessing=pre).tensor)

        nodes = onnx.load_model(str(fp32)).graph.node
        first_conv = next(n.name for n in nodes if n.op_type == "Conv")
        head = [n.name for n in nodes if n.op_type in ("Gemm", "MatMul")][-1]
        name_in = ref.info.input_name
        onnx_data = nncf.Dataset(cal, lambda t: {name_in: t})
        ov_data = nncf.Dataset(cal, lambda t: t)

        clients: dict[str, ModelClient] = {"onnxruntime fp32": ref}
        ort_int8 = root / "ort-int8.onnx"
        ort_int8.write_bytes(quantize_int8_bytes(fp32, cal))
        clients["onnxruntime int8 (ORT quantizer)"] = OnnxModel.load(
            ort_int8, allow_unverified=True
        )
        quantize_s: dict[str, float] = {}
        for variant in ("fast-bc", "full-bc+ignore"):
            options: dict[str, Any] = {
                "preset": nncf.QuantizationPreset.MIXED,
                "subset_size": len(cal),
                "fast_bias_correction": variant == "fast-bc",
            }
            if variant != "fast-bc":
                options["ignored_scope"] = nncf.IgnoredScope(names=[first_conv, head])
            t = time.perf_counter()
            qdq = nncf.quantize(onnx.load_model(str(fp32)), onnx_data, **options)
            quantize_s[f"onnx {variant}"] = round(time.perf_counter() - t, 1)
            path = root / f"nncf-{variant}.onnx"
            onnx.save_model(qdq, str(path))
            clients[f"NNCF-ONNX {variant} on onnxruntime"] = OnnxModel.load(
                path, allow_unverified=True
            )
            clients[f"NNCF-ONNX {variant} on openvino"] = _ov_client(
                ov.Core().read_model(str(path)), ref.info, "f32"
            )
            t = time.perf_counter()
            ir = nncf.quantize(ov.Core().read_model(str(fp32)), ov_data, **options)
            quantize_s[f"openvino {variant}"] = round(time.perf_counter() - t, 1)
            clients[f"NNCF-OV {variant} on openvino"] = _ov_client(ir, ref.info, "f32")
            clients[f"NNCF-OV {variant} on openvino, rest bf16"] = _ov_client(ir, ref.info, "bf16")
        clients["openvino bf16"] = OpenVinoModel.load(fp32, precision="bf16", threads=1)

        fidelity = {}
        for label, client in clients.items():
            r, s, h = (compare_models(ref, client, x) for x in (real, syn, hold))
            fidelity[label] = {
                "real_max_abs_dp": round(r.max_abs_delta, 4),
                "real_mean_abs_dp": round(r.mean_abs_delta, 4),
                "synthetic_max_abs_dp": round(s.max_abs_delta, 4),
                "holdout_max_abs_dp": round(h.max_abs_delta, 4),
            }

        wall: dict[str, list[float]] = {label: [] for label in clients}
        cpu: dict[str, list[float]] = {label: [] for label in clients}
        for client in clients.values():  # warm-up
            client.predict_logits(syn[0])
        for i in range(args.rounds):
            for label, client in clients.items():
                t, c = time.perf_counter(), time.process_time()
                for k in range(4):
                    client.predict_logits(syn[(i + k) % len(syn)])
                wall[label].append(250 * (time.perf_counter() - t))
                cpu[label].append(250 * (time.process_time() - c))

    base_wall = statistics.median(wall["onnxruntime fp32"])
    base_cpu = statistics.median(cpu["onnxruntime fp32"])
    rows = []
    for label in clients:
        w, c = statistics.median(wall[label]), statistics.median(cpu[label])
        rows.append(
            {
                "config": label,
                "infer_ms": round(w, 1),
                "infer_speedup": round(base_wall / w, 2),
                "infer_cpu_ms": round(c, 1),
                "infer_cpu_speedup": round(base_cpu / c, 2),
                **fidelity[label],
                "passes_gate_on_real": fidelity[label]["real_max_abs_dp"] <= 0.02,
            }
        )
    report = {
        "calibration": len(cal),
        "holdout": len(hold),
        "real_images": len(real),
        "quantize_s": quantize_s,
        "nncf": nncf.__version__,
        "openvino": ov.__version__,
        "rows": rows,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
