"""ONNX export of a trained design: the network as the accelerator would run it, in a standard file.

``export_onnx(spec, compression, variables, path, data)`` writes the Flax model of
:mod:`search_spaces.flax_models` (bound to ``variables``) as an ONNX graph (opset 21)
built layer by layer from :func:`search_spaces.networks.layer_table`, with the
inference arithmetic made explicit:

* batch norm is folded: its multiplier goes into the weights (or, for quantized weights,
  into the per-channel dequantization scale: the weight stays exactly integer x scale)
  and its shift into a per-channel bias, added after the Conv or Gemm (a separate Add, so
  runtimes keep it in float as the model does), so the graph has no BatchNormalization;
* quantized weights (``w_bits``) are integer initializers (int4 for 2-4 bits, int8 up to
  8, int16 up to 16) read by ``DequantizeLinear`` with one scale per output channel
  (axis 0): the codes and scales of the model's fake quantization;
* quantized activations (``a_bits``) are ``Clip`` -> ``QuantizeLinear`` ->
  ``DequantizeLinear`` before the layer, with the model's inference scale (its running
  range over ``2**(a_bits-1) - 1``) and int8 codes (int16 above 8 bits); the clip keeps
  the codes within the bit width's symmetric range, as the model does;
* pruned weights are zeros (codes 0); a channel-pruned layer's pruned outputs get a zero
  bias too, so they are zero after the ReLU as in the model. Shapes are not shrunk.

The graph takes float32 images (batch size free) and gives logits. ``layout`` says how
the images are laid out: ``"nhwc"`` (batch, height, width, channels; the default, as
:meth:`codesign.results.Design.predict` takes them), transposed to NCHW as the graph's
first node, or ``"nchw"``. With ``data`` (a :class:`codesign.accuracy.datasets.DataSpec`
that recorded its normalisation) it takes raw images, as ``predict`` does, and
normalises them first; otherwise it takes normalised images. The model's metadata says
both (``codesign.input``, ``codesign.layout``). ``onnx_model`` builds the same graph in
memory.

The weight codes are read off the model's own quantization, so without quantized
activations onnxruntime's logits equal the Flax model's up to float rounding (about
1e-6). Quantized activations are rounded: where the two runtimes' float arithmetic
differs in the last bit (the order a convolution sums in), a value right at a rounding
tie can take the neighbouring code, and in deep networks such rare flips compound (a
ResNet-18 at 8/8 bits: 1 in 8 inputs' logits off by a few percent, same predictions).

The ``onnx`` package is optional (``pip install -e ".[onnx]"``); checking a file needs
``onnxruntime`` as well.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from search_spaces.compression import FLOAT, NONE, CompressionPolicy, LayerCompression
from search_spaces.flax_models import quantize_weights
from search_spaces.networks import LayerRow, NetworkSpec, layer_table

OPSET = 21  # int4 and int16 quantization need opset 21
IR_VERSION = 10  # the IR version of opset 21 (newer IRs are refused by older runtimes)
BN_EPSILON = 1e-5  # flax.linen.BatchNorm's default, which the model uses
#: How the graph's input images may be laid out: as ``Design.predict`` takes them, or channels first.
LAYOUTS = ("nhwc", "nchw")
INSTALL = ('ONNX export needs the optional package onnx: install it with pip install -e ".[onnx]" (in a checkout '
           'of codesign) or pip install onnx')


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ValueError(INSTALL) from None
    return onnx


# --- the arithmetic -----------------------------------------------------------------------
def levels(bits: int) -> float:
    """The largest code of symmetric signed ``bits``-bit quantization."""
    return 2.0 ** (bits - 1) - 1.0


def per_level(value, bits: int) -> np.ndarray:
    """``value / levels(bits)`` in float32 as the model computes it: with jax, whose compiler turns a division
    by a constant into a multiplication by the constant's reciprocal (off by a bit for some values)."""
    return np.asarray(jnp.asarray(value, jnp.float32) / levels(bits))


@functools.partial(jax.jit, static_argnums=1)
def _model_weight_quantization(kernel, bits: int):
    """The model's fake-quantized kernel and its per-output-channel scales (compiled once per shape)."""
    scale = jnp.max(jnp.abs(kernel), axis=tuple(range(kernel.ndim - 1))) / levels(bits)
    return quantize_weights(kernel, bits), jnp.maximum(scale, 1e-8)


def quantize_kernel(kernel: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes and per-output-channel (last axis) scales of the model's weight quantization.

    The codes are read off :func:`search_spaces.flax_models.quantize_weights` itself: its
    compiled division rounds some quotients differently from an exact one, which can move
    a weight across a rounding tie; ``codes * scale`` is its fake-quantized kernel.
    """
    fake, scale = (np.asarray(a) for a in _model_weight_quantization(jnp.asarray(kernel, jnp.float32), bits))
    codes = np.round(fake / scale)  # integers, up to float rounding
    return np.clip(codes, -levels(bits), levels(bits)).astype(np.int64), scale.astype(np.float32)


def fold_batch_norm(scale, bias, mean, var) -> tuple[np.ndarray, np.ndarray]:
    """Batch norm at inference as ``x * mul + add`` per channel."""
    mul = (np.asarray(scale, np.float32) / np.sqrt(np.asarray(var, np.float32) + np.float32(BN_EPSILON)))
    add = np.asarray(bias, np.float32) - np.asarray(mean, np.float32) * mul
    return mul.astype(np.float32), add.astype(np.float32)


def activation_scale(act_range, bits: int) -> np.float32:
    """The model's inference scale for activations: the running range over the largest code."""
    return np.maximum(per_level(act_range, bits), np.float32(1e-8))


def flatten_to_nchw(kernel: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """A fully connected kernel ``(H*W*C, K)`` over an NHWC-flattened map of ``shape`` (C, H, W), reordered
    for the NCHW-flattened map."""
    C, H, W = shape
    return kernel.reshape(H, W, C, -1).transpose(2, 0, 1, 3).reshape(C * H * W, -1)


def to_onnx_layout(kernel: np.ndarray) -> np.ndarray:
    """Flax HWIO (convolutions) or (in, out) (dense) weights as ONNX OIHW or (out, in)."""
    return kernel.transpose(3, 2, 0, 1) if kernel.ndim == 4 else kernel.T


def int_type(bits: int) -> str:
    """The ONNX integer type holding ``bits``-bit weight codes."""
    return "INT4" if bits <= 4 else "INT8" if bits <= 8 else "INT16"


# --- one layer's folded weights --------------------------------------------------------------
def _variable(variables: dict, *path: str) -> np.ndarray:
    """``variables[path[0]][path[1]]...`` as float32, or a ValueError naming the missing path."""
    node = variables
    for key in path:
        if not isinstance(node, dict) or key not in node:
            raise ValueError(f"onnx export: the variables have no {'/'.join(path)}; they do not belong to this "
                             f"network and compression policy")
        node = node[key]
    return np.asarray(node, np.float32)


def folded_layer(row: LayerRow, setting: LayerCompression, variables: dict,
                 source_shape: tuple[int, int, int] | None = None) -> dict:
    """A conv or fc layer's weights (masked, quantized, batch norm folded, ONNX layout) and bias.

    Returns ``weight`` (float) or ``codes`` and ``scale`` (quantized), and ``bias``.
    ``source_shape`` (C, H, W): the map a fully connected layer flattens.
    """
    name = row.layer.name
    kernel = _variable(variables, "params", name, "kernel")
    if setting.pruned:
        kernel = kernel * _variable(variables, "masks", name, "kernel")
    if row.op == "fc" and source_shape is not None:
        kernel = flatten_to_nchw(kernel, source_shape)
    K = kernel.shape[-1]
    if row.op == "fc" or row.bias:
        mul, add = np.ones(K, np.float32), _variable(variables, "params", name, "bias")
    else:
        bn = ("BatchNorm_0",)
        mul, add = fold_batch_norm(_variable(variables, "params", name, *bn, "scale"),
                                   _variable(variables, "params", name, *bn, "bias"),
                                   _variable(variables, "batch_stats", name, *bn, "mean"),
                                   _variable(variables, "batch_stats", name, *bn, "var"))
        if setting.pruned and setting.granularity == "channel":
            add = add * _variable(variables, "masks", name, "kernel").reshape(-1, K).max(axis=0)
    if setting.w_bits == FLOAT:
        return {"weight": to_onnx_layout(kernel * mul), "bias": add}
    codes, scale = quantize_kernel(kernel, setting.w_bits)
    sign = np.where(mul < 0, -1, 1)  # scales stay positive: a negative multiplier flips the codes
    return {"codes": to_onnx_layout(codes * sign), "scale": (scale * np.abs(mul)).astype(np.float32), "bias": add}


# --- the graph -------------------------------------------------------------------------------
class _Graph:
    """ONNX nodes and initializers, added in execution order."""

    def __init__(self, onnx):
        self.onnx = onnx
        self.nodes, self.initializers = [], []

    def const(self, name: str, value, dtype: str = "FLOAT") -> str:
        """An initializer of ONNX type ``dtype`` (FLOAT, INT4, INT8 or INT16)."""
        if dtype == "INT4":
            import ml_dtypes  # jax's dependency; onnx reads its int4 arrays

            array = np.asarray(value).astype(ml_dtypes.int4)
        else:
            array = np.asarray(value).astype({"FLOAT": np.float32, "INT8": np.int8, "INT16": np.int16}[dtype])
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs) -> str:
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [output], name=output, **attrs))
        return output


def _quantized_input(g: _Graph, x: str, name: str, setting: LayerCompression, variables: dict) -> str:
    """``x`` fake-quantized as the layer's input (Clip, QuantizeLinear, DequantizeLinear), or ``x``."""
    if setting.a_bits == FLOAT:
        return x
    act_range = _variable(variables, "batch_stats", name, "act_range")
    if not act_range > 0:
        raise ValueError(f"onnx export: layer {name!r} quantizes its input activations but has no calibrated "
                         f"range (batch_stats/{name}/act_range is 0): the model was never trained, and without a "
                         f"range it quantizes each batch by its own maximum, which a static graph cannot")
    bits = setting.a_bits
    scale = activation_scale(act_range, bits)
    bound = np.float32(levels(bits)) * scale
    low, high = g.const(f"{name}/input_min", -bound), g.const(f"{name}/input_max", bound)
    clipped = g.node("Clip", [x, low, high], f"{name}/input_clipped")
    scale_name = g.const(f"{name}/input_scale", scale)
    zero = g.const(f"{name}/input_zero_point", 0, "INT8" if bits <= 8 else "INT16")
    codes = g.node("QuantizeLinear", [clipped, scale_name, zero], f"{name}/input_codes")
    return g.node("DequantizeLinear", [codes, scale_name, zero], f"{name}/input_dequantized")


def _weight(g: _Graph, name: str, folded: dict, setting: LayerCompression) -> str:
    """The layer's weight tensor: a float initializer, or integer codes through DequantizeLinear."""
    if "weight" in folded:
        return g.const(f"{name}/weight", folded["weight"])
    codes = g.const(f"{name}/weight_codes", folded["codes"], int_type(setting.w_bits))
    return g.node("DequantizeLinear", [codes, g.const(f"{name}/weight_scale", folded["scale"])],
                  f"{name}/weight", axis=0)


def _weighted_layer(g: _Graph, row: LayerRow, x: str, out: str, setting: LayerCompression, variables: dict,
                    source_shape: tuple[int, int, int] | None) -> str:
    """Conv or Gemm (no bias), the folded bias added after it, then ReLU if the row has one.

    The bias is a separate Add so that runtimes keep it in float, as the model does:
    onnxruntime's WeightBiasQuantization turns the float bias input of a Conv or Gemm
    between quantized operands into int32 codes of scale ``input scale x weight scale``,
    which shifts the output by up to half a step.
    """
    name, layer = row.layer.name, row.layer
    folded = folded_layer(row, setting, variables, source_shape)
    x = _quantized_input(g, x, name, setting, variables)
    w = _weight(g, name, folded, setting)
    if row.op == "fc":
        y = g.node("Gemm", [x, w], f"{name}/product", transB=1)
        bias = folded["bias"]
    else:
        if row.bias:  # the classifier convolution (CompressedConv): stride 1, "same" padding, no groups
            (pad_h, pad_w), stride, groups = (layer.R // 2, layer.S // 2), 1, 1
        else:
            (pad_h, pad_w), stride, groups = row.padding, layer.stride, layer.groups
        y = g.node("Conv", [x, w], f"{name}/conv", kernel_shape=[layer.R, layer.S], strides=[stride, stride],
                   pads=[pad_h, pad_w, pad_h, pad_w], group=groups)
        bias = folded["bias"].reshape(-1, 1, 1)
    y = g.node("Add", [y, g.const(f"{name}/bias", bias)], f"{name}/biased" if row.relu else out)
    return g.node("Relu", [y], out) if row.relu else y


def _settings(compression: CompressionPolicy | None, rows) -> dict[str, LayerCompression]:
    """Layer name -> the compression the model applies to it (as :func:`search_spaces.flax_models.build_model`)."""
    if compression is None or compression.is_identity:
        return {r.layer.name: NONE for r in rows}
    return compression.settings(rows)


def check_layout(layout: str) -> str:
    """``layout`` if it is one of :data:`LAYOUTS`, else a ValueError naming the allowed values."""
    if layout not in LAYOUTS:
        raise ValueError(f"onnx export: field 'layout' must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    return layout


def _normalised_input(g: _Graph, data, channels: int, layout: str) -> str:
    """The graph input (``images``) as NCHW, normalised with ``data``'s mean and std (as it is without them)."""
    x = "images" if layout == "nchw" else g.node("Transpose", ["images"], "images_nchw", perm=[0, 3, 1, 2])
    if data is None or not getattr(data, "mean", None):
        return x
    shape = (1, channels, 1, 1)
    mean = g.const("input_mean", np.asarray(data.mean, np.float32).reshape(shape))
    std = g.const("input_std", np.asarray(data.std, np.float32).reshape(shape))
    return g.node("Div", [g.node("Sub", [x, mean], "images_centred"), std], "normalised_images")


def onnx_model(spec: NetworkSpec, compression: CompressionPolicy | None, variables: dict, data=None,
               layout: str = "nhwc", weights: str = ""):
    """The ONNX ``ModelProto`` of the trained network (see module docstring), checked by ``onnx.checker``;
    ``weights`` describes which weights these are, kept in the metadata (``codesign.weights``)."""
    check_layout(layout)
    onnx = _onnx()
    rows = layer_table(spec)
    settings = _settings(compression, rows)
    g = _Graph(onnx)
    x = _normalised_input(g, data, spec.in_channels, layout)
    tensors: dict[str, str] = {}  # layer name -> its output tensor (concatenations: the producers joined by +)
    shapes: dict[str, tuple[int, int, int]] = {}
    flat: set[str] = set()  # layers whose output is (N, features)

    def read(producers: tuple[str, ...]) -> tuple[str, tuple[int, int, int]]:
        """The tensor a layer reads (the producers concatenated on channels) and its (C, H, W)."""
        if not producers:
            return x, (spec.in_channels, spec.resolution, spec.resolution)
        shape = (sum(shapes[p][0] for p in producers),) + shapes[producers[0]][1:]
        joined = "+".join(producers)
        if joined not in tensors:
            tensors[joined] = g.node("Concat", [tensors[p] for p in producers], joined, axis=1)
        return tensors[joined], shape

    for i, row in enumerate(rows):
        name = row.layer.name
        out = "logits" if i == len(rows) - 1 and row.op == "fc" else name
        if row.op == "add":
            terms = [read(operand)[0] for operand in row.operands]
            total = g.node("Add" if len(terms) == 2 else "Sum", terms, f"{name}/sum" if row.relu else out)
            tensors[name] = g.node("Relu", [total], out) if row.relu else total
        elif row.op == "max_pool":
            tensors[name] = g.node("MaxPool", [read(row.inputs)[0]], out, kernel_shape=[row.layer.R] * 2,
                                   strides=[2, 2], ceil_mode=1)
        elif row.op == "avg_pool":
            tensors[name] = g.node("GlobalAveragePool", [read(row.inputs)[0]], out)
        elif row.op in ("conv", "fc"):
            source, shape = read(row.inputs)
            flattens = row.op == "fc" and not all(p in flat for p in row.inputs)
            if flattens:
                source = g.node("Flatten", [source], f"{name}/flattened", axis=1)
            tensors[name] = _weighted_layer(g, row, source, out, settings[name], variables,
                                            shape if flattens else None)
            if row.op == "fc":
                flat.add(name)
        else:
            raise ValueError(f"onnx export: layer {name!r} has op {row.op!r}, which the exporter does not know")
        shapes[name] = row.out_shape
    if tensors[rows[-1].layer.name] != "logits":
        g.node("Flatten", [tensors[rows[-1].layer.name]], "logits", axis=1)

    helper, T = onnx.helper, onnx.TensorProto
    raw = x == "normalised_images"
    size, channels = spec.resolution, spec.in_channels
    shape = ["N", size, size, channels] if layout == "nhwc" else ["N", channels, size, size]
    graph = helper.make_graph(
        g.nodes, spec.name, [helper.make_tensor_value_info("images", T.FLOAT, shape)],
        [helper.make_tensor_value_info("logits", T.FLOAT, ["N", spec.num_classes])], g.initializers,
        doc_string=("raw" if raw else "normalised") + f" {layout.upper()} float32 images in, logits out")
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                              producer_name="codesign", doc_string=__doc__.split("\n\n")[0])
    metadata = {"codesign.network": spec.to_json(),
                "codesign.compression": "null" if compression is None else compression.to_json(),
                "codesign.input": ("raw images, normalised in the graph" if raw else "normalised images") +
                                  f", {layout.upper()} float32",
                "codesign.layout": layout,
                "codesign.weights": weights,
                "codesign.normalisation": json.dumps({"mean": list(data.mean), "std": list(data.std)} if raw else None)}
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    return model


def export_onnx(spec: NetworkSpec, compression: CompressionPolicy | None, variables: dict, path, data=None,
                layout: str = "nhwc", weights: str = "") -> Path:
    """Write the trained network as an ONNX file at ``path`` (see module docstring); returns the path."""
    model = onnx_model(spec, compression, variables, data, layout, weights)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _onnx().save_model(model, str(path))
    return path
