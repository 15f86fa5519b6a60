"""Export TorchXRayVision's DenseNet121 to a RadStream ONNX file (optional extra).

Needs ``torch`` and ``torchxrayvision``, which RadStream does not install::

    pip install torch==2.13.0 torchxrayvision

Both are imported only when ``export_txrv`` runs, so the rest of RadStream never needs them.

What is exported, and why it is faithful
----------------------------------------
``xrv.models.DenseNet.forward`` (torchxrayvision 1.x) computes::

    x = fix_resolution(x, 224, self)          # resizes inputs that are not 224 x 224
    features = self.features(x)
    out = F.relu(features)
    out = F.adaptive_avg_pool2d(out, (1, 1)).view(N, -1)
    out = self.classifier(out)                # 18 logits
    if self.apply_sigmoid: out = sigmoid(out)
    if self.op_threshs is not None:           # set by weights="densenet121-res224-*"
        out = sigmoid(out)
        out = op_norm(out, self.op_threshs)   # per-label calibration, see below

``op_norm`` maps a probability ``p`` with threshold ``t`` to ``p / (2t)`` if ``p < t`` and
to ``1 - (1 - p) / (2 (1 - t))`` otherwise, so each label's operating point lands on 0.5;
labels whose threshold is NaN (not trained for that dataset) get exactly 0.5.

The exported graph does the same with the model's own modules and thresholds. The ONNX
input is fixed at 224 x 224, where ``fix_resolution`` does nothing. Since RadStream treats
model outputs as logits and applies a sigmoid itself, a model whose forward ends in
probabilities (``op_threshs`` or ``apply_sigmoid`` set) is exported with those
probabilities turned back into logits, ``log(p / (1 - p))`` with ``p`` clipped to
``[1e-7, 1 - 1e-7]`` (so the logits stay finite): RadStream's sigmoid then reproduces the
forward's output to within about 1e-7. All 18 outputs are kept; the batch axis is dynamic.
A label with a NaN threshold therefore comes out as probability 0.5, as torchxrayvision
reports it, not as "unknown": RadStream cannot carry NaN logits (it refuses non-finite
output). For ``densenet121-res224-all`` every threshold is set, so this does not arise.
``export_txrv`` checks the result: it runs ONNX Runtime and the PyTorch model on the same
random batch and refuses to write a file whose probabilities differ by more than 1e-4.

Written against torchxrayvision's published ``models.py`` (``DenseNet.forward``,
``features2``, ``op_norm``); not run here, as torch is not installed in RadStream's own
test environment: the tests that export are skipped without it.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnx

from radstream.errors import ConfigInvalid, ModelFileInvalid
from radstream.model.files import write_atomically
from radstream.model.labels import TXRV_LABELS, sigmoid
from radstream.model.metadata import info_from_model, write_metadata

INSTALL_HINT = "pip install torch==2.13.0 torchxrayvision"
DEFAULT_WEIGHTS = "densenet121-res224-all"
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
INPUT_SIZE = 224
OPSET = 17
PROBABILITY_EPS = 1e-7
MAX_PROBABILITY_DIFF = 1e-4


class ExportDependencyMissing(ConfigInvalid):
    """``export_txrv`` needs torch and torchxrayvision, which are not installed."""

    code: ClassVar[str] = "EXPORT_DEPENDENCY_MISSING"
    hint: ClassVar[str] = f"Install the optional export dependencies: {INSTALL_HINT}"


def _import_torch() -> tuple[Any, Any]:
    """Import torch and torchxrayvision, or raise ExportDependencyMissing naming the fix."""
    try:
        torch = importlib.import_module("torch")
    except ImportError as exc:
        raise ExportDependencyMissing(
            f"exporting TorchXRayVision needs PyTorch, which is not installed ({exc}); "
            f"run: {INSTALL_HINT}"
        ) from exc
    try:
        xrv = importlib.import_module("torchxrayvision")
    except ImportError as exc:
        raise ExportDependencyMissing(
            f"exporting TorchXRayVision needs the torchxrayvision package, which is not "
            f"installed ({exc}); run: {INSTALL_HINT}"
        ) from exc
    return torch, xrv


def _load_densenet(torch: Any, xrv: Any, weights: Path | None, weights_name: str) -> Any:
    """``xrv.models.DenseNet`` with ``weights_name``'s weights, or a local weights file's.

    With ``weights=None`` torchxrayvision loads (downloading on first use) its published
    weights. With a file, the model is built as torchxrayvision builds it for published
    weights: an 18-class, one-channel DenseNet without thresholds, the file's weights
    loaded into it, then the calibration thresholds set, those saved in the file if it
    has any, else those torchxrayvision publishes for ``weights_name``. The file is a
    whole pickled model (how torchxrayvision publishes weights; unpickling runs code from
    the file, so only load files you trust) or a ``state_dict``.
    """
    if weights is None:
        model = xrv.models.DenseNet(weights=weights_name)
        model.eval()
        return model

    path = Path(weights)
    if not path.is_file():
        raise ModelFileInvalid(f"weights file {path} does not exist", path=str(path))
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=False)
        if hasattr(loaded, "modules"):
            # torchxrayvision's own patch for models pickled by old torch releases.
            for module in loaded.modules():
                if not hasattr(module, "_non_persistent_buffers_set"):
                    module._non_persistent_buffers_set = set()
        state = dict(loaded.state_dict() if hasattr(loaded, "state_dict") else loaded)
    except Exception as exc:
        raise ModelFileInvalid(
            f"weights file {path} cannot be loaded by torch ({type(exc).__name__}: {exc})",
            path=str(path),
        ) from exc
    saved_threshs = state.pop("op_threshs", None)
    if saved_threshs is None:
        saved_threshs = getattr(loaded, "op_threshs", None)
    model = xrv.models.DenseNet(num_classes=len(TXRV_LABELS), in_channels=1)
    try:
        model.load_state_dict(state)
    except Exception as exc:
        raise ModelFileInvalid(
            f"weights file {path} does not fit TorchXRayVision's DenseNet121 "
            f"({type(exc).__name__}: {exc})",
            path=str(path),
        ) from exc
    published = getattr(xrv.models, "model_urls", {}).get(weights_name, {}).get("op_threshs")
    threshs = saved_threshs if saved_threshs is not None else published
    if threshs is not None:
        model.op_threshs = torch.as_tensor(threshs, dtype=torch.float32)
    model.eval()
    return model


def _labels_of(model: Any) -> tuple[str, ...]:
    """The model's 18 output names; torchxrayvision's ``pathologies`` must agree with them."""
    pathologies = getattr(model, "pathologies", None)
    if pathologies is not None:
        names = [str(p) for p in pathologies]
        if len(names) != len(TXRV_LABELS) or any(
            name and name != expected for name, expected in zip(names, TXRV_LABELS, strict=True)
        ):
            raise ModelFileInvalid(
                f"the model's outputs are {names}, not TorchXRayVision's default 18 "
                f"({list(TXRV_LABELS)}) in order; export it with `radstream model import` "
                "and an explicit label list instead"
            )
    return TXRV_LABELS


def _wrapper(torch: Any, model: Any) -> Any:
    """A module whose forward is DenseNet.forward at 224 x 224, ending in logits."""
    functional = torch.nn.functional
    threshs = getattr(model, "op_threshs", None)
    apply_sigmoid = bool(getattr(model, "apply_sigmoid", False))
    calibrate = threshs is not None

    def init(self: Any) -> None:
        torch.nn.Module.__init__(self)
        self.features = model.features
        self.classifier = model.classifier
        if calibrate:
            self.register_buffer(
                "op_threshs", torch.as_tensor(threshs, dtype=torch.float32).reshape(1, -1)
            )

    def forward(self: Any, x: Any) -> Any:
        features = self.features(x)
        out = functional.relu(features)
        out = functional.adaptive_avg_pool2d(out, (1, 1))
        out = torch.flatten(out, 1)
        out = self.classifier(out)
        if not (apply_sigmoid or calibrate):
            return out
        if apply_sigmoid:
            out = torch.sigmoid(out)
        if calibrate:
            # op_norm, written with where() instead of boolean-mask assignment so that it
            # exports as plain elementwise ONNX ops; same values, and NaN thresholds give
            # 0.5 as in torchxrayvision.
            out = torch.sigmoid(out)
            t = self.op_threshs.expand_as(out)
            known = ~torch.isnan(t)
            safe = torch.where(known, t, torch.full_like(t, 0.5))
            below = out / (safe * 2)
            above = 1.0 - (1.0 - out) / ((1.0 - safe) * 2)
            out = torch.where(out < safe, below, above)
            out = torch.where(known, out, torch.full_like(out, 0.5))
        p = torch.clamp(out, PROBABILITY_EPS, 1.0 - PROBABILITY_EPS)
        return torch.log(p / (1.0 - p))

    # Built with type() because torch is imported at run time only.
    module_class = type("TxrvLogits", (torch.nn.Module,), {"__init__": init, "forward": forward})
    return module_class().eval()


def _export_onnx(torch: Any, module: Any, path: Path) -> None:
    dummy = torch.zeros(1, 1, INPUT_SIZE, INPUT_SIZE, dtype=torch.float32)
    kwargs: dict[str, object] = {
        "input_names": [INPUT_NAME],
        "output_names": [OUTPUT_NAME],
        "dynamic_axes": {INPUT_NAME: {0: "N"}, OUTPUT_NAME: {0: "N"}},
        "opset_version": OPSET,
        "do_constant_folding": True,
    }
    # torch >= 2.9 defaults to the dynamo exporter (which needs onnxscript); the
    # TorchScript exporter takes dynamic_axes as is and needs nothing more, so it is tried
    # first. Where a torch release no longer has it, the dynamo exporter is used (it turns
    # dynamic_axes into dynamic shapes itself).
    has_dynamo = "dynamo" in inspect.signature(torch.onnx.export).parameters
    with torch.no_grad():
        if not has_dynamo:
            torch.onnx.export(module, (dummy,), str(path), **kwargs)
            return
        try:
            torch.onnx.export(module, (dummy,), str(path), dynamo=False, **kwargs)
        except Exception as legacy_error:
            try:
                torch.onnx.export(module, (dummy,), str(path), dynamo=True, **kwargs)
            except Exception as exc:
                raise ModelFileInvalid(
                    f"torch {torch.__version__} could not export the model to ONNX: "
                    f"{type(exc).__name__}: {exc} (the TorchScript exporter said: "
                    f"{type(legacy_error).__name__}: {legacy_error})"
                ) from exc


def export_txrv(
    weights: Path | None,
    out: Path,
    *,
    weights_name: str = DEFAULT_WEIGHTS,
    name: str | None = None,
    version: str = "1",
    seed: int = 0,
) -> Path:
    """Export TorchXRayVision's DenseNet121 to ``out`` with RadStream metadata; return ``out``.

    ``weights`` is a local weights file (torchxrayvision's ``.pt``, or a ``state_dict``);
    ``None`` lets torchxrayvision load ``weights_name`` itself (it downloads the file on
    first use). The file has input ``input`` ``[N, 1, 224, 224]`` in [-1024, 1024] and
    output ``logits`` ``[N, 18]`` in ``TXRV_LABELS`` order, opset 17; see the module
    docstring for how calibration is kept. It is checked against PyTorch on a random
    batch (seeded by ``seed``) before it is written, atomically.

    Raises ExportDependencyMissing without torch or torchxrayvision, ModelFileInvalid for
    unusable weights or an export that does not reproduce the PyTorch model.
    """
    torch, xrv = _import_torch()
    model = _load_densenet(torch, xrv, weights, weights_name)
    labels = _labels_of(model)
    module = _wrapper(torch, model)
    out = Path(out)

    with tempfile.TemporaryDirectory(prefix="radstream-export-") as tmp:
        raw_path = Path(tmp) / "model.onnx"
        _export_onnx(torch, module, raw_path)
        # load() folds in any external data file the exporter wrote beside the model.
        onnx_model = onnx.load(str(raw_path))
    write_metadata(
        onnx_model,
        name=name or f"txrv-{weights_name}",
        version=version,
        labels=labels,
        input_size=INPUT_SIZE,
        input_min=-1024,
        input_max=1024,
        channels=1,
    )
    onnx.checker.check_model(onnx_model)
    data = onnx_model.SerializeToString(deterministic=True)
    info_from_model(onnx_model, sha256=hashlib.sha256(data).hexdigest(), path=str(out))

    # Faithfulness check: RadStream's sigmoid of the ONNX logits against torch's forward.
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    batch = rng.uniform(-1024, 1024, (2, 1, INPUT_SIZE, INPUT_SIZE)).astype(np.float32)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    onnx_logits = session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
    with torch.no_grad():
        reference = model(torch.from_numpy(batch)).numpy()
    calibrated = getattr(model, "op_threshs", None) is not None or getattr(
        model, "apply_sigmoid", False
    )
    expected = reference if calibrated else sigmoid(reference)
    diff = float(np.max(np.abs(sigmoid(onnx_logits) - expected)))
    if not np.isfinite(onnx_logits).all() or not diff <= MAX_PROBABILITY_DIFF:
        raise ModelFileInvalid(
            f"the exported model does not reproduce torchxrayvision's output: probabilities "
            f"differ by up to {diff:.3g} (allowed {MAX_PROBABILITY_DIFF})",
            path=str(out),
        )
    write_atomically(out, data)
    return out


__all__ = ["DEFAULT_WEIGHTS", "INSTALL_HINT", "ExportDependencyMissing", "export_txrv"]
