"""README: "The same client works against Triton" with deploy/triton/.../config.pbtxt.

The file is parsed with Triton's own model-configuration schema (``ModelConfig`` from the
tritonclient package's ``model_config_pb2``, through protobuf's strict text format, which
refuses unknown fields and enum values), then checked against the stand-in model it is
meant to serve, and against the copy shown in the README.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import tritonclient
from google.protobuf import text_format

from radstream.model import TXRV_LABELS, read_model_info

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "triton" / "radstream-densenet121" / "config.pbtxt"
README = ROOT / "README.md"


@pytest.fixture(scope="module")
def schema() -> ModuleType:
    """tritonclient's generated ``model_config_pb2``, loaded from its file: the package's
    ``tritonclient.grpc`` refuses to import without grpcio, which RadStream does not need."""
    path = Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parse(schema: ModuleType, text: str) -> Any:
    return text_format.Parse(text, schema.ModelConfig())


def test_the_config_parses_with_tritons_schema_and_fits_the_stand_in(
    schema: ModuleType, standin_model: Path
) -> None:
    config = _parse(schema, CONFIG.read_text(encoding="utf-8"))
    info = read_model_info(standin_model)
    assert config.name == CONFIG.parent.name  # Triton serves it under its folder's name
    assert config.platform == "onnxruntime_onnx"
    assert config.max_batch_size >= 1
    [tensor_in] = config.input
    [tensor_out] = config.output
    fp32 = schema.DataType.Value("TYPE_FP32")
    assert (tensor_in.name, tensor_in.data_type) == (info.input_name, fp32)
    # With max_batch_size > 0, dims leave out the batch dimension.
    assert list(tensor_in.dims) == [info.channels, info.input_size, info.input_size]
    assert (tensor_out.name, tensor_out.data_type) == (info.output_name, fp32)
    assert list(tensor_out.dims) == [len(info.labels)] == [len(TXRV_LABELS)]
    assert config.HasField("dynamic_batching")
    [group] = config.instance_group
    assert group.kind == schema.ModelInstanceGroup.Kind.Value("KIND_CPU")


def _fenced_blocks(markdown: str) -> list[str]:
    """The bodies of the ``` code blocks, in order."""
    blocks: list[str] = []
    body: list[str] | None = None
    for line in markdown.splitlines():
        if line.startswith("```"):
            if body is None:
                body = []
            else:
                blocks.append("\n".join(body))
                body = None
        elif body is not None:
            body.append(line)
    return blocks


def test_the_readme_shows_the_same_config(schema: ModuleType) -> None:
    text = README.read_text(encoding="utf-8")
    blocks = [b for b in _fenced_blocks(text) if "platform:" in b]
    assert len(blocks) == 1, "README's Triton config block was not found"
    assert _parse(schema, blocks[0]) == _parse(schema, CONFIG.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("good", "bad"),
    [
        ("max_batch_size: 8", "max_batch_sizes: 8"),  # an unknown field
        ("data_type: TYPE_FP32", "data_type: TYPE_FLOAT32"),  # an unknown enum value
        ("kind: KIND_CPU", "kind: CPU"),
    ],
)
def test_the_schema_refuses_what_triton_would(schema: ModuleType, good: str, bad: str) -> None:
    # Shows the check above is not a lenient parse that accepts anything.
    text = CONFIG.read_text(encoding="utf-8")
    assert good in text
    with pytest.raises(text_format.ParseError):
        _parse(schema, text.replace(good, bad, 1))
