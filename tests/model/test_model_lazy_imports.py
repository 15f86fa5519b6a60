"""``radstream.model`` and the KServe client import neither ONNX nor ONNX Runtime.

A pipeline that calls a remote endpoint (the infer Lambda with ``model.endpoint``) must not
need the model layer. Each check runs in a fresh interpreter, since this test process has
long imported both.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow  # each check starts an interpreter

HEAVY = ("onnx", "onnxruntime")


def _loaded_after(code: str) -> list[str]:
    """Top-level packages among HEAVY (and radstream.serving) loaded by running ``code``."""
    probe = textwrap.dedent(
        f"""
        import sys
        {code}
        loaded = sorted(
            name for name in sys.modules
            if name.split(".")[0] in {HEAVY!r} or name.startswith("radstream.serving")
        )
        print(",".join(loaded))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    return [name for name in result.stdout.strip().split(",") if name]


@pytest.mark.parametrize(
    "code",
    [
        "import radstream.model",
        "from radstream.model import ModelClient, ModelInfo",
        "from radstream.model import OnnxModel, read_model_info",
        "import radstream.model.kserve_client",
        "import radstream.model.loading",
        "import radstream.stages.infer",
    ],
)
def test_importing_the_model_package_loads_no_onnx(code: str) -> None:
    assert _loaded_after(code) == []


def test_the_probe_sees_onnx_when_it_is_loaded() -> None:
    # Guards the test above: the stand-in builder needs ONNX, and the probe must notice.
    loaded = _loaded_after("from radstream.model import ensure_standin")
    assert "onnx" in loaded
    assert "onnxruntime" not in loaded
