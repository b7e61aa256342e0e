"""Flax (linen) modules built from a NetworkSpec: trainable at any input resolution.

``build_model(spec, compression)`` returns a module whose layers are exactly those of
:func:`search_spaces.networks.layer_table` (same names, order, kernels, strides, groups
and padding), with batch norm and ReLU after every convolution; the classifier
convolution (SqueezeNet head) and fully connected layers carry a bias instead. Inputs
are NHWC.

With a :class:`~search_spaces.compression.CompressionPolicy`, each layer is compressed
as the policy says:

* quantization-aware training: the layer's input activations are fake-quantized
  (symmetric, per tensor; the range is the batch's maximum in training and its running
  average, kept in ``batch_stats``, at inference) and its weights too (symmetric, one
  scale per output channel); gradients pass straight through the rounding (STE);
* pruning: a ``masks`` collection beside ``params`` (same tree paths) multiplies the
  weights; :func:`search_spaces.compression.update_masks` recomputes it from the
  weights' magnitudes and :func:`~search_spaces.compression.apply_masks` zeroes the
  masked weights themselves. A channel-pruned layer also zeroes its output channels
  after batch norm and ReLU, so the channel is gone, as the cost model assumes.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from search_spaces.compression import FLOAT, NONE, CompressionPolicy, LayerCompression
from search_spaces.networks import LayerRow, NetworkSpec, layer_table

#: XLA's cheaper optimisation: it compiles about 40 % faster and runs somewhat slower, the better trade for
#: programs that run a few times (an initialisation, a short training, a one-off score).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}

#: Momentum of the running activation range used at inference.
RANGE_MOMENTUM = 0.9


def fake_quantize(x, bits: int, scale):
    """Symmetric uniform quantization to ``bits`` (signed) with a straight-through gradient."""
    levels = 2.0 ** (bits - 1) - 1.0
    scale = jnp.maximum(scale, 1e-8)
    q = jnp.clip(jnp.round(x / scale), -levels, levels) * scale
    return x + jax.lax.stop_gradient(q - x)


def quantize_weights(kernel, bits: int | str):
    """Per-output-channel (last axis) fake quantization of a kernel."""
    if bits == FLOAT:
        return kernel
    levels = 2.0 ** (bits - 1) - 1.0
    axes = tuple(range(kernel.ndim - 1))
    scale = jax.lax.stop_gradient(jnp.max(jnp.abs(kernel), axis=axes, keepdims=True)) / levels
    return fake_quantize(kernel, bits, scale)


def _compressed_kernel(module: nn.Module, shape: tuple, setting: LayerCompression):
    """The layer's weights as the forward pass uses them: masked, then fake-quantized."""
    kernel = module.param("kernel", nn.initializers.lecun_normal(), shape)
    if setting.pruned:
        mask = module.variable("masks", "kernel", jnp.ones, shape, jnp.float32)
        kernel = kernel * mask.value
    return quantize_weights(kernel, setting.w_bits)


def activation_range(module: nn.Module, current, train: bool):
    """The range to quantize activations to: ``current`` (the batch's max |x|) in training, which also
    updates the running average kept in ``batch_stats``; that running average at inference."""
    running = module.variable("batch_stats", "act_range", lambda: jnp.zeros((), jnp.float32))
    if train and not module.is_initializing():
        seen = running.value > 0
        running.value = jnp.where(seen, RANGE_MOMENTUM * running.value + (1 - RANGE_MOMENTUM) * current, current)
    return current if train else jnp.where(running.value > 0, running.value, current)


def _quantized_input(module: nn.Module, x, setting: LayerCompression, train: bool):
    """Fake-quantized input activations, with a running range for inference."""
    if setting.a_bits == FLOAT:
        return x
    value_range = activation_range(module, jax.lax.stop_gradient(jnp.max(jnp.abs(x))), train)
    return fake_quantize(x, setting.a_bits, value_range / (2.0 ** (setting.a_bits - 1) - 1.0))


def conv2d(x, kernel, stride: int, padding: tuple[tuple[int, int], tuple[int, int]], groups: int):
    """An NHWC convolution with an HWIO kernel, explicit padding and ``groups`` groups.

    A depthwise convolution (one input channel per group, as many outputs as inputs) is
    computed as a sum of the kernel's taps over shifted views of the padded input: the
    same products and sums as XLA's grouped convolution, which is slow on CPU, in another
    order (equal within float32 rounding). docs/RESULTS.md has the speed-ups
    (experiments/benchmarks/depthwise_speed.py).
    """
    kernel = kernel.astype(x.dtype)
    per_group, K = kernel.shape[2:]
    if groups > 1 and per_group == 1 and groups == K == x.shape[-1]:
        return _depthwise(x, kernel, stride, padding)
    return jax.lax.conv_general_dilated(x, kernel, (stride, stride), padding,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)


def _depthwise(x, kernel, stride: int, padding):
    """Depthwise convolution as the sum over the kernel's taps of the strided, shifted input times the tap."""
    R, S = kernel.shape[:2]
    padded = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
    rows = (padded.shape[1] - R) // stride + 1
    cols = (padded.shape[2] - S) // stride + 1
    out = None
    for i in range(R):
        for j in range(S):
            view = padded[:, i:i + stride * (rows - 1) + 1:stride, j:j + stride * (cols - 1) + 1:stride, :]
            term = view * kernel[i, j, 0]
            out = term if out is None else out + term
    return out


class CompressedConv(nn.Module):
    """A convolution with bias (the SqueezeNet classifier), compressed by ``setting``."""

    features: int
    kernel: tuple[int, int] = (1, 1)
    setting: LayerCompression = NONE

    @nn.compact
    def __call__(self, x, train: bool = False):
        R, S = self.kernel
        kernel = _compressed_kernel(self, (R, S, x.shape[-1], self.features), self.setting)
        x = _quantized_input(self, x, self.setting, train)
        y = conv2d(x, kernel, 1, ((R // 2, R // 2), (S // 2, S // 2)), 1)
        return y + self.param("bias", nn.initializers.zeros, (self.features,))


class CompressedDense(nn.Module):
    """A fully connected layer with bias, compressed by ``setting``."""

    features: int
    setting: LayerCompression = NONE

    @nn.compact
    def __call__(self, x, train: bool = False):
        kernel = _compressed_kernel(self, (x.shape[-1], self.features), self.setting)
        x = _quantized_input(self, x, self.setting, train)
        return x @ kernel.astype(x.dtype) + self.param("bias", nn.initializers.zeros, (self.features,))


class ConvBN(nn.Module):
    """Convolution (no bias), batch norm, optional ReLU; compressed by ``setting``."""

    features: int
    kernel: tuple[int, int]
    stride: int = 1
    padding: tuple[int, int] | None = None
    groups: int = 1
    relu: bool = True
    setting: LayerCompression = NONE

    @nn.compact
    def __call__(self, x, train: bool):
        R, S = self.kernel
        pad_h, pad_w = (R // 2, S // 2) if self.padding is None else self.padding
        shape = (R, S, x.shape[-1] // self.groups, self.features)
        kernel = _compressed_kernel(self, shape, self.setting)
        x = _quantized_input(self, x, self.setting, train)
        x = conv2d(x, kernel, self.stride, ((pad_h, pad_h), (pad_w, pad_w)), self.groups)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = nn.relu(x) if self.relu else x
        if self.setting.pruned and self.setting.granularity == "channel":
            channels = self.get_variable("masks", "kernel").reshape(-1, self.features).max(axis=0)
            x = x * channels
        return x


def _max_pool_ceil(x, window: int):
    """Max pooling (``window`` x ``window``, stride 2) in ceil mode: pads the bottom/right edge with -inf."""
    H, W = x.shape[1], x.shape[2]
    P = math.ceil((H - window) / 2) + 1
    Q = math.ceil((W - window) / 2) + 1
    pad_h = (P - 1) * 2 + window - H
    pad_w = (Q - 1) * 2 + window - W
    x = jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), constant_values=-jnp.inf)
    return nn.max_pool(x, (window, window), strides=(2, 2), padding="VALID")


class Network(nn.Module):
    """The network a NetworkSpec describes: the rows of its layer table, interpreted.

    Each :class:`~search_spaces.networks.LayerRow` says what to compute (its ``op``),
    what it reads (``inputs``, concatenated; an add sums its ``operands``) and how
    (kernel, stride, padding, groups, ReLU, bias), so a block type is defined once, in
    :mod:`search_spaces.networks`. Module names are the layer names.
    """

    spec: NetworkSpec
    compression: CompressionPolicy | None = None

    def _setting(self, name: str) -> LayerCompression:
        if self.compression is None:
            return NONE
        return _settings(self.spec, self.compression)[name]

    @nn.compact
    def __call__(self, x, train: bool = False):
        outputs: dict[str, jax.Array] = {}

        def read(producers: tuple[str, ...]):
            if not producers:
                return x
            parts = [outputs[name] for name in producers]
            return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)

        y = x
        for row in _rows(self.spec):
            y = self._layer(row, read, train)
            outputs[row.layer.name] = y
        return y.reshape((y.shape[0], -1))

    def _layer(self, row: LayerRow, read, train: bool):
        layer, name = row.layer, row.layer.name
        if row.op == "add":
            y = sum(read(operand) for operand in row.operands)
            return nn.relu(y) if row.relu else y
        x = read(row.inputs)
        if row.op == "max_pool":
            return _max_pool_ceil(x, layer.R)
        if row.op == "avg_pool":
            return jnp.mean(x, axis=(1, 2), keepdims=True)
        if row.op == "fc":
            y = CompressedDense(layer.K, self._setting(name), name=name)(x.reshape((x.shape[0], -1)), train)
            return nn.relu(y) if row.relu else y
        if row.bias:
            return CompressedConv(layer.K, (layer.R, layer.S), self._setting(name), name=name)(x, train)
        return ConvBN(layer.K, (layer.R, layer.S), layer.stride, row.padding, layer.groups, row.relu,
                      self._setting(name), name=name)(x, train)


@functools.lru_cache(maxsize=256)  # every trace walks the table; specs are hashable
def _rows(spec: NetworkSpec) -> tuple[LayerRow, ...]:
    return layer_table(spec)


@functools.lru_cache(maxsize=256)  # every ConvBN asks while tracing; specs and policies are hashable
def _settings(spec: NetworkSpec, policy: CompressionPolicy) -> dict[str, LayerCompression]:
    return policy.settings(layer_table(spec))


def build_model(spec: NetworkSpec, compression: CompressionPolicy | None = None) -> Network:
    """The Flax module of ``spec``, compressed by ``compression`` when given."""
    if compression is not None and compression.is_identity:
        compression = None
    return Network(spec, compression)


def layer_settings(spec: NetworkSpec, compression: CompressionPolicy) -> dict[str, LayerCompression]:
    """Layer name -> the compression the model applies to it (for update_masks)."""
    return dict(_settings(spec, compression))


def count_params(params) -> int:
    return int(sum(leaf.size for leaf in jax.tree_util.tree_leaves(params)))
