"""Reduced precision: the fidelity gate, the metadata it leaves, and who may run what.

The damaged model is the stand-in with its classifier weights perturbed: everything about
it loads and runs, only its probabilities moved. ``compare`` must catch exactly that.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from typer.testing import CliRunner

from radstream.cli import app
from radstream.errors import ModelFileInvalid
from radstream.loadgen.study import make_study
from radstream.model import OnnxModel, read_model_info
from radstream.model.backends import CpuSupport, choose, load_backend, parse_cpu_flags
from radstream.model.fidelity import FidelityReport, compare_logits, verified
from radstream.model.metadata import write_precision_metadata
from radstream.settings import Settings

LABELS = ("a", "b", "c")


def _damaged(source: Path, out: Path, *, scale: float) -> Path:
    """The model at ``source`` with its last weight matrix (the classifier) scaled."""
    model = onnx.load_model(str(source))
    matrices = [t for t in model.graph.initializer if len(t.dims) == 2]
    target = matrices[-1]
    target.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(target) * scale, target.name))
    onnx.save_model(model, str(out))
    return out


def _marked(source: Path, out: Path, *, precision: str, report: FidelityReport | None) -> Path:
    """The model at ``source`` declaring ``precision``, with ``report`` (or a failing one)."""
    model = onnx.load_model(str(source))
    fidelity = report.to_json() if report is not None else "{}"
    write_precision_metadata(
        model, precision=precision, runtime="onnxruntime", fidelity_json=fidelity
    )
    onnx.save_model(model, str(out))
    return out


def _report(max_delta: float, threshold: float = 0.02) -> FidelityReport:
    ref = np.zeros((2, 3))
    cand = ref.copy()
    cand[0, 1] = 4 * max_delta  # sigmoid'(0) = 1/4: a small logit shift moves p by about /4
    return compare_logits(ref, cand, LABELS, max_delta=threshold)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four synthetic chest JPEGs, as the pipeline receives them."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(5)
    for i in range(4):
        study = make_study(f"s{i}", "jpeg", rng, width=320, height=400)
        (folder / study.image_name).write_bytes(study.image)
    return folder


def test_identical_logits_agree_fully() -> None:
    logits = np.random.default_rng(0).normal(size=(5, 3))
    report = compare_logits(logits, logits, LABELS)
    assert report.passed
    assert report.max_abs_delta == 0.0
    assert report.top1_agreement == 1.0
    assert report.rank_correlation == pytest.approx(1.0)


def test_report_names_the_label_that_moved_and_fails_above_the_threshold() -> None:
    report = _report(0.03)
    by_label = {row.label: row for row in report.labels}
    assert by_label["b"].max_abs_delta == pytest.approx(0.03, abs=0.002)
    assert by_label["a"].max_abs_delta == 0.0
    assert not report.passed
    assert _report(0.01).passed


def test_report_survives_json_and_refuses_other_json() -> None:
    report = _report(0.01)
    assert FidelityReport.from_json(report.to_json()) == report
    with pytest.raises(ValueError, match="not a fidelity report"):
        FidelityReport.from_json('{"images": 1}')


def test_compare_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="cannot be compared"):
        compare_logits(np.zeros((2, 3)), np.zeros((2, 4)), LABELS)


def test_cli_compare_passes_a_model_against_itself_and_fails_a_damaged_one(
    standin_model: Path, images: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    same = runner.invoke(
        app, ["model", "compare", str(standin_model), str(standin_model), "--images", str(images)]
    )
    assert same.exit_code == 0, same.output
    assert "PASS" in same.output

    damaged = _damaged(standin_model, tmp_path / "damaged.onnx", scale=1.5)
    result = runner.invoke(
        app, ["model", "compare", str(standin_model), str(damaged), "--images", str(images)]
    )
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.output


def test_an_unverified_reduced_precision_file_is_refused_unless_allowed(
    standin_model: Path, tmp_path: Path
) -> None:
    unverified = _marked(standin_model, tmp_path / "u.onnx", precision="int8", report=None)
    with pytest.raises(ModelFileInvalid, match="fidelity report"):
        OnnxModel.load(unverified)
    with pytest.raises(ModelFileInvalid, match="allow_unverified"):
        load_backend(unverified, precision="int8", allow_unverified=False)
    assert OnnxModel.load(unverified, allow_unverified=True).info.precision == "int8"

    failing = _marked(standin_model, tmp_path / "f.onnx", precision="int8", report=_report(0.05))
    with pytest.raises(ModelFileInvalid):
        OnnxModel.load(failing)
    passing = _marked(standin_model, tmp_path / "p.onnx", precision="int8", report=_report(0.01))
    assert verified(read_model_info(passing), "int8") is not None
    assert OnnxModel.load(passing).info.precision == "int8"


def test_the_pipeline_loader_applies_the_gate(standin_model: Path, tmp_path: Path) -> None:
    from radstream.model.loading import load_model_client

    unverified = _marked(standin_model, tmp_path / "u.onnx", precision="int8", report=None)
    settings = Settings(data_dir=tmp_path, model={"path": unverified, "precision": "int8"})
    with pytest.raises(ModelFileInvalid):
        load_model_client(settings)
    allowed = Settings(
        data_dir=tmp_path,
        model={"path": unverified, "precision": "int8", "allow_unverified": True},
    )
    assert load_model_client(allowed).info.precision == "int8"


def test_fp32_stays_the_default_and_unchanged(standin_model: Path, tmp_path: Path) -> None:
    from radstream.model.loading import load_model_client

    settings = Settings(data_dir=tmp_path, model={"path": standin_model})
    assert (settings.model.precision, settings.model.runtime) == ("fp32", "onnxruntime")
    assert not settings.model.allow_unverified
    client = load_model_client(settings)
    assert isinstance(client, OnnxModel)
    batch = np.zeros((1, 1, 224, 224), dtype=np.float32)
    direct = OnnxModel.load(standin_model).predict_logits(batch)
    np.testing.assert_array_equal(client.predict_logits(batch), direct)


def test_choose_falls_back_and_refuses_contradictions(standin_model: Path, tmp_path: Path) -> None:
    fp32 = read_model_info(standin_model)
    bf16_cpu = CpuSupport(frozenset({"avx512_bf16", "avx512_vnni"}))
    plain_cpu = CpuSupport(frozenset({"avx2"}))

    ort = choose(fp32, precision="bf16", runtime="onnxruntime", cpu=bf16_cpu, have_openvino=True)
    assert (ort.runtime, ort.precision) == ("onnxruntime", "fp32")
    assert ort.note is not None and "falls back" in ort.note
    no_ov = choose(fp32, precision="bf16", runtime="auto", cpu=bf16_cpu, have_openvino=False)
    assert no_ov.precision == "fp32" and no_ov.note is not None
    old_cpu = choose(fp32, precision="bf16", runtime="auto", cpu=plain_cpu, have_openvino=True)
    assert (old_cpu.runtime, old_cpu.precision) == ("onnxruntime", "fp32")
    fast = choose(fp32, precision="bf16", runtime="auto", cpu=bf16_cpu, have_openvino=True)
    assert (fast.runtime, fast.precision, fast.note) == ("openvino", "bf16", None)
    assert choose(fp32).precision == "fp32"

    with pytest.raises(ModelFileInvalid, match="optimize"):
        choose(fp32, precision="int8", cpu=bf16_cpu, have_openvino=False)
    int8 = read_model_info(
        _marked(standin_model, tmp_path / "i.onnx", precision="int8", report=None)
    )
    with pytest.raises(ModelFileInvalid, match="bf16"):
        choose(int8, precision="bf16", cpu=bf16_cpu, have_openvino=True)
    slow = choose(int8, precision="fp32", cpu=plain_cpu, have_openvino=False)
    assert slow.precision == "int8" and slow.note is not None and "VNNI" in slow.note


def test_cpu_flags_are_read_from_cpuinfo() -> None:
    text = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16\n\nprocessor\t: 1\n"
    support = parse_cpu_flags(text)
    assert support.int8_fast and support.bf16_fast
    assert support.as_dict()["amx_int8"] is False
    assert not parse_cpu_flags("processor\t: 0\n").int8_fast


def test_cli_info_shows_precision_and_cpu(standin_model: Path) -> None:
    result = CliRunner().invoke(app, ["model", "info", "--model", str(standin_model)])
    assert result.exit_code == 0, result.output
    assert '"precision": "fp32"' in result.output
    assert '"bf16_fast"' in result.output


@pytest.mark.slow  # two static quantizations of DenseNet121: seconds of CPU each
def test_optimize_int8_writes_a_verified_model_and_refuses_a_failing_one(
    standin_model: Path, images: Path, tmp_path: Path
) -> None:
    from radstream.model.quantize import optimize_model
    from radstream.stages.prepare import preprocessing_for

    out = tmp_path / "strict.onnx"
    result = CliRunner().invoke(
        app,
        [
            "model", "optimize", "--model", str(standin_model), "--calibrate", str(images),
            "--out", str(out), "--max-delta", "0",
        ],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.output
    assert not out.exists()

    from radstream.imaging import prepare_image

    pre = preprocessing_for(read_model_info(standin_model))
    tensors = [
        prepare_image(p.read_bytes(), filename=p.name, preprocessing=pre).tensor
        for p in sorted(images.iterdir())
    ]
    written = optimize_model(standin_model, tensors, tmp_path / "int8.onnx", max_delta=1.0)
    assert written.calibration_images == 3 and written.report.images == 1
    info = read_model_info(written.path)
    assert (info.precision, info.precision_runtime) == ("int8", "onnxruntime")
    assert info.labels == read_model_info(standin_model).labels
    assert verified(info, "int8") == written.report
    model = OnnxModel.load(written.path)  # no override needed: the report passes
    assert model.predict_logits(tensors[-1]).shape == (1, len(info.labels))


@pytest.mark.slow  # compiles DenseNet121 with OpenVINO twice
def test_bf16_with_openvino_is_verified_and_chosen_where_the_cpu_has_it(
    standin_model: Path, images: Path, tmp_path: Path
) -> None:
    pytest.importorskip("openvino")
    from radstream.imaging import prepare_image
    from radstream.model.backends import cpu_support
    from radstream.model.openvino_runtime import OpenVinoModel
    from radstream.model.quantize import optimize_model
    from radstream.stages.prepare import preprocessing_for

    pre = preprocessing_for(read_model_info(standin_model))
    tensors = [
        prepare_image(p.read_bytes(), filename=p.name, preprocessing=pre).tensor
        for p in sorted(images.iterdir())
    ]
    written = optimize_model(
        standin_model, tensors, tmp_path / "bf16.onnx", precision="bf16", runtime="openvino"
    )
    info = read_model_info(written.path)
    assert (info.precision, info.precision_runtime) == ("bf16", "openvino")
    assert written.report.passed
    model = load_backend(written.path, runtime="auto", allow_unverified=False)
    if cpu_support().bf16_fast:
        assert isinstance(model, OpenVinoModel) and model.precision == "bf16"
    else:
        assert isinstance(model, OnnxModel)  # fell back to fp32, logged


def test_holdout_is_spread_over_the_images_and_never_empty() -> None:
    from radstream.model.quantize import split_holdout

    kept, held = split_holdout(8)
    assert held == [3, 7] and kept == [0, 1, 2, 4, 5, 6]
    assert split_holdout(2) == ([0], [1])
    with pytest.raises(ValueError, match="at least 2"):
        split_holdout(1)
