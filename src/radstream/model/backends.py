"""Which runtime and precision a model file runs with, and the gate that guards them.

Every place that runs a model in-process (the pipeline's workers, the infer Lambda,
``model predict``) comes through ``load_backend``, so the choice and the checks are made
once: the precision is the file's (``radstream.precision``) or, for bf16, the setting's;
a reduced precision needs a passing fidelity report in the file's metadata unless the user
allows unverified models; a precision the CPU or runtime cannot run fast falls back to fp32
with a log line saying so.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from radstream.errors import ModelFileInvalid
from radstream.logs import get_logger
from radstream.model.client import ModelClient
from radstream.model.fidelity import check_gate
from radstream.model.metadata import ModelInfo, read_model_info
from radstream.model.openvino_runtime import OpenVinoModel, openvino_available
from radstream.model.runtime import OnnxModel

log = get_logger(__name__)

CPUINFO = Path("/proc/cpuinfo")
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
"""The /proc/cpuinfo flags that decide how fast reduced precision runs."""


@dataclass(frozen=True)
class CpuSupport:
    """What this CPU offers for reduced precision (from /proc/cpuinfo flags)."""

    flags: frozenset[str]

    @property
    def int8_fast(self) -> bool:
        """VNNI (or AMX) multiplies int8 in one instruction: int8 pays off."""
        return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & self.flags)

    @property
    def bf16_fast(self) -> bool:
        """AVX512_BF16 or AMX compute bf16 natively: bf16 pays off (with OpenVINO)."""
        return bool({"avx512_bf16", "amx_bf16"} & self.flags)

    def as_dict(self) -> dict[str, bool]:
        """Each flag RadStream looks at, and the two conclusions."""
        found = {flag: flag in self.flags for flag in CPU_FLAGS}
        return {**found, "int8_fast": self.int8_fast, "bf16_fast": self.bf16_fast}


def parse_cpu_flags(text: str) -> CpuSupport:
    """The flags of the first processor in /proc/cpuinfo text (``flags`` line)."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            return CpuSupport(frozenset(value.split()))
    return CpuSupport(frozenset())


@functools.cache
def cpu_support() -> CpuSupport:
    """This machine's CpuSupport; no flags where /proc/cpuinfo cannot be read."""
    try:
        return parse_cpu_flags(CPUINFO.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return CpuSupport(frozenset())


@dataclass(frozen=True)
class Choice:
    """The runtime and precision a model will run with, and why if not what was asked."""

    runtime: str
    precision: str
    note: str | None = None


def choose(
    info: ModelInfo,
    *,
    precision: str = "fp32",
    runtime: str = "onnxruntime",
    cpu: CpuSupport | None = None,
    have_openvino: bool | None = None,
) -> Choice:
    """Decide runtime and precision for the file ``info`` describes under these settings.

    The file's precision wins when it is reduced (an int8 file is int8); a setting that
    contradicts it raises ModelFileInvalid. bf16 of an fp32 file is a runtime choice: it
    needs OpenVINO and a CPU with bf16 instructions, else it falls back to fp32 (``note``
    says why).
    """
    cpu = cpu or cpu_support()
    have_ov = openvino_available() if have_openvino is None else have_openvino
    declared = info.precision
    if declared != "fp32" and precision not in ("fp32", declared):
        raise ModelFileInvalid(
            f"model file {info.path} is {declared}, but model.precision is {precision}",
            path=info.path,
        )
    if declared == "int8" or precision == "int8":
        if declared != "int8":
            raise ModelFileInvalid(
                f"model file {info.path} is fp32; make an int8 model with "
                "`radstream model optimize --precision int8` and point model.path at it",
                path=info.path,
            )
        if runtime == "openvino":
            raise ModelFileInvalid(
                f"model file {info.path} is an ONNX Runtime int8 (QDQ) model; "
                "use model.runtime = onnxruntime or auto",
                path=info.path,
            )
        note = None if cpu.int8_fast else "this CPU has no VNNI: int8 runs, but slowly"
        return Choice("onnxruntime", "int8", note)
    if declared == "bf16" or precision == "bf16":
        if runtime == "onnxruntime":
            return Choice(
                "onnxruntime",
                "fp32",
                "bf16 falls back to fp32: ONNX Runtime has no fast bf16 "
                "on the CPU (set model.runtime = openvino or auto)",
            )
        if not have_ov:
            return Choice(
                "onnxruntime",
                "fp32",
                "bf16 falls back to fp32: OpenVINO is not installed "
                "(pip install 'radstream[openvino]')",
            )
        if not cpu.bf16_fast:
            return Choice(
                "openvino" if runtime == "openvino" else "onnxruntime",
                "fp32",
                "bf16 falls back to fp32: this CPU has neither AVX512_BF16 nor AMX",
            )
        return Choice("openvino", "bf16")
    # fp32: ONNX Runtime unless OpenVINO is asked for by name (auto keeps the default,
    # which is at least as fast in fp32 on the machines measured).
    if runtime == "openvino":
        if not have_ov:
            raise ModelFileInvalid(
                "model.runtime = openvino, but OpenVINO is not installed "
                "(pip install 'radstream[openvino]')",
                path=info.path,
            )
        return Choice("openvino", "fp32")
    return Choice("onnxruntime", "fp32")


def load_backend(
    path: Path,
    *,
    precision: str = "fp32",
    runtime: str = "onnxruntime",
    intra_op_threads: int = 1,
    allow_unverified: bool = True,
) -> ModelClient:
    """Load the model at ``path`` with the runtime and precision ``choose`` picks.

    ``allow_unverified`` defaults to True here because tools such as ``optimize`` load a
    candidate precisely to verify it; ``load_model`` (the pipeline's way in) passes the
    user's setting.
    """
    info = read_model_info(path)
    choice = choose(info, precision=precision, runtime=runtime)
    if choice.note:
        log.warning(choice.note, extra={"model": info.name})
    check_gate(info, choice.precision, allow_unverified=allow_unverified)
    if choice.runtime == "openvino":
        return OpenVinoModel.load(path, precision=choice.precision, threads=intra_op_threads)
    return OnnxModel.load(
        path, intra_op_threads=intra_op_threads, allow_unverified=allow_unverified
    )
