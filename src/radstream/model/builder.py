"""Build an untrained stand-in for TorchXRayVision's DenseNet121 with onnx + numpy only.

The stand-in has the real model's layout, input contract and cost (121 weight layers,
about 2.9 G multiply-adds per image), so the pipeline, its benchmarks and its tests behave
as with the real weights, without PyTorch and without downloading anything. Its outputs
are meaningless: never use it for diagnosis.

Weights are He-initialised from a seeded generator. Batch-norm running statistics are not
measured by running the network but predicted from the weights (see ``_DenseNetBuilder``),
so the file depends only on the seed, never on a timing-dependent run, and rebuilding it
reproduces the same bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from radstream.model.files import write_atomically
from radstream.model.labels import TXRV_LABELS
from radstream.model.metadata import STANDIN_NAME, ModelInfo, read_model_info, write_metadata

STANDIN_VERSION = "1"
STANDIN_FILENAME = f"{STANDIN_NAME}-v{STANDIN_VERSION}.onnx"
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
INPUT_SIZE = 224
INPUT_MIN = -1024.0
INPUT_MAX = 1024.0
CHANNELS = 1
# Opset 17 has everything used here and loads in every onnxruntime since 1.13.
OPSET = 17
IR_VERSION = 8

BLOCK_LAYERS = (6, 12, 24, 16)
GROWTH = 32
BOTTLENECK = 4 * GROWTH
INIT_FEATURES = 64
BN_EPS = 1e-5
# Classifier weight scale relative to 1/sqrt(fan_in), and the spread and centre of its
# bias: together they put the 18 logits a few units apart and mostly below zero, as a
# trained model's are for a typical film, instead of all sitting at the same value.
CLASSIFIER_GAIN = 3.0
CLASSIFIER_BIAS_STD = 1.5
CLASSIFIER_BIAS_MEAN = -1.0

# Variance of ReLU(z) for z ~ N(0, 1): what reaches every conv after BN -> ReLU, once the
# mean is removed by the conv's zero-sum weights.
_RELU_VAR = 0.5 - 1.0 / (2.0 * math.pi)
# Assumed mean square of the input after the 1/1024 scale folded into conv0: 1, the most
# [-1, 1] allows, so a real film gives activations a little below unit scale, never above.
_INPUT_POWER = 1.0
# Share of the conv0 output power treated as coming from smooth image content, where the
# 7x7 window sees nearly one value, rather than from pixel-to-pixel noise.
_INPUT_CORRELATION = 0.75
# Mean square of MaxPool3x3(ReLU(z)) for normalised z (mean about 1, variance about 0.5).
_POOL0_POWER = 1.5
# AvgPool 2x2 over correlated neighbours keeps most of the power.
_AVGPOOL_POWER_KEEP = 0.6

Power = npt.NDArray[np.float64]
Weights = npt.NDArray[np.float32]


def _he_normal(
    rng: np.random.Generator, shape: tuple[int, ...], *, zero_sum: bool, scale: float = 1.0
) -> Weights:
    """He-normal weights; with ``zero_sum`` each output unit's weights sum to zero.

    The centring runs in float64 so the float32 result does not depend on how a given
    numpy build orders its float32 reductions.
    """
    fan_in = math.prod(shape[1:])
    w = rng.standard_normal(shape, dtype=np.float32).astype(np.float64)
    w *= math.sqrt(2.0 / fan_in) * scale
    if zero_sum:
        flat = w.reshape(shape[0], -1)
        flat -= flat.mean(axis=1, keepdims=True)
    return w.astype(np.float32)


def _sum_sq(weight: Weights) -> Power:
    """Per-output-channel sum of squared weights, in float64."""
    flat = weight.reshape(weight.shape[0], -1).astype(np.float64)
    sums: Power = (flat * flat).sum(axis=1)
    return sums


@dataclass
class _DenseNetBuilder:
    """Accumulates nodes and initialisers, naming them like torchvision's state_dict.

    Untrained DenseNets in eval mode are fragile: with running statistics that only
    roughly match, the mean that ReLU adds is amplified layer after layer and the logits
    run off to hundreds. Two choices keep every input in [-1024, 1024] at a sane scale:

    * every conv after a ReLU has zero-sum weights per output channel, so the ReLU's mean
      cancels and all running means are 0. Without biases or mean shifts the network up to
      the classifier is positively homogeneous: a stronger input gives proportionally
      stronger features, never a runaway;
    * each BatchNormalization's running variance is the predicted mean square of its input
      (input power times the sum of squared weights), so each layer has unit gain.
    """

    rng: np.random.Generator
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)

    def _const(self, name: str, array: npt.NDArray[np.float32]) -> str:
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def _node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def _conv(self, name: str, x: str, weight: Weights, *, stride: int = 1, pad: int = 0) -> str:
        k = weight.shape[-1]
        self._const(f"{name}.weight", weight)
        return self._node(
            "Conv",
            [x, f"{name}.weight"],
            f"{name}.out",
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[pad] * 4,
        )

    def conv_after_relu(
        self, name: str, x: str, c_in: int, c_out: int, k: int, pad: int = 0
    ) -> tuple[str, Power]:
        """Bias-free zero-sum conv fed by BN -> ReLU, with its output's predicted power."""
        weight = _he_normal(self.rng, (c_out, c_in, k, k), zero_sum=True)
        return self._conv(name, x, weight, pad=pad), _RELU_VAR * _sum_sq(weight)

    def bn_relu(self, name: str, x: str, power: Power) -> str:
        """BatchNormalization (gamma 1, beta 0, mean 0, var = predicted power), then ReLU."""
        channels = power.shape[0]
        self._const(f"{name}.weight", np.ones(channels, np.float32))
        self._const(f"{name}.bias", np.zeros(channels, np.float32))
        self._const(f"{name}.running_mean", np.zeros(channels, np.float32))
        self._const(f"{name}.running_var", power.astype(np.float32))
        bn = self._node(
            "BatchNormalization",
            [x, f"{name}.weight", f"{name}.bias", f"{name}.running_mean", f"{name}.running_var"],
            f"{name}.out",
            epsilon=BN_EPS,
        )
        return self._node("Relu", [bn], f"{name}.relu")

    def dense_block(self, name: str, x: str, power: Power, layers: int) -> tuple[str, Power]:
        """DenseNet block: each layer's 32 new channels are concatenated to its input."""
        for i in range(1, layers + 1):
            layer = f"{name}.denselayer{i}"
            h = self.bn_relu(f"{layer}.norm1", x, power)
            h, h_power = self.conv_after_relu(f"{layer}.conv1", h, power.shape[0], BOTTLENECK, 1)
            h = self.bn_relu(f"{layer}.norm2", h, h_power)
            h, new_power = self.conv_after_relu(f"{layer}.conv2", h, BOTTLENECK, GROWTH, 3, pad=1)
            x = self._node("Concat", [x, h], f"{layer}.concat", axis=1)
            power = np.concatenate([power, new_power])
        return x, power

    def transition(self, name: str, x: str, power: Power) -> tuple[str, Power]:
        """BN -> ReLU -> Conv1x1 halving channels -> AveragePool 2x2 stride 2."""
        c_in = power.shape[0]
        h = self.bn_relu(f"{name}.norm", x, power)
        h, h_power = self.conv_after_relu(f"{name}.conv", h, c_in, c_in // 2, 1)
        pooled = self._node("AveragePool", [h], f"{name}.pool", kernel_shape=[2, 2], strides=[2, 2])
        return pooled, h_power * _AVGPOOL_POWER_KEEP

    def build(self) -> onnx.ModelProto:
        """Assemble the whole DenseNet121 graph."""
        # conv0 keeps a non-zero sum so the film's overall brightness still matters. The
        # 1/1024 input scale is folded into it so that the network takes TorchXRayVision's
        # [-1024, 1024] input as is while its first activations stay near unit scale.
        conv0 = _he_normal(
            self.rng, (INIT_FEATURES, CHANNELS, 7, 7), zero_sum=False, scale=1.0 / INPUT_MAX
        )
        x = self._conv("features.conv0", INPUT_NAME, conv0, stride=2, pad=3)
        unscaled = conv0.reshape(INIT_FEATURES, -1).astype(np.float64) * INPUT_MAX
        rho = _INPUT_CORRELATION
        conv0_power = _INPUT_POWER * (
            rho * unscaled.sum(axis=1) ** 2 + (1.0 - rho) * (unscaled * unscaled).sum(axis=1)
        )
        x = self.bn_relu("features.norm0", x, conv0_power)
        x = self._node(
            "MaxPool", [x], "features.pool0", kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4
        )
        power = np.full(INIT_FEATURES, _POOL0_POWER)
        for b, layers in enumerate(BLOCK_LAYERS, start=1):
            x, power = self.dense_block(f"features.denseblock{b}", x, power, layers)
            if b < len(BLOCK_LAYERS):
                x, power = self.transition(f"features.transition{b}", x, power)

        # TorchXRayVision applies ReLU after norm5 before pooling (torchvision's forward does
        # the same), so the stand-in keeps it.
        features = power.shape[0]
        x = self.bn_relu("features.norm5", x, power)
        x = self._node("GlobalAveragePool", [x], "pool")
        x = self._node("Flatten", [x], "flatten", axis=1)
        classes = len(TXRV_LABELS)
        # Zero-sum rows cancel the features' common positive mean, so logits differ between
        # inputs by what the features say, around a per-label bias.
        weight = _he_normal(
            self.rng, (classes, features), zero_sum=True, scale=CLASSIFIER_GAIN / math.sqrt(2.0)
        )
        bias = self.rng.standard_normal(classes) * CLASSIFIER_BIAS_STD + CLASSIFIER_BIAS_MEAN
        self._const("classifier.weight", weight)
        self._const("classifier.bias", bias.astype(np.float32))
        self._node("Gemm", [x, "classifier.weight", "classifier.bias"], OUTPUT_NAME, transB=1)

        graph = helper.make_graph(
            self.nodes,
            "densenet121_standin",
            [
                helper.make_tensor_value_info(
                    INPUT_NAME, TensorProto.FLOAT, ["N", CHANNELS, INPUT_SIZE, INPUT_SIZE]
                )
            ],
            [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", classes])],
            initializer=self.initializers,
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="radstream",
            doc_string=(
                "Untrained stand-in with the layout of TorchXRayVision's DenseNet121 "
                "(densenet121-res224-all). Outputs are meaningless; not for diagnosis."
            ),
        )
        model.ir_version = IR_VERSION
        return model


def build_standin_densenet121(path: Path, *, seed: int = 0) -> ModelInfo:
    """Write an untrained DenseNet121 in TorchXRayVision's layout to ``path`` and describe it.

    Input ``input`` is float32 ``[N, 1, 224, 224]`` (N dynamic) scaled to [-1024, 1024];
    output ``logits`` is float32 ``[N, 18]`` in ``TXRV_LABELS`` order. Weights come from
    ``numpy.random.default_rng(seed)``, so equal seeds give byte-identical files. The file
    is replaced atomically. Returns the ModelInfo read back from the written file.
    """
    model = _DenseNetBuilder(np.random.default_rng(seed)).build()
    write_metadata(
        model,
        name=STANDIN_NAME,
        version=STANDIN_VERSION,
        labels=TXRV_LABELS,
        input_size=INPUT_SIZE,
        input_min=INPUT_MIN,
        input_max=INPUT_MAX,
        channels=CHANNELS,
        trained=False,
    )
    onnx.checker.check_model(model)
    write_atomically(Path(path), model.SerializeToString(deterministic=True))
    return read_model_info(Path(path))


def ensure_standin(models_dir: Path, *, seed: int = 0) -> Path:
    """Return ``models_dir / "densenet121-standin-v1.onnx"``, building it only if absent.

    Safe when several processes call it at once: each builds to its own temporary file and
    renames it into place, so the file seen is always a complete model. ``seed`` is used
    only when building: an existing file is returned whatever seed made it.
    """
    path = Path(models_dir) / STANDIN_FILENAME
    if not path.is_file():
        build_standin_densenet121(path, seed=seed)
    return path
