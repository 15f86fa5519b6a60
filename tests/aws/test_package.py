"""`radstream aws package`: real builds of the Lambda artifacts, no mocks.

The slow tests download the pinned wheels once into the repository's shared cache
(.radstream/wheels/3.11-x86_64) and then reuse it. Import checks run the unpacked
artifacts in `python -I -S`, so nothing from this virtual environment leaks in: only the
code, the stage's layers, the standard library and (as the Lambda runtime ships it)
botocore with its own dependencies.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import radstream
from radstream.aws import package
from radstream.aws.package import (
    ARTIFACT_FILES,
    CODE,
    LAYER_IMAGING,
    LAYER_MODEL,
    MANIFEST_FILE,
    STAGE_LAYERS,
    PackageManifest,
    build_code_zip,
    build_package,
    load_manifest,
    stage_layers,
)
from radstream.errors import ConfigInvalid, PackageTooLarge
from radstream.pipeline.definition import IMAGING, PIPELINE, STORE

REPO = Path(__file__).resolve().parents[2]
# The isolated-import tests run the package on this interpreter, so it is built for it.
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
WHEEL_CACHE = REPO / ".radstream" / "wheels" / f"{PYTHON}-x86_64"
SOURCE = Path(radstream.__file__).parent
# What the Lambda Python runtime provides besides the standard library.
RUNTIME_MODULES = ("botocore", "jmespath", "dateutil", "urllib3", "six")
# What radstream.aws.handlers imports inside its stage functions, not at module level.
HANDLER_LAZY_IMPORTS: dict[str, tuple[str, ...]] = {
    "prepare": ("numpy", "radstream.imaging", "radstream.stages.prepare"),
    "infer": (
        "numpy",
        "radstream.stages.infer",
        "radstream.model.loading",
        "radstream.model.runtime",
        "radstream.model.kserve_client",
    ),
}
NOT_SHIPPED = ("botocore", "boto3", "jmespath", "urllib3", "dateutil", "s3transfer")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_isolated(paths: list[Path], code: str) -> None:
    """Run ``code`` in an isolated interpreter whose sys.path is ``paths`` plus the stdlib."""
    prelude = textwrap.dedent(
        f"""
        import sys
        assert not any("site-packages" in p for p in sys.path), sys.path
        sys.path[:0] = {[str(p) for p in paths]!r}
        """
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


# --- quick: code.zip alone, no downloads ----------------------------------------------


def test_code_zip_is_reproducible_and_holds_only_runtime_files(tmp_path: Path) -> None:
    source = tmp_path / "radstream"
    shutil.copytree(SOURCE, source)
    (source / "tests").mkdir(exist_ok=True)
    (source / "tests" / "test_x.py").write_text("assert False\n")
    (source / "__pycache__").mkdir(exist_ok=True)
    (source / "__pycache__" / "stale.cpython-311.pyc").write_bytes(b"\0")
    (source / "notes.txt").write_text("not package data\n")
    tool = source / "tool.py"
    tool.write_text("#!/usr/bin/env python\n")
    tool.chmod(0o755)

    first = build_code_zip(source, tmp_path / "a.zip")
    # Other file times, same contents: the zip must not change.
    for path in source.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    second = build_code_zip(source, tmp_path / "b.zip")

    assert first.sha256 == second.sha256 == sha256(second.path)
    assert first.name == CODE
    with zipfile.ZipFile(first.path) as zf:
        infos = zf.infolist()
    names = [i.filename for i in infos]
    assert names == sorted(names)
    assert {
        "radstream/__init__.py",
        "radstream/py.typed",
        "radstream/lake/athena_queries.sql",
        "radstream/pricing/pricing.json",
        "radstream/bench/templates/report.html.j2",
    } <= set(names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert "radstream/tests/test_x.py" not in names
    assert "radstream/notes.txt" not in names
    assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in infos)
    assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in infos)
    modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in infos}
    assert modes["radstream/tool.py"] == 0o755
    assert modes["radstream/__init__.py"] == 0o644
    assert first.unzipped_bytes == sum(i.file_size for i in infos)
    assert first.zipped_bytes == first.path.stat().st_size


@pytest.mark.parametrize(
    ("python_version", "architecture"), [("3.10", "x86_64"), ("3.11", "ppc64le")]
)
def test_rejects_targets_it_cannot_build(
    tmp_path: Path, python_version: str, architecture: str
) -> None:
    with pytest.raises(ConfigInvalid):
        build_package(
            tmp_path / "out",
            python_version=python_version,
            architecture=architecture,
            wheel_cache=tmp_path / "wheels",
        )
    assert not (tmp_path / "wheels").exists()


def test_every_stage_has_its_layers() -> None:
    from radstream.aws.template import STAGES

    assert set(STAGE_LAYERS) == set(STAGES)
    assert STAGE_LAYERS["prepare"] == (LAYER_IMAGING,)
    # validate reads the header of a DICOM uploaded without a sidecar (pydicom).
    assert STAGE_LAYERS["validate"] == (LAYER_IMAGING,)
    assert STAGE_LAYERS["infer"] == (LAYER_MODEL,)
    assert all(STAGE_LAYERS[s] == () for s in ("store", "record_failure"))
    # Every package group a declaration names is a layer this build makes.
    assert {layer for layers in STAGE_LAYERS.values() for layer in layers} <= set(ARTIFACT_FILES)


def test_layers_follow_the_declarations_and_where_the_model_runs() -> None:
    assert stage_layers(PIPELINE, in_process_model=True) == STAGE_LAYERS
    remote = stage_layers(PIPELINE, in_process_model=False)
    assert remote["infer"] == ()  # a remote endpoint: no ONNX Runtime in the function
    assert remote["prepare"] == (LAYER_IMAGING,)
    # A changed declaration changes the layers: store now decodes images too.
    store = replace(PIPELINE.stage(STORE), packages=(IMAGING,))
    changed = replace(PIPELINE, stages=(*PIPELINE.stages[:-1], store))
    assert stage_layers(changed, in_process_model=True)["store"] == (LAYER_IMAGING,)
    assert stage_layers(changed, in_process_model=True)["record_failure"] == ()


# --- slow: the whole package, built from real wheels ----------------------------------


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A snapshot of the radstream sources, so that both builds see the same inputs even
    while the working tree is being edited."""
    snapshot = tmp_path_factory.mktemp("source") / "radstream"
    shutil.copytree(SOURCE, snapshot, ignore=shutil.ignore_patterns("__pycache__"))
    return snapshot


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, source: Path) -> PackageManifest:
    out = tmp_path_factory.mktemp("package")
    return build_package(out, python_version=PYTHON, wheel_cache=WHEEL_CACHE, source_dir=source)


@pytest.fixture(scope="module")
def unpacked(built: PackageManifest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each artifact unpacked as Lambda does (code at /var/task, layers at /opt), plus the
    runtime's botocore: key -> the directory that goes on sys.path."""
    root = tmp_path_factory.mktemp("unpacked")
    dirs: dict[str, Path] = {}
    for key, artifact in built.artifacts.items():
        with zipfile.ZipFile(artifact.path) as zf:
            zf.extractall(root / key)
        dirs[key] = root / key if key == CODE else root / key / "python"
    runtime = root / "runtime"
    runtime.mkdir()
    for module in RUNTIME_MODULES:
        spec = importlib.util.find_spec(module)
        assert spec is not None, f"{module} (shipped by the Lambda runtime) is not installed"
        assert spec.origin is not None
        origin = Path(spec.origin)
        target = origin.parent if origin.name == "__init__.py" else origin
        (runtime / target.name).symlink_to(target)
    dirs["runtime"] = runtime
    return dirs


@pytest.mark.slow
def test_manifest_agrees_with_the_files(built: PackageManifest) -> None:
    assert set(built.artifacts) == {CODE, LAYER_IMAGING, LAYER_MODEL}
    out_dir = built.artifacts[CODE].path.parent
    for key, artifact in built.artifacts.items():
        assert artifact.path.name == ARTIFACT_FILES[key]
        assert artifact.sha256 == sha256(artifact.path)
        assert artifact.zipped_bytes == artifact.path.stat().st_size
        with zipfile.ZipFile(artifact.path) as zf:
            assert artifact.unzipped_bytes == sum(i.file_size for i in zf.infolist())

    on_disk = json.loads((out_dir / MANIFEST_FILE).read_text())
    assert (out_dir / MANIFEST_FILE).read_text() == built.to_json()
    for key, artifact in built.artifacts.items():
        assert on_disk["artifacts"][key] == {
            "file": artifact.path.name,
            "sha256": artifact.sha256,
            "zipped_bytes": artifact.zipped_bytes,
            "unzipped_bytes": artifact.unzipped_bytes,
        }
    assert on_disk["python_version"] == PYTHON
    assert on_disk["architecture"] == "x86_64"
    assert on_disk["pins"] == built.pins
    for name, version in built.pins.items():
        assert importlib.metadata.version(name) == version


@pytest.mark.slow
def test_every_function_fits_under_the_limit(built: PackageManifest) -> None:
    sizes = {key: a.unzipped_bytes for key, a in built.artifacts.items()}
    for stage, layers in STAGE_LAYERS.items():
        expected = sizes[CODE] + sum(sizes[layer] for layer in layers)
        assert built.functions[stage] == expected
        assert expected < package.LAMBDA_UNZIPPED_LIMIT, (stage, expected)
        entry = json.loads(built.to_json())["functions"][stage]
        assert entry["unzipped_bytes"] == expected
        assert entry["layers"] == [ARTIFACT_FILES[layer] for layer in layers]
    # Room to spare (issue 11 item 7): prepare carries the decoders of every DICOM
    # encoding and still leaves a fifth of the limit for what comes next.
    assert built.functions["prepare"] < 0.8 * package.LAMBDA_UNZIPPED_LIMIT


@pytest.mark.slow
def test_artifacts_hold_what_lambda_needs_and_nothing_it_ships(built: PackageManifest) -> None:
    contents: dict[str, list[str]] = {}
    for key, artifact in built.artifacts.items():
        with zipfile.ZipFile(artifact.path) as zf:
            contents[key] = zf.namelist()
    code_tops = {name.split("/")[0] for name in contents[CODE]}
    assert "radstream" in code_tops
    assert not code_tops & set(NOT_SHIPPED)
    for layer in (LAYER_IMAGING, LAYER_MODEL):
        assert all(name.startswith("python/") for name in contents[layer])
    everything = [n for names in contents.values() for n in names]
    assert not [n for n in everything if "__pycache__" in n or n.endswith((".pyc", ".pyi"))]
    assert not [n for n in everything if n.endswith(".dist-info/RECORD")]
    # METADATA stays: importlib.metadata (pydantic among others) reads it.
    assert any(n.endswith(".dist-info/METADATA") and "pydantic-" in n for n in contents[CODE])
    imaging = contents[LAYER_IMAGING]
    assert "python/numpy/testing/__init__.py" in imaging
    imaging_tops = {name.split("/")[1] for name in imaging}
    # The DICOM codec plugins, and no OpenCV (which left no room for them).
    assert {"gdcm.py", "jpeg_ls", "pylibjpeg", "openjpeg", "rle"} <= imaging_tops, imaging_tops
    assert not {"cv2", "opencv_python_headless.libs"} & imaging_tops
    assert not [n for n in imaging if n.startswith("python/numpy/") and "/tests/" in n]


@pytest.mark.slow
def test_a_second_build_is_byte_identical(
    built: PackageManifest, source: Path, tmp_path: Path
) -> None:
    again = build_package(
        tmp_path, python_version=PYTHON, wheel_cache=WHEEL_CACHE, source_dir=source
    )
    for key, artifact in built.artifacts.items():
        assert again.artifacts[key].sha256 == artifact.sha256, key
    first_manifest = built.artifacts[CODE].path.parent / MANIFEST_FILE
    assert (tmp_path / MANIFEST_FILE).read_bytes() == first_manifest.read_bytes()


@pytest.mark.slow
def test_too_large_a_function_is_refused_before_compressing(
    built: PackageManifest, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Just under the largest function: that one is refused by name, the others fit.
    largest = max(built.functions, key=built.functions.__getitem__)
    monkeypatch.setattr(package, "LAMBDA_UNZIPPED_LIMIT", built.functions[largest] - 1)
    with pytest.raises(PackageTooLarge) as caught:
        build_package(tmp_path, python_version=PYTHON, wheel_cache=WHEEL_CACHE, source_dir=source)
    message = str(caught.value)
    assert largest in message
    assert f"{built.functions[largest]:,}" in message
    fitting = [stage for stage, size in built.functions.items() if size < built.functions[largest]]
    assert fitting
    assert not [stage for stage in fitting if f" {stage} (" in message or message.startswith(stage)]
    assert not list(tmp_path.glob("*.zip"))


@pytest.mark.slow
def test_load_manifest_returns_a_current_package(built: PackageManifest, source: Path) -> None:
    out_dir = built.artifacts[CODE].path.parent
    assert load_manifest(out_dir, source_dir=source) == built


@pytest.mark.slow
def test_load_manifest_refuses_missing_or_stale_packages(
    built: PackageManifest, source: Path, tmp_path: Path
) -> None:
    assert load_manifest(tmp_path / "nothing", source_dir=source) is None
    # The sources changed since the build: code.zip would deploy old code.
    edited = tmp_path / "edited" / "radstream"
    shutil.copytree(source, edited)
    with (edited / "__init__.py").open("a") as f:
        f.write("# edited\n")
    out_dir = built.artifacts[CODE].path.parent
    assert load_manifest(out_dir, source_dir=edited) is None

    copy = tmp_path / "copy"
    shutil.copytree(out_dir, copy)
    assert load_manifest(copy, source_dir=source) is not None
    manifest_path = copy / MANIFEST_FILE
    original = manifest_path.read_text()
    doc = json.loads(original)
    doc["pins"]["numpy"] = "0.0.1"  # built for another environment than this one
    manifest_path.write_text(json.dumps(doc))
    assert load_manifest(copy, source_dir=source) is None
    manifest_path.write_text(original)
    with (copy / ARTIFACT_FILES[LAYER_MODEL]).open("ab") as f:
        f.write(b"\0")  # not the file the manifest hashed
    assert load_manifest(copy, source_dir=source) is None


@pytest.mark.slow
def test_code_alone_runs_validate_and_store(unpacked: dict[str, Path]) -> None:
    run_isolated(
        [unpacked[CODE]],
        """
        import importlib.metadata
        import radstream.schema, radstream.settings, radstream.stages.validate
        import radstream.stages.store, radstream.stages.telemetry
        from radstream.schema.sidecar_parse import parse_sidecar
        import httpx
        httpx.Client().close()
        assert importlib.metadata.version("pydantic")
        try:
            import numpy
        except ModuleNotFoundError:
            pass
        else:
            raise AssertionError("numpy must not be reachable from code.zip alone")
        """,
    )


@pytest.mark.slow
def test_code_and_imaging_layer_prepare_an_image(unpacked: dict[str, Path]) -> None:
    run_isolated(
        [unpacked[CODE], unpacked[LAYER_IMAGING]],
        """
        import io
        import numpy as np, PIL, pydicom
        from PIL import Image
        import radstream.stages.prepare
        from radstream.imaging import prepare_image
        pixels = (np.arange(256 * 300) % 251).astype(np.uint8).reshape(300, 256)
        png = io.BytesIO()
        Image.fromarray(pixels).save(png, format="PNG")
        prepared = prepare_image(png.getvalue(), filename="x.png")
        assert prepared.tensor.shape == (1, 1, 224, 224), prepared.tensor.shape
        assert "cv2" not in sys.modules, "the imaging layer has no OpenCV"
        try:
            import onnxruntime
        except ModuleNotFoundError:
            pass
        else:
            raise AssertionError("onnxruntime must not be in the imaging layer")
        """,
    )


@pytest.mark.slow
def test_imaging_layer_decodes_every_dicom_encoding(
    unpacked: dict[str, Path], tmp_path: Path
) -> None:
    """The real radiograph in each encoding of issue 11 item 1 gives, on the code and
    imaging layer alone, the model input it gives here: the layer carries the codec
    plugins the tests use."""
    sys.path.insert(0, str(REPO / "tests" / "imaging"))
    from real_radiographs import ENCODINGS, encoded

    from radstream.imaging import prepare_image

    for name in ENCODINGS:
        data = encoded(name)
        (tmp_path / f"{name}.dcm").write_bytes(data)
        np.save(tmp_path / f"{name}.npy", prepare_image(data).tensor)
    run_isolated(
        [unpacked[CODE], unpacked[LAYER_IMAGING]],
        f"""
        import warnings
        from pathlib import Path
        import numpy as np
        from radstream.imaging import prepare_image
        warnings.simplefilter("ignore")
        folder = Path({str(tmp_path)!r})
        for name in {list(ENCODINGS)!r}:
            tensor = prepare_image((folder / f"{{name}}.dcm").read_bytes()).tensor
            expected = np.load(folder / f"{{name}}.npy")
            assert np.array_equal(tensor, expected), (name, np.abs(tensor - expected).max())
        assert "cv2" not in sys.modules
        """,
    )


@pytest.mark.slow
def test_code_and_model_layer_run_an_onnx_model(unpacked: dict[str, Path]) -> None:
    run_isolated(
        [unpacked[CODE], unpacked[LAYER_MODEL]],
        """
        import numpy as np
        import onnx, onnxruntime
        from onnx import TensorProto, helper
        import radstream.model, radstream.stages.infer, radstream.model.kserve_client
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
        graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "add", [x], [y])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        session = onnxruntime.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        (out,) = session.run(None, {"x": np.array([1.0, 2.5], dtype=np.float32)})
        assert out.tolist() == [2.0, 5.0], out
        for absent in ("sympy", "flatbuffers", "packaging", "coloredlogs", "cv2"):
            assert absent not in sys.modules, absent
        """,
    )


@pytest.mark.slow
@pytest.mark.parametrize("stage", sorted(STAGE_LAYERS))
def test_each_handler_imports_with_only_its_layers(unpacked: dict[str, Path], stage: str) -> None:
    if importlib.util.find_spec("radstream.aws.handlers") is None:
        pytest.skip("radstream.aws.handlers does not exist yet")
    layers = [unpacked[layer] for layer in STAGE_LAYERS[stage]]
    lazy = ", ".join(HANDLER_LAZY_IMPORTS.get(stage, ("radstream.stages.store",)))
    run_isolated(
        [unpacked[CODE], *layers, unpacked["runtime"]],
        f"""
        import radstream.aws.handlers as handlers
        assert callable(handlers.{stage})
        # What the handler imports when it first runs, and its packaged price table.
        import {lazy}
        from radstream.pricing import load_pricing
        load_pricing()
        """,
    )
